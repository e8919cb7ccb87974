//! `GET /allocations` and `POST /allocations/revoke`: the live allocations as JSON, and
//! revocation.
//!
//! Auth: with `admin-token-file` set, both need `Authorization: Bearer <token>` (compared in
//! constant time; 401 with `WWW-Authenticate: Bearer` otherwise). Without it, the listing is
//! open and revocation does not exist (404). Every error is a JSON object `{"error": ...}`
//! naming the problem. The token is never logged.

// An error here is the HTTP response itself, built once per request on the admin port.
#![allow(clippy::result_large_err)]

use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use http_body_util::{BodyExt, Full, Limited};
use hyper::body::{Bytes, Incoming};
use hyper::header::{HeaderValue, ALLOW, AUTHORIZATION, CONTENT_TYPE, WWW_AUTHENTICATE};
use hyper::{Method, Request, Response, StatusCode};
use serde_json::{json, Value};
use tracing::info;

use super::AdminState;
use crate::sessions::{RevokeSelector, SessionId, SessionsPage};

/// The default page size of `GET /allocations`.
pub const DEFAULT_LIMIT: usize = 100;
/// The largest page.
pub const MAX_LIMIT: usize = 1000;
/// The largest request body of `POST /allocations/revoke`.
pub const MAX_BODY: usize = 4096;
/// How long a client gets to send the body.
const BODY_TIMEOUT: Duration = Duration::from_secs(5);

/// Whether `path` is one of this module's.
pub(super) fn handles(path: &str) -> bool {
    path == "/allocations" || path == "/allocations/revoke"
}

/// Answers a request to one of this module's paths.
pub(super) async fn respond(
    state: Arc<AdminState>,
    req: Request<Incoming>,
) -> Response<Full<Bytes>> {
    let path = req.uri().path().to_owned();
    let query = req.uri().query().unwrap_or("").to_owned();
    let token = state.admin_token();
    let revoke = path == "/allocations/revoke";
    if revoke && token.is_none() {
        return error(
            StatusCode::NOT_FOUND,
            "revocation is off: set admin-token-file to enable POST /allocations/revoke",
        );
    }
    let (want, allow) = if revoke {
        (Method::POST, "POST")
    } else {
        (Method::GET, "GET")
    };
    if req.method() != want {
        let mut r = error(
            StatusCode::METHOD_NOT_ALLOWED,
            &format!("{path} takes {allow} only"),
        );
        r.headers_mut()
            .insert(ALLOW, HeaderValue::from_static(allow));
        return r;
    }
    if let Some(token) = token {
        let given = req
            .headers()
            .get(AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "));
        let ok = given.is_some_and(|g| constant_time_eq(g.trim().as_bytes(), &token));
        if !ok {
            let why = if given.is_some() {
                "the bearer token is wrong"
            } else {
                "missing Authorization: Bearer <token> (admin-token-file is set)"
            };
            let mut r = error(StatusCode::UNAUTHORIZED, why);
            r.headers_mut()
                .insert(WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            return r;
        }
    }
    let result = if revoke {
        let body = match read_body(req).await {
            Ok(b) => b,
            Err(r) => return r,
        };
        let mut params = form(&query);
        params.extend(form(&body));
        revoke_request(state, &params).await
    } else {
        list_request(state, &form(&query)).await
    };
    result.unwrap_or_else(|r| r)
}

async fn read_body(req: Request<Incoming>) -> Result<String, Response<Full<Bytes>>> {
    let collected = tokio::time::timeout(
        BODY_TIMEOUT,
        Limited::new(req.into_body(), MAX_BODY).collect(),
    );
    match collected.await {
        Err(_) => Err(error(
            StatusCode::REQUEST_TIMEOUT,
            "the request body took too long",
        )),
        Ok(Err(_)) => Err(error(
            StatusCode::PAYLOAD_TOO_LARGE,
            &format!("the request body is over {MAX_BODY} bytes or broken"),
        )),
        Ok(Ok(b)) => String::from_utf8(b.to_bytes().to_vec())
            .map_err(|_| error(StatusCode::BAD_REQUEST, "the request body is not UTF-8")),
    }
}

type Params = Vec<(String, String)>;

fn param<'a>(params: &'a Params, key: &str) -> Option<&'a str> {
    params
        .iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.as_str())
        .filter(|v| !v.is_empty())
}

fn bad(why: impl Into<String>) -> Response<Full<Bytes>> {
    error(StatusCode::BAD_REQUEST, &why.into())
}

fn parse_ip(v: &str) -> Result<IpAddr, Response<Full<Bytes>>> {
    v.parse()
        .map_err(|_| bad(format!("client_ip is not an IP address: {v:?}")))
}

/// The admin side's runtime must not block: the workers are asked on a blocking thread.
async fn list_request(
    state: Arc<AdminState>,
    params: &Params,
) -> Result<Response<Full<Bytes>>, Response<Full<Bytes>>> {
    for (k, _) in params {
        if !["user", "client_ip", "limit", "cursor"].contains(&k.as_str()) {
            return Err(bad(format!(
                "unknown parameter {k:?}: GET /allocations takes user, client_ip, limit, cursor"
            )));
        }
    }
    let user = param(params, "user").map(str::to_owned);
    let client_ip = param(params, "client_ip").map(parse_ip).transpose()?;
    let limit = match param(params, "limit") {
        None => DEFAULT_LIMIT,
        Some(v) => match v.parse::<usize>() {
            Ok(n) if (1..=MAX_LIMIT).contains(&n) => n,
            _ => return Err(bad(format!("limit must be 1 to {MAX_LIMIT}: {v:?}"))),
        },
    };
    let cursor = match param(params, "cursor") {
        None => None,
        Some(v) => match v.parse::<SessionId>() {
            Ok(id) if id.allocation().is_some() => Some(id),
            _ => return Err(bad(format!("cursor is not an allocation id: {v:?}"))),
        },
    };
    let workers = state.workers().clone();
    let page =
        tokio::task::spawn_blocking(move || workers.sessions(user, client_ip, cursor, limit))
            .await
            .map_err(|_| error(StatusCode::INTERNAL_SERVER_ERROR, "the listing failed"))?
            .map_err(|e| error(StatusCode::SERVICE_UNAVAILABLE, &e.to_string()))?;
    Ok(json_response(
        StatusCode::OK,
        &page_json(&page, Clock::now()),
    ))
}

async fn revoke_request(
    state: Arc<AdminState>,
    params: &Params,
) -> Result<Response<Full<Bytes>>, Response<Full<Bytes>>> {
    for (k, _) in params {
        if !["user", "id", "client_ip", "for"].contains(&k.as_str()) {
            return Err(bad(format!(
                "unknown parameter {k:?}: POST /allocations/revoke takes user, id or client_ip, and for"
            )));
        }
    }
    let mut selectors = Vec::new();
    if let Some(u) = param(params, "user") {
        selectors.push(RevokeSelector::User(u.to_owned()));
    }
    if let Some(v) = param(params, "id") {
        let id = v.parse::<SessionId>().map_err(bad)?;
        selectors.push(RevokeSelector::Id(id));
    }
    if let Some(v) = param(params, "client_ip") {
        selectors.push(RevokeSelector::ClientIp(parse_ip(v)?));
    }
    let [selector] = <[RevokeSelector; 1]>::try_from(selectors)
        .map_err(|_| bad("give exactly one of user=, id= or client_ip="))?;
    let refuse_for = param(params, "for")
        .map(|v| parse_duration(v).map_err(|e| bad(format!("for: {e}"))))
        .transpose()?;
    let workers = state.workers().clone();
    let sel = selector.clone();
    let revoked = tokio::task::spawn_blocking(move || workers.revoke(sel, refuse_for))
        .await
        .map_err(|_| error(StatusCode::INTERNAL_SERVER_ERROR, "the revocation failed"))?
        .map_err(|e| error(StatusCode::SERVICE_UNAVAILABLE, &e.to_string()))?;
    state.count_revocation();
    let clock = Clock::now();
    let refused_until = revoked.refused_until.map(|t| clock.unix(t));
    info!(
        selector = %selector,
        count = revoked.ended.len(),
        refused_for_s = refuse_for.map(|d| d.as_secs()),
        refused = ?revoked.refused,
        "allocations revoked"
    );
    let ids: Vec<String> = revoked.ended.iter().map(|(id, _)| id.to_string()).collect();
    Ok(json_response(
        StatusCode::OK,
        &json!({
            "revoked": ids,
            "count": ids.len(),
            "refused_until": refused_until,
        }),
    ))
}

/// One `(Instant, SystemTime)` pair, to turn the core's instants into Unix seconds.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Clock {
    instant: Instant,
    unix: f64,
}

impl Clock {
    pub(crate) fn now() -> Self {
        let unix = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0.0, |d| d.as_secs_f64());
        Self {
            instant: Instant::now(),
            unix,
        }
    }

    /// `t` in whole Unix seconds.
    pub(crate) fn unix(&self, t: Instant) -> i64 {
        let offset = if t >= self.instant {
            t.duration_since(self.instant).as_secs_f64()
        } else {
            -self.instant.duration_since(t).as_secs_f64()
        };
        (self.unix + offset).floor() as i64
    }
}

/// The listing's JSON.
pub(crate) fn page_json(page: &SessionsPage, clock: Clock) -> Value {
    let allocations: Vec<Value> = page
        .sessions
        .iter()
        .map(|(id, s)| {
            let mut relayed = vec![s.relayed.to_string()];
            relayed.extend(s.additional.map(|a| a.to_string()));
            let family = if s.five_tuple.client.is_ipv4()
                || s.five_tuple.client.ip().to_canonical().is_ipv4()
            {
                "ipv4"
            } else {
                "ipv6"
            };
            let t = s.traffic;
            json!({
                "id": id.to_string(),
                "username": s.username,
                "name": s.rest_name(),
                "client": s.five_tuple.client.to_string(),
                "transport": s.five_tuple.transport.label().label(),
                "family": family,
                "relayed": relayed,
                "created_at": clock.unix(s.created),
                "expires_at": clock.unix(s.expires),
                "last_activity_at": clock.unix(s.last_activity),
                "permissions": s.permissions,
                "channels": s.channels,
                "packets_to_peers": t.packets_to_peers,
                "bytes_to_peers": t.bytes_to_peers,
                "packets_to_client": t.packets_to_client,
                "bytes_to_client": t.bytes_to_client,
            })
        })
        .collect();
    json!({
        "allocations": allocations,
        "next_cursor": page.next.map(|id| id.to_string()),
    })
}

fn json_response(status: StatusCode, v: &Value) -> Response<Full<Bytes>> {
    let mut body = v.to_string();
    body.push('\n');
    let mut r = Response::new(Full::new(Bytes::from(body)));
    *r.status_mut() = status;
    r.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    r
}

/// A JSON error body `{"error": why}`.
pub(crate) fn error(status: StatusCode, why: &str) -> Response<Full<Bytes>> {
    json_response(status, &json!({ "error": why }))
}

/// Compares without an early exit on the first differing byte.
pub(crate) fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    let mut diff = a.len() ^ b.len();
    for i in 0..a.len().max(b.len()) {
        let x = a.get(i).copied().unwrap_or(0);
        let y = b.get(i).copied().unwrap_or(0);
        diff |= usize::from(x ^ y);
    }
    diff == 0
}

/// `application/x-www-form-urlencoded` pairs (also a query string).
pub(crate) fn form(s: &str) -> Params {
    s.split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (percent_decode(k), percent_decode(v))
        })
        .collect()
}

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let hex = |c: u8| (c as char).to_digit(16).map(|d| d as u8);
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < b.len() => match (hex(b[i + 1]), hex(b[i + 2])) {
                (Some(h), Some(l)) => {
                    out.push(h << 4 | l);
                    i += 2;
                }
                _ => out.push(b'%'),
            },
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// `90`, `90s`, `10m`, `1h`, `2d`: a duration, at most 30 days.
pub fn parse_duration(v: &str) -> Result<Duration, String> {
    let v = v.trim();
    let (digits, unit) = v.split_at(v.find(|c: char| !c.is_ascii_digit()).unwrap_or(v.len()));
    let n: u64 = digits
        .parse()
        .map_err(|_| format!("not a duration (like 90s, 10m, 1h, 2d): {v:?}"))?;
    let secs = match unit {
        "" | "s" => n,
        "m" => n.saturating_mul(60),
        "h" => n.saturating_mul(3600),
        "d" => n.saturating_mul(86_400),
        _ => return Err(format!("not a duration (like 90s, 10m, 1h, 2d): {v:?}")),
    };
    if secs > 30 * 86_400 {
        return Err(format!("at most 30 days: {v:?}"));
    }
    Ok(Duration::from_secs(secs))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forms_durations_and_comparison() {
        assert_eq!(
            form("user=1700000000%3Aal+ice&for=1h&x"),
            vec![
                ("user".into(), "1700000000:al ice".into()),
                ("for".into(), "1h".into()),
                ("x".into(), String::new())
            ]
        );
        assert_eq!(form("a=%zz%4"), vec![("a".into(), "%zz%4".into())]);
        assert_eq!(parse_duration("90s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("10m"), Ok(Duration::from_secs(600)));
        assert_eq!(parse_duration("2"), Ok(Duration::from_secs(2)));
        assert!(parse_duration("1y").is_err());
        assert!(parse_duration("h").is_err());
        assert!(parse_duration("31d").is_err());
        assert!(constant_time_eq(b"secret", b"secret"));
        assert!(!constant_time_eq(b"secret", b"secreT"));
        assert!(!constant_time_eq(b"secret", b"secret2"));
        assert!(!constant_time_eq(b"", b"x"));
    }

    #[test]
    fn clock_converts_instants() {
        let c = Clock::now();
        let base = c.unix(c.instant);
        assert_eq!(c.unix(c.instant + Duration::from_secs(90)), base + 90);
    }
}
