//! Every metric sessiongate exports, in one place. Names follow the Prometheus conventions:
//! the `sessiongate_` prefix, `_total` on counters, `_seconds` and bytes as base units, and
//! labels whose values come from the configuration or a fixed set (never an id, a path or a
//! user).
//!
//! Hot-path updates are single atomic operations on children resolved once; gauges that
//! describe state (cache size, breaker, backend health) are read when `/metrics` is scraped.

use std::sync::LazyLock;

use prometheus::{
    Encoder, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts,
    Registry, TextEncoder,
};

/// Request and store latency buckets, in seconds: 100 µs to 10 s.
const LATENCY_BUCKETS: &[f64] = &[
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
    5.0, 10.0,
];

/// Results of a session lookup, as `sessiongate_session_lookups_total{result}` labels them.
pub mod lookup {
    pub const CACHE_HIT: &str = "cache_hit";
    pub const STORE_HIT: &str = "store_hit";
    pub const NOT_FOUND: &str = "not_found";
    pub const EXPIRED: &str = "expired";
    pub const INVALID: &str = "invalid";
    pub const ERROR: &str = "error";
    pub const STALE: &str = "stale";
    /// Every result, in the order `Metrics` keeps their counters.
    pub const ALL: [&str; 7] = [
        CACHE_HIT, STORE_HIT, NOT_FOUND, EXPIRED, INVALID, ERROR, STALE,
    ];
}

/// Why client connections were closed before a request was read, as
/// `sessiongate_connections_refused_total{reason}` labels them.
pub const CONNECTION_REFUSALS: [&str; 5] = [
    "header_too_large",
    "header_timeout",
    "idle_timeout",
    "too_many_connections",
    "too_many_from_client",
];

/// Why sessions ended, as `sessiongate_sessions_destroyed_total{reason}` labels them.
pub mod destroyed {
    pub const LOGOUT: &str = "logout";
    pub const LOGOUT_ALL: &str = "logout_all";
    pub const ROTATED: &str = "rotated";
    pub const ADMIN: &str = "admin";
    pub const BACKCHANNEL: &str = "backchannel_logout";
    pub const REFRESH_FAILED: &str = "refresh_failed";
}

/// What the cache reports at a scrape: sizes now, counters since start.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CacheFigures {
    pub entries: usize,
    pub bytes: usize,
    pub evictions: u64,
    pub invalidations: u64,
    pub coalesced: u64,
    pub negative_hits: u64,
}

pub struct Metrics {
    registry: Registry,
    /// `lookups` children, resolved once, in the order of `lookup::ALL`.
    lookup_children: Vec<IntCounter>,
    pub requests: IntCounterVec,
    pub request_duration: HistogramVec,
    pub lookups: IntCounterVec,
    pub sessions_created: IntCounter,
    pub sessions_destroyed: IntCounterVec,
    pub sessions_renewed: IntCounter,
    pub sessions_rotated: IntCounter,
    pub sessions_active: IntGauge,
    pub store_duration: HistogramVec,
    pub store_errors: IntCounterVec,
    pub circuit_state: IntGaugeVec,
    pub cache_entries: IntGauge,
    pub cache_bytes: IntGauge,
    pub cache_evictions: IntCounter,
    pub cache_invalidations: IntCounter,
    pub cache_coalesced: IntCounter,
    pub cache_negative_hits: IntCounter,
    pub backend_healthy: IntGaugeVec,
    pub config_reloads: IntCounterVec,
    pub spoofed_headers: IntCounter,
    pub control_rejected: IntCounter,
    pub connections_refused: IntCounterVec,
    pub connections_open: IntGauge,
    pub certificate_expiry: IntGaugeVec,
    pub tunnels_closed: IntCounter,
    pub sign_ins: IntCounterVec,
    pub provider_refreshes: IntCounter,
    pub backchannel_logouts: IntCounterVec,
}

/// Records the expiry of the certificates now served (and forgets those no longer served).
pub fn certificates_loaded(certificates: &crate::tls::Certificates) {
    let gauge = &metrics().certificate_expiry;
    gauge.reset();
    for c in certificates.iter() {
        let at = c
            .not_after
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs() as i64);
        gauge
            .with_label_values(&[c.names.first().map_or("", String::as_str)])
            .set(at);
    }
}

/// The process's metrics.
pub fn metrics() -> &'static Metrics {
    static METRICS: LazyLock<Metrics> = LazyLock::new(Metrics::new);
    &METRICS
}

fn counter(registry: &Registry, name: &str, help: &str) -> IntCounter {
    let c = IntCounter::new(name, help).expect("a valid metric");
    registry
        .register(Box::new(c.clone()))
        .expect("registered once");
    c
}

fn counter_vec(registry: &Registry, name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
    let c = IntCounterVec::new(Opts::new(name, help), labels).expect("a valid metric");
    registry
        .register(Box::new(c.clone()))
        .expect("registered once");
    c
}

fn gauge(registry: &Registry, name: &str, help: &str) -> IntGauge {
    let g = IntGauge::new(name, help).expect("a valid metric");
    registry
        .register(Box::new(g.clone()))
        .expect("registered once");
    g
}

fn gauge_vec(registry: &Registry, name: &str, help: &str, labels: &[&str]) -> IntGaugeVec {
    let g = IntGaugeVec::new(Opts::new(name, help), labels).expect("a valid metric");
    registry
        .register(Box::new(g.clone()))
        .expect("registered once");
    g
}

fn histogram_vec(registry: &Registry, name: &str, help: &str, labels: &[&str]) -> HistogramVec {
    let h = HistogramVec::new(
        HistogramOpts::new(name, help).buckets(LATENCY_BUCKETS.to_vec()),
        labels,
    )
    .expect("a valid metric");
    registry
        .register(Box::new(h.clone()))
        .expect("registered once");
    h
}

impl Metrics {
    fn new() -> Self {
        let r = Registry::new();
        let build = gauge_vec(
            &r,
            "sessiongate_build_info",
            "Always 1; the running version as a label.",
            &["version"],
        );
        build.with_label_values(&[env!("CARGO_PKG_VERSION")]).set(1);
        let mut m = Metrics {
            lookup_children: Vec::new(),
            requests: counter_vec(
                &r,
                "sessiongate_requests_total",
                "Requests answered, by route and status class.",
                &["route", "status_class"],
            ),
            request_duration: histogram_vec(
                &r,
                "sessiongate_request_duration_seconds",
                "Time from the request's arrival to its log line, by route.",
                &["route"],
            ),
            lookups: counter_vec(
                &r,
                "sessiongate_session_lookups_total",
                "Session lookups by result: cache_hit, store_hit, not_found, expired, invalid, error, stale.",
                &["result"],
            ),
            sessions_created: counter(
                &r,
                "sessiongate_sessions_created_total",
                "Sessions created by a login.",
            ),
            sessions_destroyed: counter_vec(
                &r,
                "sessiongate_sessions_destroyed_total",
                "Sessions ended, by reason: logout, logout_all, rotated, admin, backchannel_logout, refresh_failed.",
                &["reason"],
            ),
            sessions_renewed: counter(
                &r,
                "sessiongate_sessions_renewed_total",
                "Idle renewals written to the store.",
            ),
            sessions_rotated: counter(
                &r,
                "sessiongate_sessions_rotated_total",
                "Logins that replaced the session the request carried with a new id.",
            ),
            sessions_active: gauge(
                &r,
                "sessiongate_sessions_active",
                "Sessions in the store, sampled in the background (Redis: exact up to about 10,000 keys per node, estimated from a sample of them beyond).",
            ),
            store_duration: histogram_vec(
                &r,
                "sessiongate_store_command_duration_seconds",
                "Duration of session store operations, by operation.",
                &["operation"],
            ),
            store_errors: counter_vec(
                &r,
                "sessiongate_store_errors_total",
                "Failed session store operations, by kind.",
                &["kind"],
            ),
            circuit_state: gauge_vec(
                &r,
                "sessiongate_store_circuit_state",
                "1 for the session store circuit breaker's current state, 0 for the others.",
                &["state"],
            ),
            cache_entries: gauge(
                &r,
                "sessiongate_cache_entries",
                "Sessions in the in-proxy cache.",
            ),
            cache_bytes: gauge(
                &r,
                "sessiongate_cache_bytes",
                "Estimated bytes held by the in-proxy cache.",
            ),
            cache_evictions: counter(
                &r,
                "sessiongate_cache_evictions_total",
                "Cached sessions evicted to stay within the cache's bounds.",
            ),
            cache_invalidations: counter(
                &r,
                "sessiongate_cache_invalidations_total",
                "Cached sessions dropped because the store said they changed.",
            ),
            cache_coalesced: counter(
                &r,
                "sessiongate_cache_coalesced_total",
                "Lookups that waited for another request's store read of the same session.",
            ),
            cache_negative_hits: counter(
                &r,
                "sessiongate_cache_negative_hits_total",
                "Lookups of unknown ids answered from the negative cache.",
            ),
            backend_healthy: gauge_vec(
                &r,
                "sessiongate_backend_healthy",
                "1 when the backend passes its health check, by upstream pool and backend.",
                &["upstream", "backend"],
            ),
            config_reloads: counter_vec(
                &r,
                "sessiongate_config_reloads_total",
                "Configuration reloads, by result: success, failure.",
                &["result"],
            ),
            spoofed_headers: counter(
                &r,
                "sessiongate_spoofed_headers_stripped_total",
                "Inbound headers removed from the protected namespace.",
            ),
            control_rejected: counter(
                &r,
                "sessiongate_control_headers_rejected_total",
                "Upstream responses whose control headers were refused and ignored (malformed, oversized claims, a login on a route without accept_login) or whose Set-Cookie for the session cookie was removed.",
            ),
            connections_refused: counter_vec(
                &r,
                "sessiongate_connections_refused_total",
                "Client connections closed before a request was read, by reason: header_too_large (431), header_timeout (408), idle_timeout, too_many_connections and too_many_from_client (503).",
                &["reason"],
            ),
            connections_open: gauge(
                &r,
                "sessiongate_client_connections",
                "Client connections held now, under server.max_connections.",
            ),
            certificate_expiry: gauge_vec(
                &r,
                "sessiongate_tls_certificate_expiry_timestamp_seconds",
                "When each HTTPS certificate stops being valid (Unix time), by its first DNS name; alert well before.",
                &["name"],
            ),
            tunnels_closed: counter(
                &r,
                "sessiongate_tunnels_closed_total",
                "WebSocket tunnels closed by the proxy because their session ended, expired or was revoked.",
            ),
            sign_ins: counter_vec(
                &r,
                "sessiongate_sign_ins_total",
                "Sign-ins at the edge, by identity provider and result (started, completed, refused, failed, limited).",
                &["provider", "result"],
            ),
            provider_refreshes: counter(
                &r,
                "sessiongate_provider_refreshes_total",
                "Identity provider tokens refreshed and written to their session.",
            ),
            backchannel_logouts: counter_vec(
                &r,
                "sessiongate_backchannel_logouts_total",
                "Back-channel logout tokens received, by result (accepted, refused, replayed).",
                &["result"],
            ),
            registry: r,
        };
        // Known label values start at zero, so rates and alerts see the first event.
        for reason in CONNECTION_REFUSALS {
            m.connections_refused.with_label_values(&[reason]);
        }
        for result in ["success", "failure"] {
            m.config_reloads.with_label_values(&[result]);
        }
        for kind in [
            "timeout",
            "unavailable",
            "circuit_open",
            "command",
            "corrupt",
            "full",
        ] {
            m.store_errors.with_label_values(&[kind]);
        }
        m.lookup_children = lookup::ALL
            .iter()
            .map(|result| m.lookups.with_label_values(&[*result]))
            .collect();
        for reason in [
            destroyed::LOGOUT,
            destroyed::LOGOUT_ALL,
            destroyed::ROTATED,
            destroyed::ADMIN,
            destroyed::BACKCHANNEL,
            destroyed::REFRESH_FAILED,
        ] {
            m.sessions_destroyed.with_label_values(&[reason]);
        }
        m
    }

    /// Counts one session lookup with `result` (one of `lookup::*`).
    pub fn lookup(&self, result: &'static str) {
        if let Some(i) = lookup::ALL.iter().position(|r| *r == result) {
            self.lookup_children[i].inc();
        }
    }

    /// The Prometheus text exposition of every metric.
    pub fn encode(&self) -> String {
        let mut out = Vec::new();
        let encoder = TextEncoder::new();
        if let Err(e) = encoder.encode(&self.registry.gather(), &mut out) {
            tracing::warn!(error = %e, "could not encode metrics");
        }
        String::from_utf8(out).unwrap_or_default()
    }

    /// Brings the cache's gauges and counters up to `figures`.
    pub fn observe_cache(&self, figures: &CacheFigures) {
        self.cache_entries.set(figures.entries as i64);
        self.cache_bytes.set(figures.bytes as i64);
        advance(&self.cache_evictions, figures.evictions);
        advance(&self.cache_invalidations, figures.invalidations);
        advance(&self.cache_coalesced, figures.coalesced);
        advance(&self.cache_negative_hits, figures.negative_hits);
    }

    /// Sets the breaker's state gauge: `current` (one of `states`) at 1, the others at 0.
    pub fn observe_breaker(&self, current: &str, states: &[&str]) {
        for s in states {
            self.circuit_state
                .with_label_values(&[s])
                .set(i64::from(*s == current));
        }
    }
}

/// One route's request metrics, resolved once per configuration so a request updates them
/// without a label lookup.
pub struct RouteMetrics {
    /// Indexed by `status_index`.
    requests: [IntCounter; 6],
    duration: prometheus::Histogram,
}

const STATUS_CLASSES: [&str; 6] = ["1xx", "2xx", "3xx", "4xx", "5xx", "none"];

fn status_index(status: u16) -> usize {
    match status {
        100..=599 => usize::from(status / 100) - 1,
        _ => 5,
    }
}

impl RouteMetrics {
    pub fn new(route: &str) -> Self {
        let m = metrics();
        RouteMetrics {
            requests: STATUS_CLASSES.map(|class| m.requests.with_label_values(&[route, class])),
            duration: m.request_duration.with_label_values(&[route]),
        }
    }

    /// Counts one answered request.
    pub fn observe(&self, status: u16, seconds: f64) {
        self.requests[status_index(status)].inc();
        self.duration.observe(seconds);
    }
}

/// Raises a counter to `total` (counters kept elsewhere, copied at scrape time).
fn advance(counter: &IntCounter, total: u64) {
    let current = counter.get();
    if total > current {
        counter.inc_by(total - current);
    }
}

/// The `status_class` label of an HTTP status: "2xx" and so on; "none" when nothing was sent.
pub fn status_class(status: u16) -> &'static str {
    STATUS_CLASSES[status_index(status)]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_classes() {
        assert_eq!(status_class(200), "2xx");
        assert_eq!(status_class(302), "3xx");
        assert_eq!(status_class(503), "5xx");
        assert_eq!(status_class(0), "none");
    }

    #[test]
    fn cache_counters_follow_the_snapshot() {
        let m = metrics();
        let before = m.cache_evictions.get();
        let figures = CacheFigures {
            evictions: before + 3,
            entries: 7,
            ..Default::default()
        };
        m.observe_cache(&figures);
        assert_eq!(m.cache_evictions.get(), before + 3);
        assert_eq!(m.cache_entries.get(), 7);
        // Figures never move a counter back.
        m.observe_cache(&CacheFigures::default());
        assert_eq!(m.cache_evictions.get(), before + 3);
    }

    #[test]
    fn every_family_is_exported_with_its_prefix() {
        metrics().observe_breaker("open", &["closed", "open", "half_open"]);
        let text = metrics().encode();
        assert!(text.contains("sessiongate_build_info{version="));
        assert!(text.contains("sessiongate_store_circuit_state{state=\"open\"} 1"));
        assert!(text.contains("sessiongate_store_circuit_state{state=\"closed\"} 0"));
        for line in text.lines().filter(|l| !l.starts_with('#')) {
            assert!(line.starts_with("sessiongate_"), "{line}");
        }
    }
}
