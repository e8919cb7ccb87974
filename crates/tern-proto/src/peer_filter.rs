//! Which peers a client may reach through the relay.
//!
//! A TURN server relays to whatever address a client names in XOR-PEER-ADDRESS. Left open,
//! that turns it into a proxy into the server's own network (the loopback interface, the
//! cloud metadata service at 169.254.169.254, private subnets), which is why RFC 8656 §21.3
//! lets servers restrict peers and why coturn grew `denied-peer-ip`. CVE-2020-26262 showed
//! that the check must look through IPv6 encodings of IPv4 addresses (`::ffff:127.0.0.1`,
//! `0.0.0.0`, `::`), so [`PeerFilter::check`] first maps every address to the one it
//! really reaches with [`canonicalize`].
//!
//! # Order of the checks
//!
//! 1. The address is canonicalised ([`canonicalize`]). An IPv6 address that stays IPv6 but
//!    may reach an IPv4 address through a tunnel or translator (Teredo, the local-use NAT64
//!    prefix: [`embedded_ipv4`]) is refused when any IPv4 address it may reach is refused,
//!    whatever `allowed` says about the IPv6 address itself.
//! 2. With `no_multicast`, multicast and everything above it in IPv4 (224.0.0.0 and up, as
//!    coturn's `no-multicast-peers` says) and `ff00::/8` are refused, even if `allowed`
//!    lists them.
//! 3. An `allowed` range containing the canonical address allows it. As in coturn,
//!    `allowed-peer-ip` wins over `denied-peer-ip`: "If there is an "allowed" rule that fits
//!    the address then it is allowed - no matter what" (coturn's README.turnserver), which
//!    lets an operator deny a range except a few addresses in it.
//! 4. A `denied` range containing the canonical or the original address refuses it.
//! 5. Loopback (127.0.0.0/8, ::1) is allowed only with `allow_loopback`.
//! 6. Special-purpose addresses (IANA's IPv4 and IPv6 Special-Purpose Address Registries,
//!    private and documentation ranges) are refused; see [`special_purpose`].
//! 7. Everything else is allowed.
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::str::FromStr;

/// An inclusive range of IP addresses, as coturn's `allowed-peer-ip`/`denied-peer-ip` take.
///
/// Both ends are of the same family and `start <= end` when built by [`IpRange::new`] or
/// [`IpRange::parse`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct IpRange {
    /// First address.
    pub start: IpAddr,
    /// Last address.
    pub end: IpAddr,
}

/// Why a string is not an [`IpRange`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum IpRangeError {
    /// Nothing was given.
    Empty,
    /// A part that should be an IPv4 or IPv6 address is not one.
    BadAddress {
        /// The offending text.
        text: String,
    },
    /// The prefix length after `/` is not a number from 0 to 32 (IPv4) or 128 (IPv6).
    BadPrefixLength {
        /// The offending text.
        text: String,
        /// The largest length the address family allows.
        max: u8,
    },
    /// The two ends of `ip1-ip2` are of different families.
    MixedFamilies {
        /// First end.
        start: IpAddr,
        /// Last end.
        end: IpAddr,
    },
    /// The range ends before it starts.
    Reversed {
        /// First end.
        start: IpAddr,
        /// Last end.
        end: IpAddr,
    },
}

impl fmt::Display for IpRangeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Empty => f.write_str("empty IP range: expected `ip`, `ip1-ip2` or `net/len`"),
            Self::BadAddress { text } => write!(f, "`{text}` is not an IPv4 or IPv6 address"),
            Self::BadPrefixLength { text, max } => {
                write!(f, "prefix length `{text}` is not a number from 0 to {max}")
            }
            Self::MixedFamilies { start, end } => {
                write!(f, "range {start}-{end} mixes IPv4 and IPv6")
            }
            Self::Reversed { start, end } => write!(f, "range {start}-{end} ends before it starts"),
        }
    }
}

impl std::error::Error for IpRangeError {}

impl IpRange {
    /// The range holding only `ip`.
    pub fn single(ip: IpAddr) -> Self {
        Self { start: ip, end: ip }
    }

    /// The range `start..=end`; both of one family, `start <= end`.
    pub fn new(start: IpAddr, end: IpAddr) -> Result<Self, IpRangeError> {
        let ordered = match (start, end) {
            (IpAddr::V4(a), IpAddr::V4(b)) => a <= b,
            (IpAddr::V6(a), IpAddr::V6(b)) => a <= b,
            _ => return Err(IpRangeError::MixedFamilies { start, end }),
        };
        if ordered {
            Ok(Self { start, end })
        } else {
            Err(IpRangeError::Reversed { start, end })
        }
    }

    /// The network `net/len`. Host bits set in `net` are ignored (`10.1.2.3/8` is 10.0.0.0/8).
    pub fn cidr(net: IpAddr, len: u8) -> Result<Self, IpRangeError> {
        let max = if net.is_ipv4() { 32 } else { 128 };
        if len > max {
            let text = len.to_string();
            return Err(IpRangeError::BadPrefixLength { text, max });
        }
        let host_bits = u32::from(max - len);
        let (start, end) = match net {
            IpAddr::V4(a) => {
                let mask = u32::MAX.checked_shl(host_bits).unwrap_or(0);
                let s = u32::from(a) & mask;
                (IpAddr::V4(s.into()), IpAddr::V4((s | !mask).into()))
            }
            IpAddr::V6(a) => {
                let mask = u128::MAX.checked_shl(host_bits).unwrap_or(0);
                let s = u128::from(a) & mask;
                (IpAddr::V6(s.into()), IpAddr::V6((s | !mask).into()))
            }
        };
        Ok(Self { start, end })
    }

    /// Parses coturn's forms: a single address (`10.0.0.1`, `::1`), an inclusive range
    /// `ip1-ip2`, or CIDR `net/len`; IPv4 or IPv6. Surrounding whitespace is ignored.
    pub fn parse(s: &str) -> Result<Self, IpRangeError> {
        let s = s.trim();
        if s.is_empty() {
            return Err(IpRangeError::Empty);
        }
        if let Some((net, len)) = s.split_once('/') {
            let net = parse_ip(net)?;
            let max = if net.is_ipv4() { 32 } else { 128 };
            let len = len.trim();
            let text = len.to_owned();
            let bad = || IpRangeError::BadPrefixLength { text, max };
            let n: u8 = if len.bytes().all(|b| b.is_ascii_digit()) {
                len.parse().map_err(|_| bad())?
            } else {
                return Err(bad());
            };
            return Self::cidr(net, n);
        }
        match s.split_once('-') {
            Some((a, b)) => Self::new(parse_ip(a)?, parse_ip(b)?),
            None => Ok(Self::single(parse_ip(s)?)),
        }
    }

    /// Whether `ip` lies in the range. An address of the other family never does; compare
    /// [`canonicalize`]d addresses to look through IPv4-mapped IPv6.
    #[inline]
    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.start, self.end, ip) {
            (IpAddr::V4(s), IpAddr::V4(e), IpAddr::V4(x)) => s <= x && x <= e,
            (IpAddr::V6(s), IpAddr::V6(e), IpAddr::V6(x)) => s <= x && x <= e,
            _ => false,
        }
    }

    /// The range with IPv4-mapped (`::ffff:a.b.c.d`) ends turned into IPv4, so that a
    /// configured `::ffff:10.0.0.0-::ffff:10.255.255.255` matches canonical addresses.
    fn canonical(self) -> Self {
        match (self.start, self.end) {
            (IpAddr::V6(s), IpAddr::V6(e)) => match (s.to_ipv4_mapped(), e.to_ipv4_mapped()) {
                (Some(s), Some(e)) => Self {
                    start: IpAddr::V4(s),
                    end: IpAddr::V4(e),
                },
                _ => self,
            },
            _ => self,
        }
    }
}

fn parse_ip(s: &str) -> Result<IpAddr, IpRangeError> {
    let s = s.trim();
    s.parse()
        .map_err(|_| IpRangeError::BadAddress { text: s.to_owned() })
}

impl FromStr for IpRange {
    type Err = IpRangeError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

impl fmt::Display for IpRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.start == self.end {
            write!(f, "{}", self.start)
        } else {
            write!(f, "{}-{}", self.start, self.end)
        }
    }
}

/// The address `ip` really reaches: IPv6 forms that embed an IPv4 address become that IPv4
/// address; everything else is returned unchanged.
///
/// - IPv4-mapped `::ffff:a.b.c.d` (RFC 4291 §2.5.5.2): a dual-stack socket sends to a.b.c.d.
/// - IPv4-compatible `::a.b.c.d` (RFC 4291 §2.5.5.1, deprecated), except `::` and `::1`,
///   which stay the IPv6 unspecified and loopback addresses.
/// - 6to4 `2002:AABB:CCDD::/48` (RFC 3056 §2): the site behind IPv4 AA.BB.CC.DD.
/// - NAT64 well-known prefix `64:ff9b::/96` (RFC 6052 §2.1): a translator sends to the
///   IPv4 address in the last 32 bits.
///
/// - IPv4-translated `::ffff:0:a.b.c.d` (RFC 2765 §2.1, SIIT): a translator sends to a.b.c.d.
///
/// The local-use NAT64 prefix `64:ff9b:1::/48` (RFC 8215) and Teredo `2001::/32` (RFC 4380)
/// have no single place for the IPv4 address; they stay IPv6, are refused as special
/// purpose by default, and [`embedded_ipv4`] lists the IPv4 addresses they may reach.
pub fn canonicalize(ip: IpAddr) -> IpAddr {
    let IpAddr::V6(v6) = ip else { return ip };
    let s = v6.segments();
    let low32 = Ipv4Addr::new((s[6] >> 8) as u8, s[6] as u8, (s[7] >> 8) as u8, s[7] as u8);
    match s {
        [0, 0, 0, 0, 0, 0xffff, _, _] => IpAddr::V4(low32),
        [0, 0, 0, 0, 0xffff, 0, _, _] => IpAddr::V4(low32),
        [0, 0, 0, 0, 0, 0, 0, 0 | 1] => ip,
        [0, 0, 0, 0, 0, 0, _, _] => IpAddr::V4(low32),
        [0x2002, hi, lo, ..] => IpAddr::V4(Ipv4Addr::from((u32::from(hi) << 16) | u32::from(lo))),
        [0x64, 0xff9b, 0, 0, 0, 0, _, _] => IpAddr::V4(low32),
        _ => ip,
    }
}

/// The IPv4 addresses an IPv6 address that [`canonicalize`] leaves alone may still reach:
///
/// - Teredo `2001::/32` (RFC 4380 §4): the Teredo server's IPv4 address in bits 32–63, and
///   the client's public IPv4 address, every bit inverted, in bits 96–127. Both are listed.
/// - The local-use NAT64 prefix `64:ff9b:1::/48` (RFC 8215): the last 32 bits, where a
///   translator with a /96 prefix inside the block (the form of the well-known prefix)
///   reads the IPv4 address. The block is refused by default; an operator who allows it
///   (`allowed-peer-ip`) runs such a translator.
///
/// Empty for every other address. `ip` is taken as is, so pass a [`canonicalize`]d one.
pub fn embedded_ipv4(ip: Ipv6Addr) -> impl Iterator<Item = Ipv4Addr> {
    let o = ip.octets();
    let v4 = |a: u8, b: u8, c: u8, d: u8| Some(Ipv4Addr::new(a, b, c, d));
    let found: [Option<Ipv4Addr>; 2] = match ip.segments() {
        [0x2001, 0, ..] => [
            v4(o[4], o[5], o[6], o[7]),
            v4(!o[12], !o[13], !o[14], !o[15]),
        ],
        [0x64, 0xff9b, 1, ..] => [v4(o[12], o[13], o[14], o[15]), None],
        _ => [None; 2],
    };
    found.into_iter().flatten()
}

/// A special-purpose block: its first address, prefix length and registry name.
type Block<A> = (A, u8, &'static str);

/// From the IANA IPv4 Special-Purpose Address Registry (RFC 6890) and the multicast and
/// reserved blocks. Loopback 127.0.0.0/8 (RFC 1122 §3.2.1.3) is checked separately.
#[rustfmt::skip]
const V4_SPECIAL: [Block<Ipv4Addr>; 15] = [
    // RFC 791 §3.2: "This network"; 0.0.0.0 reaches the local host on Linux.
    (Ipv4Addr::new(0, 0, 0, 0), 8, "\"this network\" (RFC 791)"),
    // RFC 1918 §3: "10.0.0.0 - 10.255.255.255 (10/8 prefix)".
    (Ipv4Addr::new(10, 0, 0, 0), 8, "private-use (RFC 1918)"),
    // RFC 6598: "Shared Address Space" for carrier-grade NAT.
    (Ipv4Addr::new(100, 64, 0, 0), 10, "shared address space (RFC 6598)"),
    // RFC 3927: "Link-Local"; holds the cloud metadata service 169.254.169.254.
    (Ipv4Addr::new(169, 254, 0, 0), 16, "link-local (RFC 3927)"),
    // RFC 1918 §3: "172.16.0.0 - 172.31.255.255 (172.16/12 prefix)".
    (Ipv4Addr::new(172, 16, 0, 0), 12, "private-use (RFC 1918)"),
    // RFC 6890 §2.2.2: "IETF Protocol Assignments".
    (Ipv4Addr::new(192, 0, 0, 0), 24, "IETF protocol assignments (RFC 6890)"),
    // RFC 5737: "Documentation (TEST-NET-1)".
    (Ipv4Addr::new(192, 0, 2, 0), 24, "documentation (RFC 5737)"),
    // RFC 7526: "Deprecated (6to4 Relay Anycast)".
    (Ipv4Addr::new(192, 88, 99, 0), 24, "6to4 relay anycast (RFC 7526)"),
    // RFC 1918 §3: "192.168.0.0 - 192.168.255.255 (192.168/16 prefix)".
    (Ipv4Addr::new(192, 168, 0, 0), 16, "private-use (RFC 1918)"),
    // RFC 2544: "Benchmarking".
    (Ipv4Addr::new(198, 18, 0, 0), 15, "benchmarking (RFC 2544)"),
    // RFC 5737: "Documentation (TEST-NET-2)".
    (Ipv4Addr::new(198, 51, 100, 0), 24, "documentation (RFC 5737)"),
    // RFC 5737: "Documentation (TEST-NET-3)".
    (Ipv4Addr::new(203, 0, 113, 0), 24, "documentation (RFC 5737)"),
    // RFC 5771: IPv4 multicast, 224.0.0.0/4.
    (Ipv4Addr::new(224, 0, 0, 0), 4, "multicast (RFC 5771)"),
    // RFC 1112 §4: "Reserved" (Class E).
    (Ipv4Addr::new(240, 0, 0, 0), 4, "reserved (RFC 1112)"),
    // RFC 919 / RFC 8190: "Limited Broadcast" (also inside 240/4; named for the reason).
    (Ipv4Addr::new(255, 255, 255, 255), 32, "limited broadcast (RFC 919)"),
];

/// From the IANA IPv6 Special-Purpose Address Registry (RFC 6890) and RFC 4291.
/// Loopback ::1 (RFC 4291 §2.5.3) is checked separately.
/// Addresses outside global unicast `2000::/3` that no entry below names are refused as
/// `V6_NOT_GLOBAL_UNICAST` says.
#[rustfmt::skip]
const V6_SPECIAL: [Block<Ipv6Addr>; 13] = [
    // RFC 4291 §2.5.2: "Unspecified Address".
    (Ipv6Addr::new(0, 0, 0, 0, 0, 0, 0, 0), 128, "unspecified (RFC 4291)"),
    // RFC 4291 §2.5.5.2: "IPv4-mapped Address"; canonicalised to IPv4 before this table.
    (Ipv6Addr::new(0, 0, 0, 0, 0, 0xffff, 0, 0), 96, "IPv4-mapped (RFC 4291)"),
    // RFC 2765 §2.1: IPv4-translated addresses; canonicalised to IPv4 before this table.
    (Ipv6Addr::new(0, 0, 0, 0, 0xffff, 0, 0, 0), 96, "IPv4-translated (RFC 2765)"),
    // RFC 8215: "IPv4-IPv6 Translat." local-use prefix; the IPv4 part is not at a fixed place.
    (Ipv6Addr::new(0x64, 0xff9b, 1, 0, 0, 0, 0, 0), 48, "local-use IPv4/IPv6 translation (RFC 8215)"),
    // RFC 6666: "Discard-Only Address Block".
    (Ipv6Addr::new(0x100, 0, 0, 0, 0, 0, 0, 0), 64, "discard-only (RFC 6666)"),
    // RFC 2928: "IETF Protocol Assignments"; holds Teredo 2001::/32 (RFC 4380) and ORCHIDv2
    // 2001:20::/28 (RFC 7343).
    (Ipv6Addr::new(0x2001, 0, 0, 0, 0, 0, 0, 0), 23, "IETF protocol assignments incl. Teredo (RFC 2928)"),
    // RFC 3849: "Documentation".
    (Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 0), 32, "documentation (RFC 3849)"),
    // RFC 9637: "Documentation" (3fff::/20).
    (Ipv6Addr::new(0x3fff, 0, 0, 0, 0, 0, 0, 0), 20, "documentation (RFC 9637)"),
    // RFC 9602: "Segment Routing (SRv6) SIDs", not globally reachable.
    (Ipv6Addr::new(0x5f00, 0, 0, 0, 0, 0, 0, 0), 16, "SRv6 SIDs (RFC 9602)"),
    // RFC 4193: "Unique-Local"; holds the AWS metadata service fd00:ec2::254.
    (Ipv6Addr::new(0xfc00, 0, 0, 0, 0, 0, 0, 0), 7, "unique-local (RFC 4193)"),
    // RFC 4291 §2.5.6: "Link-Local Unicast".
    (Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0, 0, 0), 10, "link-local (RFC 4291)"),
    // RFC 3879: deprecated site-local.
    (Ipv6Addr::new(0xfec0, 0, 0, 0, 0, 0, 0, 0), 10, "site-local (RFC 3879)"),
    // RFC 4291 §2.7: "Multicast Addresses".
    (Ipv6Addr::new(0xff00, 0, 0, 0, 0, 0, 0, 0), 8, "multicast (RFC 4291)"),
];

/// The special-purpose block `ip` lies in, by registry name, or `None` for an ordinary
/// unicast address. Loopback is not listed here (see [`PeerFilter`]); `ip` is taken as is,
/// so pass a [`canonicalize`]d address.
pub fn special_purpose(ip: IpAddr) -> Option<&'static str> {
    match ip {
        IpAddr::V4(a) => {
            let x = u32::from(a);
            V4_SPECIAL.iter().find(|(net, len, _)| {
                let mask = u32::MAX.checked_shl(32 - u32::from(*len)).unwrap_or(0);
                x & mask == u32::from(*net)
            })
        }
        .map(|b| b.2),
        IpAddr::V6(a) => {
            let x = u128::from(a);
            let block = V6_SPECIAL.iter().find(|(net, len, _)| {
                let mask = u128::MAX.checked_shl(128 - u32::from(*len)).unwrap_or(0);
                x & mask == u128::from(*net)
            });
            match block {
                Some(b) => Some(b.2),
                // Only 2000::/3 is allocated for global unicast (RFC 4291 §2.4, IANA's IPv6
                // Address Space registry); the rest is reserved by the IETF and routed
                // nowhere on the internet.
                None if x >> 125 != 0b001 => Some(V6_NOT_GLOBAL_UNICAST),
                None => None,
            }
        }
    }
}

/// The name of the IPv6 space outside `2000::/3` that no special-purpose block names.
const V6_NOT_GLOBAL_UNICAST: &str =
    "reserved by the IETF, outside global unicast 2000::/3 (RFC 4291)";

/// Why `ip` cannot be reached from the public internet, or `None` for an ordinary global
/// unicast address: loopback, or the special-purpose block it lies in (private-use, shared
/// address space for CGNAT, link-local, unique-local, documentation, …), after
/// [`canonicalize`]. tern warns when it would advertise such an address as a relayed address.
pub fn not_publicly_routable(ip: IpAddr) -> Option<&'static str> {
    match canonicalize(ip) {
        IpAddr::V4(a) if a.is_loopback() => Some("loopback (RFC 1122)"),
        IpAddr::V6(a) if a.is_loopback() => Some("loopback (RFC 4291)"),
        c => special_purpose(c),
    }
}

/// Peer filtering configuration.
#[derive(Debug, Clone, Default)]
pub struct PeerFilterConfig {
    /// Allow 127.0.0.0/8 and ::1 (coturn's `allow-loopback-peers`).
    pub allow_loopback: bool,
    /// Refuse multicast peers even when otherwise allowed (coturn's `no-multicast-peers`).
    pub no_multicast: bool,
    /// Ranges allowed even though the defaults refuse them (`allowed-peer-ip`).
    pub allowed: Vec<IpRange>,
    /// Ranges refused (`denied-peer-ip`).
    pub denied: Vec<IpRange>,
}

/// Why [`PeerFilter::check`] refused a peer; doubles as a metrics label via [`Refusal::label`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Refusal {
    /// Multicast or above with `no_multicast`.
    Multicast,
    /// In a `denied` range.
    Denied,
    /// Loopback without `allow_loopback`.
    Loopback,
    /// In a special-purpose block, named.
    SpecialPurpose(&'static str),
}

impl Refusal {
    /// A short, fixed label.
    pub fn label(self) -> &'static str {
        match self {
            Self::Multicast => "multicast",
            Self::Denied => "denied",
            Self::Loopback => "loopback",
            Self::SpecialPurpose(_) => "special_purpose",
        }
    }
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Multicast => f.write_str("multicast peers are refused (no-multicast-peers)"),
            Self::Denied => f.write_str("the peer is in a denied-peer-ip range"),
            Self::Loopback => {
                f.write_str("loopback peers are refused (allow-loopback-peers is off)")
            }
            Self::SpecialPurpose(what) => {
                write!(f, "the peer is a special-purpose address: {what}")
            }
        }
    }
}

/// Decides which peer addresses a client may create permissions and channels for.
/// See the [module docs](self) for the order of the checks.
#[derive(Debug, Clone, Default)]
pub struct PeerFilter {
    config: PeerFilterConfig,
}

impl PeerFilter {
    /// A filter for `config`; IPv4-mapped ranges in it are turned into IPv4 ranges.
    pub fn new(mut config: PeerFilterConfig) -> Self {
        for r in config.allowed.iter_mut().chain(config.denied.iter_mut()) {
            *r = r.canonical();
        }
        Self { config }
    }

    /// The configuration, with ranges as [`PeerFilter::new`] normalised them.
    pub fn config(&self) -> &PeerFilterConfig {
        &self.config
    }

    /// Whether a client may reach `ip`. Does not allocate.
    #[inline]
    pub fn allows(&self, ip: IpAddr) -> bool {
        self.check(ip).is_ok()
    }

    /// Like [`PeerFilter::allows`], saying why a peer is refused.
    pub fn check(&self, ip: IpAddr) -> Result<(), Refusal> {
        let c = canonicalize(ip);
        if let IpAddr::V6(v6) = c {
            // A Teredo or local-use NAT64 address reaches what it embeds as well.
            for v4 in embedded_ipv4(v6) {
                self.check(IpAddr::V4(v4))?;
            }
        }
        let cfg = &self.config;
        if cfg.no_multicast && is_multicast_or_above(c) {
            return Err(Refusal::Multicast);
        }
        if cfg.allowed.iter().any(|r| r.contains(c)) {
            return Ok(());
        }
        if cfg.denied.iter().any(|r| r.contains(c) || r.contains(ip)) {
            return Err(Refusal::Denied);
        }
        if c.is_loopback() {
            return if cfg.allow_loopback {
                Ok(())
            } else {
                Err(Refusal::Loopback)
            };
        }
        match special_purpose(c) {
            Some(what) => Err(Refusal::SpecialPurpose(what)),
            None => Ok(()),
        }
    }
}

/// coturn's `no-multicast-peers`: "224.0.0.0 and above, and FFXX:*".
fn is_multicast_or_above(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(a) => a.octets()[0] >= 224,
        IpAddr::V6(a) => a.is_multicast(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn range(s: &str) -> IpRange {
        s.parse().unwrap()
    }

    /// The addresses in a whitespace-separated list.
    fn ips(list: &str) -> impl Iterator<Item = (&str, IpAddr)> {
        list.split_whitespace().map(|a| (a, ip(a)))
    }

    fn default_filter() -> PeerFilter {
        PeerFilter::new(PeerFilterConfig::default())
    }

    /// The ends and a middle address of every default-refused block, and the addresses just
    /// outside them, which are ordinary.
    #[test]
    fn default_refuses_every_special_block() {
        let f = default_filter();
        let refused = "0.0.0.0 0.255.255.255 10.0.0.0 10.255.255.255 100.64.0.0 100.127.255.255
            127.0.0.1 127.255.255.255 169.254.0.0 169.254.169.254 169.254.255.255 172.16.0.0
            172.31.255.255 192.0.0.0 192.0.0.255 192.0.2.1 192.88.99.1 192.168.0.1
            192.168.255.255 198.18.0.0 198.19.255.255 198.51.100.7 203.0.113.9 224.0.0.1
            239.255.255.255 240.0.0.1 255.255.255.254 255.255.255.255
            :: ::1 64:ff9b:1::1 64:ff9b:1:ffff::a00:1 100::1 100::ffff:ffff:ffff:ffff 2001::1
            2001:0:4136:e378:8000:63bf:3fff:fdd2 2001:1ff:ffff::1 2001:20::1 2001:db8::1
            2001:db8:ffff::1 3fff::1 fc00::1 fdff:ffff::1 fd00:ec2::254 fe80::1 febf:ffff::1
            fec0::1 feff::1 ff02::1 ff0e::1 ::ffff:0:a00:1 ::ffff:0:7f00:1 5f00::1 fbff::1
            1::1 ::1:0:0:1 4000::1 e000::1 1fff:ffff::1";
        for (a, x) in ips(refused) {
            assert!(!f.allows(x), "{a} should be refused by default");
        }
        let allowed = "1.2.3.4 5.6.7.8 9.255.255.255 11.0.0.0 100.63.255.255 100.128.0.0
            126.255.255.255 128.0.0.0 169.253.255.255 169.255.0.0 172.15.255.255 172.32.0.0
            192.0.1.0 192.0.3.0 192.88.98.255 192.167.255.255 192.169.0.0 198.17.255.255
            198.20.0.0 198.51.99.255 203.0.112.255 223.255.255.255
            2606:4700::1111 2001:200::1 2a00:1450::1 2000::1 2c0f:fb50::1 3ffe::1 3fef::1
            3fff:ffff::1 ::ffff:0:102:304";
        for (a, x) in ips(allowed) {
            assert!(f.allows(x), "{a} should be allowed by default");
        }
    }

    #[test]
    fn bypass_encodings_are_refused() {
        let f = default_filter();
        let refused = "0.0.0.0 :: ::1 ::ffff:127.0.0.1 ::127.0.0.1 2002:7f00:1:: 64:ff9b::7f00:1
            169.254.169.254 ::ffff:169.254.169.254 64:ff9b::a9fe:a9fe ::ffff:10.0.0.1
            ::ffff:0.0.0.0 ::0.0.0.2 2002:a9fe:a9fe::1 2002:c0a8:101:: 64:ff9b::c0a8:101";
        for (a, x) in ips(refused) {
            assert!(!f.allows(x), "{a} should be refused");
        }
        // The same encodings of a public address are fine.
        for (a, x) in ips("::ffff:1.2.3.4 ::1.2.3.4 2002:102:304::1 64:ff9b::102:304") {
            assert!(f.allows(x), "{a} should be allowed");
        }
    }

    #[test]
    fn canonicalize_maps_embedded_ipv4() {
        let cases = [
            ("::ffff:127.0.0.1", "127.0.0.1"),
            ("::127.0.0.1", "127.0.0.1"),
            ("::0.0.0.2", "0.0.0.2"),
            ("2002:7f00:1::", "127.0.0.1"),
            ("2002:a9fe:a9fe:1:2:3:4:5", "169.254.169.254"),
            ("64:ff9b::7f00:1", "127.0.0.1"),
            ("64:ff9b::a9fe:a9fe", "169.254.169.254"),
            ("::ffff:0:7f00:1", "127.0.0.1"),
            ("::ffff:0:a9fe:a9fe", "169.254.169.254"),
        ];
        for (from, to) in cases {
            assert_eq!(canonicalize(ip(from)), ip(to), "{from}");
        }
        // Unchanged: the two IPv6 specials, local-use NAT64, Teredo, IPv4 and plain IPv6.
        for (a, x) in ips(":: ::1 64:ff9b:1::7f00:1 2001:0:4136:e378::1 10.0.0.1 2606:4700::1111") {
            assert_eq!(canonicalize(x), x, "{a}");
        }
    }

    /// RFC 4380 §4: server IPv4 in bits 32–63, client IPv4 inverted in bits 96–127.
    fn teredo(server: [u8; 4], client: [u8; 4]) -> IpAddr {
        let c = client.map(|b| !b);
        let seg = |a: u8, b: u8| u16::from(a) << 8 | u16::from(b);
        IpAddr::V6(Ipv6Addr::new(
            0x2001,
            0,
            seg(server[0], server[1]),
            seg(server[2], server[3]),
            0x8000,
            0x63bf,
            seg(c[0], c[1]),
            seg(c[2], c[3]),
        ))
    }

    #[test]
    fn teredo_and_local_use_nat64_reach_what_they_embed() {
        let public = [65, 54, 227, 120];
        let t = teredo(public, [1, 2, 3, 4]);
        let IpAddr::V6(v6) = t else { unreachable!() };
        assert_eq!(
            embedded_ipv4(v6).collect::<Vec<_>>(),
            [Ipv4Addr::new(65, 54, 227, 120), Ipv4Addr::new(1, 2, 3, 4)]
        );
        let local = ip("64:ff9b:1:abcd::102:304");
        let IpAddr::V6(l6) = local else {
            unreachable!()
        };
        assert_eq!(
            embedded_ipv4(l6).collect::<Vec<_>>(),
            [Ipv4Addr::new(1, 2, 3, 4)]
        );
        let IpAddr::V6(plain) = ip("2606:4700::1111") else {
            unreachable!()
        };
        assert_eq!(embedded_ipv4(plain).count(), 0);

        // Refused by default, whatever they embed: not globally reachable.
        let f = default_filter();
        assert!(!f.allows(t));
        assert!(!f.allows(local));
        // An operator who allows both blocks still cannot reach a refused IPv4 address
        // through them, in either Teredo position or through the translator.
        let f = PeerFilter::new(PeerFilterConfig {
            allowed: vec![range("2001::/32"), range("64:ff9b:1::/48")],
            ..Default::default()
        });
        assert!(f.allows(t), "both embedded addresses are public");
        assert!(f.allows(local));
        let refused = [
            (teredo(public, [127, 0, 0, 1]), Refusal::Loopback),
            (
                teredo(public, [169, 254, 169, 254]),
                Refusal::SpecialPurpose("link-local (RFC 3927)"),
            ),
            (
                teredo([10, 0, 0, 1], [1, 2, 3, 4]),
                Refusal::SpecialPurpose("private-use (RFC 1918)"),
            ),
            (
                teredo(public, [192, 168, 1, 1]),
                Refusal::SpecialPurpose("private-use (RFC 1918)"),
            ),
            (ip("64:ff9b:1::7f00:1"), Refusal::Loopback),
            (
                ip("64:ff9b:1:ffff:1:2:a9fe:a9fe"),
                Refusal::SpecialPurpose("link-local (RFC 3927)"),
            ),
            (
                ip("64:ff9b:1::a00:1"),
                Refusal::SpecialPurpose("private-use (RFC 1918)"),
            ),
        ];
        for (x, why) in refused {
            assert_eq!(f.check(x), Err(why), "{x}");
        }
        // A denied IPv4 range reaches through them too.
        let f = PeerFilter::new(PeerFilterConfig {
            allowed: vec![range("2001::/32"), range("64:ff9b:1::/48")],
            denied: vec![range("1.2.3.0/24")],
            ..Default::default()
        });
        assert_eq!(f.check(t), Err(Refusal::Denied));
        assert_eq!(f.check(local), Err(Refusal::Denied));
    }

    #[test]
    fn loopback_needs_allow_loopback() {
        let f = PeerFilter::new(PeerFilterConfig {
            allow_loopback: true,
            ..Default::default()
        });
        for (a, x) in ips("127.0.0.1 127.1.2.3 ::1 ::ffff:127.0.0.1 64:ff9b::7f00:1 2002:7f00:1::")
        {
            assert!(f.allows(x), "{a} with allow_loopback");
            assert_eq!(
                default_filter().check(x),
                Err(Refusal::Loopback),
                "{a} without"
            );
        }
        // allow_loopback is no licence for "this host" or private ranges.
        for (a, x) in ips("0.0.0.0 :: 10.0.0.1 169.254.169.254") {
            assert!(!f.allows(x), "{a}");
        }
    }

    #[test]
    fn allowed_ranges_open_special_blocks() {
        let allowed = vec![
            range("10.0.0.0/8"),
            range("fd00::/8"),
            range("::ffff:192.168.1.1"),
        ];
        let f = PeerFilter::new(PeerFilterConfig {
            allowed,
            ..Default::default()
        });
        assert!(f.allows(ip("10.1.2.3")));
        assert!(
            f.allows(ip("::ffff:10.1.2.3")),
            "allowed matches the canonical address"
        );
        assert!(f.allows(ip("fd00:ec2::254")));
        assert!(
            f.allows(ip("192.168.1.1")),
            "an IPv4-mapped range becomes IPv4"
        );
        assert!(!f.allows(ip("192.168.1.2")));
        assert!(!f.allows(ip("172.16.0.1")));
    }

    #[test]
    fn allowed_raw_6to4_does_not_open_what_it_embeds() {
        let f = PeerFilter::new(PeerFilterConfig {
            allowed: vec![range("2002::/16")],
            ..Default::default()
        });
        assert!(!f.allows(ip("2002:7f00:1::")), "really 127.0.0.1");
    }

    #[test]
    fn denied_ranges_refuse_ordinary_addresses_in_any_encoding() {
        let denied = vec![
            range("1.2.3.0/24"),
            range("2606:4700::/32"),
            range("2002:505:505::/48"),
        ];
        let f = PeerFilter::new(PeerFilterConfig {
            denied,
            ..Default::default()
        });
        for (a, x) in ips("1.2.3.4 ::ffff:1.2.3.4 64:ff9b::102:304 2002:102:304:: 2606:4700::1111")
        {
            assert_eq!(f.check(x), Err(Refusal::Denied), "{a}");
        }
        assert_eq!(
            f.check(ip("2002:505:505::1")),
            Err(Refusal::Denied),
            "raw form matches too"
        );
        assert!(f.allows(ip("1.2.4.1")));
    }

    /// coturn: "If there is an "allowed" rule that fits the address then it is allowed - no
    /// matter what".
    #[test]
    fn allowed_wins_over_denied() {
        let f = PeerFilter::new(PeerFilterConfig {
            denied: vec![range("83.166.64.0-83.166.95.255"), range("127.0.0.1")],
            allowed: vec![range("83.166.68.45"), range("127.0.0.1")],
            ..Default::default()
        });
        assert!(f.allows(ip("83.166.68.45")));
        assert!(!f.allows(ip("83.166.68.46")));
        assert!(
            f.allows(ip("127.0.0.1")),
            "allowed beats denied and the loopback default"
        );
        assert!(!f.allows(ip("127.0.0.2")));
        // Denied beats allow_loopback.
        let f = PeerFilter::new(PeerFilterConfig {
            allow_loopback: true,
            denied: vec![range("127.0.0.53")],
            ..Default::default()
        });
        assert!(f.allows(ip("127.0.0.1")));
        assert!(!f.allows(ip("127.0.0.53")));
    }

    #[test]
    fn multicast() {
        let allowed = vec![
            range("224.0.0.0/4"),
            range("ff00::/8"),
            range("240.0.0.0/4"),
        ];
        let config = PeerFilterConfig {
            allowed,
            ..Default::default()
        };
        let f = PeerFilter::new(config.clone());
        assert!(f.allows(ip("239.1.2.3")));
        assert!(f.allows(ip("ff0e::1")));
        let f = PeerFilter::new(PeerFilterConfig {
            no_multicast: true,
            ..config
        });
        for (a, x) in ips("224.0.0.1 239.1.2.3 240.0.0.1 255.255.255.255 ::ffff:224.0.0.1 ff0e::1")
        {
            assert_eq!(f.check(x), Err(Refusal::Multicast), "{a}");
        }
        assert!(f.allows(ip("1.2.3.4")));
    }

    #[test]
    fn parse_forms() {
        let r = |a: &str, b: &str| IpRange::new(ip(a), ip(b)).unwrap();
        assert_eq!(range("10.0.0.1"), IpRange::single(ip("10.0.0.1")));
        assert_eq!(range(" 10.0.0.1 - 10.0.0.9 "), r("10.0.0.1", "10.0.0.9"));
        assert_eq!(range("172.16.0.0/12"), r("172.16.0.0", "172.31.255.255"));
        assert_eq!(range("10.1.2.3/8"), r("10.0.0.0", "10.255.255.255"));
        assert_eq!(range("0.0.0.0/0"), r("0.0.0.0", "255.255.255.255"));
        assert_eq!(range("1.2.3.4/32"), IpRange::single(ip("1.2.3.4")));
        assert_eq!(range("::1"), IpRange::single(ip("::1")));
        assert_eq!(
            range("fe80::/10"),
            r("fe80::", "febf:ffff:ffff:ffff:ffff:ffff:ffff:ffff")
        );
        assert_eq!(
            range("::/0"),
            r("::", "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff")
        );
        assert_eq!(range("2001:db8::1/128"), IpRange::single(ip("2001:db8::1")));
        assert_eq!(
            range("fc00::-fdff:ffff:ffff:ffff:ffff:ffff:ffff:ffff"),
            range("fc00::/7")
        );
        let x = range("10.0.0.5-10.0.0.9");
        for (a, y) in ips("10.0.0.5 10.0.0.7 10.0.0.9") {
            assert!(x.contains(y), "{a}");
        }
        for (a, y) in ips("10.0.0.4 10.0.0.10 ::ffff:10.0.0.7") {
            assert!(!x.contains(y), "{a}");
        }
        assert_eq!(x.to_string(), "10.0.0.5-10.0.0.9");
        assert_eq!(range("::1").to_string(), "::1");
    }

    #[test]
    fn parse_errors() {
        let err = |s: &str| IpRange::parse(s).unwrap_err();
        let bad_len = |text: &str, max| IpRangeError::BadPrefixLength {
            text: text.into(),
            max,
        };
        let bad_addr = |text: &str| IpRangeError::BadAddress { text: text.into() };
        assert_eq!(err(""), IpRangeError::Empty);
        assert_eq!(err("  "), IpRangeError::Empty);
        assert_eq!(err("10.0.0"), bad_addr("10.0.0"));
        assert_eq!(err("turn.example"), bad_addr("turn.example"));
        assert_eq!(err("10.0.0.1-"), bad_addr(""));
        assert_eq!(err("10.0.0.0/33"), bad_len("33", 32));
        assert_eq!(err("::/129"), bad_len("129", 128));
        assert_eq!(err("10.0.0.0/-1"), bad_len("-1", 32));
        assert_eq!(err("10.0.0.0/"), bad_len("", 32));
        assert_eq!(err("10.0.0.0/+8"), bad_len("+8", 32));
        assert!(matches!(
            err("10.0.0.1-::1"),
            IpRangeError::MixedFamilies { .. }
        ));
        assert!(matches!(
            err("10.0.0.9-10.0.0.1"),
            IpRangeError::Reversed { .. }
        ));
        let msg = |s: &str| err(s).to_string();
        assert_eq!(
            msg("10.0.0.9-10.0.0.1"),
            "range 10.0.0.9-10.0.0.1 ends before it starts"
        );
        assert_eq!(
            msg("10.0.0.1-::1"),
            "range 10.0.0.1-::1 mixes IPv4 and IPv6"
        );
        assert_eq!(
            msg("10.0.0.0/33"),
            "prefix length `33` is not a number from 0 to 32"
        );
        assert_eq!(msg("bogus"), "`bogus` is not an IPv4 or IPv6 address");
    }

    #[test]
    fn refusal_names_the_reason() {
        let r = default_filter().check(ip("169.254.169.254")).unwrap_err();
        assert_eq!(r, Refusal::SpecialPurpose("link-local (RFC 3927)"));
        assert_eq!(r.label(), "special_purpose");
        assert_eq!(special_purpose(ip("1.2.3.4")), None);
        assert_eq!(not_publicly_routable(ip("1.2.3.4")), None);
        assert_eq!(not_publicly_routable(ip("2a00:1450::1")), None);
        for (addr, kind) in [
            ("172.17.0.2", "private-use"),
            ("100.64.1.1", "shared address space"),
            ("127.0.0.1", "loopback"),
            ("::ffff:10.0.0.1", "private-use"),
            ("::1", "loopback"),
            ("169.254.1.1", "link-local"),
            ("fe80::1", "link-local"),
            ("fd00::1", "unique-local"),
        ] {
            let why = not_publicly_routable(ip(addr)).unwrap_or("public");
            assert!(why.starts_with(kind), "{addr}: {why}");
        }
        let teredo = special_purpose(ip("2001:0:4136:e378::1"));
        assert_eq!(
            teredo,
            Some("IETF protocol assignments incl. Teredo (RFC 2928)")
        );
    }
}
