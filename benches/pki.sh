# Sourced by the bench scripts that serve TLS (compare.sh, tls-allocs.sh).
#
# make_pki DIR: a CA (DIR/ca.pem) and a leaf for 127.0.0.1 and localhost (DIR/leaf.pem,
# DIR/leaf.key), ECDSA P-256, valid two days, made for one run.
make_pki() {
    local d=$1
    mkdir -p "$d"
    openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 \
        -keyout "$d/ca.key" -out "$d/ca.pem" -subj "/CN=tern bench CA" \
        -addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign 2>/dev/null
    openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$d/leaf.key" \
        -out "$d/leaf.csr" -subj "/CN=localhost" 2>/dev/null
    printf '%s\n' "subjectAltName=IP:127.0.0.1,DNS:localhost" "basicConstraints=CA:FALSE" \
        "keyUsage=critical,digitalSignature" "extendedKeyUsage=serverAuth" >"$d/leaf.ext"
    openssl x509 -req -in "$d/leaf.csr" -CA "$d/ca.pem" -CAkey "$d/ca.key" -CAcreateserial \
        -days 2 -out "$d/leaf.pem" -extfile "$d/leaf.ext" 2>/dev/null
}
