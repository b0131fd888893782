#!/usr/bin/env bash
# Generate the tokenward test PKI and JWT signing keys.
#
#   tests/pki/make-pki.sh OUTDIR
#
# Idempotent: if OUTDIR/done exists the script exits 0 without touching
# anything. Requires only bash and the openssl CLI (1.1.1 or 3.x).
#
# Output (all PEM):
#   ca.pem ca.key                     v3 test CA
#   server.pem server.key             localhost, SAN DNS:localhost IP:127.0.0.1, serverAuth
#   client-a.pem client-a.key         CN=client-a,O=tokenward-test, clientAuth
#   client-a-combined.pem             client-a cert followed by its key
#   client-b.pem client-b.key         CN=client-b,O=tokenward-test, clientAuth
#   client-v1.pem client-v1.key       X.509 v1 client cert (no extensions)
#   keystone-service.pem .key         CN=tw-keystone-service,O=tokenward-test, clientAuth, by ca:
#                                     the service's certificate for Keystone's X.509 tokenless auth
#   other-ca.pem other-ca.key         a second CA, CN=untrusted test CA,OU=elsewhere,O=tokenward-test
#   untrusted-client.pem .key         the same subject as keystone-service, issued by other-ca (a
#                                     TLS-valid certificate whose issuer Keystone does not trust)
#   rsa-pkcs1.key / .pub.pem          RSA-2048, "BEGIN RSA PRIVATE KEY"
#   rsa-pkcs8.key / .pub.pem          RSA-2048, "BEGIN PRIVATE KEY"
#   ec256-sec1.key / .pub.pem         P-256, "EC PARAMETERS" + "EC PRIVATE KEY"
#   ec384.key / .pub.pem              P-384, PKCS#8
#   ec521.key / .pub.pem              P-521, PKCS#8
#   ed25519.key / .pub.pem            Ed25519, PKCS#8
#   thumbprints.json                  {"client-a": x5t#S256, "client-b": x5t#S256}
#   done                              marker, written last
set -euo pipefail

if [ $# -ne 1 ]; then
  echo "usage: $0 OUTDIR" >&2
  exit 2
fi

OUT=$1
# A directory made before a file was added here (keystone-service.pem is the newest) is made anew.
if [ -e "$OUT/done" ] && [ -e "$OUT/keystone-service.pem" ]; then
  exit 0
fi
mkdir -p "$OUT"

# Work in a private temp dir and move the result into place, so a
# concurrent or interrupted run never leaves a half-written OUTDIR/done.
TMP=$(mktemp -d "${OUT%/}/.pki.XXXXXX")
trap 'rm -rf "$TMP"' EXIT
cd "$TMP"

DAYS=3650
export OPENSSL_CONF=/dev/null   # ignore any system-wide config surprises

b64url() { openssl base64 -A | tr '+/' '-_' | tr -d '='; }

cat > ext.cnf <<'EOF'
[ v3_ca ]
basicConstraints = critical, CA:TRUE
keyUsage = critical, keyCertSign, cRLSign
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid:always

[ v3_server ]
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature, keyEncipherment
extendedKeyUsage = serverAuth
subjectAltName = DNS:localhost, IP:127.0.0.1
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid

[ v3_client ]
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature, keyEncipherment
extendedKeyUsage = clientAuth
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
EOF

# ---- CA ---------------------------------------------------------------
openssl genrsa -out ca.key 2048 2>/dev/null
openssl req -new -x509 -key ca.key -sha256 -days "$DAYS" \
  -subj "/O=tokenward-test/CN=tokenward test CA" \
  -config ext.cnf -extensions v3_ca -out ca.pem

serial() { openssl rand -hex 16; }

# sign NAME SUBJECT EXT_SECTION [ISSUER]
sign() {
  local name=$1 subj=$2 ext=$3 issuer=${4:-ca}
  openssl genrsa -out "$name.key" 2048 2>/dev/null
  openssl req -new -key "$name.key" -subj "$subj" -out "$name.csr"
  openssl x509 -req -in "$name.csr" -CA "$issuer.pem" -CAkey "$issuer.key" \
    -set_serial "0x$(serial)" -sha256 -days "$DAYS" \
    -extfile ext.cnf -extensions "$ext" -out "$name.pem" 2>/dev/null
  rm -f "$name.csr"
}

sign server   "/O=tokenward-test/CN=localhost" v3_server
sign client-a "/O=tokenward-test/CN=client-a"  v3_client
sign client-b "/O=tokenward-test/CN=client-b"  v3_client
cat client-a.pem client-a.key > client-a-combined.pem

# ---- Keystone X.509 tokenless -----------------------------------------
# The trusted issuer is ca.pem; other-ca is a CA the Keystone test server's TLS layer accepts but
# its [tokenless_auth] trusted_issuer does not list.
sign keystone-service "/O=tokenward-test/CN=tw-keystone-service" v3_client
openssl genrsa -out other-ca.key 2048 2>/dev/null
openssl req -new -x509 -key other-ca.key -sha256 -days "$DAYS" \
  -subj "/O=tokenward-test/OU=elsewhere/CN=untrusted test CA" \
  -config ext.cnf -extensions v3_ca -out other-ca.pem
sign untrusted-client "/O=tokenward-test/CN=tw-keystone-service" v3_client other-ca

# ---- v1 client cert ---------------------------------------------------
# `openssl x509 -req` without -extfile produces a v1 certificate on OpenSSL
# 1.1.1/3.0/3.1. OpenSSL >= 3.2 adds subjectKeyIdentifier/authorityKeyIdentifier
# by default (which makes the cert v3); if that happened, re-sign with an
# extension section that explicitly disables both, so that no extension is
# present and X509_sign() leaves the version at v1. The result is verified.
openssl genrsa -out client-v1.key 2048 2>/dev/null
openssl req -new -key client-v1.key -subj "/O=tokenward-test/CN=client-v1" -out client-v1.csr
openssl x509 -req -in client-v1.csr -CA ca.pem -CAkey ca.key \
  -set_serial "0x$(serial)" -sha256 -days "$DAYS" -out client-v1.pem 2>/dev/null
rm -f client-v1.csr
if ! openssl x509 -in client-v1.pem -noout -text | grep -q 'Version: 1 (0x0)'; then
  printf '[ v1 ]\nsubjectKeyIdentifier = none\nauthorityKeyIdentifier = none\n' > v1.cnf
  openssl req -new -key client-v1.key -subj "/O=tokenward-test/CN=client-v1" -out client-v1.csr
  openssl x509 -req -in client-v1.csr -CA ca.pem -CAkey ca.key \
    -set_serial "0x$(serial)" -sha256 -days "$DAYS" \
    -extfile v1.cnf -extensions v1 -out client-v1.pem 2>/dev/null
  rm -f client-v1.csr v1.cnf
fi
if ! openssl x509 -in client-v1.pem -noout -text | grep -q 'Version: 1 (0x0)'; then
  echo "make-pki: failed to produce an X.509 v1 certificate" >&2
  exit 1
fi

# ---- JWT signing keys -------------------------------------------------
# RSA PKCS#1 ("BEGIN RSA PRIVATE KEY"); -traditional exists on OpenSSL 3 only.
if openssl genrsa -traditional -out rsa-pkcs1.key 2048 2>/dev/null; then :; else
  openssl genrsa -out rsa-pkcs1.key 2048 2>/dev/null
fi
grep -q 'BEGIN RSA PRIVATE KEY' rsa-pkcs1.key

openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out rsa-pkcs8.key 2>/dev/null
openssl ecparam -genkey -name prime256v1 -out ec256-sec1.key
grep -q 'BEGIN EC PARAMETERS' ec256-sec1.key
grep -q 'BEGIN EC PRIVATE KEY' ec256-sec1.key
openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-384 -out ec384.key
openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-521 -out ec521.key
openssl genpkey -algorithm ED25519 -out ed25519.key

for k in rsa-pkcs1 rsa-pkcs8 ec256-sec1 ec384 ec521 ed25519; do
  openssl pkey -in "$k.key" -pubout -out "$k.pub.pem"
done

# ---- x5t#S256 thumbprints ---------------------------------------------
ta=$(openssl x509 -in client-a.pem -outform DER | openssl dgst -sha256 -binary | b64url)
tb=$(openssl x509 -in client-b.pem -outform DER | openssl dgst -sha256 -binary | b64url)
printf '{"client-a": "%s", "client-b": "%s"}\n' "$ta" "$tb" > thumbprints.json

rm -f ext.cnf ./*.srl
chmod 600 ./*.key client-a-combined.pem

# Move into place, then write the marker last.
for f in ./*; do
  mv -f "$f" "$OUT/"
done
touch "$OUT/done"
