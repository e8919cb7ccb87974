//! Drives the sans-IO core through ChannelData packets both ways, for `benches/callgrind.sh`:
//! `channel-data-instructions PACKETS SIZE` sends PACKETS client→peer and PACKETS peer→client
//! through [`tern_bench::Fixture`] (set-up included, so run it with 0 packets for the baseline).

use std::hint::black_box;

use tern_bench::{Fixture, WALL};
use tern_proto::{ClientOutput, PeerOutput, PEER_HEADROOM, PEER_TAILROOM};

fn main() {
    let mut argv = std::env::args().skip(1);
    let packets: u64 = argv.next().and_then(|a| a.parse().ok()).unwrap_or(100_000);
    let size: usize = argv.next().and_then(|a| a.parse().ok()).unwrap_or(100);
    let mut fx = Fixture::new();
    let mut datagram = vec![0x40, 0x00, (size >> 8) as u8, size as u8];
    datagram.resize(4 + size, 0xAB);
    let mut buf = vec![0u8; PEER_HEADROOM + size + PEER_TAILROOM];
    let (relayed, peer, five) = (fx.relayed, fx.peer, fx.five);
    let (mut to_peer, mut to_client) = (0u64, 0u64);
    for _ in 0..packets {
        if matches!(
            fx.server
                .handle_client_datagram(fx.now, WALL, five, black_box(&datagram)),
            ClientOutput::Relay { .. }
        ) {
            to_peer += 1;
        }
        if matches!(
            fx.server
                .handle_peer_datagram(fx.now, relayed, peer, black_box(&mut buf), size),
            PeerOutput::Forward { .. }
        ) {
            to_client += 1;
        }
    }
    assert_eq!(
        (to_peer, to_client),
        (packets, packets),
        "every packet must be relayed"
    );
    println!("relayed {to_peer} client->peer and {to_client} peer->client ChannelData packets of {size} bytes");
}
