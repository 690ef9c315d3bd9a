#!/usr/bin/env bash
# Connect rate through the auth chain (docs/benchmarks.md, "Connect rate through the auth
# chain"): `unigate bench idle` opening CONNECTIONS idle MQTT 5 connections, CONCURRENCY
# handshakes at a time, against one unigate with one listener per authentication set-up:
#
#   plain   TCP, anonymous
#   tls     TLS 1.3, server certificate only (EC P-256), anonymous
#   mtls    TLS 1.3 with a required client certificate (EC P-256, one certificate for every
#           connection), the `x509` authenticator taking the identity from its CN
#   oauth2  TCP, the `oauth2` authenticator (RFC 7662 introspection at node's oidc-provider,
#           tests/oidc): every connection presents the same access token, so after the first
#           introspections the authenticator's cache answers
#   jwt     TCP, the `jwt` authenticator: RS256, 2048-bit key (auth/testdata/jwt/rsa.pem)
#
# Every TLS connection makes a full handshake (the bench turns session resumption off). The
# runs go round the scenarios RUNS times (plain tls mtls oauth2 jwt plain tls …), so that load
# from other processes spreads over all of them; the table gives medians.
#
# Needs: openssl (the PKI, scripts/bench-pki.sh, and the JWT's signature), node with
# `npm ci` done in tests/oidc (for oauth2; the scenario is skipped without it).
#
# Settings (environment):
#   RUNS=3  CONNECTIONS=10000  CONCURRENCY=100  WORKERS=2  THREADS=2
#   SCENARIOS="plain tls mtls oauth2 jwt"
#   BASE_PORT=28860       listeners on BASE_PORT … BASE_PORT+4
#   OUT=DIR               where the config, per-run outputs and the table go (default: a temp dir)
set -euo pipefail
BENCH=bench-auth
# shellcheck source=scripts/bench-lib.sh
. "$(dirname "$0")/bench-lib.sh"
cd "$(dirname "$0")/.."
ROOT=$PWD

RUNS=${RUNS:-3}
CONNECTIONS=${CONNECTIONS:-10000}
CONCURRENCY=${CONCURRENCY:-100}
WORKERS=${WORKERS:-2}
THREADS=${THREADS:-2}
SCENARIOS=${SCENARIOS:-"plain tls mtls oauth2 jwt"}
BASE_PORT=${BASE_PORT:-28860}
BENCH_TIMEOUT=${BENCH_TIMEOUT:-400}


build_unigate

require_nofile "$CONNECTIONS"

make_work_dir bench-auth
UNIGATE_PID=""
IDP_PID=""


cleanup() {
  stop_pid "$UNIGATE_PID"
  stop_pid "$IDP_PID"
  wait 2>/dev/null || true
  if [ "$OUT" != "$WORK" ]; then rm -rf "$WORK"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM


port_of() {
  case $1 in
    plain) echo $((BASE_PORT)) ;;
    tls) echo $((BASE_PORT + 1)) ;;
    mtls) echo $((BASE_PORT + 2)) ;;
    oauth2) echo $((BASE_PORT + 3)) ;;
    jwt) echo $((BASE_PORT + 4)) ;;
    *) log "unknown scenario $1"; return 1 ;;
  esac
}

for s in plain tls mtls oauth2 jwt; do
  if tcp_open "$(port_of "$s")"; then
    log "127.0.0.1:$(port_of "$s") is already in use; set BASE_PORT"
    exit 1
  fi
done

# --- material ------------------------------------------------------------------------------
PKI="$OUT/pki"
"$ROOT/scripts/bench-pki.sh" "$PKI"

b64url() { openssl base64 -A | tr '+/' '-_' | tr -d '='; }
JWT_KEY="$ROOT/auth/testdata/jwt/rsa.pem"
jwt_header=$(printf '{"alg":"RS256","typ":"JWT"}' | b64url)
jwt_claims=$(printf '{"sub":"bench","iss":"bench","exp":%d}' $(($(date +%s) + 86400)) | b64url)
jwt_sig=$(printf '%s.%s' "$jwt_header" "$jwt_claims" | openssl dgst -sha256 -sign "$JWT_KEY" -binary | b64url)
printf '%s.%s.%s' "$jwt_header" "$jwt_claims" "$jwt_sig" >"$OUT/jwt.txt"

IDP=""
if [[ " $SCENARIOS " == *" oauth2 "* ]]; then
  if ! command -v node >/dev/null || [ ! -d "$ROOT/tests/oidc/node_modules/oidc-provider" ]; then
    log "node or tests/oidc/node_modules missing (npm ci in tests/oidc): oauth2 skipped"
    SCENARIOS=$(echo " $SCENARIOS " | sed 's/ oauth2 / /')
  else
    node "$ROOT/tests/oidc/server.js" >"$OUT/oidc.log" 2>&1 &
    IDP_PID=$!
    for _ in $(seq 1 100); do
      IDP=$(sed -n 's/^listening \(http:.*\)$/\1/p' "$OUT/oidc.log")
      [ -n "$IDP" ] && break
      sleep 0.1
    done
    if [ -z "$IDP" ]; then
      log "oidc-provider did not start; see $OUT/oidc.log"
      exit 1
    fi
    log "oidc-provider at $IDP (pid $IDP_PID)"
  fi
fi

# A client-credentials access token (valid 10 minutes: one is fetched per run).
oauth2_token() {
  curl -sf -X POST "$IDP/token" \
    -d "grant_type=client_credentials&client_id=device&client_secret=device-secret&scope=telemetry:write" |
    sed -nE 's/.*"access_token":"([^"]*)".*/\1/p'
}

introspections() { curl -sf "$IDP/test/introspections" | sed -nE 's/.*"count":([0-9]+).*/\1/p'; }

cat >"$OUT/unigate.toml" <<EOF
workers = $WORKERS
sys_interval = "0s"

[[listeners]]
name = "plain"
protocol = "mqtt"
bind = "127.0.0.1:$(port_of plain)"

[[listeners]]
name = "tls"
protocol = "mqtt"
bind = "127.0.0.1:$(port_of tls)"
tls = { cert = "$PKI/server.pem", key = "$PKI/server.key" }

[[listeners]]
name = "mtls"
protocol = "mqtt"
bind = "127.0.0.1:$(port_of mtls)"
auth = "certs"
tls = { cert = "$PKI/server.pem", key = "$PKI/server.key", client_ca = "$PKI/ca.pem", client_auth = "required" }

[[listeners]]
name = "oauth2"
protocol = "mqtt"
bind = "127.0.0.1:$(port_of oauth2)"
auth = "tokens"

[[listeners]]
name = "jwt"
protocol = "mqtt"
bind = "127.0.0.1:$(port_of jwt)"
auth = "jwts"

[auth.chains.certs]
authenticators = ["cert"]
no_match = "deny"

[auth.chains.tokens]
authenticators = ["idp"]
no_match = "deny"

[auth.chains.jwts]
authenticators = ["rs256"]
no_match = "deny"

[auth.authenticators.cert]
kind = "x509"
identity = "cn"

[auth.authenticators.idp]
kind = "oauth2"
introspection_url = "${IDP:-http://127.0.0.1:9}/token/introspection"
client_id = "unigate"
client_secret = "unigate-secret"

[auth.authenticators.rs256]
kind = "jwt"
public_key = "$ROOT/auth/testdata/jwt/rsa.pub.pem"
algorithms = ["RS256"]
claims = { iss = "bench" }
EOF

start_unigate() {
  UNIGATE_LOG=warn "$UNIGATE" serve --config "$OUT/unigate.toml" >>"$OUT/unigate.log" 2>&1 &
  UNIGATE_PID=$!
  for _ in $(seq 1 100); do
    if tcp_open "$(port_of jwt)"; then return 0; fi
    sleep 0.1
  done
  log "unigate did not start; see $OUT/unigate.log"
  exit 1
}
start_unigate
log "unigate pid $UNIGATE_PID, config $OUT/unigate.toml"

# --- runs ----------------------------------------------------------------------------------
scenario_args() {
  case $1 in
    plain | oauth2 | jwt) ;;
    tls) echo "--tls --cafile $PKI/ca.pem" ;;
    mtls) echo "--tls --cafile $PKI/ca.pem --cert $PKI/client.pem --key $PKI/client.key" ;;
  esac
}


RESULTS="$OUT/results.txt" # scenario run load json
: >"$RESULTS"

run_one() {
  local scenario=$1 run=$2 out json load before="" after="" extra=""
  local -a cred=()
  if ! kill -0 "$UNIGATE_PID" 2>/dev/null; then log "unigate died; restarting"; start_unigate; fi
  case $scenario in
    oauth2)
      cred=(--username device --password "$(oauth2_token)")
      before=$(introspections)
      ;;
    jwt) cred=(--password "$(cat "$OUT/jwt.txt")") ;;
  esac
  out="$OUT/$scenario.$run.txt"
  load=$(cut -d' ' -f1 /proc/loadavg)
  # shellcheck disable=SC2046 # scenario_args is a list of words
  if ! timeout "$BENCH_TIMEOUT" "$UNIGATE" bench idle --addr "127.0.0.1:$(port_of "$scenario")" \
    --connections "$CONNECTIONS" --concurrency "$CONCURRENCY" --threads "$THREADS" \
    --server-pid "$UNIGATE_PID" $(scenario_args "$scenario") "${cred[@]}" >"$out" 2>&1; then
    log "$scenario run $run failed; see $out"
    tail -n 5 "$out" >&2 || true
    return 0
  fi
  if [ "$scenario" = oauth2 ]; then
    after=$(introspections)
    extra=" introspections=$((after - before))"
  fi
  json=$(grep '^{' "$out" | tail -n1)
  printf '%s %s %s %s\n' "$scenario" "$run" "$load" "$json" >>"$RESULTS"
  log "$(printf '%-7s run %s/%s: connected=%s connects/s=%s p50_us=%s p99_us=%s server_cpu_us=%s bench_cpu_us=%s load=%s%s' \
    "$scenario" "$run" "$RUNS" "$(jget "$json" connected)" "$(jget "$json" connects_per_s)" "$(jget "$json" p50_us)" \
    "$(jget "$json" p99_us)" "$(jget "$json" server_cpu_us_per_connect)" "$(jget "$json" bench_cpu_us_per_connect)" \
    "$load" "$extra")"
  # Let the server's TIME_WAIT sockets and freed memory settle between runs.
  sleep 2
}

for run in $(seq 1 "$RUNS"); do
  for scenario in $SCENARIOS; do
    run_one "$scenario" "$run"
  done
done

# --- table ---------------------------------------------------------------------------------

column() { # scenario key
  local sc run load json
  while read -r sc run load json; do
    if [ "$sc" = "$1" ]; then
      if [ "$2" = load ]; then echo "$load"; else jget "$json" "$2"; echo; fi
    fi
  done <"$RESULTS"
}

TABLE="$OUT/table.md"
{
  echo "$CONNECTIONS connections × $RUNS runs, concurrency $CONCURRENCY, workers $WORKERS, $(nproc) cores, $(date -u +%Y-%m-%d)"
  echo
  echo "| listener | connects/s (runs) | median | connect p50 ms | p99 ms | server CPU µs/connect | bench CPU µs/connect | failed | load avg |"
  echo "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | --- |"
  for scenario in $SCENARIOS; do
    runs=$(column "$scenario" connects_per_s | awk '{ printf "%s%.0f", (NR > 1 ? " / " : ""), $1 }')
    med=$(column "$scenario" connects_per_s | median)
    p50=$(column "$scenario" p50_us | median)
    p99=$(column "$scenario" p99_us | median)
    scpu=$(column "$scenario" server_cpu_us_per_connect | median)
    bcpu=$(column "$scenario" bench_cpu_us_per_connect | median)
    failed=$(column "$scenario" failed | awk '{ s += $1 } END { print s + 0 }')
    loads=$(column "$scenario" load | paste -sd/ -)
    printf '| %s | %s | %.0f | %.1f | %.1f | %.0f | %.0f | %s | %s |\n' "$scenario" "$runs" "$med" \
      "$(awk -v v="$p50" 'BEGIN { print v / 1000 }')" "$(awk -v v="$p99" 'BEGIN { print v / 1000 }')" \
      "$scpu" "$bcpu" "$failed" "$loads"
  done
} >"$TABLE"

echo
cat "$TABLE"
echo
log "per-run outputs, the config and the table are in $OUT"
