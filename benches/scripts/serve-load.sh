#!/usr/bin/env bash
# `aegis serve` under load: wrk on loopback against POST /v1/authorize, beside the same decision
# made in-process by the same release binary (the engine's `time_authorize`, one thread).
# Bounded: AEGIS_LOAD_SECS seconds of wrk (default 10). Needs wrk (`apt-get install wrk`).
#
# Both sides decide the same call (`invoice.create` by a root agent, memory store, every call
# allowed and committed to the task's ledger). wrk and the server share this machine's cores.
set -euo pipefail
cd "$(dirname "$0")/../.."
secs=${AEGIS_LOAD_SECS:-10}
conns=${AEGIS_LOAD_CONNECTIONS:-8}
command -v wrk >/dev/null || { echo "wrk is needed: apt-get install wrk" >&2; exit 1; }

cargo build --release --locked -q -p aegis-sod-cli
aegis=target/x86_64-unknown-linux-gnu/release/aegis
[ -x "$aegis" ] || aegis=target/release/aegis
work=$(mktemp -d)
trap 'kill "${server:-0}" 2>/dev/null || true; rm -rf "$work"' EXIT

"$aegis" keys generate --seed "$(printf '01%.0s' {1..32})" > "$work/issuer.jwk"
"$aegis" keys generate --seed "$(printf '01%.0s' {1..32})" --public > "$work/issuer.pub.jwk"
"$aegis" keys generate --seed "$(printf '02%.0s' {1..32})" > "$work/agent.jwk"
cred=$("$aegis" token issue --issuer load-issuer --key "$work/issuer.jwk" --agent planner --agent-key "$work/agent.jwk" \
  --task "load-$$" --intent "load test" --scope invoice.create --ttl 3600)
request=$(printf '{"chain":["%s"],"tool":"invoice.create","args":{"customer":"acme","amount":10}}' "$cred")
engine=$(printf '{"bundle_dir":"policies/payments","trusted_issuers":[{"issuer":"load-issuer","jwk":%s}]}' "$(cat "$work/issuer.pub.jwk")")

# In-process: the same binary, the same engine configuration, one thread.
printf '{"engine":%s,"steps":[{"op":"time_authorize","request":{"request":%s,"iterations":20000}}]}' "$engine" "$request" > "$work/job.json"
mean=$("$aegis" exec "$work/job.json" | python3 -c 'import json,sys; print(json.loads(sys.stdin.readline())["ok"])')

printf '{"engine":%s}' "$engine" > "$work/serve.json"
"$aegis" serve --config "$work/serve.json" --listen 127.0.0.1:0 > "$work/serve.out" &
server=$!
for _ in $(seq 100); do grep -q 'http://' "$work/serve.out" 2>/dev/null && break; sleep 0.05; done
addr=$(sed -n 's|aegis serve: http://\([^ ]*\).*|\1|p' "$work/serve.out")
cat > "$work/post.lua" <<LUA
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.body = '$request'
LUA
wrk -t2 -c"$conns" -d"${secs}s" --latency -s "$work/post.lua" "http://$addr/v1/authorize" > "$work/wrk.out"
curl -sf "http://$addr/metrics" | grep -q 'aegis_decisions_total{outcome="allow",tool="invoice.create"}' \
  || { echo "the server did not allow the calls" >&2; cat "$work/wrk.out" >&2; exit 1; }

python3 - "$mean" "$work/wrk.out" "$conns" <<'PY'
import re, sys
mean, out, conns = float(sys.argv[1]), open(sys.argv[2]).read(), sys.argv[3]
rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
lat = dict(re.findall(r"^\s+(50|90|99)%\s+(\S+)", out, re.M))
errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
inproc = 1 / mean
print(f"in-process (1 thread, release)      {inproc:10.0f} decisions/s   {mean*1e6:8.1f} us per decision")
print(f"aegis serve over HTTP ({conns} conns)   {rps:10.0f} decisions/s   p50 {lat.get('50')}  p90 {lat.get('90')}  p99 {lat.get('99')}")
print(f"HTTP / in-process                    {rps/inproc:10.2f}x")
if errors:
    print(f"non-2xx responses: {errors.group(1)}")
PY
