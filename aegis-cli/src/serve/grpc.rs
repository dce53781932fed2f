//! Envoy's ext_authz gRPC service (`envoy.service.auth.v3.Authorization/Check`), on the
//! maintained `envoy-types` definitions: the same gate as the HTTP check.

use std::sync::Arc;

use envoy_types::ext_authz::v3::pb::{
    Authorization, AuthorizationServer, CheckRequest, CheckResponse, HeaderAppendAction, HttpStatusCode,
};
use envoy_types::ext_authz::v3::{CheckResponseExt, DeniedHttpResponseBuilder, OkHttpResponseBuilder};
use tokio_stream::wrappers::TcpListenerStream;
use tonic::{Request, Response, Status};

use super::gate::{self, ProxiedCall};
use super::Service;

struct Check {
    service: Arc<Service>,
}

#[tonic::async_trait]
impl Authorization for Check {
    async fn check(&self, request: Request<CheckRequest>) -> Result<Response<CheckResponse>, Status> {
        let http = request.into_inner().attributes.and_then(|a| a.request).and_then(|r| r.http).unwrap_or_default();
        let service = Arc::clone(&self.service);
        let answer = tokio::task::spawn_blocking(move || {
            // Envoy sends the body as `raw_body` (`pack_as_bytes`) or `body`.
            let body = if http.raw_body.is_empty() { http.body.as_bytes() } else { &http.raw_body[..] };
            let body = (!body.is_empty()).then_some(body);
            gate::check(&service, &ProxiedCall { headers: &http.headers, path: &http.path, body })
        })
        .await
        .map_err(|_| Status::internal("the gate panicked"))?;
        let mut response = CheckResponse::default();
        if answer.status == 200 {
            let mut ok = OkHttpResponseBuilder::new();
            // Overwrite: a client that sent its own `Aegis-*` headers must not reach the
            // upstream with them first.
            for (name, value) in answer.headers {
                ok.add_header(name, value, Some(HeaderAppendAction::OverwriteIfExistsOrAdd), true);
            }
            response.set_status(Status::ok("allowed")).set_http_response(ok);
        } else {
            let mut denied = DeniedHttpResponseBuilder::new();
            let code = if answer.status == 401 { HttpStatusCode::Unauthorized } else { HttpStatusCode::Forbidden };
            denied.set_http_status(code).set_body(answer.body.to_string());
            for (name, value) in answer.headers {
                denied.add_header(name, value, None, true);
            }
            let status =
                if answer.status == 401 { Status::unauthenticated("denied") } else { Status::permission_denied("denied") };
            response.set_status(status).set_http_response(denied);
        }
        Ok(Response::new(response))
    }
}

/// Serves the check service on `listener` until the process ends.
pub(crate) async fn serve(service: Arc<Service>, listener: tokio::net::TcpListener) {
    let incoming = TcpListenerStream::new(listener);
    let result = tonic::transport::Server::builder()
        .add_service(AuthorizationServer::new(Check { service }))
        .serve_with_incoming(incoming)
        .await;
    if let Err(e) = result {
        eprintln!("aegis serve: the gRPC service stopped: {e}");
    }
}
