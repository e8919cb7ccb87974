//! The program and its two maps, in the byte layouts of `bpf/tern_xdp.c` (`client_key`,
//! `client_val`, `peer_key`, `peer_val`): addresses and ports in network order, an IPv4
//! address in the first 4 of 16 bytes, the family (4 or 6) in the keys, per-CPU counters in
//! native order.

use std::net::{IpAddr, SocketAddr};
use std::sync::Mutex;

use aya::maps::{Array, MapData, PerCpuHashMap, PerCpuValues};
use aya::programs::{TestRun, TestRunOptions, Xdp, XdpMode};
use aya::Ebpf;
use tern_proto::{Family, PathCount};

use super::{Mode, RelayIps};

/// The object clang built from `bpf/tern_xdp.c`.
static OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/tern_xdp.o"));

type ClientKey = [u8; 40];
type ClientVal = [u8; 56];
type PeerKey = [u8; 24];
type PeerVal = [u8; 72];
/// `own_relay`: advertised IP, local IP (16 bytes each), family, padding.
type OwnRelay = [u8; 40];

/// One channel as the program relays it: ChannelData from `client` to `server` on
/// `channel` goes to `peer` from `relay`, and datagrams from `peer` to `relay` go to
/// `client` from `server` under `channel`. The four addresses are of one family (the
/// program does not change a packet's IP version): [`Entry::new`] checks it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Entry {
    /// The client's transport address.
    pub client: SocketAddr,
    /// The listening address it sends to.
    pub server: SocketAddr,
    /// The channel number.
    pub channel: u16,
    /// The relayed transport address (its local, bound IP).
    pub relay: SocketAddr,
    /// The peer.
    pub peer: SocketAddr,
}

fn ip16(ip: IpAddr) -> [u8; 16] {
    match ip {
        IpAddr::V4(ip) => {
            let mut out = [0; 16];
            out[..4].copy_from_slice(&ip.octets());
            out
        }
        IpAddr::V6(ip) => ip.octets(),
    }
}

impl Entry {
    /// An entry, when the program can relay it: all four addresses of one family, none
    /// unspecified (an IPv4-mapped IPv6 address counts as IPv4).
    pub fn new(
        client: SocketAddr,
        server: SocketAddr,
        channel: u16,
        relay: SocketAddr,
        peer: SocketAddr,
    ) -> Option<Entry> {
        let [client, server, relay, peer] = [client, server, relay, peer].map(canonical);
        let family = client.is_ipv4();
        let same = [server, relay, peer].iter().all(|a| a.is_ipv4() == family);
        let specified = [client, server, relay, peer]
            .iter()
            .all(|a| !a.ip().is_unspecified());
        (same && specified).then_some(Entry {
            client,
            server,
            channel,
            relay,
            peer,
        })
    }

    fn family(&self) -> u8 {
        if self.client.is_ipv4() {
            4
        } else {
            6
        }
    }

    fn client_key(&self) -> ClientKey {
        let mut k = [0; 40];
        k[0..16].copy_from_slice(&ip16(self.client.ip()));
        k[16..32].copy_from_slice(&ip16(self.server.ip()));
        k[32..34].copy_from_slice(&self.client.port().to_be_bytes());
        k[34..36].copy_from_slice(&self.server.port().to_be_bytes());
        k[36..38].copy_from_slice(&self.channel.to_be_bytes());
        k[38] = self.family();
        k
    }

    fn client_val(&self) -> ClientVal {
        let mut v = [0; 56];
        v[0..16].copy_from_slice(&ip16(self.relay.ip()));
        v[16..32].copy_from_slice(&ip16(self.peer.ip()));
        v[32..34].copy_from_slice(&self.relay.port().to_be_bytes());
        v[34..36].copy_from_slice(&self.peer.port().to_be_bytes());
        v
    }

    fn peer_key(&self) -> PeerKey {
        let mut k = [0; 24];
        k[0..16].copy_from_slice(&ip16(self.peer.ip()));
        k[16..18].copy_from_slice(&self.peer.port().to_be_bytes());
        k[18..20].copy_from_slice(&self.relay.port().to_be_bytes());
        k[20] = self.family();
        k
    }

    fn peer_val(&self) -> PeerVal {
        let mut v = [0; 72];
        v[0..16].copy_from_slice(&ip16(self.relay.ip()));
        v[16..32].copy_from_slice(&ip16(self.server.ip()));
        v[32..48].copy_from_slice(&ip16(self.client.ip()));
        v[48..50].copy_from_slice(&self.server.port().to_be_bytes());
        v[50..52].copy_from_slice(&self.client.port().to_be_bytes());
        v[52..54].copy_from_slice(&self.channel.to_be_bytes());
        v
    }
}

/// `addr` with an IPv4-mapped IPv6 address as the IPv4 address it is.
fn canonical(addr: SocketAddr) -> SocketAddr {
    match addr {
        SocketAddr::V6(a) => match a.ip().to_ipv4_mapped() {
            Some(ip) => SocketAddr::new(ip.into(), a.port()),
            None => addr,
        },
        v4 => v4,
    }
}

/// Sums the per-CPU packet and byte counters at `at` of every CPU's copy of a value.
fn sum<const N: usize>(values: &PerCpuValues<[u8; N]>, at: usize) -> PathCount {
    let word = |v: &[u8; N], i: usize| u64::from_ne_bytes(v[i..i + 8].try_into().expect("8"));
    values
        .iter()
        .fold(PathCount::default(), |acc, v| PathCount {
            packets: acc.packets + word(v, at),
            bytes: acc.bytes + word(v, at + 8),
        })
}

fn replicate<const N: usize>(v: [u8; N]) -> Result<PerCpuValues<[u8; N]>, String> {
    let cpus = aya::util::nr_cpus().map_err(|(what, e)| format!("{what}: {e}"))?;
    PerCpuValues::try_from(vec![v; cpus]).map_err(|e| e.to_string())
}

/// The loaded program and its maps (not attached: [`Attached`] attaches it; golden tests
/// run it with `BPF_PROG_TEST_RUN`).
pub struct Program {
    ebpf: Ebpf,
    clients: PerCpuHashMap<MapData, ClientKey, ClientVal>,
    peers: PerCpuHashMap<MapData, PeerKey, PeerVal>,
    own: Array<MapData, OwnRelay>,
}

impl std::fmt::Debug for Program {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Program").finish_non_exhaustive()
    }
}

impl Program {
    /// Loads the embedded program into the kernel (needs CAP_BPF, or root).
    pub fn load() -> Result<Self, String> {
        let mut ebpf = Ebpf::load(OBJECT).map_err(|e| format!("load the XDP object: {e}"))?;
        let prog: &mut Xdp = ebpf
            .program_mut("tern_xdp")
            .ok_or("the object has no tern_xdp program")?
            .try_into()
            .map_err(|e| format!("tern_xdp: {e}"))?;
        prog.load().map_err(|e| format!("verify tern_xdp: {e}"))?;
        let map = |name: &str, ebpf: &mut Ebpf| {
            ebpf.take_map(name)
                .ok_or_else(|| format!("the object has no map {name}"))
        };
        let clients = PerCpuHashMap::try_from(map("tern_clients", &mut ebpf)?)
            .map_err(|e| format!("tern_clients: {e}"))?;
        let peers = PerCpuHashMap::try_from(map("tern_peers", &mut ebpf)?)
            .map_err(|e| format!("tern_peers: {e}"))?;
        let own =
            Array::try_from(map("tern_own", &mut ebpf)?).map_err(|e| format!("tern_own: {e}"))?;
        Ok(Self {
            ebpf,
            clients,
            peers,
            own,
        })
    }

    fn prog(&self) -> &Xdp {
        self.ebpf
            .program("tern_xdp")
            .and_then(|p| p.try_into().ok())
            .expect("loaded in Program::load")
    }

    /// Tells the program tern's own relayed address of a family: `advertised` (what
    /// XOR-RELAYED-ADDRESS names: `external-ip`'s public part, else the relay IP) and
    /// `local` (the IP relay sockets are bound to). ChannelData to a peer at either is a
    /// hairpin, relayed straight to the client of the other allocation (`hairpin` in
    /// `bpf/tern_xdp.c`). A family never set has no hairpin; a second call replaces the first.
    pub fn set_own_relay(&mut self, advertised: IpAddr, local: IpAddr) -> Result<(), String> {
        let (advertised, local) = (advertised.to_canonical(), local.to_canonical());
        if advertised.is_ipv4() != local.is_ipv4() {
            return Err(format!(
                "own relay addresses of two families: {advertised} and {local}"
            ));
        }
        let (slot, family) = if local.is_ipv4() { (0, 4) } else { (1, 6) };
        let mut v = [0; 40];
        v[0..16].copy_from_slice(&ip16(advertised));
        v[16..32].copy_from_slice(&ip16(local));
        v[32] = family;
        self.own
            .set(slot, v, 0)
            .map_err(|e| format!("tern_own set: {e}"))
    }

    /// Adds `entry` in both directions, with zero counters.
    pub fn insert(&mut self, entry: &Entry) -> Result<(), String> {
        self.clients
            .insert(entry.client_key(), replicate(entry.client_val())?, 0)
            .map_err(|e| format!("tern_clients insert: {e}"))?;
        self.peers
            .insert(entry.peer_key(), replicate(entry.peer_val())?, 0)
            .map_err(|e| format!("tern_peers insert: {e}"))
    }

    /// What `entry` relayed so far: client → peer, then peer → client.
    pub fn counts(&self, entry: &Entry) -> (PathCount, PathCount) {
        let to_peer = self
            .clients
            .get(&entry.client_key(), 0)
            .map(|v| sum(&v, 40))
            .unwrap_or_default();
        let to_client = self
            .peers
            .get(&entry.peer_key(), 0)
            .map(|v| sum(&v, 56))
            .unwrap_or_default();
        (to_peer, to_client)
    }

    /// Removes `entry` both ways; returns what it relayed.
    pub fn remove(&mut self, entry: &Entry) -> (PathCount, PathCount) {
        let counts = self.counts(entry);
        // A missing key is fine: removal is what was wanted.
        let _ = self.clients.remove(&entry.client_key());
        let _ = self.peers.remove(&entry.peer_key());
        counts
    }

    /// Runs the program once on `frame` (`BPF_PROG_TEST_RUN`); returns the verdict and the
    /// frame as it left.
    pub fn test_run(&self, frame: &[u8]) -> Result<(u32, Vec<u8>), String> {
        self.run(frame, None)
    }

    /// Like [`Program::test_run`] with an `xdp_md` context (`ingress_ifindex` at bytes
    /// 12..16, native order).
    pub fn test_run_on(&self, frame: &[u8], ctx: &[u8; 24]) -> Result<(u32, Vec<u8>), String> {
        self.run(frame, Some(ctx))
    }

    /// Runs the program once on `frame` and returns the verdict with the time the kernel
    /// measured for the run (`BPF_PROG_TEST_RUN`'s duration, for cost notes).
    pub fn test_run_timed(&self, frame: &[u8]) -> Result<(u32, std::time::Duration), String> {
        self.run_timed(frame, None).map(|(v, _, d)| (v, d))
    }

    fn run(&self, frame: &[u8], ctx: Option<&[u8; 24]>) -> Result<(u32, Vec<u8>), String> {
        self.run_timed(frame, ctx).map(|(v, out, _)| (v, out))
    }

    fn run_timed(
        &self,
        frame: &[u8],
        ctx: Option<&[u8; 24]>,
    ) -> Result<(u32, Vec<u8>, std::time::Duration), String> {
        let mut out = vec![0u8; frame.len() + 256];
        let mut md = [0u8; 24];
        if let Some(ctx) = ctx {
            md = *ctx;
            // data_end: the frame's length.
            md[4..8].copy_from_slice(&(frame.len() as u32).to_ne_bytes());
        }
        let result = self
            .prog()
            .test_run(TestRunOptions {
                data_in: Some(frame),
                data_out: Some(&mut out),
                ctx_in: ctx.map(|_| &md[..]),
                ..TestRunOptions::new()
            })
            .map_err(|e| format!("BPF_PROG_TEST_RUN: {e}"))?;
        out.truncate(result.data_size_out as usize);
        Ok((result.return_value, out, result.duration))
    }
}

/// The program attached to an interface, shared by the workers; the maps behind a lock
/// that only channel changes and the counter fold take, never a packet.
pub struct Attached {
    program: Mutex<Program>,
    /// The addresses relay sockets are bound to, per family (the source of relayed
    /// packets); a family without one stays in userspace.
    pub relay_ips: RelayIps,
    /// The relayed IPs tern advertises, per family: peers there are hairpins.
    pub advertised: RelayIps,
    /// The interface, for the log.
    pub interface: String,
    /// `native` or `generic`, as attached.
    pub mode: &'static str,
}

impl std::fmt::Debug for Attached {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Attached")
            .field("interface", &self.interface)
            .field("mode", &self.mode)
            .field("relay_ips", &self.relay_ips)
            .field("advertised", &self.advertised)
            .finish_non_exhaustive()
    }
}

impl Attached {
    /// Loads the program and attaches it to `interface` in `mode` (`auto`: native, else
    /// generic). The attachment is a BPF link owned by this process: it goes when tern does.
    /// `advertised` is tern's relayed IP per family (XOR-RELAYED-ADDRESS): with the relay
    /// address of the same family, it tells the program which peers are tern's own relayed
    /// addresses ([`Program::set_own_relay`]), before the first packet.
    pub fn attach(
        mode: Mode,
        interface: &str,
        relay_ips: RelayIps,
        advertised: RelayIps,
    ) -> Result<Self, String> {
        let mut program = Program::load()?;
        for family in Family::ALL {
            if let (Some(adv), Some(local)) = (advertised.get(family), relay_ips.get(family)) {
                program.set_own_relay(adv, local)?;
            }
        }
        let tries: &[(XdpMode, &'static str)] = match mode {
            Mode::Native => &[(XdpMode::Driver, "native")],
            Mode::Generic => &[(XdpMode::Skb, "generic")],
            _ => &[(XdpMode::Driver, "native"), (XdpMode::Skb, "generic")],
        };
        let mut errors = Vec::new();
        for &(flags, label) in tries {
            let prog: &mut Xdp = program
                .ebpf
                .program_mut("tern_xdp")
                .and_then(|p| p.try_into().ok())
                .expect("loaded in Program::load");
            match prog.attach(interface, flags) {
                Ok(_) => {
                    return Ok(Self {
                        program: Mutex::new(program),
                        relay_ips,
                        advertised,
                        interface: interface.to_string(),
                        mode: label,
                    })
                }
                Err(e) => errors.push(format!("{label} on {interface}: {e}")),
            }
        }
        Err(format!("cannot attach: {}", errors.join("; ")))
    }

    /// Runs `f` on the program and its maps.
    pub(super) fn with<T>(&self, f: impl FnOnce(&mut Program) -> T) -> T {
        f(&mut self.program.lock().unwrap_or_else(|e| e.into_inner()))
    }
}
