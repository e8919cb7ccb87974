//! Scripts for the core target, each aimed at one part of the protocol.

use tern_wire::{attr, Method};

use super::Recorded;
use crate::core::ops::{Attr, Op, Request};
use crate::core::Config;
use crate::input::Writer;

/// Scripts for the core target.
pub(super) fn core(recorded: &[Recorded]) -> Vec<(String, Vec<u8>)> {
    use Method as M;
    let script = |flags: u8, more: u8, ops: &[Op]| {
        let mut w = Writer::default();
        Config { flags, more }.write(&mut w);
        for op in ops {
            op.write(&mut w);
        }
        w.out
    };
    // Requests: unsigned (the challenge that brings a nonce) and signed with credential
    // `cred`'s key and the nonce held.
    let ask = |client: u8, method: Method, attrs: Vec<Attr>| {
        Op::Request(Request {
            client,
            method: method.0,
            class: 0,
            same_tid: false,
            attrs,
            auth: 0,
            cred: 0,
            key: 0,
            nonce: 1,
            raw_nonce: Vec::new(),
        })
    };
    let signed = |client: u8, cred: u8, method: Method, attrs: Vec<Attr>| {
        Op::Request(Request {
            client,
            method: method.0,
            class: 0,
            same_tid: false,
            attrs,
            auth: 1,
            cred,
            key: 0,
            nonce: 0,
            raw_nonce: Vec::new(),
        })
    };
    let with = |op: Op, f: &dyn Fn(&mut Request)| match op {
        Op::Request(mut r) => {
            f(&mut r);
            Op::Request(r)
        }
        other => other,
    };
    let udp = || Attr::Transport(attr::TRANSPORT_UDP);
    let allocate = |client: u8, cred: u8| {
        vec![
            ask(client, M::ALLOCATE, vec![udp()]),
            signed(client, cred, M::ALLOCATE, vec![udp()]),
        ]
    };
    let cd = |client: u8, channel: u16, payload: &[u8]| Op::ChannelData {
        client,
        channel,
        declared: None,
        payload: payload.to_vec(),
        padding: 0,
    };
    let peer = |port: u8, peer: u8, payload: &[u8]| Op::Peer {
        port,
        peer,
        flags: 0,
        payload: payload.to_vec(),
    };
    let send = |client: u8, peer: u8| {
        with(
            ask(
                client,
                M::SEND,
                vec![Attr::Peer(peer), Attr::Data(b"hi".to_vec())],
            ),
            &|r| r.class = 1,
        )
    };
    let mut scripts = Vec::new();

    let mut session = allocate(0, 0);
    session.extend([
        signed(
            0,
            0,
            M::CREATE_PERMISSION,
            vec![Attr::Peer(0), Attr::Peer(4)],
        ),
        signed(0, 0, M::CREATE_PERMISSION, vec![Attr::Peer(0)]),
        signed(
            0,
            0,
            M::CHANNEL_BIND,
            vec![Attr::Channel(0x4001), Attr::Peer(0)],
        ),
        cd(0, 0x4001, b"hello"),
        peer(0, 0, b"world"),
        peer(1, 0, b"world"),
        send(0, 0),
        peer(0, 3, b"mapped"),
        Op::Advance { secs: 301 },
        send(0, 0),
        signed(0, 0, M::REFRESH, vec![Attr::Lifetime(0)]),
    ]);
    scripts.push(("session".to_owned(), script(0, 1, &session)));

    // After a while the nonce is stale: the first try brings a fresh one (438).
    let twice = |op: Op| [op.clone(), op];
    // Alice's REST username expires an hour in: a refresh before works, one after does not.
    let mut expiry = vec![
        ask(1, M::ALLOCATE, vec![udp()]),
        signed(1, 0, M::ALLOCATE, vec![udp(), Attr::Lifetime(3600)]),
    ];
    expiry.push(Op::Advance { secs: 1800 });
    expiry.extend(twice(signed(1, 0, M::REFRESH, vec![Attr::Lifetime(3600)])));
    expiry.push(Op::Advance { secs: 1900 });
    expiry.extend(twice(signed(1, 0, M::REFRESH, vec![])));
    expiry.push(ask(0, M::ALLOCATE, vec![udp()]));
    expiry.push(signed(0, 6, M::ALLOCATE, vec![udp()]));
    scripts.push(("rest-expiry".to_owned(), script(0, 1, &expiry)));

    let reservation = vec![
        ask(0, M::ALLOCATE, vec![udp()]),
        signed(0, 2, M::ALLOCATE, vec![udp(), Attr::EvenPort(0x80)]),
        ask(1, M::ALLOCATE, vec![udp()]),
        signed(1, 3, M::ALLOCATE, vec![udp(), Attr::Token(0)]),
        ask(5, M::ALLOCATE, vec![udp()]),
        signed(
            5,
            3,
            M::ALLOCATE,
            vec![udp(), Attr::EvenPort(0x80), Attr::Token(0)],
        ),
        signed(5, 3, M::ALLOCATE, vec![udp(), Attr::EvenPort(0)]),
        Op::Advance { secs: 40 },
    ];
    scripts.push(("reservation".to_owned(), script(0, 0, &reservation)));

    let mut streams = allocate(3, 2);
    streams.extend(allocate(4, 3));
    streams.extend([
        signed(
            3,
            2,
            M::CHANNEL_BIND,
            vec![Attr::Channel(0x4000), Attr::Peer(1)],
        ),
        peer(3, 1, b"to a stream"),
        Op::Close { client: 3 },
        peer(3, 1, b"closed"),
        Op::Close { client: 4 },
    ]);
    scripts.push(("streams".to_owned(), script(0x01, 1, &streams)));

    let mut quota = Vec::new();
    for (client, cred) in [(0, 0), (1, 2), (2, 3), (3, 4), (4, 2), (5, 2)] {
        quota.extend(allocate(client, cred));
    }
    scripts.push(("quota".to_owned(), script(0x60, 0, &quota)));

    // Each allocation holds two ports (EVEN-PORT with R): the pool runs out.
    let mut exhaust = Vec::new();
    for client in 0..6 {
        exhaust.push(ask(client, M::ALLOCATE, vec![udp()]));
        exhaust.push(signed(
            client,
            2,
            M::ALLOCATE,
            vec![udp(), Attr::EvenPort(0x80)],
        ));
    }
    exhaust.push(Op::Advance { secs: 31 });
    exhaust.push(signed(0, 2, M::REFRESH, vec![Attr::Lifetime(0)]));
    exhaust.push(signed(5, 2, M::ALLOCATE, vec![udp()]));
    scripts.push(("exhaust".to_owned(), script(0, 1, &exhaust)));

    let mut drain = allocate(0, 2);
    drain.extend([
        Op::Drain { alternate: true },
        ask(1, M::ALLOCATE, vec![udp()]),
        signed(1, 3, M::ALLOCATE, vec![udp()]),
        Op::Reload { set: 3 },
        signed(0, 2, M::REFRESH, vec![]),
        Op::Reload { set: 1 },
        signed(0, 2, M::REFRESH, vec![Attr::Lifetime(0)]),
    ]);
    scripts.push(("drain-reload".to_owned(), script(0, 0, &drain)));

    let mut refused = allocate(0, 2);
    for p in 4..22 {
        refused.push(signed(0, 2, M::CREATE_PERMISSION, vec![Attr::Peer(p)]));
        refused.push(peer(0, p, b"refused?"));
    }
    refused.extend([
        signed(
            0,
            2,
            M::CHANNEL_BIND,
            vec![Attr::Channel(0x4002), Attr::Peer(20)],
        ),
        signed(
            0,
            2,
            M::CHANNEL_BIND,
            vec![Attr::Channel(0x4003), Attr::Peer(21)],
        ),
        send(0, 21),
        send(0, 20),
        signed(
            0,
            2,
            M::CREATE_PERMISSION,
            vec![Attr::Address {
                v6: false,
                port: 1,
                ip: [127, 0, 0, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0],
            }],
        ),
    ]);
    scripts.push(("refused-peers".to_owned(), script(0, 0, &refused)));

    let mut v6 = allocate(2, 3);
    v6.extend([
        signed(
            2,
            3,
            M::CREATE_PERMISSION,
            vec![Attr::Peer(2), Attr::Peer(0)],
        ),
        signed(2, 3, M::CREATE_PERMISSION, vec![Attr::Peer(2)]),
        peer(2, 2, b"over IPv6"),
        send(2, 2),
    ]);
    scripts.push(("ipv6-relay".to_owned(), script(0x19, 0, &v6)));

    // Client 0 allocates with MESSAGE-INTEGRITY-SHA256 alone and retransmits; client 1 tries
    // a forged key, another user's key, no USERNAME, a corrupt FINGERPRINT, another
    // client's nonce and a username with no expiry.
    let forged = vec![
        ask(0, M::ALLOCATE, vec![udp()]),
        with(signed(0, 2, M::ALLOCATE, vec![udp()]), &|r| r.auth = 2),
        with(signed(0, 2, M::ALLOCATE, vec![udp()]), &|r| {
            r.auth = 2;
            r.same_tid = true
        }),
        signed(0, 2, M::ALLOCATE, vec![udp()]),
        ask(1, M::ALLOCATE, vec![udp()]),
        signed(1, 5, M::ALLOCATE, vec![udp()]),
        with(signed(1, 2, M::ALLOCATE, vec![udp()]), &|r| r.key = 5),
        with(signed(1, 2, M::ALLOCATE, vec![udp()]), &|r| r.auth = 1 | 4),
        with(signed(1, 2, M::ALLOCATE, vec![udp()]), &|r| {
            r.auth = 1 | 0x40
        }),
        with(signed(1, 2, M::ALLOCATE, vec![udp()]), &|r| r.nonce = 2),
        signed(1, 7, M::ALLOCATE, vec![udp()]),
        signed(1, 7, M::REFRESH, vec![]),
    ];
    scripts.push(("forged".to_owned(), script(0, 0, &forged)));

    let mut wall = vec![Op::Wall { delta: -600 }];
    wall.extend(allocate(0, 0));
    wall.push(Op::Wall { delta: 32_000 });
    wall.extend(twice(signed(0, 0, M::REFRESH, vec![])));
    scripts.push(("wall-clock".to_owned(), script(0, 0, &wall)));

    let mut rfc5766 = allocate(1, 2);
    rfc5766.extend([
        signed(
            1,
            2,
            M::CHANNEL_BIND,
            vec![Attr::Channel(0x7000), Attr::Peer(0)],
        ),
        cd(1, 0x7000, b"old channel"),
        peer(1, 0, b"back"),
    ]);
    scripts.push(("rfc5766".to_owned(), script(0x02, 0, &rfc5766)));

    // An operator lists and revokes: alice (REST, clients 0 and 2), carol (client 1) and
    // dave (client 3, who relays both ways) allocate; the listings page through them; alice is revoked by her REST
    // name and refused 600 s (403, then allowed after), carol by handle (then the stale
    // handle ends nothing), dave by client IP; last the victim's IP, which ends the victim.
    let list = |worker: u8, filter: u8, client: u8, limit: u8, cursor: u8| Op::Sessions {
        worker,
        filter,
        client,
        limit,
        cursor,
    };
    let revoke = |selector: u8, client: u8, for_secs: u16| Op::Revoke {
        selector,
        client,
        for_secs,
    };
    let mut operator = allocate(0, 0);
    operator.extend(allocate(1, 2));
    operator.extend(allocate(2, 0));
    operator.extend(allocate(3, 3));
    operator.extend([
        signed(
            3,
            3,
            M::CREATE_PERMISSION,
            vec![Attr::Peer(0), Attr::Peer(3)],
        ),
        signed(
            3,
            3,
            M::CHANNEL_BIND,
            vec![Attr::Channel(0x4001), Attr::Peer(1)],
        ),
        cd(3, 0x4001, b"hello"),
        peer(3, 0, b"world"),
        send(3, 0),
        list(0, 0, 0, 1, 0),
        list(1, 0, 0, 1, 0),
        list(0, 3, 0, 2, 0),
        list(0, 4, 0, 7, 0),
        list(1, 0, 1, 0, 0),
        list(0, 0, 0, 3, 1),
        revoke(1, 0, 600),
        list(0, 3, 0, 2, 2),
        signed(0, 0, M::ALLOCATE, vec![udp()]),
        revoke(2, 1, 0),
        revoke(2, 1, 0),
        revoke(3, 3, 300),
        signed(3, 3, M::ALLOCATE, vec![udp()]),
        Op::Advance { secs: 601 },
        signed(0, 0, M::ALLOCATE, vec![udp()]),
        signed(0, 0, M::ALLOCATE, vec![udp()]),
        list(0, 0, 0, 2, 0),
        revoke(0, 4, 0),
        revoke(3, 1, 30),
    ]);
    scripts.push(("operator".to_owned(), script(0, 0, &operator)));

    // What the recorded clients sent, each replayed as a raw datagram from client 0.
    for r in recorded.iter().filter(|r| r.name.contains("-c-")) {
        let raw = Op::Raw {
            client: 0,
            data: r.data.clone(),
        };
        let name = format!("raw-{}", r.name.trim_start_matches("rec-"));
        scripts.push((name, script(0, 0, &[raw])));
    }
    scripts
}
