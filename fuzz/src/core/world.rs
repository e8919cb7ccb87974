//! The world of the `core` target: two workers, the clients, the peers, the clocks, and how
//! each operation becomes an input to the core.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::{Duration, Instant};

use tern_proto::{
    Family, PeerFilter, PeerOutput, RelayEndpoint, Server, SharedState, StaticUser, Transport,
    PEER_HEADROOM, PEER_TAILROOM,
};

use super::cast::{
    clients, credential_set, credentials, peers, Client, Config, Cred, CLIENTS, FIRST_PORT,
    LAST_PORT, MUST_ALLOW, MUST_REFUSE, REALM, SEED, UNBOUND_PORT, WALL0,
};
use super::model::{Model, Step};
use super::ops::Op;
use super::tally::Tally;
use super::victim::{Victim, VICTIM_REBIND};

/// Time moves in steps of at most this while the victim keeps up: with [`VICTIM_REBIND`],
/// under the permission lifetime.
const TIME_STEP: u64 = 120;
const _: () = assert!(TIME_STEP + VICTIM_REBIND.as_secs() < 300);

/// Everything a run holds.
pub struct World {
    pub(crate) config: Config,
    pub(crate) now: Instant,
    pub(crate) wall: u64,
    pub(crate) workers: Vec<Server>,
    pub(crate) shared: SharedState,
    pub(crate) relayed_ip: IpAddr,
    pub(crate) filter: PeerFilter,
    /// The credentials the server holds now.
    pub(crate) secrets: Vec<Vec<u8>>,
    pub(crate) users: Vec<StaticUser>,
    pub(crate) creds: Vec<Cred>,
    pub(crate) clients: Vec<Client>,
    pub(crate) peers: Vec<SocketAddr>,
    pub(crate) model: Model,
    pub(crate) victim: Victim,
    /// What the input did (the victim's setup and upkeep not counted).
    pub tally: Tally,
}

impl World {
    /// Two workers configured by `config`, and the victim's allocation with its channel.
    pub fn new(config: Config) -> Self {
        let relayed_ip: IpAddr = if config.bit(4) {
            Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 1).into()
        } else {
            Ipv4Addr::new(203, 0, 113, 1).into()
        };
        let (secrets, users) = credential_set(0);
        let mut core = tern_proto::Config::new(REALM, relayed_ip, FIRST_PORT..=LAST_PORT);
        // Clients name no family: they get the one the server relays in.
        core.default_family = if relayed_ip.is_ipv6() {
            tern_proto::DefaultFamily::Ipv6
        } else {
            tern_proto::DefaultFamily::Ipv4
        };
        for ports in &mut core.relay_ports {
            ports.retain(|&p| p != UNBOUND_PORT);
        }
        core.auth_secrets = secrets.clone();
        core.users = users.clone();
        core.always_fingerprint = config.bit(0);
        core.rfc5766_channels = config.bit(1);
        core.software = config.bit(2).then(|| "tern-fuzz".to_owned());
        core.max_bps = if config.bit(3) { 4096 } else { 0 };
        core.user_quota = if config.bit(5) { 2 } else { 0 };
        core.total_quota = if config.bit(6) { 6 } else { 0 };
        if config.bit(7) {
            core.nonce_lifetime = Duration::from_secs(30);
        }
        core.max_permissions_per_allocation = 4;
        core.max_channels_per_allocation = 4;
        let filter = PeerFilter::new(core.peer_filter.clone());
        for ip in MUST_REFUSE {
            assert!(
                !filter.allows(ip.parse().unwrap()),
                "the filter lets {ip} through"
            );
        }
        for ip in MUST_ALLOW {
            assert!(
                filter.allows(ip.parse().unwrap()),
                "the filter refuses {ip}"
            );
        }
        let shared = SharedState::new(core.relay_ports.clone(), 0x5eed);
        #[allow(clippy::disallowed_methods)] // The one real clock reading: the origin.
        let t0 = Instant::now();
        let workers = (0..2)
            .map(|i| Server::with_shared(core.clone(), t0, SEED, shared.clone(), i))
            .collect();
        let peers = peers(relayed_ip);
        let victim_peer = peers[if relayed_ip.is_ipv4() { 1 } else { 2 }];
        let mut world = World {
            config,
            now: t0,
            wall: WALL0,
            workers,
            shared,
            relayed_ip,
            filter,
            secrets,
            users,
            creds: credentials(),
            clients: clients(),
            peers,
            model: Model::default(),
            victim: Victim {
                relayed: RelayEndpoint {
                    family: Family::of(relayed_ip),
                    port: 0,
                },
                peer: victim_peer,
                bound: t0,
                refreshed: t0,
                alive: false,
            },
            tally: Tally::default(),
        };
        world.victim_setup();
        world.victim.alive = true;
        world.check();
        world.tally = Tally::default();
        world
    }

    /// Runs one operation, then checks the invariants.
    pub fn apply(&mut self, op: &Op) {
        match op {
            Op::Raw { client, data } => {
                self.client_datagram(self.client(*client), data);
            }
            Op::Request(req) => {
                let i = self.client(req.client);
                let data = self.build(i, req);
                self.client_datagram(i, &data);
            }
            Op::ChannelData {
                client,
                channel,
                declared,
                payload,
                padding,
            } => {
                let mut data = channel.to_be_bytes().to_vec();
                let len = declared.unwrap_or(payload.len() as u16);
                data.extend_from_slice(&len.to_be_bytes());
                data.extend_from_slice(payload);
                data.extend_from_slice(&[0; 3][..usize::from(*padding % 4)]);
                self.client_datagram(self.client(*client), &data);
            }
            Op::Peer {
                port,
                peer,
                flags,
                payload,
            } => self.peer_datagram(*port, *peer, *flags, payload),
            Op::Advance { secs } => self.advance(u64::from(secs % 2048), true),
            Op::Wall { delta } => self.wall = self.wall.saturating_add_signed(i64::from(*delta)),
            Op::Close { client } => {
                let c = &self.clients[self.client(*client)];
                let (five, w) = (c.five, c.worker);
                if matches!(five.transport, Transport::Stream { .. }) {
                    self.workers[w].handle_connection_closed(self.now, five);
                    self.drain(w, &Step::Close(five));
                }
            }
            Op::Drain { alternate } => {
                let alternate = alternate.then(|| "192.0.2.99:3478".parse().unwrap());
                for server in &mut self.workers {
                    server.drain(alternate);
                    assert!(server.is_draining());
                }
            }
            Op::Reload { set } => {
                let (secrets, users) = credential_set(*set);
                for server in &mut self.workers {
                    let filter = server.config().peer_filter.clone();
                    server.reload(secrets.clone(), users.clone(), filter);
                }
                (self.secrets, self.users) = (secrets, users);
            }
            Op::Revoke {
                selector,
                client,
                for_secs,
            } => self.revoke(*selector, *client, *for_secs),
            Op::Sessions {
                worker,
                filter,
                client,
                limit,
                cursor,
            } => self.sessions(*worker, *filter, *client, *limit, *cursor),
        }
        for w in 0..self.workers.len() {
            self.expect_quiet(w);
        }
        self.check();
    }

    /// The end of a run: the workers shut down (or everything expires), and the pool is
    /// whole again.
    pub fn finish(&mut self) {
        self.victim.alive = false;
        if self.config.more & 1 != 0 {
            // Longer than any lifetime the server grants (max-allocate-lifetime, 3,600 s).
            self.advance(2 * 3600 + 2 * TIME_STEP, false);
        } else {
            for w in 0..self.workers.len() {
                self.workers[w].shutdown(self.now);
                self.drain(w, &Step::Shutdown);
            }
        }
        self.check();
        assert!(
            self.model.claimed.is_empty(),
            "allocations outlived their lifetime"
        );
        assert!(self.model.channels.is_empty());
        assert_eq!(self.shared.reserved_ports(), 0);
        assert_eq!(self.shared.free_ports(), self.shared.pool_size());
        for server in &self.workers {
            let s = server.stats_local();
            assert_eq!((s.allocations, s.permissions, s.channels), (0, 0, 0));
        }
    }

    fn client(&self, selector: u8) -> usize {
        usize::from(selector) % CLIENTS
    }

    /// A datagram from client `i`: the decision, the outputs it queued, and their checks.
    /// Returns the reply, if any.
    pub(crate) fn client_datagram(&mut self, i: usize, data: &[u8]) -> Option<Vec<u8>> {
        let (five, w) = (self.clients[i].five, self.clients[i].worker);
        let out = self.workers[w].handle_client_datagram(self.now, self.wall, five, data);
        let reply = self.drain(w, &Step::Client { index: i, data });
        self.check_client_output(i, data, &out, reply.as_deref());
        reply
    }

    fn peer_datagram(&mut self, port: u8, peer: u8, flags: u8, payload: &[u8]) {
        let client = self.clients[usize::from(port) % self.clients.len()].five;
        let held = self.model.held_by(&client).map(|(p, _)| p);
        let port = match held {
            Some(p) if port < 0x80 => p,
            _ => FIRST_PORT + u16::from(port & 0x7F),
        };
        let worker = self
            .model
            .claimed
            .get(&port)
            .map_or(usize::from(flags & 1), |h| h.worker);
        let family = match (Family::of(self.relayed_ip), flags & 2 != 0) {
            (f, false) => f,
            (Family::V4, true) => Family::V6,
            (_, true) => Family::V4,
        };
        let relayed = RelayEndpoint { family, port };
        let peer = self.peers[usize::from(peer) % self.peers.len()];
        // Bit 2: a buffer without the room after the payload the core asks for.
        let tailroom = if flags & 4 != 0 { 0 } else { PEER_TAILROOM };
        let mut buf = vec![0xEE; PEER_HEADROOM + payload.len() + tailroom];
        buf[PEER_HEADROOM..PEER_HEADROOM + payload.len()].copy_from_slice(payload);
        let out = self.workers[worker].handle_peer_datagram(
            self.now,
            relayed,
            peer,
            &mut buf,
            payload.len(),
        );
        if tailroom == 0 {
            assert!(
                matches!(out, PeerOutput::Drop(_)),
                "framed without room: {out:?}"
            );
        }
        self.check_peer_output(relayed, peer, payload, &buf, &out);
    }

    /// Moves both clocks `secs` forward, running the timers and checking after each step;
    /// with `maintain`, in steps of [`TIME_STEP`] after each of which the victim binds its
    /// channel again and refreshes its allocation as a client would when they are due.
    fn advance(&mut self, secs: u64, maintain: bool) {
        let mut left = secs;
        // Without the victim's upkeep, one step: the timer wheel takes a long jump at once.
        let most = if maintain { TIME_STEP } else { secs };
        loop {
            let step = left.min(most);
            left -= step;
            self.now += Duration::from_secs(step);
            self.wall += step;
            for w in 0..self.workers.len() {
                self.workers[w].handle_timeout(self.now);
                self.drain(w, &Step::Timer);
            }
            self.check();
            if maintain {
                self.victim_upkeep();
            }
            if left == 0 {
                break;
            }
        }
    }
}
