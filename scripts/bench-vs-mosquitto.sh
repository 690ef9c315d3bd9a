#!/usr/bin/env bash
# Benchmarks unigate against Mosquitto on this machine with `unigate bench` (see
# docs/benchmarks.md): both servers on loopback ports, each scenario run against both,
# interleaved (mosquitto, unigate, mosquitto, unigate, …), RUNS times; then a table of the
# medians and of the ratio unigate / mosquitto.
#
# Installs Debian's mosquitto if it is missing (apt-get, as root or through sudo) and builds
# unigate in release mode. Both servers bind 127.0.0.1 only and are stopped on exit.
#
# Settings (environment):
#   RUNS=3               runs of each scenario against each server
#   DURATION=5           seconds of publishing per message-flow run
#   RATE=20000           total msgs/s of the paced runs
#   IDLE_CONNECTIONS=10000  connections of the idle and storm scenarios
#   STORM_CONCURRENCY=1000  handshakes in flight at once in the storm scenario (idle: 100)
#   MQTT_VERSION=5       or 3 (3.1.1)
#   SCENARIOS="fanin-q0 fanin-q1 paced-q0 paced-q1 fanout-q0 reconnect idle storm"
#   MOSQUITTO_PORT=18830 UNIGATE_PORT=18831
#   OUT=DIR              where every run's output and the table go (default: a new temp dir,
#                        kept; its path is printed at the end)
set -euo pipefail
BENCH=bench-vs-mosquitto
# shellcheck source=scripts/bench-lib.sh
. "$(dirname "$0")/bench-lib.sh"
cd "$(dirname "$0")/.."

RUNS=${RUNS:-3}
DURATION=${DURATION:-5}
RATE=${RATE:-20000}
IDLE_CONNECTIONS=${IDLE_CONNECTIONS:-10000}
STORM_CONCURRENCY=${STORM_CONCURRENCY:-1000}
MQTT_VERSION=${MQTT_VERSION:-5}
SCENARIOS=${SCENARIOS:-"fanin-q0 fanin-q1 paced-q0 paced-q1 fanout-q0 reconnect idle storm"}
MOSQUITTO_PORT=${MOSQUITTO_PORT:-18830}
UNIGATE_PORT=${UNIGATE_PORT:-18831}
BENCH_TIMEOUT=${BENCH_TIMEOUT:-180}


# --- prerequisites -------------------------------------------------------------------------
SUDO=""
if [ "$(id -u)" != "0" ] && command -v sudo >/dev/null; then SUDO="sudo"; fi
MOSQUITTO=$(command -v mosquitto || true)
if [ -z "$MOSQUITTO" ] && [ -x /usr/sbin/mosquitto ]; then MOSQUITTO=/usr/sbin/mosquitto; fi
if [ -z "$MOSQUITTO" ]; then
  log "installing mosquitto"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq mosquitto >/dev/null
  MOSQUITTO=$(command -v mosquitto || echo /usr/sbin/mosquitto)
fi
log "$("$MOSQUITTO" -h 2>&1 | head -n1 || true)"

build_unigate

# Every idle connection is a file descriptor in the bench and in the server: raise the soft
# limit to the hard one (both servers and the bench inherit it from this shell).
raise_nofile
if [ "$(ulimit -n)" -lt $((IDLE_CONNECTIONS + 1000)) ]; then
  IDLE_CONNECTIONS=$(($(ulimit -n) - 1000))
  log "ulimit -n is $(ulimit -n): idle scenario lowered to $IDLE_CONNECTIONS connections"
fi

# --- servers -------------------------------------------------------------------------------
make_work_dir bench-vs-mosquitto
MOSQUITTO_PID=""
UNIGATE_PID=""


cleanup() {
  stop_pid "$MOSQUITTO_PID"
  stop_pid "$UNIGATE_PID"
  wait 2>/dev/null || true
  if [ "$OUT" != "$WORK" ]; then rm -rf "$WORK"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM


for port in "$MOSQUITTO_PORT" "$UNIGATE_PORT"; do
  if tcp_open "$port"; then
    log "127.0.0.1:$port is already in use; set MOSQUITTO_PORT / UNIGATE_PORT"
    exit 1
  fi
done

# Equal limits where the two have the same knob: 1,000,000 queued messages per session and
# 32 unacknowledged QoS 1/2 messages towards each client (unigate's default max_inflight).
# Mosquitto does not set TCP_NODELAY unless asked; without it Nagle's algorithm adds tens of
# milliseconds to its latencies, so ask (unigate always sets it).
cat >"$WORK/mosquitto.conf" <<EOF
listener $MOSQUITTO_PORT 127.0.0.1
allow_anonymous true
max_queued_messages 1000000
max_inflight_messages 32
persistence false
memory_limit 0
set_tcp_nodelay true
log_dest stderr
log_type error
log_type warning
EOF

# Mosquitto runs without persistence here, so unigate runs without its store (its default is
# the embedded store; scripts/bench-storage.sh compares the persistent configurations).
cat >"$WORK/unigate.toml" <<EOF
[[listeners]]
name = "mqtt"
protocol = "mqtt"
bind = "127.0.0.1:$UNIGATE_PORT"
[listeners.limits]
max_queued_messages = 1000000
max_inflight = 32
[storage]
kind = "memory"
EOF

start_mosquitto() {
  "$MOSQUITTO" -c "$WORK/mosquitto.conf" >>"$OUT/mosquitto.log" 2>&1 &
  MOSQUITTO_PID=$!
  wait_port "$MOSQUITTO_PORT"
}

start_unigate() {
  UNIGATE_LOG=warn "$UNIGATE" serve --config "$WORK/unigate.toml" >>"$OUT/unigate.log" 2>&1 &
  UNIGATE_PID=$!
  wait_port "$UNIGATE_PORT"
}

# A fresh process, so that its memory before the idle run is not what earlier runs left.
restart() {
  case $1 in
    mosquitto) stop_pid "$MOSQUITTO_PID"; start_mosquitto ;;
    unigate) stop_pid "$UNIGATE_PID"; start_unigate ;;
  esac
}

ensure_running() {
  case $1 in
    mosquitto) if ! kill -0 "$MOSQUITTO_PID" 2>/dev/null; then log "mosquitto died; restarting"; start_mosquitto; fi ;;
    unigate) if ! kill -0 "$UNIGATE_PID" 2>/dev/null; then log "unigate died; restarting"; start_unigate; fi ;;
  esac
}

start_mosquitto
start_unigate
log "mosquitto pid $MOSQUITTO_PID on 127.0.0.1:$MOSQUITTO_PORT, unigate pid $UNIGATE_PID on 127.0.0.1:$UNIGATE_PORT"

# --- scenarios -----------------------------------------------------------------------------
# name → bench arguments
scenario_args() {
  case $1 in
    # Unlimited runs may leave a backlog in the server; a long drain lets it arrive instead of
    # counting it as lost (the wait ends as soon as everything is in, or 2 s pass without news).
    fanin-q0) echo "fan-in --qos 0 --duration $DURATION --drain 30" ;;
    fanin-q1) echo "fan-in --qos 1 --duration $DURATION --drain 30" ;;
    paced-q0) echo "fan-in --qos 0 --rate $RATE --duration $DURATION" ;;
    paced-q1) echo "fan-in --qos 1 --rate $RATE --duration $DURATION" ;;
    fanout-q0) echo "fan-out --qos 0 --duration $DURATION --drain 30" ;;
    reconnect) echo "reconnect --qos 1" ;;
    idle) echo "idle --connections $IDLE_CONNECTIONS" ;;
    # Devices reconnecting all at once, after an outage or a broker restart.
    storm) echo "idle --connections $IDLE_CONNECTIONS --concurrency $STORM_CONCURRENCY" ;;
    *) log "unknown scenario $1"; return 1 ;;
  esac
}

scenario_title() {
  case $1 in
    fanin-q0) echo "fan-in 8→1, QoS 0, unlimited" ;;
    fanin-q1) echo "fan-in 8→1, QoS 1, unlimited" ;;
    paced-q0) echo "fan-in 8→1, QoS 0, $RATE msgs/s" ;;
    paced-q1) echo "fan-in 8→1, QoS 1, $RATE msgs/s" ;;
    fanout-q0) echo "fan-out 1→16, QoS 0, unlimited" ;;
    reconnect) echo "reconnect, QoS 1, 1000 msgs/s" ;;
    idle) echo "idle, $IDLE_CONNECTIONS connections, 100 handshakes at a time" ;;
    storm) echo "connect storm, $IDLE_CONNECTIONS connections, $STORM_CONCURRENCY handshakes at a time" ;;
  esac
}

# The metrics shown per scenario: JSON key and label.
scenario_metrics() {
  case $1 in
    fanin-q0 | fanout-q0) echo "msgs_per_s:msgs/s received p50_us:p50 latency µs lost:lost" ;;
    fanin-q1) echo "msgs_per_s:msgs/s received p50_us:p50 latency µs p99_us:p99 latency µs lost:lost" ;;
    paced-q0 | paced-q1) echo "msgs_per_s:msgs/s received p50_us:p50 latency µs p99_us:p99 latency µs lost:lost" ;;
    reconnect) echo "received:received lost:lost duplicated:duplicated reordered:reordered" ;;
    idle) echo "connects_per_s:connects/s p50_us:CONNACK p50 µs server_cpu_us_per_connect:server CPU µs/connect machine_cpu_us_per_connect:machine CPU µs/connect rss_per_conn_bytes:server RSS bytes/connection" ;;
    storm) echo "connects_per_s:connects/s p99_us:CONNACK p99 µs max_us:CONNACK max µs" ;;
  esac
}

# jget JSON KEY: the value of KEY in a flat JSON object ("null" if absent).

RESULTS="$OUT/results.txt" # scenario server run json
: >"$RESULTS"

run_one() {
  local scenario=$1 server=$2 run=$3 port pid args out json
  ensure_running "$server"
  case $scenario in idle | storm) restart "$server" ;; esac
  if [ "$server" = mosquitto ]; then port=$MOSQUITTO_PORT; pid=$MOSQUITTO_PID; else port=$UNIGATE_PORT; pid=$UNIGATE_PID; fi
  args=$(scenario_args "$scenario")
  case $scenario in idle | storm) args="$args --server-pid $pid" ;; esac
  out="$OUT/$scenario.$server.$run.txt"
  # shellcheck disable=SC2086 # $args is a list of words
  if ! timeout "$BENCH_TIMEOUT" "$UNIGATE" bench $args --addr "127.0.0.1:$port" \
    --mqtt-version "$MQTT_VERSION" >"$out" 2>&1; then
    log "$scenario against $server (run $run) failed; see $out"
    tail -n 5 "$out" >&2 || true
    return 0
  fi
  json=$(grep '^{' "$out" | tail -n1)
  printf '%s %s %s %s\n' "$scenario" "$server" "$run" "$json" >>"$RESULTS"
  local line="" m key
  for m in $(scenario_metrics "$scenario" | tr ' ' '\n' | grep ':' | cut -d: -f1); do
    key=$m
    line="$line $key=$(jget "$json" "$key")"
  done
  log "$(printf '%-10s %-9s run %s/%s:%s errors=%s' "$scenario" "$server" "$run" "$RUNS" "$line" "$(jget "$json" errors)")"
}

for scenario in $SCENARIOS; do
  scenario_args "$scenario" >/dev/null
  log "== $(scenario_title "$scenario")"
  for run in $(seq 1 "$RUNS"); do
    run_one "$scenario" mosquitto "$run"
    run_one "$scenario" unigate "$run"
  done
done

# --- table ---------------------------------------------------------------------------------

values() { # scenario server key
  local s=$1 srv=$2 key=$3 json
  while read -r sc sv _ json; do
    if [ "$sc" = "$s" ] && [ "$sv" = "$srv" ]; then jget "$json" "$key"; echo; fi
  done <"$RESULTS"
}

fmt() {
  awk -v v="$1" 'BEGIN {
    if (v == "n/a") { print v; exit }
    if (v + 0 >= 100 || v == int(v)) printf "%.0f\n", v; else printf "%.1f\n", v
  }'
}

ratio() {
  awk -v u="$1" -v m="$2" 'BEGIN {
    if (u == "n/a" || m == "n/a" || m + 0 == 0) { print "–"; exit }
    printf "%.2f\n", u / m
  }'
}

TABLE="$OUT/table.md"
{
  echo "RUNS=$RUNS, DURATION=${DURATION}s, MQTT $MQTT_VERSION, $(nproc) cores, $(date -u +%Y-%m-%d)"
  echo
  echo "| scenario | metric (median of $RUNS) | mosquitto | unigate | unigate / mosquitto |"
  echo "|---|---|---:|---:|---:|"
  for scenario in $SCENARIOS; do
    title=$(scenario_title "$scenario")
    scenario_metrics "$scenario" | sed -E 's/ ([a-z0-9_]+):/\n\1:/g' | while IFS=: read -r key label; do
      m=$(values "$scenario" mosquitto "$key" | median)
      u=$(values "$scenario" unigate "$key" | median)
      printf '| %s | %s | %s | %s | %s |\n' "$title" "$label" "$(fmt "$m")" "$(fmt "$u")" "$(ratio "$u" "$m")"
      title=""
    done
  done
} >"$TABLE"

echo
cat "$TABLE"
echo
log "per-run outputs and the table are in $OUT"
