//! The optional XDP fast path for ChannelData (issue 15; cargo feature `xdp`).
//!
//! `bpf/tern_xdp.c`, built by clang and embedded in the binary, relays ChannelData of
//! established channel bindings both ways in the driver (or in the generic XDP hook), over
//! IPv4 and IPv6 (each family with a specific relay address; a channel whose client, relay
//! and peer are not all of one family stays in userspace), after verifying each incoming
//! UDP checksum in full, and passes everything else to the kernel, where the userspace path
//! stays the reference. ChannelData whose peer is another allocation's relayed address on
//! this tern (both ends of a call relaying through it) goes straight to that allocation's
//! client when it has a channel bound back (the hairpin; the program learns tern's own
//! relayed addresses from [`Context::advertised`] and the relay addresses). Its
//! two maps are fed from the core's `ChannelBound` and `ChannelUnbound` outputs alone
//! ([`Feed`], one writer per worker), and their per-CPU counters are folded back into the
//! core's counters and the allocation's traffic, so `/metrics`, usage records and the
//! allocation log stay exact.
//!
//! Without the feature, [`start`] says so, and the server runs as it always did.

#[cfg(feature = "xdp")]
mod feed;
#[cfg(feature = "xdp")]
mod maps;

#[cfg(feature = "xdp")]
pub use feed::Feed;
#[cfg(feature = "xdp")]
pub use maps::{Entry, Program};

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use tern_proto::{Family, PerFamily};

/// `xdp`: whether and how to attach the fast path.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Mode {
    /// No fast path (the default).
    #[default]
    Off,
    /// Native XDP if the driver has it, else generic; when neither attaches, run without
    /// and log why.
    Auto,
    /// Native (driver) XDP only; start fails when it cannot attach.
    Native,
    /// Generic (skb) XDP only; start fails when it cannot attach.
    Generic,
}

impl Mode {
    /// Parses a value of `xdp`.
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "off" => Self::Off,
            "auto" => Self::Auto,
            "native" => Self::Native,
            "generic" => Self::Generic,
            _ => return None,
        })
    }

    /// The value as written in the config.
    pub fn label(self) -> &'static str {
        match self {
            Self::Off => "off",
            Self::Auto => "auto",
            Self::Native => "native",
            Self::Generic => "generic",
        }
    }
}

/// The fast path's settings.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct XdpConfig {
    /// `xdp`.
    pub mode: Mode,
    /// `xdp-interface`: the device the clients' and peers' traffic arrives on.
    pub interface: Option<String>,
}

/// Why the fast path is not running, when it was asked for.
#[derive(Debug)]
pub struct NotStarted {
    /// Whether start must fail (an explicit `native` or `generic`) rather than run without.
    pub fatal: bool,
    /// What went wrong, for the log.
    pub reason: String,
}

/// The attached fast path, shared by the workers.
#[cfg(feature = "xdp")]
pub type Shared = std::sync::Arc<maps::Attached>;

/// The specific addresses relay sockets are bound to, per family.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RelayIps {
    /// The IPv4 relay address.
    pub v4: Option<Ipv4Addr>,
    /// The IPv6 relay address.
    pub v6: Option<Ipv6Addr>,
}

impl RelayIps {
    /// From one address per family (`[Family::V4, Family::V6]` order, as the server's
    /// per-family tables are): each kept only when it is of its slot's family and specific.
    pub fn new([v4, v6]: PerFamily<Option<IpAddr>>) -> Self {
        Self {
            v4: match v4 {
                Some(IpAddr::V4(ip)) if !ip.is_unspecified() => Some(ip),
                _ => None,
            },
            v6: match v6 {
                Some(IpAddr::V6(ip)) if !ip.is_unspecified() => Some(ip),
                _ => None,
            },
        }
    }

    /// The address of `family`.
    pub fn get(&self, family: Family) -> Option<IpAddr> {
        match family {
            Family::V4 => self.v4.map(IpAddr::V4),
            Family::V6 => self.v6.map(IpAddr::V6),
        }
    }
}

/// What the server knows when it starts the fast path.
#[derive(Debug, Clone, Copy)]
pub struct Context {
    /// The specific addresses relay sockets are bound to, per family ([`RelayIps::new`]
    /// drops a wildcard: the program needs the source of the relayed packets it writes).
    /// The fast path relays the families that have one.
    pub relay_ips: RelayIps,
    /// The relayed IPs tern advertises, per family (XOR-RELAYED-ADDRESS: `external-ip`'s
    /// public part, else the relay address): ChannelData to a peer there is a hairpin
    /// between two allocations, relayed client to client by the program.
    pub advertised: RelayIps,
    /// The core's `max-bps` (a limit keeps every packet in userspace).
    pub max_bps: u64,
}

/// Loads and attaches the program as `config` says; `Ok(None)` when it is off.
#[cfg(feature = "xdp")]
pub fn start(config: &XdpConfig, cx: Context) -> Result<Option<Shared>, NotStarted> {
    if config.mode == Mode::Off {
        return Ok(None);
    }
    let fatal = config.mode != Mode::Auto;
    let fail = |reason: String| NotStarted { fatal, reason };
    let Some(interface) = config.interface.as_deref() else {
        // A config mistake, whatever the mode.
        return Err(NotStarted {
            fatal: true,
            reason: "xdp-interface is not set".into(),
        });
    };
    let relay_ips = cx.relay_ips;
    if relay_ips == RelayIps::default() {
        return Err(fail(
            "the fast path needs a specific relay address, IPv4 or IPv6 or one of each (relay-ip or listening-ip)".into(),
        ));
    }
    if cx.max_bps != 0 {
        return Err(fail(
            "max-bps is set: rate-limited allocations stay in userspace".into(),
        ));
    }
    for (family, on) in [
        ("ipv4", relay_ips.v4.is_some()),
        ("ipv6", relay_ips.v6.is_some()),
    ] {
        let key = format!("/proc/sys/net/{family}/conf/{interface}/forwarding");
        if on && std::fs::read_to_string(&key).is_ok_and(|v| v.trim() == "0") {
            // bpf_fib_lookup answers BPF_FIB_LKUP_RET_FWD_DISABLED for such a device.
            tracing::warn!(
                interface,
                sysctl = %key,
                "xdp: forwarding is off on the interface for {family}: the fast path's route lookup refuses, so that family's ChannelData stays in userspace"
            );
        }
    }
    maps::Attached::attach(config.mode, interface, relay_ips, cx.advertised)
        .map(|a| Some(std::sync::Arc::new(a)))
        .map_err(fail)
}

/// Without the `xdp` feature: off is off, and anything else says why it cannot be.
#[cfg(not(feature = "xdp"))]
pub fn start(config: &XdpConfig, _cx: Context) -> Result<Option<()>, NotStarted> {
    match config.mode {
        Mode::Off => Ok(None),
        mode => Err(NotStarted {
            fatal: mode != Mode::Auto,
            reason: "this tern was built without the xdp feature".into(),
        }),
    }
}
