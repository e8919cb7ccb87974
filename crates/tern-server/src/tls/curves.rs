//! `ec-curve-name`: the one group for ECDHE key exchange, as coturn gives OpenSSL one curve.
//!
//! rustls (with *ring*) has X25519, secp256r1 (P-256) and secp384r1 (P-384). A name of one
//! of them (OpenSSL's, the SEC one, the NIST one, in any case) makes it the only group
//! offered: a client that lacks it cannot connect (every browser has all three). rustls
//! takes the group in the client's order of preference among the server's, so a mere
//! preference would change nothing. Without the key, or with a name rustls lacks
//! (`secp521r1`, `X448`, a typo: warned about), all three stay.

use rustls::crypto::ring::kx_group;
use rustls::crypto::SupportedKxGroup;

/// The names of each group, lowercase.
const GROUPS: [(&[&str], &dyn SupportedKxGroup); 3] = [
    (&["x25519", "curve25519"], kx_group::X25519),
    (
        &["prime256v1", "secp256r1", "p-256", "p256"],
        kx_group::SECP256R1,
    ),
    (&["secp384r1", "p-384", "p384"], kx_group::SECP384R1),
];

/// Groups rustls does not have, lowercase.
const ABSENT: &[&str] = &[
    "secp521r1",
    "p-521",
    "p521",
    "x448",
    "secp224r1",
    "prime192v1",
];

/// The key-exchange groups for `ec-curve-name`, and a warning when the name cannot be
/// honoured.
pub fn kx_groups(name: Option<&str>) -> (Vec<&'static dyn SupportedKxGroup>, Option<String>) {
    let all = || rustls::crypto::ring::ALL_KX_GROUPS.to_vec();
    let Some(given) = name.map(str::trim).filter(|n| !n.is_empty()) else {
        return (all(), None);
    };
    let lower = given.to_ascii_lowercase();
    if let Some((_, group)) = GROUPS
        .iter()
        .find(|(names, _)| names.contains(&lower.as_str()))
    {
        return (vec![*group], None);
    }
    let why = if ABSENT.contains(&lower.as_str()) {
        "is a curve rustls does not offer"
    } else {
        "is not a curve name tern knows"
    };
    let warning = format!(
        "ec-curve-name `{given}` {why} (X25519, prime256v1/secp256r1, secp384r1); \
         using all three"
    );
    (all(), Some(warning))
}

#[cfg(test)]
mod tests {
    use rustls::NamedGroup;

    use super::*;

    fn named(name: Option<&str>) -> (Vec<NamedGroup>, bool) {
        let (groups, warning) = kx_groups(name);
        (groups.iter().map(|g| g.name()).collect(), warning.is_some())
    }

    #[test]
    fn names() {
        assert_eq!(
            named(Some("prime256v1")),
            (vec![NamedGroup::secp256r1], false)
        );
        assert_eq!(named(Some("P-256")), (vec![NamedGroup::secp256r1], false));
        assert_eq!(
            named(Some("secp384r1")),
            (vec![NamedGroup::secp384r1], false)
        );
        assert_eq!(named(Some("X25519")), (vec![NamedGroup::X25519], false));
        assert_eq!(named(None).0.len(), 3);
        assert_eq!(named(Some(" ")), (named(None).0, false));
        let (all, warned) = named(Some("secp521r1"));
        assert!(warned && all.len() == 3);
        let (_, w) = kx_groups(Some("prime265v1"));
        assert!(w.unwrap().contains("`prime265v1` is not a curve name"));
    }
}
