//! In-memory handshakes: a rustls client and tern's server side pumped through byte
//! buffers, no sockets.

use std::io::{Read, Write};
use std::sync::Arc;

use rustls::{ClientConfig, ClientConnection, ConnectionCommon, ServerConnection};
use tern_server::tls::{Accepting, Generation};

use crate::pki::server_name;

/// Everything `from` has to send.
fn drain<T>(from: &mut ConnectionCommon<T>) -> Vec<u8> {
    let mut buf = Vec::new();
    while from.wants_write() {
        from.write_tls(&mut buf).unwrap();
    }
    buf
}

/// Feeds `bytes` to `to` and processes them.
fn feed<T>(bytes: &[u8], to: &mut ConnectionCommon<T>) -> Result<(), rustls::Error> {
    let mut rd = bytes;
    while !rd.is_empty() {
        to.read_tls(&mut rd).unwrap();
        to.process_new_packets()?;
    }
    Ok(())
}

/// Why a handshake failed, from each side.
#[derive(Debug)]
pub struct Failed {
    pub server: Option<rustls::Error>,
    pub client: Option<rustls::Error>,
}

/// Moves bytes both ways until neither side has anything to send: the handshake and, for
/// TLS 1.3, the session tickets that follow it.
pub fn pump(client: &mut ClientConnection, server: &mut ServerConnection) -> Result<(), Failed> {
    loop {
        let to_server = drain(client);
        feed(&to_server, server).map_err(|e| {
            let alert = drain(server);
            Failed {
                client: feed(&alert, client).err(),
                server: Some(e),
            }
        })?;
        let to_client = drain(server);
        feed(&to_client, client).map_err(|e| Failed {
            server: None,
            client: Some(e),
        })?;
        if to_server.is_empty() && to_client.is_empty() {
            return Ok(());
        }
    }
}

/// A client connecting to `name` (an IP address sends no SNI) and a server accepting it
/// the way a worker does, with [`Accepting`] on `generation`.
pub fn connect(
    generation: Arc<Generation>,
    client: &Arc<ClientConfig>,
    name: &str,
) -> Result<(ClientConnection, ServerConnection), Failed> {
    let accepting = Accepting::new(generation);
    connect_accepting(accepting, client, name)
}

/// [`connect`] with an [`Accepting`] made earlier (a connection begun before a reload).
pub fn connect_accepting(
    mut accepting: Accepting,
    client: &Arc<ClientConfig>,
    name: &str,
) -> Result<(ClientConnection, ServerConnection), Failed> {
    let mut c = ClientConnection::new(client.clone(), server_name(name)).unwrap();
    let hello = drain(&mut c);
    let mut rd = &hello[..];
    let mut server = None;
    while server.is_none() {
        assert!(
            !rd.is_empty(),
            "the ClientHello ended before it was accepted"
        );
        accepting.read_tls(&mut rd).unwrap();
        match accepting.accept() {
            Ok(s) => server = s,
            Err(mut refused) => {
                let mut alert = Vec::new();
                refused.alert.write_all(&mut alert).unwrap();
                return Err(Failed {
                    client: feed(&alert, &mut c).err(),
                    server: Some(refused.error),
                });
            }
        }
    }
    let mut s = server.unwrap();
    feed(rd, &mut s).map_err(|e| Failed {
        server: Some(e),
        client: None,
    })?;
    pump(&mut c, &mut s)?;
    Ok((c, s))
}

/// A client and a plain `ServerConnection` on `config` (no [`Accepting`]).
pub fn connect_plain(
    config: Arc<rustls::ServerConfig>,
    client: &Arc<ClientConfig>,
    name: &str,
) -> Result<(ClientConnection, ServerConnection), Failed> {
    let mut c = ClientConnection::new(client.clone(), server_name(name)).unwrap();
    let mut s = ServerConnection::new(config).unwrap();
    pump(&mut c, &mut s)?;
    Ok((c, s))
}

/// Sends `data` from the client to the server and back, over an established connection.
pub fn echo(client: &mut ClientConnection, server: &mut ServerConnection, data: &[u8]) {
    client.writer().write_all(data).unwrap();
    pump(client, server).unwrap();
    let mut got = vec![0; data.len()];
    server.reader().read_exact(&mut got).unwrap();
    assert_eq!(got, data);
    server.writer().write_all(data).unwrap();
    pump(client, server).unwrap();
    client.reader().read_exact(&mut got).unwrap();
    assert_eq!(got, data);
}

/// The leaf the server presented.
pub fn peer_leaf(client: &ClientConnection) -> Vec<u8> {
    client.peer_certificates().unwrap()[0].to_vec()
}
