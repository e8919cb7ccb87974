//! SNI: the certificate for the name the client asked for, else the default one.

use std::collections::HashMap;
use std::sync::Arc;

use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;

/// Values by server name, with a default: exact names first, then a `*.` entry for the
/// name's parent domain (one label), then the default.
#[derive(Debug)]
pub(crate) struct ByName<T> {
    default: T,
    /// Lowercase names; wildcard entries keep their `*.`.
    names: HashMap<String, T>,
}

impl<T> ByName<T> {
    /// A table serving `default` to every name.
    pub(crate) fn new(default: T) -> Self {
        Self {
            default,
            names: HashMap::new(),
        }
    }

    /// Adds a value for `name` (lowercase, may start with `*.`); `false` if the name was
    /// taken (the first value stays).
    pub(crate) fn insert(&mut self, name: String, value: T) -> bool {
        match self.names.entry(name) {
            std::collections::hash_map::Entry::Occupied(_) => false,
            std::collections::hash_map::Entry::Vacant(v) => {
                v.insert(value);
                true
            }
        }
    }

    /// The value for a client that sent `sni` (or none).
    pub(crate) fn pick(&self, sni: Option<&str>) -> &T {
        let Some(name) = sni else {
            return &self.default;
        };
        let name = name.trim_end_matches('.').to_ascii_lowercase();
        if let Some(v) = self.names.get(&name) {
            return v;
        }
        match name.split_once('.') {
            Some((_, parent)) if !parent.is_empty() => self
                .names
                .get(&format!("*.{parent}"))
                .unwrap_or(&self.default),
            _ => &self.default,
        }
    }
}

/// The certificate resolver of every configuration of a generation.
#[derive(Debug)]
pub(crate) struct SniResolver(pub(crate) ByName<Arc<CertifiedKey>>);

impl ResolvesServerCert for SniResolver {
    fn resolve(&self, client_hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.0.pick(client_hello.server_name()).clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exact_then_wildcard_then_default() {
        let mut t = ByName::new("default");
        assert!(t.insert("turn.example.org".into(), "exact"));
        assert!(t.insert("*.example.org".into(), "wildcard"));
        assert!(!t.insert("turn.example.org".into(), "again"));
        assert_eq!(*t.pick(None), "default");
        assert_eq!(*t.pick(Some("turn.example.org")), "exact");
        assert_eq!(*t.pick(Some("TURN.Example.org.")), "exact");
        assert_eq!(*t.pick(Some("eu.example.org")), "wildcard");
        assert_eq!(*t.pick(Some("a.eu.example.org")), "default");
        assert_eq!(*t.pick(Some("example.org")), "default");
        assert_eq!(*t.pick(Some("other.test")), "default");
        assert_eq!(*t.pick(Some("localhost")), "default");
    }
}
