#!/usr/bin/env bash
# Writes a throw-away PKI for benchmarking MQTT over TLS with `unigate bench --tls`:
#
#   DIR/ca.pem  DIR/ca.key           a CA (EC P-256)
#   DIR/server.pem  DIR/server.key   server certificate for localhost and 127.0.0.1 (EC P-256)
#   DIR/client.pem  DIR/client.key   client certificate, CN = $CLIENT_CN (default bench-device)
#
# All keys are PKCS#8 PEM; certificates are valid for 30 days. Test material only: the CA key
# sits next to the certificates. Needs the openssl command (Debian: apt-get install openssl).
#
# Usage: scripts/bench-pki.sh DIR
#
# Then, for example:
#   unigate.toml:  tls = { cert = "DIR/server.pem", key = "DIR/server.key",
#                          client_ca = "DIR/ca.pem", client_auth = "required" }
#   unigate bench idle --addr 127.0.0.1:8883 --tls --cafile DIR/ca.pem \
#                      --cert DIR/client.pem --key DIR/client.key
set -euo pipefail

if [ $# -ne 1 ]; then
  echo "usage: $0 DIR" >&2
  exit 2
fi
DIR=$1
CLIENT_CN=${CLIENT_CN:-bench-device}
DAYS=30
mkdir -p "$DIR"
cd "$DIR"

key() { openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$1" 2>/dev/null; }

key ca.key
openssl req -x509 -new -key ca.key -sha256 -days "$DAYS" -subj "/CN=unigate bench CA" \
  -addext "basicConstraints=critical,CA:TRUE" \
  -addext "keyUsage=critical,keyCertSign,cRLSign,digitalSignature" \
  -out ca.pem

# sign NAME CN EXTENSIONS: a certificate for NAME.key, signed by the CA.
sign() {
  local name=$1 cn=$2 ext=$3
  key "$name.key"
  openssl req -new -key "$name.key" -subj "/CN=$cn" -out "$name.csr"
  printf '%b' "$ext" > "$name.ext"
  openssl x509 -req -in "$name.csr" -CA ca.pem -CAkey ca.key -CAcreateserial -sha256 \
    -days "$DAYS" -extfile "$name.ext" -out "$name.pem" 2>/dev/null
  rm -f "$name.csr" "$name.ext"
}

sign server localhost \
  "basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth\nsubjectAltName=DNS:localhost,IP:127.0.0.1\n"
sign client "$CLIENT_CN" \
  "basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=clientAuth\n"
rm -f ca.srl

openssl verify -CAfile ca.pem server.pem client.pem >/dev/null
echo "bench-pki: CA, server (localhost, 127.0.0.1) and client (CN=$CLIENT_CN) certificates in $DIR" >&2
