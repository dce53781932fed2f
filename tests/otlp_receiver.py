"""A real OTLP/HTTP receiver on loopback, for the binding tests: decodes the protobuf bodies
POSTed to /v1/traces and /v1/metrics (with opentelemetry-proto, the collector's own message
definitions) and appends each span and each metric as one JSON line to the file it is given.

    python tests/otlp_receiver.py OUT.jsonl     # prints the port it listens on, then serves

Spans: {"signal": "span", "service", "name", "trace_id", "span_id", "parent_span_id",
"attributes": {...}}; metrics: {"signal": "metric", "service", "name", "points"}.
"""

import gzip
import json
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (ExportMetricsServiceRequest,
                                                                          ExportMetricsServiceResponse)
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (ExportTraceServiceRequest,
                                                                      ExportTraceServiceResponse)

LOCK = threading.Lock()


def value(v):  # an AnyValue, as plain JSON
    kind = v.WhichOneof("value")
    if kind == "array_value":
        return [value(x) for x in v.array_value.values]
    if kind is None:
        return None
    return getattr(v, kind)


def service_of(resource) -> str:
    return next((value(a.value) for a in resource.attributes if a.key == "service.name"), "")


class Handler(BaseHTTPRequestHandler):
    out_path = ""

    def do_POST(self) -> None:  # noqa: N802 (the http.server API)
        body = self.body()
        lines = []
        if self.path == "/v1/traces":
            request = ExportTraceServiceRequest.FromString(body)
            for rs in request.resource_spans:
                for ss in rs.scope_spans:
                    for span in ss.spans:
                        lines.append({"signal": "span", "service": service_of(rs.resource), "name": span.name,
                                      "trace_id": span.trace_id.hex(), "span_id": span.span_id.hex(),
                                      "parent_span_id": span.parent_span_id.hex(), "status": span.status.code,
                                      "attributes": {a.key: value(a.value) for a in span.attributes}})
            response = ExportTraceServiceResponse().SerializeToString()
        elif self.path == "/v1/metrics":
            request = ExportMetricsServiceRequest.FromString(body)
            for rm in request.resource_metrics:
                for sm in rm.scope_metrics:
                    for metric in sm.metrics:
                        data = getattr(metric, metric.WhichOneof("data"))
                        lines.append({"signal": "metric", "service": service_of(rm.resource), "name": metric.name,
                                      "points": len(data.data_points)})
            response = ExportMetricsServiceResponse().SerializeToString()
        else:
            self.send_response(404)
            self.end_headers()
            return
        with LOCK, open(self.out_path, "a", encoding="utf-8") as out:
            for line in lines:
                out.write(json.dumps(line) + "\n")
        self.send_response(200)
        self.send_header("Content-Type", "application/x-protobuf")
        self.send_header("Content-Length", str(len(response)))
        self.end_headers()
        self.wfile.write(response)

    def body(self) -> bytes:
        """The request body: by Content-Length or chunked (OpenTelemetry JS streams its
        exports), gunzipped when the exporter compressed it."""
        if "chunked" in (self.headers.get("Transfer-Encoding") or "").lower():
            body = b""
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip(), 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass  # trailers
                    break
                body += self.rfile.read(size)
                self.rfile.readline()
        else:
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        if (self.headers.get("Content-Encoding") or "").lower() == "gzip":
            body = gzip.decompress(body)
        return body

    def log_message(self, *args) -> None:  # quiet
        pass


def main() -> None:
    Handler.out_path = sys.argv[1]
    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    print(server.server_address[1], flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
