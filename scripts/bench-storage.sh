#!/usr/bin/env bash
# QoS 1 throughput into persistent sessions (docs/benchmarks.md, "Storage"): the load tool's
# fan-in (8 publishers → 1 subscriber, QoS 1, unlimited rate) with a persistent subscriber
# (`--persistent`), against
#   memory     unigate with `[storage] kind = "memory"` (nothing on disk)
#   embedded   unigate with the embedded store (fsync on every group commit)
#   nofsync    unigate with the embedded store and `fsync = false`
#   mosquitto  Mosquitto with `persistence true` (it saves its database on shutdown and every
#              `autosave_interval`, 1800 s by default: it does not write each message)
# interleaved, RUNS times, each run on a fresh server process and an empty store; then the
# medians and the ratios embedded / memory and embedded / mosquitto.
#
# Settings (environment): RUNS=5 DURATION=5 INFLIGHT=32 MQTT_VERSION=5 PORT=18850
#   SERVERS="memory embedded nofsync mosquitto" OUT=DIR (default: a new temp dir, kept)
set -euo pipefail
BENCH=bench-storage
# shellcheck source=scripts/bench-lib.sh
. "$(dirname "$0")/bench-lib.sh"
cd "$(dirname "$0")/.."

RUNS=${RUNS:-5}
DURATION=${DURATION:-5}
INFLIGHT=${INFLIGHT:-32}
MQTT_VERSION=${MQTT_VERSION:-5}
PORT=${PORT:-18850}
SERVERS=${SERVERS:-"memory embedded nofsync mosquitto"}
UNIGATE=${UNIGATE:-${CARGO_TARGET_DIR:-$PWD/target}/release/unigate}
MOSQUITTO=$(command -v mosquitto || echo /usr/sbin/mosquitto)
make_work_dir storage-bench
PID=""


stop() {
  [ -n "$PID" ] || return 0
  stop_pid "$PID"
  wait "$PID" 2>/dev/null || true
  PID=""
}
cleanup() {
  stop
  # The stores and configurations of the runs; the outputs stay in $OUT.
  if [ "$OUT" != "$WORK" ]; then rm -rf "$WORK"; else find "$WORK" -mindepth 1 -maxdepth 1 -type d -exec rm -rf {} +; fi
}
trap cleanup EXIT

start() { # server run
  local dir="$WORK/$1.$2"
  rm -rf "$dir"; mkdir -p "$dir"
  case $1 in
    mosquitto)
      cat >"$dir/mosquitto.conf" <<CONF
listener $PORT 127.0.0.1
allow_anonymous true
max_queued_messages 1000000
max_inflight_messages 32
persistence true
persistence_location $dir/
memory_limit 0
set_tcp_nodelay true
log_dest stderr
log_type error
CONF
      "$MOSQUITTO" -c "$dir/mosquitto.conf" >>"$OUT/mosquitto.log" 2>&1 &
      ;;
    *)
      local kind=embedded fsync=true
      [ "$1" = memory ] && kind=memory
      [ "$1" = nofsync ] && fsync=false
      cat >"$dir/unigate.toml" <<CONF
sys_interval = "0s"
[[listeners]]
name = "mqtt"
protocol = "mqtt"
bind = "127.0.0.1:$PORT"
[listeners.limits]
max_queued_messages = 1000000
max_inflight = 32
[storage]
kind = "$kind"
path = "$dir/data"
fsync = $fsync
CONF
      UNIGATE_LOG=warn "$UNIGATE" serve --config "$dir/unigate.toml" >>"$OUT/unigate.log" 2>&1 &
      ;;
  esac
  PID=$!
  wait_port "$PORT"
}


RESULTS="$OUT/results.txt"
: >"$RESULTS"
for run in $(seq 1 "$RUNS"); do
  for server in $SERVERS; do
    start "$server" "$run"
    out="$OUT/$server.$run.txt"
    if timeout 180 "$UNIGATE" bench fan-in --qos 1 --persistent --duration "$DURATION" --inflight "$INFLIGHT" --drain 30 \
      --addr "127.0.0.1:$PORT" --mqtt-version "$MQTT_VERSION" >"$out" 2>&1; then
      json=$(grep '^{' "$out" | tail -n1)
      echo "$server $run $json" >>"$RESULTS"
      log "$(printf '%-9s run %s/%s: msgs/s %s p50 %s µs p99 %s µs lost %s' "$server" "$run" "$RUNS" \
        "$(jget "$json" msgs_per_s)" "$(jget "$json" p50_us)" "$(jget "$json" p99_us)" "$(jget "$json" lost)")"
    else
      log "$server run $run failed; see $out"
    fi
    stop
  done
done

values() { while read -r s _ json; do if [ "$s" = "$1" ]; then jget "$json" "$2"; echo; fi; done <"$RESULTS"; }

TABLE="$OUT/table.md"
{
  echo "fan-in 8→1, QoS 1, persistent subscriber, --inflight $INFLIGHT, ${DURATION}s, MQTT $MQTT_VERSION, RUNS=$RUNS, $(nproc) cores, $(date -u +%Y-%m-%d)"
  echo
  echo "| server | msgs/s (median) | p50 µs | p99 µs | lost |"
  echo "|---|---:|---:|---:|---:|"
  for s in $SERVERS; do
    echo "| $s | $(values "$s" msgs_per_s | median) | $(values "$s" p50_us | median) | $(values "$s" p99_us | median) | $(values "$s" lost | median) |"
  done
  mem=$(values memory msgs_per_s | median)
  emb=$(values embedded msgs_per_s | median)
  mos=$(values mosquitto msgs_per_s | median)
  echo
  awk -v e="$emb" -v m="$mem" -v q="$mos" 'BEGIN {
    if (m + 0 > 0) printf "embedded / memory: %.2f\n", e / m
    if (q + 0 > 0) printf "embedded / mosquitto (persistence true): %.2f\n", e / q
  }'
} >"$TABLE"
echo
cat "$TABLE"
log "per-run outputs in $OUT"
