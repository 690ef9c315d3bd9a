#!/usr/bin/env bash
# Benchmarks unigate's CoAP gateway with `unigate bench coap-*` (see docs/benchmarks.md, "CoAP"),
# and compares raw request handling with libcoap's coap-server-openssl (Debian libcoap3-bin).
#
# Builds unigate in release mode, starts it from a configuration this script writes (MQTT and
# CoAP listeners on 127.0.0.1, `sys_interval = "0s"`) and coap-server-openssl on 127.0.0.1, runs
# every scenario RUNS times (the raw ones alternating libcoap, unigate, …), and prints a table of
# the medians. Both servers are stopped on exit.
#
# Settings (environment):
#   RUNS=1               runs of each scenario
#   DURATION=5           seconds of sending per request run
#   DEVICES=100          simulated devices of the request runs
#   OBSERVERS=10000      observers (one UDP socket each in the bench: mind `ulimit -n`)
#   SCENARIOS="non con con-w4 observers-non observers-con raw-con-put raw-non-put raw-con-get"
#   MQTT_PORT=18840 COAP_PORT=18841 LIBCOAP_PORT=18842
#   OUT=DIR              where every run's output and the table go (default: a new temp dir)
set -euo pipefail
BENCH=bench-coap
# shellcheck source=scripts/bench-lib.sh
. "$(dirname "$0")/bench-lib.sh"
cd "$(dirname "$0")/.."

RUNS=${RUNS:-1}
DURATION=${DURATION:-5}
DEVICES=${DEVICES:-100}
OBSERVERS=${OBSERVERS:-10000}
SCENARIOS=${SCENARIOS:-"non con con-w4 observers-non observers-con raw-con-put raw-non-put raw-con-get"}
MQTT_PORT=${MQTT_PORT:-18840}
COAP_PORT=${COAP_PORT:-18841}
LIBCOAP_PORT=${LIBCOAP_PORT:-18842}
BENCH_TIMEOUT=${BENCH_TIMEOUT:-300}


# --- prerequisites -------------------------------------------------------------------------
LIBCOAP=$(command -v coap-server-openssl || true)
if [ -z "$LIBCOAP" ]; then
  log "coap-server-openssl not found (Debian: apt-get install libcoap3-bin): raw-* scenarios skipped"
fi

build_unigate

raise_nofile
if [ "$(ulimit -n)" -lt $((OBSERVERS + 500)) ]; then
  OBSERVERS=$(($(ulimit -n) - 500))
  log "ulimit -n is $(ulimit -n): observers lowered to $OBSERVERS"
fi

# --- servers -------------------------------------------------------------------------------
make_work_dir bench-coap
UNIGATE_PID=""
LIBCOAP_PID=""


cleanup() {
  stop_pid "$UNIGATE_PID"
  stop_pid "$LIBCOAP_PID"
  wait 2>/dev/null || true
  if [ "$OUT" != "$WORK" ]; then rm -rf "$WORK"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM


for port in "$MQTT_PORT" "$COAP_PORT" "$LIBCOAP_PORT"; do
  if tcp_open "$port" || udp_bound "$port"; then
    log "127.0.0.1:$port is already in use; set MQTT_PORT / COAP_PORT / LIBCOAP_PORT"
    exit 1
  fi
done

cat >"$WORK/unigate.toml" <<EOF
sys_interval = "0s"

[[listeners]]
name = "mqtt"
protocol = "mqtt"
bind = "127.0.0.1:$MQTT_PORT"

[[listeners]]
name = "coap"
protocol = "coap"
bind = "127.0.0.1:$COAP_PORT"
EOF

start_unigate() {
  UNIGATE_LOG=warn "$UNIGATE" serve --config "$WORK/unigate.toml" >>"$OUT/unigate.log" 2>&1 &
  UNIGATE_PID=$!
  for _ in $(seq 1 100); do
    if tcp_open "$MQTT_PORT" && udp_bound "$COAP_PORT"; then return 0; fi
    sleep 0.1
  done
  log "unigate did not start; see $OUT/unigate.log"
  exit 1
}

start_libcoap() {
  [ -n "$LIBCOAP" ] || return 0
  "$LIBCOAP" -A 127.0.0.1 -p "$LIBCOAP_PORT" -v 0 >>"$OUT/libcoap.log" 2>&1 &
  LIBCOAP_PID=$!
  for _ in $(seq 1 100); do
    if udp_bound "$LIBCOAP_PORT"; then return 0; fi
    sleep 0.1
  done
  log "coap-server-openssl did not start; see $OUT/libcoap.log"
  exit 1
}

ensure_running() {
  case $1 in
    unigate) if ! kill -0 "$UNIGATE_PID" 2>/dev/null; then log "unigate died; restarting"; start_unigate; fi ;;
    libcoap) if ! kill -0 "$LIBCOAP_PID" 2>/dev/null; then log "libcoap died; restarting"; start_libcoap; fi ;;
  esac
}

start_unigate
start_libcoap
log "unigate pid $UNIGATE_PID (MQTT 127.0.0.1:$MQTT_PORT, CoAP 127.0.0.1:$COAP_PORT)${LIBCOAP_PID:+, coap-server-openssl pid $LIBCOAP_PID on 127.0.0.1:$LIBCOAP_PORT}"

# --- scenarios -----------------------------------------------------------------------------
# Servers a scenario runs against.
scenario_servers() {
  case $1 in
    raw-*) if [ -n "$LIBCOAP" ]; then echo "libcoap unigate"; else echo "unigate"; fi ;;
    *) echo "unigate" ;;
  esac
}

# scenario server → bench arguments. The raw-* runs have no MQTT subscriber: unigate's
# publishes go nowhere (no subscriber), libcoap's PUTs replace /example_data.
scenario_args() {
  local load="--devices $DEVICES --duration $DURATION"
  case $1:$2 in
    non:unigate) echo "coap-non $load --window 4" ;;
    con:unigate) echo "coap-con $load --window 1" ;;
    con-w4:unigate) echo "coap-con $load --window 4" ;;
    observers-non:unigate) echo "coap-observers --observers $OBSERVERS" ;;
    observers-con:unigate) echo "coap-observers --observers $OBSERVERS --con" ;;
    raw-con-put:unigate) echo "coap-con $load --no-mqtt --method post" ;;
    raw-con-put:libcoap) echo "coap-con $load --no-mqtt --method put --path example_data" ;;
    raw-non-put:unigate) echo "coap-non $load --no-mqtt --method post" ;;
    raw-non-put:libcoap) echo "coap-non $load --no-mqtt --method put --path example_data" ;;
    raw-con-get:*) echo "coap-con $load --no-mqtt --method get --path .well-known/core" ;;
    *) log "unknown scenario $1 for $2"; return 1 ;;
  esac
}

scenario_title() {
  case $1 in
    non) echo "coap-non, $DEVICES devices × window 4 → MQTT QoS 0" ;;
    con) echo "coap-con, $DEVICES devices × window 1 → MQTT QoS 1" ;;
    con-w4) echo "coap-con, $DEVICES devices × window 4 → MQTT QoS 1" ;;
    observers-non) echo "coap-observers, $OBSERVERS NON observers" ;;
    observers-con) echo "coap-observers, $OBSERVERS CON observers" ;;
    raw-con-put) echo "raw CON PUT/POST, $DEVICES × window 1" ;;
    raw-non-put) echo "raw NON PUT/POST, $DEVICES × window 4" ;;
    raw-con-get) echo "raw CON GET /.well-known/core" ;;
  esac
}

scenario_metrics() {
  case $1 in
    non) echo "sent_per_s:requests/s answered_per_s:2.04/s mqtt_per_s:MQTT msgs/s mqtt_loss_pct:MQTT loss % p50_us:2.04 p50 µs bench_cpu_pct:bench CPU % server_cpu_pct:server CPU %" ;;
    con | con-w4) echo "answered_per_s:ACKed requests/s p50_us:ACK p50 µs p99_us:ACK p99 µs mqtt_per_s:MQTT msgs/s mqtt_lost:MQTT lost bench_cpu_pct:bench CPU % server_cpu_pct:server CPU %" ;;
    observers-*) echo "registrations_per_s:registrations/s rss_per_observer_bytes:server RSS bytes/observer notifications_per_s:notifications/s p50_us:notification p50 µs p99_us:notification p99 µs lost:lost duplicated:duplicated" ;;
    raw-*) echo "answered_per_s:answered/s p50_us:p50 µs p99_us:p99 µs answered_pct:answered % bench_cpu_pct:bench CPU % server_cpu_pct:server CPU %" ;;
  esac
}

# jget JSON KEY: the value of KEY in a flat JSON object ("null" if absent).

RESULTS="$OUT/results.txt" # scenario server run json
: >"$RESULTS"

run_one() {
  local scenario=$1 server=$2 run=$3 pid port args out json
  ensure_running "$server"
  case $scenario in
    # A fresh process, so that its memory before the run is not what earlier runs left.
    observers-*) stop_pid "$UNIGATE_PID"; start_unigate ;;
  esac
  if [ "$server" = libcoap ]; then pid=$LIBCOAP_PID; port=$LIBCOAP_PORT; else pid=$UNIGATE_PID; port=$COAP_PORT; fi
  args=$(scenario_args "$scenario" "$server")
  out="$OUT/$scenario.$server.$run.txt"
  # shellcheck disable=SC2086 # $args is a list of words
  if ! timeout "$BENCH_TIMEOUT" "$UNIGATE" bench $args --coap "127.0.0.1:$port" --addr "127.0.0.1:$MQTT_PORT" \
    --server-pid "$pid" >"$out" 2>&1; then
    log "$scenario against $server (run $run) failed; see $out"
    tail -n 5 "$out" >&2 || true
    return 0
  fi
  json=$(grep '^{' "$out" | tail -n1)
  printf '%s %s %s %s\n' "$scenario" "$server" "$run" "$json" >>"$RESULTS"
  local line="" key
  for key in $(scenario_metrics "$scenario" | tr ' ' '\n' | grep ':' | cut -d: -f1); do
    line="$line $key=$(jget "$json" "$key")"
  done
  log "$(printf '%-14s %-8s run %s/%s:%s' "$scenario" "$server" "$run" "$RUNS" "$line")"
}

for scenario in $SCENARIOS; do
  log "== $(scenario_title "$scenario")"
  for run in $(seq 1 "$RUNS"); do
    for server in $(scenario_servers "$scenario"); do
      run_one "$scenario" "$server" "$run"
    done
  done
done

# --- table ---------------------------------------------------------------------------------

values() { # scenario server key
  local s=$1 srv=$2 key=$3 sc sv json
  while read -r sc sv _ json; do
    if [ "$sc" = "$s" ] && [ "$sv" = "$srv" ]; then jget "$json" "$key"; echo; fi
  done <"$RESULTS"
}

fmt() {
  awk -v v="$1" 'BEGIN {
    if (v == "n/a") { print v; exit }
    if (v + 0 >= 100 || v == int(v)) printf "%.0f\n", v; else printf "%.2f\n", v
  }'
}

TABLE="$OUT/table.md"
{
  echo "RUNS=$RUNS, DURATION=${DURATION}s, $DEVICES devices, $OBSERVERS observers, $(nproc) cores, $(date -u +%Y-%m-%d)"
  echo
  echo "| scenario | metric (median of $RUNS) | unigate | libcoap |"
  echo "|---|---|---:|---:|"
  for scenario in $SCENARIOS; do
    title=$(scenario_title "$scenario")
    scenario_metrics "$scenario" | sed -E 's/ ([a-z0-9_]+):/\n\1:/g' | while IFS=: read -r key label; do
      u=$(values "$scenario" unigate "$key" | median)
      l="–"
      case $scenario in raw-*) l=$(fmt "$(values "$scenario" libcoap "$key" | median)") ;; esac
      printf '| %s | %s | %s | %s |\n' "$title" "$label" "$(fmt "$u")" "$l"
      title=""
    done
  done
} >"$TABLE"

echo
cat "$TABLE"
echo
log "per-run outputs and the table are in $OUT"
