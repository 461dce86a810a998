#!/usr/bin/env bash
# Certificates for docker/compose.secure.yaml, with openssl: a CA (ca/, its certificate copied
# to tls/ca.crt), the server's certificate for localhost, 127.0.0.1 and the compose name aiges
# (tls/server.pem, server.key; usable as a client certificate too, which is what the HEALTHCHECK presents under mTLS), and one
# client certificate named "client" (client/client.pem, client.key). For trying it out: in
# production the certificates come from your CA. Existing files are kept; delete them to renew.
set -euo pipefail
cd "$(dirname "$0")"
mkdir -p ca tls client
[ -f ca/ca.crt ] && { echo "make-certs: ca/ca.crt exists; delete ca/, tls/ and client/ to make new ones" >&2; exit 0; }
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 365 \
    -subj "/CN=aiges compose ca" -keyout ca/ca.key -out ca/ca.crt 2>/dev/null
cp ca/ca.crt tls/ca.crt  # the CA key stays out of the container
issue() {  # NAME CN SAN FOLDER
    openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj "/CN=$2" \
        -keyout "$4/$1.key" -out "$4/$1.csr" 2>/dev/null
    openssl x509 -req -in "$4/$1.csr" -CA ca/ca.crt -CAkey ca/ca.key -CAcreateserial -days 365 \
        -extfile <(printf 'subjectAltName=%s\nextendedKeyUsage=serverAuth,clientAuth\n' "$3") \
        -out "$4/$1.pem" 2>/dev/null
    rm "$4/$1.csr"
}
issue server aiges "DNS:localhost,DNS:aiges,IP:127.0.0.1" tls
issue client client "DNS:client" client
chmod 644 tls/server.key  # the container runs as uid 1000
echo "make-certs: tls/ (the server's, mounted) and client/ (for clients: --tls-ca ca/ca.crt --tls-cert client/client.pem --tls-key client/client.key)"
