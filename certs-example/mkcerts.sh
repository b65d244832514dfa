#!/usr/bin/env bash
# Make a throwaway CA, server certificates (RSA-2048 and ECDSA P-256) and a client
# certificate for the demo and the tests. NEVER use these in production: the CA key
# sits next to them, unprotected.
#
# usage: certs-example/mkcerts.sh [OUTDIR]     (default: certs-example/out)
# Idempotent: does nothing when OUTDIR already holds a complete set.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
out=${1:-$here/out}
mkdir -p "$out"
cd "$out"

files="ca.crt ca.key server-rsa.crt server-rsa.key server-rsa.pem server-ecdsa.crt
       server-ecdsa.key client.crt client.key"
complete=1
for f in $files; do [ -s "$f" ] || complete=0; done
[ "$complete" = 1 ] && exit 0

umask 077
days=825
san="subjectAltName=DNS:localhost,IP:127.0.0.1,IP:::1,DNS:mail.example.test"

openssl req -x509 -new -nodes -newkey rsa:2048 -sha256 -days 3650 \
    -keyout ca.key -out ca.crt -subj "/O=mailedge example/CN=mailedge throwaway CA" \
    -addext "basicConstraints=critical,CA:TRUE" \
    -addext "keyUsage=critical,keyCertSign,cRLSign" 2>/dev/null

sign() { # name subject extensions...
    local name=$1 subj=$2; shift 2
    openssl req -new -key "$name.key" -out "$name.csr" -subj "$subj" 2>/dev/null
    openssl x509 -req -in "$name.csr" -CA ca.crt -CAkey ca.key -CAcreateserial \
        -days $days -sha256 -out "$name.crt" -extfile <(printf '%s\n' "$@") 2>/dev/null
    rm -f "$name.csr"
}

openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out server-rsa.key 2>/dev/null
sign server-rsa "/CN=mail.example.test" "$san" "basicConstraints=CA:FALSE" \
    "keyUsage=critical,digitalSignature,keyEncipherment" "extendedKeyUsage=serverAuth"

openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out server-ecdsa.key 2>/dev/null
sign server-ecdsa "/CN=mail.example.test" "$san" "basicConstraints=CA:FALSE" \
    "keyUsage=critical,digitalSignature" "extendedKeyUsage=serverAuth"

openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out client.key 2>/dev/null
sign client "/CN=client.example.test" "basicConstraints=CA:FALSE" \
    "keyUsage=critical,digitalSignature" "extendedKeyUsage=clientAuth"

# One combined PEM (chain then key), the way Postfix and Dovecot also accept it.
cat server-rsa.crt server-rsa.key > server-rsa.pem
rm -f ca.srl
chmod 600 ./*.key server-rsa.pem
chmod 644 ./*.crt
echo "certificates written to $out (throwaway, never for production)"
