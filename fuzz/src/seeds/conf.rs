//! Seeds for the turnserver.conf reader: every key, the repository's own files, errors.

pub(super) fn conf() -> Vec<(&'static str, Vec<u8>)> {
    let every_key = "\
# Most keys tern reads, once each.
listening-ip=192.0.2.1
listening-ip=2001:db8::1
listening-port=3478
alt-listening-port=3479
relay-ip=192.0.2.1
external-ip=203.0.113.1/192.0.2.1
min-port=49152
max-port=49252
realm = \"example.org\"
use-auth-secret
static-auth-secret=n0rthSecret2024
lt-cred-mech
user=carol:Carol9Password
user=dave:0x0123456789abcdef0123456789abcdef
fingerprint
stale-nonce=600
max-allocate-lifetime=3600
channel-lifetime=600
permission-lifetime=300
user-quota=10
total-quota=100
max-bps=1000000
allowed-peer-ip=10.0.0.5
denied-peer-ip=10.0.0.0-10.255.255.255
denied-peer-ip=192.168.0.0/16
no-multicast-peers
rfc5766-channel-numbers
relay-threads=2
udp-recv-buffer=4194304
no-batched-io
verbose
log-format=json
admin-listen=127.0.0.1:9641
drain-timeout=30
alternate-server=192.0.2.99:3478
tls-listening-port=5349
cert=/etc/tern/tls.crt
pkey=/etc/tern/tls.key
cipher-list=ECDHE-RSA-AES128-GCM-SHA256
tcp-proxy-port=3480
tls-handshake-timeout=10
tcp-idle-timeout=300
max-connections=1000
max-connections-per-ip=16
no-cli
mobility # a coturn key tern ignores
";
    vec![
        ("every-key", every_key.as_bytes().to_vec()),
        (
            "k8s",
            include_bytes!("../../../k8s/base/turnserver.conf").to_vec(),
        ),
        (
            "coturn-k8s",
            include_bytes!("../../../crates/tern/tests/fixtures/coturn-k8s.conf").to_vec(),
        ),
        (
            "syntax-error",
            b"fingerprint\nstatic-auth-secret s3cret\n".to_vec(),
        ),
        ("bad-value", b"min-port=70000\nrealm=x\r\n".to_vec()),
    ]
}
