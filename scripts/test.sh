#!/usr/bin/env bash
# Runs the whole test suite, installing on the way what the tests need and the machine lacks:
# Debian's mosquitto-clients (mosquitto_pub / mosquitto_sub), libcoap3-bin (coap-client-openssl)
# and chromium (the browser test), Python's paho-mqtt and schemathesis (the OpenAPI document
# checked against the live API), which the tests drive against the real server.
set -euo pipefail
cd "$(dirname "$0")/.."

SUDO=""
if [ "$(id -u)" != "0" ] && command -v sudo >/dev/null; then SUDO="sudo"; fi

missing=""
if ! command -v mosquitto_sub >/dev/null || ! command -v mosquitto_pub >/dev/null; then missing="$missing mosquitto-clients"; fi
if ! command -v coap-client-openssl >/dev/null; then missing="$missing libcoap3-bin"; fi
if [ ! -x /usr/bin/chromium ]; then missing="$missing chromium"; fi
if [ -n "$missing" ]; then
  echo "test.sh: installing$missing"
  $SUDO apt-get update -qq
  # shellcheck disable=SC2086
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq $missing >/dev/null
fi
if ! python3 -c "import paho.mqtt" 2>/dev/null; then
  echo "test.sh: installing paho-mqtt"
  python3 -m pip install --quiet --disable-pip-version-check 'paho-mqtt>=2,<3' \
    || python3 -m pip install --quiet --disable-pip-version-check --break-system-packages 'paho-mqtt>=2,<3'
fi
# An independent LwM2M device for the LwM2M tests (tests/lwm2m/aiocoap_device.py).
if ! python3 -c "import aiocoap" 2>/dev/null; then
  echo "test.sh: installing aiocoap"
  python3 -m pip install --quiet --disable-pip-version-check 'aiocoap==0.4.14' \
    || python3 -m pip install --quiet --disable-pip-version-check --break-system-packages 'aiocoap==0.4.14'
fi
# Pinned: the test picks its checks by name, and those names change between major versions.
if ! command -v st >/dev/null || [ "$(st --version 2>/dev/null)" != "st, version 4.32.5" ]; then
  echo "test.sh: installing schemathesis"
  python3 -m pip install --quiet --disable-pip-version-check 'schemathesis==4.32.5' \
    || python3 -m pip install --quiet --disable-pip-version-check --break-system-packages 'schemathesis==4.32.5'
fi

# The oauth2 tests run a real authorisation server: node's oidc-provider (tests/oidc).
if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
  echo "test.sh: installing nodejs and npm"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq nodejs npm >/dev/null
fi
# MQTT.js, the JavaScript MQTT client web apps use, drives MQTT over WebSocket (tests/mqttjs),
# under node and, through playwright-core (no browser download), in Debian's chromium.
if [ ! -d tests/mqttjs/node_modules/mqtt ] || [ ! -d tests/mqttjs/node_modules/playwright-core ]; then
  echo "test.sh: installing MQTT.js (npm ci in tests/mqttjs)"
  (cd tests/mqttjs && { npm ci --no-audit --no-fund --loglevel=error || npm install --no-audit --no-fund --loglevel=error; })
fi
if [ ! -d tests/oidc/node_modules/oidc-provider ]; then
  echo "test.sh: installing oidc-provider (npm ci in tests/oidc)"
  (cd tests/oidc && { npm ci --no-audit --no-fund --loglevel=error || npm install --no-audit --no-fund --loglevel=error; })
fi

echo "test.sh: cargo fmt --check"
cargo fmt --all -- --check
echo "test.sh: cargo clippy"
cargo clippy --workspace --all-targets --quiet -- -D warnings
echo "test.sh: cargo test"
log="$(mktemp)"
trap 'rm -f "$log"' EXIT
cargo test --workspace --quiet "$@" 2>&1 | tee "$log"
# One closing line for the whole run (cargo prints one per test binary, the last often a doc-test
# binary with nothing in it).
awk '/^test result:/ { for (i = 1; i <= NF; i++) { if ($(i+1) ~ /^passed/) p += $i; if ($(i+1) ~ /^failed/) f += $i } }
     END { printf "%d passed, %d failed\n", p, f }' "$log"
