#!/usr/bin/env bash
# HTTP-side benchmarks on one machine, against a release build of unigate on loopback:
#  1. POST /api/v1/publish with h2load (Debian's nghttp2-client): h2c (prior knowledge) and h2
#     over TLS (ALPN), 100 concurrent streams (10 connections x 10 streams), no subscriber.
#  2. MQTT over WebSocket against MQTT over TCP with the load tool (`unigate bench fan-in`,
#     8 publishers -> 1 subscriber): the same scenario on the `mqtt` and the `mqtt-ws`
#     listener, QoS 0 and QoS 1 as fast as possible, and QoS 1 paced at 20,000 msgs/s.
# Runs alternate between the two sides of each comparison, RUNS times, and the medians are
# printed at the end. Needs: cargo build --release; h2load; openssl.
#
#   RUNS=3 DURATION=5 scripts/bench-http.sh
set -euo pipefail
# shellcheck source=scripts/bench-lib.sh
. "$(dirname "$0")/bench-lib.sh"
cd "$(dirname "$0")/.."

RUNS="${RUNS:-3}"
DURATION="${DURATION:-5}"
REQUESTS="${REQUESTS:-200000}"
BIN="${BIN:-${CARGO_TARGET_DIR:-target}/release/unigate}"
OUT="${OUT:-$(mktemp -d)}"
mkdir -p "$OUT"
[ -x "$BIN" ] || { echo "no $BIN: cargo build --release first" >&2; exit 1; }
command -v h2load >/dev/null || { echo "h2load missing: apt-get install nghttp2-client" >&2; exit 1; }

openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$OUT/server.key" \
  -out "$OUT/server.pem" -days 2 -subj "/CN=localhost" \
  -addext "subjectAltName=DNS:localhost,IP:127.0.0.1" 2>/dev/null
cat > "$OUT/unigate.toml" <<EOF
sys_interval = "0s"
[[listeners]]
name = "mqtt"
protocol = "mqtt"
bind = "127.0.0.1:28851"
[[listeners]]
name = "http"
protocol = "http"
bind = "127.0.0.1:28852"
[[listeners]]
name = "https"
protocol = "http"
bind = "127.0.0.1:28853"
tls = { cert = "$OUT/server.pem", key = "$OUT/server.key" }
[[listeners]]
name = "ws"
protocol = "mqtt-ws"
bind = "127.0.0.1:28854"
EOF
echo '{"topic":"bench/h2","payload":"hello","qos":0}' > "$OUT/body.json"

RUST_LOG=warn "$BIN" serve --config "$OUT/unigate.toml" > "$OUT/server.log" 2>&1 &
server=$!
trap 'kill "$server" 2>/dev/null; wait "$server" 2>/dev/null || true' EXIT
for _ in $(seq 50); do
  curl -sf http://127.0.0.1:28852/health >/dev/null 2>&1 && break
  sleep 0.1
done

h2() { # $1: URL → requests/s
  h2load -n "$REQUESTS" -c 10 -m 10 -t 1 -d "$OUT/body.json" -H 'content-type: application/json' "$1" \
    > "$OUT/h2load.txt" 2>&1
  grep -q ' 0 failed' "$OUT/h2load.txt" || { cat "$OUT/h2load.txt" >&2; exit 1; }
  awk '/^finished in/ { gsub(",", "", $4); print $4 }' "$OUT/h2load.txt"
}
fan_in() { # $1: qos, then extra args → msgs/s received
  local qos="$1"; shift
  "$BIN" bench fan-in --qos "$qos" --duration "$DURATION" "$@" > "$OUT/fanin.txt" 2>&1
  tail -1 "$OUT/fanin.txt" | python3 -c 'import json,sys; d=json.load(sys.stdin); print(int(d["msgs_per_s"]), d["p50_us"], d["p99_us"], d["lost"])'
}

: > "$OUT/results.txt"
for run in $(seq "$RUNS"); do
  echo "h2c $run $(h2 http://127.0.0.1:28852/api/v1/publish)" | tee -a "$OUT/results.txt"
  echo "h2tls $run $(h2 https://127.0.0.1:28853/api/v1/publish)" | tee -a "$OUT/results.txt"
done
for qos in 0 1; do
  for run in $(seq "$RUNS"); do
    echo "tcp-q$qos $run $(fan_in "$qos" --addr 127.0.0.1:28851)" | tee -a "$OUT/results.txt"
    echo "ws-q$qos $run $(fan_in "$qos" --addr 127.0.0.1:28854 --ws /mqtt)" | tee -a "$OUT/results.txt"
  done
done
# Paced: latency at a rate both take easily.
for run in $(seq "$RUNS"); do
  echo "tcp-paced $run $(fan_in 1 --rate 20000 --addr 127.0.0.1:28851)" | tee -a "$OUT/results.txt"
  echo "ws-paced $run $(fan_in 1 --rate 20000 --addr 127.0.0.1:28854 --ws /mqtt)" | tee -a "$OUT/results.txt"
done

echo
echo "medians of $RUNS (requests/s or msgs/s received; fan-in latency in µs):"
for what in h2c h2tls tcp-q0 ws-q0 tcp-q1 ws-q1 tcp-paced ws-paced; do
  rate=$(awk -v w="$what" '$1 == w { print $3 }' "$OUT/results.txt" | median)
  p50=$(awk -v w="$what" '$1 == w && NF >= 6 { print $4 }' "$OUT/results.txt" | median)
  p99=$(awk -v w="$what" '$1 == w && NF >= 6 { print $5 }' "$OUT/results.txt" | median)
  echo "$what $rate${p50:+ p50_us=$p50 p99_us=$p99}"
done
echo "(raw results in $OUT/results.txt)"
