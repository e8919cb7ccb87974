//! The Prometheus exposition of what the workers publish.
//!
//! A fresh [`Registry`] is built for every scrape from [`Totals`] (counters each worker keeps
//! in plain integers, summed here; no packet ever touches a lock or a shared cache line for
//! them). Every label takes its values from the `ALL` list of a label enum (`tern_proto`'s,
//! and [`IoErrorKind`]), so the number of series is fixed by construction: there is no per-user, per-address or
//! per-port label anywhere.

use prometheus_client::encoding::{prometheus_text, text, EncodeMetric, MetricEncoder, NoLabelSet};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Registry;
use tern_proto::counters::{AuthFailureReason, RequestMethod};
use tern_proto::{
    DropReason, EndReason, Family, LockoutTrigger, PathCount, PerFamily, PerTransport,
    PerTransportFamily, RequestResult, TransportLabel,
};

use crate::control::{IoErrorKind, StreamClose, TlsFailure, Totals};

/// `Content-Type` of the Prometheus text format (version 0.0.4), served by default.
pub const PROMETHEUS_CONTENT_TYPE: &str = prometheus_text::CONTENT_TYPE;
/// `Content-Type` of the OpenMetrics text format, served when the scraper asks for it.
pub const OPENMETRICS_CONTENT_TYPE: &str =
    "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// What the process knows beyond the workers' totals.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ProcessState {
    /// Whether a graceful drain has begun.
    pub draining: bool,
    /// Live reloads that applied.
    pub reloads_ok: u64,
    /// Live reloads refused (invalid file); the old settings stayed.
    pub reloads_failed: u64,
    /// Worker threads.
    pub workers: usize,
    /// Workers that have not published for longer than the health limit.
    pub workers_stalled: usize,
    /// The earliest notAfter of the TLS certificates in force, Unix seconds; `None` without
    /// TLS (the gauge is then left out).
    pub tls_certificate_expiry: Option<i64>,
    /// `POST /allocations/revoke` calls carried out.
    pub revocations: u64,
}

type Labels = Vec<(&'static str, String)>;

/// Counter series of one metric with their labels, encoded in the order given (a `Family`
/// would encode them in hash order).
#[derive(Debug)]
struct CounterSeries(Vec<(Labels, u64)>);

impl EncodeMetric for CounterSeries {
    fn encode(&self, mut encoder: MetricEncoder) -> Result<(), std::fmt::Error> {
        for (labels, value) in &self.0 {
            encoder
                .encode_family(labels)?
                .encode_counter::<NoLabelSet, _, u64>(value, None)?;
        }
        Ok(())
    }

    fn metric_type(&self) -> MetricType {
        MetricType::Counter
    }
}

fn labels(pairs: &[(&'static str, &str)]) -> Labels {
    pairs.iter().map(|(k, v)| (*k, (*v).to_owned())).collect()
}

fn gauge(registry: &mut Registry, name: &str, help: &str, value: usize) {
    let value = i64::try_from(value).unwrap_or(i64::MAX);
    registry.register(name, help, ConstGauge::new(value));
}

fn counter(registry: &mut Registry, name: &str, help: &str, value: u64) {
    registry.register(name, help, ConstCounter::new(value));
}

fn counter_family(
    registry: &mut Registry,
    name: &str,
    help: &str,
    values: impl IntoIterator<Item = (Labels, u64)>,
) {
    registry.register(name, help, CounterSeries(values.into_iter().collect()));
}

/// The four relay paths: (path, direction, counts by transport and family).
fn paths(t: &Totals) -> [(&'static str, &'static str, PerTransportFamily<PathCount>); 4] {
    let c = &t.counters;
    [
        ("channel_data", "to_peer", c.channel_to_peer),
        ("channel_data", "to_client", c.channel_to_client),
        ("indication", "to_peer", c.send_to_peer),
        ("indication", "to_client", c.data_to_client),
    ]
}

/// `values` (one per transport) as series labelled `labels` and `transport`.
fn per_transport<T: Copy>(
    labels: &[(&'static str, &str)],
    values: PerTransport<T>,
) -> impl Iterator<Item = (Labels, T)> {
    let labels = self::labels(labels);
    TransportLabel::ALL
        .into_iter()
        .zip(values)
        .map(move |(transport, v)| {
            let mut l = labels.clone();
            l.push(("transport", transport.label().to_owned()));
            (l, v)
        })
}

/// `values` (one per transport and family) as series labelled `labels`, `transport` and
/// `family`.
fn per_transport_family<T: Copy>(
    labels: &[(&'static str, &str)],
    values: PerTransportFamily<T>,
) -> impl Iterator<Item = (Labels, T)> {
    let labels = self::labels(labels);
    TransportLabel::ALL
        .into_iter()
        .zip(values)
        .flat_map(move |(transport, by_family)| {
            let labels = labels.clone();
            Family::ALL
                .into_iter()
                .zip(by_family)
                .map(move |(family, v)| {
                    let mut l = labels.clone();
                    l.push(("transport", transport.label().to_owned()));
                    l.push(("family", family.label().to_owned()));
                    (l, v)
                })
        })
}

/// `values` (one per family) as series labelled `family`.
fn per_family<T: Copy>(values: PerFamily<T>) -> impl Iterator<Item = (Labels, T)> {
    Family::ALL
        .into_iter()
        .zip(values)
        .map(|(family, v)| (labels(&[("family", family.label())]), v))
}

/// Gauge series of one metric with their labels, in the order given.
#[derive(Debug)]
struct GaugeSeries(Vec<(Labels, i64)>);

impl EncodeMetric for GaugeSeries {
    fn encode(&self, mut encoder: MetricEncoder) -> Result<(), std::fmt::Error> {
        for (labels, value) in &self.0 {
            encoder.encode_family(labels)?.encode_gauge(value)?;
        }
        Ok(())
    }

    fn metric_type(&self) -> MetricType {
        MetricType::Gauge
    }
}

/// Builds the registry for one scrape.
pub fn registry(t: &Totals, p: &ProcessState) -> Registry {
    let mut r = Registry::with_prefix("tern");
    let c = &t.counters;
    // Live relayed addresses by transport and family: created less ended, from the same
    // snapshot as the counters (over single-family allocations, their sum is the workers'
    // own count, `Totals::allocations`; a dual allocation counts in both families).
    let live = TransportLabel::ALL
        .map(|l| Family::ALL.map(|f| i64::try_from(c.live(l, f)).unwrap_or(i64::MAX)));
    r.register(
        "allocations",
        "Live allocations, by client transport (udp, tcp, tls) and relayed address family (ipv4, ipv6; a dual allocation counts in both)",
        GaugeSeries(per_transport_family(&[], live).collect()),
    );
    gauge(
        &mut r,
        "permissions",
        "Live permissions over all allocations",
        t.permissions,
    );
    gauge(
        &mut r,
        "channels",
        "Live channel bindings over all allocations",
        t.channels,
    );
    let gauge_i64 = |n: usize| i64::try_from(n).unwrap_or(i64::MAX);
    r.register(
        "relay_ports_in_use",
        "Relay ports held by an allocation or a reservation, by family (each family has its own pool)",
        GaugeSeries(
            per_family(t.ports_by_family.map(|(free, size)| gauge_i64(size.saturating_sub(free))))
                .collect(),
        ),
    );
    r.register(
        "relay_ports_free",
        "Relay ports free for new allocations, by family",
        GaugeSeries(per_family(t.ports_by_family.map(|(free, _)| gauge_i64(free))).collect()),
    );
    counter_family(
        &mut r,
        "allocations_created",
        "Allocations created, by client transport and relayed address family (a dual allocation counts in both)",
        per_transport_family(&[], c.allocations_created),
    );
    let ended = EndReason::ALL.into_iter().flat_map(|reason| {
        let i = reason.index();
        let unrelayed = c.allocations_ended_unrelayed.map(|t| t.map(|f| f[i]));
        let all = c.allocations_ended.map(|t| t.map(|f| f[i]));
        let mut relayed = all;
        for (t, u) in relayed.iter_mut().zip(unrelayed) {
            for (f, u) in t.iter_mut().zip(u) {
                *f = f.saturating_sub(u);
            }
        }
        per_transport_family(&[("reason", reason.label()), ("relayed", "true")], relayed).chain(
            per_transport_family(
                &[("reason", reason.label()), ("relayed", "false")],
                unrelayed,
            ),
        )
    });
    counter_family(
        &mut r,
        "allocations_ended",
        "Allocations ended, by reason (expired, deleted by the client, shutdown, connection_closed), whether any application data was relayed (relayed=\"false\": failed ICE or an unused allocation), client transport and relayed address family (each family of a dual allocation ends apart)",
        ended,
    );
    let requests = RequestMethod::ALL.into_iter().flat_map(|method| {
        RequestResult::ALL.into_iter().flat_map(move |result| {
            let by_transport = c.requests.map(|t| t[method.index()][result.index()]);
            let l = [("method", method.label()), ("result", result.label())];
            per_transport(&l, by_transport)
        })
    });
    counter_family(
        &mut r,
        "requests",
        "STUN/TURN requests answered, by method, result (success or the error code) and client transport",
        requests,
    );
    let i508 = RequestResult::InsufficientCapacity.index();
    counter(
        &mut r,
        "insufficient_capacity_responses",
        "508 Insufficient Capacity responses (relay ports exhausted, or draining)",
        c.requests.as_flattened().iter().map(|row| row[i508]).sum(),
    );
    counter_family(
        &mut r,
        "auth_failures",
        "Authentication failures, by reason",
        AuthFailureReason::ALL
            .into_iter()
            .zip(c.auth_failures)
            .map(|(reason, n)| (labels(&[("reason", reason.label())]), n)),
    );
    counter_family(
        &mut r,
        "auth_lockouts",
        "Sources locked out after failed integrity checks, by reason (too many from the source, or for the username it tried)",
        LockoutTrigger::ALL
            .into_iter()
            .zip(c.lockouts)
            .map(|(trigger, n)| (labels(&[("reason", trigger.label())]), n)),
    );
    let relayed = |count: fn(&PathCount) -> u64| {
        paths(t).into_iter().flat_map(move |(path, direction, n)| {
            let l = [("path", path), ("direction", direction)];
            per_transport_family(&l, n.map(|t| t.map(|n| count(&n))))
        })
    };
    counter_family(
        &mut r,
        "relayed_packets",
        "Application datagrams relayed, by path (channel_data, indication), direction, client transport and relayed address family",
        relayed(|n| n.packets),
    );
    counter_family(
        &mut r,
        "relayed_bytes",
        "Application payload bytes relayed (without TURN framing), by path, direction, client transport and relayed address family",
        relayed(|n| n.bytes),
    );
    counter_family(
        &mut r,
        "xdp_relayed_packets",
        "Of the ChannelData in relayed_packets, the datagrams the XDP fast path relayed in the kernel, by direction",
        ["to_peer", "to_client"]
            .into_iter()
            .zip(c.fast_path)
            .map(|(direction, n)| (labels(&[("direction", direction)]), n.packets)),
    );
    counter_family(
        &mut r,
        "dropped_packets",
        "Datagrams dropped without an answer, by reason",
        DropReason::ALL
            .into_iter()
            .zip(c.dropped)
            .map(|(reason, n)| (labels(&[("reason", reason.label())]), n)),
    );
    counter_family(
        &mut r,
        "io_errors",
        "Datagrams the workers could not send or receive, and ICMP errors peers answered with, by kind (send_to_peer, send_to_client, receive, send_buffer_full, icmp_port_unreachable, icmp_unreachable, icmp_other)",
        IoErrorKind::ALL
            .into_iter()
            .zip(t.io_errors)
            .map(|(kind, n)| (labels(&[("kind", kind.label())]), n)),
    );
    counter_family(
        &mut r,
        "stream_closes",
        "TCP connections the workers closed, by reason (a framing error, peer_closed, reset, idle, over_limit, tls, proxy_header, per_ip_limit)",
        StreamClose::ALL
            .into_iter()
            .zip(t.stream_closes)
            .map(|(reason, n)| (labels(&[("reason", reason.label())]), n)),
    );
    counter_family(
        &mut r,
        "tls_handshake_failures",
        "TLS handshakes that failed, by reason (timeout, protocol, bad_certificate, alert, other)",
        TlsFailure::ALL
            .into_iter()
            .zip(t.tls_failures)
            .map(|(reason, n)| (labels(&[("reason", reason.label())]), n)),
    );
    counter(
        &mut r,
        "usage_records_written",
        "Usage records appended to the usage-log file",
        t.usage.written,
    );
    counter_family(
        &mut r,
        "usage_records_dropped",
        "Usage records lost, by reason (queue_full: the writer fell behind; write_error: the usage-log file could not be written or reopened)",
        [
            (labels(&[("reason", "queue_full")]), t.usage.queue_full),
            (labels(&[("reason", "write_error")]), t.usage.write_errors),
        ],
    );
    gauge(
        &mut r,
        "connections",
        "Open TCP connections from clients",
        t.connections,
    );
    gauge(
        &mut r,
        "draining",
        "1 while a graceful drain refuses new allocations",
        usize::from(p.draining),
    );
    counter_family(
        &mut r,
        "config_reloads",
        "Live reloads of credentials and peer filter, by result",
        [
            (labels(&[("result", "success")]), p.reloads_ok),
            (labels(&[("result", "failure")]), p.reloads_failed),
        ],
    );
    counter(
        &mut r,
        "revocations",
        "Revocations carried out through the admin API (POST /allocations/revoke)",
        p.revocations,
    );
    gauge(&mut r, "workers", "Worker threads", p.workers);
    gauge(
        &mut r,
        "workers_stalled",
        "Workers that have not reported for over 2 s",
        p.workers_stalled,
    );
    if let Some(not_after) = p.tls_certificate_expiry {
        r.register(
            "tls_certificate_expiry_timestamp_seconds",
            "The earliest notAfter of the TLS certificates in force, Unix seconds",
            ConstGauge::new(not_after),
        );
    }
    r
}

/// The exposition text: Prometheus text format 0.0.4, or OpenMetrics with `openmetrics`.
pub fn encode(t: &Totals, p: &ProcessState, openmetrics: bool) -> String {
    let r = registry(t, p);
    let mut out = String::with_capacity(16 * 1024);
    let done = if openmetrics {
        text::encode(&mut out, &r)
    } else {
        prometheus_text::encode(&mut out, &r)
    };
    done.expect("writing to a String cannot fail");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(text: &str, series: &str) -> Option<u64> {
        text.lines()
            .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
    }

    #[test]
    fn names_labels_and_values() {
        let mut t = Totals {
            allocations: 3,
            pool_size: 10 + 8,
            free_ports: 6 + 8,
            ports_by_family: [(6, 10), (8, 8)],
            ..Default::default()
        };
        let [udp, tcp, tls] = TransportLabel::ALL.map(TransportLabel::index);
        let [v4, v6] = Family::ALL.map(Family::index);
        t.counters.allocations_created = [[3, 1], [1, 0], [2, 0]];
        t.counters.allocations_ended[tls][v4][EndReason::ConnectionClosed.index()] = 2;
        t.counters.allocations_ended_unrelayed[tls][v4][EndReason::ConnectionClosed.index()] = 1;
        t.usage.queue_full = 3;
        t.counters.channel_to_peer[udp][v4].packets = 5;
        t.counters.channel_to_peer[udp][v4].bytes = 500;
        t.counters.channel_to_peer[udp][v6].bytes = 9;
        t.counters.channel_to_peer[tls][v4].bytes = 70;
        let i508 = RequestResult::InsufficientCapacity.index();
        let allocate = RequestMethod::Allocate.index();
        t.counters.requests[udp][allocate][i508] = 2;
        t.counters.requests[tcp][RequestMethod::Refresh.index()][i508] = 1;
        t.counters.requests[udp][allocate][RequestResult::TryAlternate.index()] = 5;
        t.counters.auth_failures[AuthFailureReason::StaleNonce.index()] = 4;
        t.counters.lockouts[LockoutTrigger::Username.index()] = 7;
        t.counters.dropped[DropReason::UnauthorizedRateLimited.index()] = 8;
        t.io_errors[IoErrorKind::SendToPeer.index()] = 6;
        let p = ProcessState {
            draining: true,
            ..Default::default()
        };
        let text = encode(&t, &p, false);
        assert_eq!(
            ["udp", "tcp", "tls"].map(|t| sample(
                &text,
                &format!(r#"tern_allocations{{transport="{t}",family="ipv4"}}"#)
            )),
            [Some(3), Some(1), Some(0)]
        );
        assert_eq!(
            sample(&text, r#"tern_allocations{transport="udp",family="ipv6"}"#),
            Some(1)
        );
        assert_eq!(
            sample(
                &text,
                r#"tern_allocations_ended_total{reason="connection_closed",relayed="true",transport="tls",family="ipv4"}"#
            ),
            Some(1)
        );
        assert_eq!(
            sample(
                &text,
                r#"tern_allocations_ended_total{reason="connection_closed",relayed="false",transport="tls",family="ipv4"}"#
            ),
            Some(1)
        );
        assert_eq!(
            sample(
                &text,
                r#"tern_usage_records_dropped_total{reason="queue_full"}"#
            ),
            Some(3)
        );
        assert_eq!(
            sample(
                &text,
                r#"tern_relayed_bytes_total{path="channel_data",direction="to_peer",transport="tls",family="ipv4"}"#
            ),
            Some(70)
        );
        assert_eq!(
            sample(&text, r#"tern_relay_ports_in_use{family="ipv4"}"#),
            Some(4)
        );
        assert_eq!(
            sample(&text, r#"tern_relay_ports_free{family="ipv4"}"#),
            Some(6)
        );
        assert_eq!(
            sample(&text, r#"tern_relay_ports_in_use{family="ipv6"}"#),
            Some(0)
        );
        assert_eq!(
            sample(&text, r#"tern_relay_ports_free{family="ipv6"}"#),
            Some(8)
        );
        assert_eq!(
            sample(
                &text,
                r#"tern_relayed_bytes_total{path="channel_data",direction="to_peer",transport="udp",family="ipv4"}"#
            ),
            Some(500)
        );
        assert_eq!(
            sample(
                &text,
                r#"tern_relayed_bytes_total{path="channel_data",direction="to_peer",transport="udp",family="ipv6"}"#
            ),
            Some(9)
        );
        assert_eq!(
            sample(
                &text,
                r#"tern_requests_total{method="allocate",result="508",transport="udp"}"#
            ),
            Some(2)
        );
        assert_eq!(
            sample(
                &text,
                r#"tern_requests_total{method="allocate",result="300",transport="udp"}"#
            ),
            Some(5)
        );
        assert_eq!(
            sample(
                &text,
                r#"tern_requests_total{method="binding",result="success",transport="tls"}"#
            ),
            Some(0)
        );
        assert_eq!(
            sample(&text, r#"tern_io_errors_total{kind="send_to_peer"}"#),
            Some(6)
        );
        assert_eq!(
            sample(&text, "tern_insufficient_capacity_responses_total"),
            Some(3)
        );
        assert_eq!(
            sample(&text, r#"tern_auth_failures_total{reason="stale_nonce"}"#),
            Some(4)
        );
        assert_eq!(
            sample(&text, r#"tern_auth_lockouts_total{reason="username"}"#),
            Some(7)
        );
        assert_eq!(
            sample(
                &text,
                r#"tern_dropped_packets_total{reason="unauthorized_rate_limited"}"#
            ),
            Some(8)
        );
        assert_eq!(sample(&text, "tern_draining"), Some(1));
        assert!(
            text.contains("# TYPE tern_requests_total counter"),
            "{text}"
        );
        let om = encode(&t, &p, true);
        assert!(om.ends_with("# EOF\n"));
        assert!(!text.contains("tls_certificate_expiry"), "{text}");
    }

    #[test]
    fn tls_certificate_expiry() {
        let p = ProcessState {
            tls_certificate_expiry: Some(2_208_988_800),
            ..Default::default()
        };
        let text = encode(&Totals::default(), &p, false);
        assert_eq!(
            sample(&text, "tern_tls_certificate_expiry_timestamp_seconds"),
            Some(2_208_988_800)
        );
        assert!(
            text.contains("# TYPE tern_tls_certificate_expiry_timestamp_seconds gauge"),
            "{text}"
        );
    }

    #[test]
    fn series_count_is_fixed() {
        let text = encode(&Totals::default(), &ProcessState::default(), false);
        let series = text.lines().filter(|l| !l.starts_with('#')).count();
        // 3 transports x 2 families: 6 allocation gauges + 2 gauges (permissions, channels)
        // + 2x2 relay port gauges + 6 created + 6x5x2 end reasons (relayed or not) + 3x6x14
        // requests + 508s + 4 auth + 2 lockouts + 6x(4 + 4) paths + 11 drops + 7 I/O errors
        // + 2 XDP directions + 13 stream closes + 5 TLS handshake failures + 3 usage records +
        // revocations + connections + draining + 2 reloads + 2 worker gauges.
        assert_eq!(
            series,
            6 + 2 + 4 + 6 + 60 + 252 + 1 + 4 + 2 + 48 + 2 + 11 + 7 + 13 + 5 + 3 + 1 + 1 + 1 + 2 + 2
        );
        assert_eq!(series, 433, "the figure in README.md's Metrics section");
    }

    #[test]
    fn readme_documents_every_metric_and_the_series_count() {
        let readme = include_str!("../../../README.md");
        let text = encode(&Totals::default(), &ProcessState::default(), false);
        let series = text.lines().filter(|l| !l.starts_with('#')).count();
        let fixed = format!("the number of series is fixed ({series})");
        let flat = readme.split_whitespace().collect::<Vec<_>>().join(" ");
        assert!(flat.contains(&fixed), "README.md should say: {fixed}");
        for name in text.lines().filter_map(|l| l.strip_prefix("# TYPE ")) {
            let name = name.split(' ').next().unwrap_or_default();
            assert!(
                readme.contains(&format!("| `{name}` |")),
                "{name} is missing from README.md's metrics table"
            );
        }
    }
}
