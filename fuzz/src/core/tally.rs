//! What happened in a run of the `core` target.

use tern_wire::Method;

/// What happened in a run, besides the victim's traffic: what the scripts in the seed
/// corpus are checked to reach.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Tally {
    /// Success responses, by method.
    pub successes: Vec<(Method, u32)>,
    /// Error responses, by code.
    pub errors: Vec<(u16, u32)>,
    /// Client datagrams relayed to a peer.
    pub relayed: u32,
    /// Peer datagrams forwarded to a client.
    pub forwarded: u32,
    /// Allocations that ended, and channels unbound.
    pub released: u32,
    /// Channels unbound.
    pub unbound: u32,
}

fn bump<K: PartialEq>(counts: &mut Vec<(K, u32)>, key: K) {
    match counts.iter_mut().find(|(k, _)| *k == key) {
        Some((_, n)) => *n += 1,
        None => counts.push((key, 1)),
    }
}

impl Tally {
    pub(crate) fn success(&mut self, method: Method) {
        bump(&mut self.successes, method);
    }

    pub(crate) fn error(&mut self, code: u16) {
        bump(&mut self.errors, code);
    }

    /// Successes of `method`.
    pub fn successes(&self, method: Method) -> u32 {
        self.successes
            .iter()
            .find(|(m, _)| *m == method)
            .map_or(0, |c| c.1)
    }

    /// Errors with `code`.
    pub fn errors(&self, code: u16) -> u32 {
        self.errors
            .iter()
            .find(|(c, _)| *c == code)
            .map_or(0, |c| c.1)
    }
}
