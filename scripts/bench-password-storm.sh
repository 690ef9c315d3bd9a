#!/usr/bin/env bash
# A reconnect storm through the password authenticator (docs/benchmarks.md, "Password
# reconnect storm"): CONNECTIONS devices, each with its own user and password in one password
# file (argon2id at ARGON2, made with `unigate passwd import`), all connecting at once,
# CONCURRENCY handshakes at a time (`unigate bench idle --username 'dev-{i}' --password
# 'pw-{i}'`).
#
# Each run starts a fresh server and measures two storms:
#   cold   right after the start: every password is verified against its argon2id hash (a
#          storm after a broker restart);
#   warm   the same devices again after they all dropped (a storm after a network outage, the
#          broker up): answered from the authenticator's memory of verified passwords
#          (`verified_cache`, 15 min by default).
#
# Settings (environment):
#   RUNS=3  CONNECTIONS=10000  CONCURRENCY=100  WORKERS=2
#   ARGON2=""            argon2id cost of the hashes, m=KiB,t=N[,p=N] (default: passwd's default)
#   VERIFIED_CACHE=15m   the authenticator's verified_cache ("0s": off; then warm = cold)
#   PORT=28880
#   OUT=DIR              config, password file, per-run outputs and the table (default: temp dir)
set -euo pipefail
BENCH=bench-password-storm
# shellcheck source=scripts/bench-lib.sh
. "$(dirname "$0")/bench-lib.sh"
cd "$(dirname "$0")/.."

RUNS=${RUNS:-3}
CONNECTIONS=${CONNECTIONS:-10000}
CONCURRENCY=${CONCURRENCY:-100}
WORKERS=${WORKERS:-2}
ARGON2=${ARGON2:-}
VERIFIED_CACHE=${VERIFIED_CACHE:-15m}
PORT=${PORT:-28880}

build_unigate

require_nofile "$CONNECTIONS"
if tcp_open "$PORT"; then
  log "127.0.0.1:$PORT is already in use; set PORT"
  exit 1
fi

make_work_dir bench-storm
UNIGATE_PID=""
cleanup() {
  stop_pid "$UNIGATE_PID"
  wait 2>/dev/null || true
  if [ "$OUT" != "$WORK" ]; then rm -rf "$WORK"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# --- the fleet's password file ---------------------------------------------------------------
FILE="$OUT/fleet.toml"
rm -f "$FILE"
cost=()
if [ -n "$ARGON2" ]; then cost=(--argon2 "$ARGON2"); fi
started=$(date +%s.%N)
for i in $(seq 0 $((CONNECTIONS - 1))); do printf 'dev-%d:pw-%d\n' "$i" "$i"; done |
  "$UNIGATE" passwd import "$FILE" "${cost[@]}" >/dev/null
log "$CONNECTIONS users hashed in $(awk -v s="$started" -v e="$(date +%s.%N)" 'BEGIN { printf "%.1f", e - s }') s"
hash_params=$(grep -m1 -oE 'm=[0-9]+,t=[0-9]+,p=[0-9]+' "$FILE" || true)

cat >"$OUT/unigate.toml" <<EOF
workers = $WORKERS
sys_interval = "0s"

[[listeners]]
name = "fleet"
protocol = "mqtt"
bind = "127.0.0.1:$PORT"
auth = "fleet"

[auth.authenticators.users]
kind = "password"
file = "$FILE"
verified_cache = "$VERIFIED_CACHE"

[auth.chains.fleet]
authenticators = ["users"]
EOF
"$UNIGATE" check-config "$OUT/unigate.toml" >/dev/null

RESULTS="$OUT/results.txt"
: >"$RESULTS"
for run in $(seq 1 "$RUNS"); do
  "$UNIGATE" serve --config "$OUT/unigate.toml" --storage memory >"$OUT/unigate-$run.log" 2>&1 &
  UNIGATE_PID=$!
  wait_port "$PORT"
  for storm in cold warm; do
    out="$OUT/$storm-$run.txt"
    timeout 600 "$UNIGATE" bench idle --addr "127.0.0.1:$PORT" --connections "$CONNECTIONS" \
      --concurrency "$CONCURRENCY" --hold 1 --server-pid "$UNIGATE_PID" \
      --username 'dev-{i}' --password 'pw-{i}' >"$out" 2>&1 || true
    json=$(tail -1 "$out")
    printf '%s %s %s\n' "$storm" "$run" "$json" >>"$RESULTS"
    log "$storm run $run/$RUNS: connected=$(jget "$json" connected) in $(jget "$json" connect_s) s," \
      "server $(jget "$json" server_cpu_us_per_connect) µs CPU per connect, errors=$(jget "$json" errors)"
  done
  stop_pid "$UNIGATE_PID"
  UNIGATE_PID=""
done

col() { grep "^$1 " "$RESULTS" | while read -r _ _ json; do jget "$json" "$2"; echo; done | median; }
{
  echo "RUNS=$RUNS, $CONNECTIONS devices, argon2id $hash_params, verified_cache = $VERIFIED_CACHE, $(nproc) cores, $(date +%F)"
  echo
  echo "| storm | seconds to connect all (median) | connects/s | server CPU µs per connect | failed |"
  echo "|---|---:|---:|---:|---:|"
  for storm in cold warm; do
    echo "| $storm | $(col "$storm" connect_s) | $(col "$storm" connects_per_s) | $(col "$storm" server_cpu_us_per_connect) | $(col "$storm" failed) |"
  done
} | tee "$OUT/table.md"
log "per-run outputs and the table are in $OUT"
