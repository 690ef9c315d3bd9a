# shellcheck shell=bash
# Helpers shared by the bench scripts (sourced, not run). Set BENCH (the script's name, for log
# lines) before sourcing.

log() { printf '%s: %s\n' "${BENCH:-bench}" "$*" >&2; }

# Stops a process: TERM, then KILL after 5 s.
stop_pid() {
  local pid=$1
  [ -n "$pid" ] || return 0
  kill "$pid" 2>/dev/null || return 0
  for _ in $(seq 1 50); do
    kill -0 "$pid" 2>/dev/null || return 0
    sleep 0.1
  done
  kill -9 "$pid" 2>/dev/null || true
}

# Whether something accepts TCP connections on 127.0.0.1:PORT.
tcp_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# Whether a UDP socket is bound to PORT.
udp_bound() { ss -Hlun "sport = :$1" 2>/dev/null | grep -q .; }

# Waits up to 10 s for 127.0.0.1:PORT to accept connections.
wait_port() {
  for _ in $(seq 1 100); do
    if tcp_open "$1"; then return 0; fi
    sleep 0.1
  done
  log "nothing listens on 127.0.0.1:$1"
  return 1
}

# The value of KEY in a one-line JSON object (numbers and strings; "null" when absent).
jget() {
  local v
  v=$(printf '%s\n' "$1" | sed -nE "s/.*\"$2\":(\"[^\"]*\"|[^,}]*).*/\1/p")
  printf '%s' "${v:-null}"
}

# The median of the numbers on stdin, one per line ("null" and empty lines skipped; "n/a" for
# none).
median() {
  { grep -vE '^(null|)$' || true; } | sort -g | awk '{ v[NR] = $1 }
    END {
      if (NR == 0) { print "n/a"; exit }
      if (NR % 2) print v[(NR + 1) / 2]; else print (v[NR / 2] + v[NR / 2 + 1]) / 2
    }'
}

# Builds the release binary (honouring CARGO_TARGET_DIR) and sets UNIGATE to its path. Run from
# the repository root.
build_unigate() {
  log "cargo build --release"
  cargo build --release --quiet --bin unigate
  # shellcheck disable=SC2034 # used by the scripts that source this file
  UNIGATE=${CARGO_TARGET_DIR:-$PWD/target}/release/unigate
}

# Raises the soft limit of open files to the hard limit (every connection is a descriptor in
# the bench and in the server).
raise_nofile() {
  local hard
  hard=$(ulimit -Hn)
  if [ "$hard" = "unlimited" ]; then hard=1048576; fi
  ulimit -n "$hard" 2>/dev/null || true
}

# raise_nofile, then stops the script if N connections (and 500 descriptors to spare) still do
# not fit.
require_nofile() {
  raise_nofile
  if [ "$(ulimit -n)" -lt $(($1 + 500)) ]; then
    log "ulimit -n is $(ulimit -n): too low for $1 connections"
    exit 1
  fi
}

# Makes a temporary directory for the run (WORK, named after PREFIX) and sets OUT to it unless
# OUT is already set (a directory kept after the run).
make_work_dir() {
  WORK=$(mktemp -d -t "$1.XXXXXX")
  OUT=${OUT:-$WORK}
  mkdir -p "$OUT"
}
