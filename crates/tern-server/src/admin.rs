//! The admin HTTP port: `/metrics` (Prometheus), `/healthz` (alive, workers responsive) and
//! `/readyz` (sockets bound, not draining, and with `ready-min-free-ports`, enough relay
//! ports free).
//!
//! It runs on the async runtime of the binary's main thread, never on a worker: a scrape
//! sums what the workers published (about every 100 ms) and takes no lock a packet waits for.
//! Connections are few and bounded (at most [`MAX_CONNECTIONS`] at once, headers within 5 s,
//! each connection at most a minute), since the port may face a cluster network.

use std::convert::Infallible;
use std::io;
use std::net::{SocketAddr, TcpListener};
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use http_body_util::Full;
use hyper::body::Bytes;
use hyper::header::{HeaderValue, ACCEPT, ALLOW, CONTENT_TYPE};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use socket2::{Domain, Protocol, Socket, Type};
use tracing::{debug, info};

use crate::control::Workers;
use crate::metrics::{self, ProcessState};

mod sessions;
pub use sessions::parse_duration;

/// The admin token (`admin-token-file`); its `Debug` output leaves it out.
#[derive(Default)]
struct AdminToken(std::sync::RwLock<Option<Arc<[u8]>>>);

impl std::fmt::Debug for AdminToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let set = self.0.read().map(|t| t.is_some()).unwrap_or(false);
        write!(
            f,
            "AdminToken({})",
            if set { "<redacted>" } else { "unset" }
        )
    }
}

/// A worker that has not published for this long makes `/healthz` fail.
pub const HEALTH_LIMIT: Duration = Duration::from_secs(2);
/// Admin connections served at once; more wait in the listen backlog.
pub const MAX_CONNECTIONS: usize = 32;
/// How long a client gets to send its request headers.
const HEADER_TIMEOUT: Duration = Duration::from_secs(5);
/// The longest an admin connection (keep-alive included) stays open.
const CONNECTION_LIMIT: Duration = Duration::from_secs(60);

/// What the admin port reports on: the workers, and the process's own state (drain, reloads).
#[derive(Debug)]
pub struct AdminState {
    workers: Workers,
    draining: AtomicBool,
    reloads_ok: AtomicU64,
    reloads_failed: AtomicU64,
    /// notAfter for the expiry gauge; [`NO_TLS`] until TLS is set up.
    tls_expiry: AtomicI64,
    /// The bearer token of the sessions API, when `admin-token-file` is set.
    token: AdminToken,
    /// `POST /allocations/revoke` calls that were carried out.
    revocations: AtomicU64,
    /// `/readyz` fails while fewer relay ports are free (`ready-min-free-ports`; 0: off).
    min_free_ports: usize,
}

/// `tls_expiry` without TLS.
const NO_TLS: i64 = i64::MIN;

impl AdminState {
    /// State for a server whose sockets are bound (after [`crate::start`]).
    pub fn new(workers: Workers) -> Self {
        Self {
            workers,
            draining: AtomicBool::new(false),
            reloads_ok: AtomicU64::new(0),
            reloads_failed: AtomicU64::new(0),
            tls_expiry: AtomicI64::new(NO_TLS),
            token: AdminToken::default(),
            revocations: AtomicU64::new(0),
            min_free_ports: 0,
        }
    }

    /// Makes `/readyz` fail while fewer than `n` relay ports (both families together) are
    /// free (`ready-min-free-ports`); 0 turns the check off.
    pub fn with_min_free_ports(mut self, n: usize) -> Self {
        self.min_free_ports = n;
        self
    }

    /// Why the server lacks capacity for new allocations, if it does: fewer relay ports
    /// free than `ready-min-free-ports`. Read from the shared pool, exact at the time.
    pub fn capacity_shortfall(&self) -> Option<String> {
        if self.min_free_ports == 0 {
            return None;
        }
        let free = self.workers.free_ports();
        (free < self.min_free_ports).then(|| {
            format!(
                "capacity: {free} relay ports free, fewer than ready-min-free-ports={}; \
                 live allocations keep relaying\n",
                self.min_free_ports
            )
        })
    }

    /// Sets (or, with `None`, clears) the sessions API's bearer token: at start and after
    /// every reload that applied.
    pub fn set_admin_token(&self, token: Option<Vec<u8>>) {
        let mut t = self.token.0.write().unwrap_or_else(|e| e.into_inner());
        *t = token.map(Arc::from);
    }

    fn admin_token(&self) -> Option<Arc<[u8]>> {
        self.token
            .0
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    fn count_revocation(&self) {
        self.revocations.fetch_add(1, Ordering::Relaxed);
    }

    /// `POST /allocations/revoke` calls carried out so far.
    pub fn revocations(&self) -> u64 {
        self.revocations.load(Ordering::Relaxed)
    }

    /// The workers' handle.
    pub fn workers(&self) -> &Workers {
        &self.workers
    }

    /// Marks the graceful drain as begun: `/readyz` fails from now on.
    pub fn set_draining(&self) {
        self.draining.store(true, Ordering::Relaxed);
    }

    /// Whether a drain has begun.
    pub fn is_draining(&self) -> bool {
        self.draining.load(Ordering::Relaxed)
    }

    /// Counts a live reload that applied (`ok`) or was refused.
    pub fn record_reload(&self, ok: bool) {
        let c = if ok {
            &self.reloads_ok
        } else {
            &self.reloads_failed
        };
        c.fetch_add(1, Ordering::Relaxed);
    }

    /// Sets `tern_tls_certificate_expiry_timestamp_seconds`: the earliest notAfter of the
    /// TLS certificates in force (`tls::Generation::earliest_expiry`), at start and after
    /// every reload that applied.
    pub fn set_tls_certificate_expiry(&self, not_after: i64) {
        self.tls_expiry.store(not_after, Ordering::Relaxed);
    }

    /// Indices of workers that have not published within [`HEALTH_LIMIT`] (or never did).
    pub fn stalled_workers(&self, now: Instant) -> Vec<usize> {
        self.workers
            .heartbeats(now)
            .iter()
            .enumerate()
            .filter(|(_, age)| age.is_none_or(|a| a > HEALTH_LIMIT))
            .map(|(i, _)| i)
            .collect()
    }

    /// The process figures for the exposition.
    pub fn process_state(&self, now: Instant) -> ProcessState {
        ProcessState {
            draining: self.is_draining(),
            reloads_ok: self.reloads_ok.load(Ordering::Relaxed),
            reloads_failed: self.reloads_failed.load(Ordering::Relaxed),
            workers: self.workers.heartbeats(now).len(),
            workers_stalled: self.stalled_workers(now).len(),
            tls_certificate_expiry: Some(self.tls_expiry.load(Ordering::Relaxed))
                .filter(|&t| t != NO_TLS),
            revocations: self.revocations(),
        }
    }

    /// The answer to one request (no I/O: tests call it directly).
    pub fn respond(
        &self,
        method: &Method,
        path: &str,
        accept: Option<&str>,
    ) -> Response<Full<Bytes>> {
        if method != Method::GET && method != Method::HEAD {
            let mut r = plain(StatusCode::METHOD_NOT_ALLOWED, "only GET and HEAD\n".into());
            r.headers_mut()
                .insert(ALLOW, HeaderValue::from_static("GET, HEAD"));
            return r;
        }
        let now = Instant::now();
        let stalled = self.stalled_workers(now);
        let health = if stalled.is_empty() {
            Ok(())
        } else {
            Err(format!("workers not responding: {stalled:?}\n"))
        };
        match path {
            "/metrics" => {
                let openmetrics =
                    accept.is_some_and(|a| a.contains("application/openmetrics-text"));
                let text = metrics::encode(
                    &self.workers.totals(),
                    &self.process_state(now),
                    openmetrics,
                );
                let mut r = Response::new(Full::new(Bytes::from(text)));
                let ct = if openmetrics {
                    metrics::OPENMETRICS_CONTENT_TYPE
                } else {
                    metrics::PROMETHEUS_CONTENT_TYPE
                };
                r.headers_mut()
                    .insert(CONTENT_TYPE, HeaderValue::from_static(ct));
                r
            }
            "/healthz" | "/livez" => match health {
                Ok(()) => plain(StatusCode::OK, "ok\n".into()),
                Err(why) => plain(StatusCode::SERVICE_UNAVAILABLE, why),
            },
            "/readyz" => match health {
                Err(why) => plain(StatusCode::SERVICE_UNAVAILABLE, why),
                Ok(()) if self.is_draining() => plain(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "draining: new allocations are refused\n".into(),
                ),
                Ok(()) => match self.capacity_shortfall() {
                    Some(why) => plain(StatusCode::SERVICE_UNAVAILABLE, why),
                    None => plain(StatusCode::OK, "ready\n".into()),
                },
            },
            "/" => plain(
                StatusCode::OK,
                "tern admin: /metrics /healthz /readyz /allocations\n".into(),
            ),
            _ => plain(
                StatusCode::NOT_FOUND,
                "not found: try /metrics, /healthz or /readyz\n".into(),
            ),
        }
    }
}

fn plain(status: StatusCode, body: String) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from(body)));
    *r.status_mut() = status;
    r.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    r
}

/// Binds the admin port (TCP) now, so a busy or wrong address stops start-up with a clear
/// message rather than later.
pub fn bind(addr: SocketAddr) -> io::Result<TcpListener> {
    let sock = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    sock.set_reuse_address(true)?;
    sock.set_nonblocking(true)?;
    sock.bind(&addr.into()).map_err(|e| {
        io::Error::new(
            e.kind(),
            format!("cannot listen on tcp {addr} for the admin port (admin-listen): {e}"),
        )
    })?;
    sock.listen(128)?;
    Ok(sock.into())
}

/// Serves the admin port until the task is dropped. Call from within a tokio runtime.
pub async fn serve(listener: TcpListener, state: Arc<AdminState>) -> io::Result<()> {
    let listener = tokio::net::TcpListener::from_std(listener)?;
    info!(admin = %listener.local_addr()?, "admin port listening: /metrics /healthz /readyz");
    let permits = Arc::new(tokio::sync::Semaphore::new(MAX_CONNECTIONS));
    loop {
        let permit = permits
            .clone()
            .acquire_owned()
            .await
            .expect("the semaphore is never closed");
        let stream = match listener.accept().await {
            Ok((stream, _)) => stream,
            Err(e) => {
                // Out of file descriptors, typically: back off instead of spinning.
                debug!(error = %e, "admin accept");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let state = state.clone();
        tokio::spawn(async move {
            let _permit = permit;
            let service = service_fn(move |req: Request<hyper::body::Incoming>| {
                let state = state.clone();
                async move {
                    if sessions::handles(req.uri().path()) {
                        return Ok(sessions::respond(state, req).await);
                    }
                    let accept = req.headers().get(ACCEPT).and_then(|v| v.to_str().ok());
                    Ok::<_, Infallible>(state.respond(req.method(), req.uri().path(), accept))
                }
            });
            let conn = http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(HEADER_TIMEOUT)
                .serve_connection(TokioIo::new(stream), service);
            if let Ok(Err(e)) = tokio::time::timeout(CONNECTION_LIMIT, conn).await {
                debug!(error = %e, "admin connection");
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use tern_proto::SharedState;

    use super::*;
    use crate::control::Snapshot;

    fn state(published: Option<Instant>) -> AdminState {
        let snapshot = Snapshot {
            at: published,
            ..Default::default()
        };
        AdminState::new(Workers {
            snapshots: Arc::new(vec![Mutex::new(snapshot)]),
            commands: Vec::new(),
            wakers: Vec::new(),
            shared: SharedState::new([vec![50000, 50001], Vec::new()], 1),
            usage: Default::default(),
        })
    }

    fn get(s: &AdminState, path: &str) -> StatusCode {
        s.respond(&Method::GET, path, None).status()
    }

    #[test]
    fn health_and_readiness() {
        let s = state(Some(Instant::now()));
        assert_eq!(get(&s, "/healthz"), StatusCode::OK);
        assert_eq!(get(&s, "/readyz"), StatusCode::OK);
        assert_eq!(get(&s, "/metrics"), StatusCode::OK);
        s.set_draining();
        assert_eq!(get(&s, "/readyz"), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(get(&s, "/healthz"), StatusCode::OK);

        let silent = state(None);
        assert_eq!(get(&silent, "/healthz"), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(get(&silent, "/readyz"), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(silent.process_state(Instant::now()).workers_stalled, 1);
    }

    #[test]
    fn readiness_wants_free_ports() {
        let s = state(Some(Instant::now())).with_min_free_ports(2);
        assert_eq!(get(&s, "/readyz"), StatusCode::OK);
        let s = state(Some(Instant::now())).with_min_free_ports(3);
        let r = s.respond(&Method::GET, "/readyz", None);
        assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
        let why = s.capacity_shortfall().unwrap();
        assert!(why.starts_with("capacity: 2 relay ports free"), "{why}");
        assert_eq!(get(&s, "/healthz"), StatusCode::OK);
    }

    #[test]
    fn tls_expiry_only_once_set() {
        let s = state(Some(Instant::now()));
        assert_eq!(s.process_state(Instant::now()).tls_certificate_expiry, None);
        s.set_tls_certificate_expiry(1_900_000_000);
        assert_eq!(
            s.process_state(Instant::now()).tls_certificate_expiry,
            Some(1_900_000_000)
        );
    }

    #[test]
    fn methods_paths_and_content_types() {
        let s = state(Some(Instant::now()));
        assert_eq!(get(&s, "/nope"), StatusCode::NOT_FOUND);
        let post = s.respond(&Method::POST, "/metrics", None);
        assert_eq!(post.status(), StatusCode::METHOD_NOT_ALLOWED);
        let text = s.respond(&Method::GET, "/metrics", Some("text/plain"));
        assert_eq!(
            text.headers()[CONTENT_TYPE],
            metrics::PROMETHEUS_CONTENT_TYPE
        );
        let om = s.respond(
            &Method::GET,
            "/metrics",
            Some("application/openmetrics-text;version=1.0.0,text/plain;q=0.5"),
        );
        assert_eq!(
            om.headers()[CONTENT_TYPE],
            metrics::OPENMETRICS_CONTENT_TYPE
        );
    }
}
