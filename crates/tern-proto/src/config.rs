use std::net::IpAddr;
use std::ops::RangeInclusive;
use std::time::Duration;

use crate::addr::{Family, PerFamily};
use crate::guard::GuardConfig;
use crate::peer_filter::PeerFilterConfig;

/// Everything the core needs to know, already validated by the caller. Its `Debug` output
/// leaves out the secrets (it says how many there are).
#[derive(Clone)]
pub struct Config {
    /// REALM sent in 401/438 responses and mixed into long-term keys.
    pub realm: String,
    /// TURN REST API shared secrets (coturn's `static-auth-secret`); any one may match.
    pub auth_secrets: Vec<Vec<u8>>,
    /// Static long-term users (coturn's `user=name:password`).
    pub users: Vec<StaticUser>,
    /// Default allocation lifetime (RFC 8656: 600 s).
    pub default_lifetime: Duration,
    /// Largest lifetime granted (coturn's `max-allocate-lifetime`, default 3600 s).
    pub max_lifetime: Duration,
    /// Permission lifetime (RFC 8656: 300 s).
    pub permission_lifetime: Duration,
    /// Channel binding lifetime (RFC 8656: 600 s).
    pub channel_lifetime: Duration,
    /// How long a nonce stays valid (coturn's `stale-nonce`, default 600 s).
    pub nonce_lifetime: Duration,
    /// The relay ports this core may hand out in each family (by [`Family::index`]): those
    /// the I/O layer managed to bind there. Each family has its own pool over the same
    /// range; an allocation takes one port in each family it relays in.
    pub relay_ports: PerFamily<Vec<u16>>,
    /// The configured relay port range (`min-port`..=`max-port`); each of `relay_ports` is a
    /// subset.
    pub relay_port_range: RangeInclusive<u16>,
    /// The IP advertised in XOR-RELAYED-ADDRESS in each family (by [`Family::index`];
    /// coturn's `external-ip` public part, else the relay IP). A family without one is not
    /// relayed in: asking for it gets 440 Address Family not Supported. Set with
    /// [`Config::relay_in`], which keeps each IP in its family's slot.
    pub relayed_ips: PerFamily<Option<IpAddr>>,
    /// The family of the relayed address of an Allocate that names none (coturn's
    /// `allocation-default-address-family`; RFC 8656 §7.2 says IPv4).
    pub default_family: DefaultFamily,
    /// Other IPs that are this server's own relay addresses (the private part of
    /// `external-ip`, `relay-ip`); peers there are always allowed on relay ports, as are the
    /// relayed IPs.
    pub own_ips: Vec<IpAddr>,
    /// Which peers may be reached.
    pub peer_filter: PeerFilterConfig,
    /// Most allocations one username may hold at once (`user-quota`; 0: no limit).
    pub user_quota: u32,
    /// Most allocations in all (`total-quota`; 0: no limit).
    pub total_quota: u32,
    /// Add FINGERPRINT to every response (coturn's `fingerprint`); otherwise only to
    /// responses to requests that carried one.
    pub always_fingerprint: bool,
    /// SOFTWARE attribute for responses; `None` (the default) sends none.
    pub software: Option<String>,
    /// Accept channel numbers 0x5000..=0x7FFF as RFC 5766 did (coturn and its
    /// `turnutils_uclient` use them); RFC 8656 allows only 0x4000..=0x4FFF, the default.
    pub rfc5766_channels: bool,
    /// How long a port reserved by EVEN-PORT with the R bit stays reserved (RFC 8656 §7.2:
    /// about 30 s).
    pub reservation_lifetime: Duration,
    /// Most permissions one allocation may hold.
    pub max_permissions_per_allocation: usize,
    /// Most channels one allocation may hold.
    pub max_channels_per_allocation: usize,
    /// Payload bytes per second one allocation may relay in each direction (coturn's
    /// `max-bps`; client → peers and peers → client counted apart); 0: no limit. A full budget
    /// passes one second's worth at once; datagrams beyond it are dropped as rate-limited.
    pub max_bps: u64,
    /// Limits on unauthenticated answers per source and on failed authentications
    /// (brute force); on by default.
    pub guard: GuardConfig,
}

/// The relayed address family of an Allocate without REQUESTED-ADDRESS-FAMILY and without
/// ADDITIONAL-ADDRESS-FAMILY (browsers send neither): coturn's
/// `allocation-default-address-family`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum DefaultFamily {
    /// IPv4, as RFC 8656 §7.2 says (the default).
    #[default]
    Ipv4,
    /// IPv6.
    Ipv6,
    /// The family of the address the client reached the server on.
    Keep,
}

impl DefaultFamily {
    /// The family for a client that reached the server at `server`.
    pub fn for_client(self, server: IpAddr) -> Family {
        match self {
            Self::Ipv4 => Family::V4,
            Self::Ipv6 => Family::V6,
            Self::Keep => Family::of(server.to_canonical()),
        }
    }
}

/// A static long-term credential.
#[derive(Clone)]
pub struct StaticUser {
    /// The username.
    pub name: String,
    /// The password, or the long-term key itself when coturn's `0x<hex>` form was used.
    pub secret: UserSecret,
}

/// A static user's password or precomputed key.
#[derive(Clone)]
pub enum UserSecret {
    /// A plain password.
    Password(String),
    /// The MD5 long-term key, `MD5(name:realm:password)`.
    Key([u8; 16]),
}

impl std::fmt::Debug for StaticUser {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StaticUser")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

impl Config {
    /// A config with RFC defaults, no credentials, the given relayed IP (relaying in its
    /// family only; [`Config::relay_in`] adds the other) and coturn-like defaults elsewhere;
    /// callers fill in what their configuration says.
    pub fn new(
        realm: impl Into<String>,
        relayed_ip: IpAddr,
        relay_ports: RangeInclusive<u16>,
    ) -> Self {
        let mut config = Self {
            realm: realm.into(),
            auth_secrets: Vec::new(),
            users: Vec::new(),
            default_lifetime: Duration::from_secs(600),
            max_lifetime: Duration::from_secs(3600),
            permission_lifetime: Duration::from_secs(300),
            channel_lifetime: Duration::from_secs(600),
            nonce_lifetime: Duration::from_secs(600),
            relay_ports: [Vec::new(), Vec::new()],
            relay_port_range: relay_ports,
            relayed_ips: [None, None],
            default_family: DefaultFamily::Ipv4,
            own_ips: Vec::new(),
            peer_filter: PeerFilterConfig::default(),
            user_quota: 0,
            total_quota: 0,
            always_fingerprint: false,
            software: None,
            rfc5766_channels: false,
            reservation_lifetime: Duration::from_secs(30),
            max_permissions_per_allocation: 64,
            max_channels_per_allocation: 64,
            max_bps: 0,
            guard: GuardConfig::default(),
        };
        config.relay_in(relayed_ip);
        config
    }

    /// Relays in `relayed_ip`'s family, advertising `relayed_ip` there, on every port of
    /// `relay_port_range` (the I/O layer narrows `relay_ports` to what it bound).
    pub fn relay_in(&mut self, relayed_ip: IpAddr) {
        let family = Family::of(relayed_ip).index();
        self.relayed_ips[family] = Some(relayed_ip);
        self.relay_ports[family] = self.relay_port_range.clone().collect();
    }

    /// The advertised relayed IP of `family`, if the server relays in it.
    #[inline]
    pub fn relayed_ip(&self, family: Family) -> Option<IpAddr> {
        self.relayed_ips[family.index()]
    }

    /// The families the server relays in, IPv4 first.
    pub fn relay_families(&self) -> impl Iterator<Item = Family> + '_ {
        Family::ALL
            .into_iter()
            .filter(|f| self.relayed_ip(*f).is_some())
    }
}

impl std::fmt::Debug for Config {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Config")
            .field("realm", &self.realm)
            .field(
                "auth_secrets",
                &format_args!("<{} redacted>", self.auth_secrets.len()),
            )
            .field("users", &self.users)
            .field("default_lifetime", &self.default_lifetime)
            .field("max_lifetime", &self.max_lifetime)
            .field("permission_lifetime", &self.permission_lifetime)
            .field("channel_lifetime", &self.channel_lifetime)
            .field("nonce_lifetime", &self.nonce_lifetime)
            .field("relay_port_range", &self.relay_port_range)
            .field("relay_ports", &self.relay_ports.each_ref().map(Vec::len))
            .field("relayed_ips", &self.relayed_ips)
            .field("default_family", &self.default_family)
            .field("own_ips", &self.own_ips)
            .field("peer_filter", &self.peer_filter)
            .field("user_quota", &self.user_quota)
            .field("total_quota", &self.total_quota)
            .field("max_bps", &self.max_bps)
            .field("guard", &self.guard)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_output_has_no_secret() {
        let mut c = Config::new("r", "192.0.2.1".parse().unwrap(), 1000..=1001);
        c.auth_secrets = vec![b"hunter2-secret".to_vec()];
        c.users = vec![StaticUser {
            name: "alice".into(),
            secret: UserSecret::Password("pw-swordfish".into()),
        }];
        let text = format!("{c:?}");
        assert!(
            !text.contains("hunter2") && !text.contains("104, 117"),
            "{text}"
        );
        assert!(!text.contains("swordfish"), "{text}");
        assert!(text.contains("<1 redacted>"), "{text}");
    }
}

#[cfg(test)]
mod family_tests {
    use super::*;

    #[test]
    fn relayed_ips_stay_in_their_family() {
        let mut c = Config::new("r", "192.0.2.1".parse().unwrap(), 1000..=1003);
        assert_eq!(c.relay_families().collect::<Vec<_>>(), [Family::V4]);
        assert_eq!(c.relay_ports[Family::V4.index()], [1000, 1001, 1002, 1003]);
        assert!(c.relay_ports[Family::V6.index()].is_empty());
        c.relay_in("2001:db8::1".parse().unwrap());
        assert_eq!(
            c.relayed_ip(Family::V6),
            Some("2001:db8::1".parse().unwrap())
        );
        assert_eq!(c.relayed_ip(Family::V4), Some("192.0.2.1".parse().unwrap()));
        assert_eq!(c.relay_families().count(), 2);
        assert_eq!(c.relay_ports[Family::V6.index()].len(), 4);
        let keep = DefaultFamily::Keep;
        assert_eq!(keep.for_client("2001:db8::2".parse().unwrap()), Family::V6);
        assert_eq!(
            keep.for_client("::ffff:192.0.2.2".parse().unwrap()),
            Family::V4
        );
        assert_eq!(
            DefaultFamily::default().for_client("2001:db8::2".parse().unwrap()),
            Family::V4
        );
        assert_eq!(
            DefaultFamily::Ipv6.for_client("192.0.2.2".parse().unwrap()),
            Family::V6
        );
    }
}
