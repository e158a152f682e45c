#!/usr/bin/env bash
# make demo: a real OPC UA server (node-opcua) with a changing value, uatap inline in front of
# it, and a real client (asyncua) subscribed through uatap. Events scroll for about 20 s, then
# the recording demo.pcapng is written and uatap says how to open it. Loopback only.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

UATAP=${UATAP:-target/release/uatap}
PY=${UATAP_VENV:-.venv}/bin/python
SERVER_PORT=${DEMO_SERVER_PORT:-48440}
PROXY_PORT=${DEMO_PROXY_PORT:-4841}
SECONDS_RUN=${DEMO_SECONDS:-20}
OUT=${DEMO_OUT:-demo.pcapng}

pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
}
trap cleanup EXIT

echo "== starting a node-opcua server on 127.0.0.1:$SERVER_PORT (ns=1;s=Counter changes every 100 ms)"
node tests/peers/ua_server.js --port "$SERVER_PORT" > /tmp/uatap-demo-server.log 2>&1 &
pids+=($!)
for _ in $(seq 1 100); do
  grep -q READY /tmp/uatap-demo-server.log 2>/dev/null && break
  sleep 0.2
done
grep -q READY /tmp/uatap-demo-server.log || { echo "server did not start:"; cat /tmp/uatap-demo-server.log; exit 1; }

echo "== starting uatap inline: opc.tcp://127.0.0.1:$PROXY_PORT -> opc.tcp://127.0.0.1:$SERVER_PORT"
"$UATAP" proxy --listen "127.0.0.1:$PROXY_PORT" \
  --upstream "opc.tcp://127.0.0.1:$SERVER_PORT/UA/Test" \
  --record "$OUT" --duration $((SECONDS_RUN + 6)) &
proxy=$!
pids+=($proxy)
sleep 1

echo "== an asyncua client subscribes through uatap for ${SECONDS_RUN} s"
"$PY" tests/peers/ua_client.py basic "opc.tcp://127.0.0.1:$PROXY_PORT/UA/Test" --seconds "$SECONDS_RUN" \
  > /tmp/uatap-demo-client.log 2>&1
echo "== client done: $(grep -E 'done;' /tmp/uatap-demo-client.log | tail -1 | sed 's/^ *[0-9.]* *//')"

wait "$proxy"
echo
echo "== recording written: $OUT"
echo "   tshark -r $OUT -d tcp.port==$PROXY_PORT,opcua -d tcp.port==$SERVER_PORT,opcua"
echo "   uatap analyze $OUT"
