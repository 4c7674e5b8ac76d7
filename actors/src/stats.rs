//! The numbers of one carrier system: Prometheus metrics (what `/metrics` serves), a snapshot of
//! them (what the stat log line, tests and the admin endpoint read), and the rate limits of
//! repeated warnings.
//!
//! Nothing here decides when something happened: `events.rs` is the one place that records each
//! event, here and in the log at once, so the views never disagree.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::metrics::info::Info;
use prometheus_client::registry::{Registry, Unit};

/// A route's metrics: `[("route", "orders")]` (`""` for what no route owns, e.g. the health
/// checker's restarts).
pub(crate) type RouteLabel = [(&'static str, &'static str); 1];
/// A route and one more label: `[("route", "orders"), ("operation", "ReceiveMessage")]`.
pub(crate) type Label = [(&'static str, &'static str); 2];

fn latency_histogram() -> Histogram {
    // 1 ms to ~65 s.
    Histogram::new(exponential_buckets(0.001, 2.0, 17))
}

/// Every metric carrier exports. Counters are monotonic; `in_flight` is a gauge.
#[derive(Debug)]
pub struct Stats {
    pub(crate) received: Family<RouteLabel, Counter>,
    pub(crate) acked: Family<RouteLabel, Counter>,
    pub(crate) retried: Family<RouteLabel, Counter>,
    pub(crate) nacked: Family<Label, Counter>,
    pub(crate) nacked_total: Counter,
    pub(crate) released: Family<RouteLabel, Counter>,
    pub(crate) dead_lettered: Family<RouteLabel, Counter>,
    pub(crate) in_flight: Family<RouteLabel, Gauge>,
    pub(crate) webhook_latency: Family<Label, Histogram, fn() -> Histogram>,
    pub(crate) sqs_errors: Family<Label, Counter>,
    pub(crate) sqs_errors_total: Counter,
    pub(crate) sqs_latency: Family<Label, Histogram, fn() -> Histogram>,
    pub(crate) extensions: Family<RouteLabel, Counter>,
    /// Messages SQS handed out again while carrier held them (joined their lease).
    pub(crate) redelivered_while_held: Family<RouteLabel, Counter>,
    pub(crate) restarts: Family<Label, Counter>,
    pub(crate) restarts_total: Counter,
    /// Lambda format: POSTs by result (`ok`, `partial`, `failed`, `retry`), and their sizes.
    pub(crate) batches: Family<Label, Counter>,
    pub(crate) batch_records: Family<RouteLabel, Histogram, fn() -> Histogram>,
    /// With an envelope configured: deliveries by what their body was opened as.
    pub(crate) unwrapped: Family<Label, Counter>,
    /// Log lines the asynchronous log drain dropped (its queue was full).
    pub log_lines_dropped: Counter,
    registry: Registry,
    /// The routes counted so far (the snapshot sums over them).
    routes: Mutex<Vec<&'static str>>,
    /// Repeated warnings, bounded per kind (see [`Stats::throttle`]).
    throttles: Mutex<Vec<Throttle>>,
}

fn batch_histogram() -> Histogram {
    // 1 to 16 384 records.
    Histogram::new(exponential_buckets(1.0, 2.0, 15))
}

impl Default for Stats {
    fn default() -> Self {
        Stats::new()
    }
}

/// A point-in-time copy of the totals, for the stat line, tests and embedding programs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StatsSnapshot {
    /// Messages received from SQS.
    pub received: u64,
    /// Deliveries the webhook accepted (messages queued for deletion).
    pub acked: u64,
    /// Deliveries answered with a usable Retry-After.
    pub retried: u64,
    /// Deliveries that failed (the Nack policy applied).
    pub nacked: u64,
    /// Messages handed back to SQS unsent (shutdown, FIFO order).
    pub released: u64,
    /// Messages moved to the dead-letter queue at the webhook's request.
    pub dead_lettered: u64,
    /// Messages held right now, from receipt until their last SQS action is confirmed.
    pub in_flight: i64,
    /// Failed SQS calls and failed batch entries.
    pub sqs_errors: u64,
    /// Visibility timeouts extended by the heartbeat.
    pub extensions: u64,
    /// Actor restarts performed by supervision.
    pub restarts: u64,
    /// Messages SQS handed out again while carrier held them (not delivered again).
    pub redelivered_while_held: u64,
}

impl Stats {
    pub fn new() -> Stats {
        let mut registry = Registry::with_prefix("carrier");
        let stats = Stats {
            received: Family::default(),
            acked: Family::default(),
            retried: Family::default(),
            nacked: Family::default(),
            nacked_total: Counter::default(),
            released: Family::default(),
            dead_lettered: Family::default(),
            in_flight: Family::default(),
            webhook_latency: Family::new_with_constructor(latency_histogram),
            sqs_errors: Family::default(),
            sqs_errors_total: Counter::default(),
            sqs_latency: Family::new_with_constructor(latency_histogram),
            extensions: Family::default(),
            redelivered_while_held: Family::default(),
            restarts: Family::default(),
            restarts_total: Counter::default(),
            batches: Family::default(),
            batch_records: Family::new_with_constructor(batch_histogram),
            unwrapped: Family::default(),
            log_lines_dropped: Counter::default(),
            registry: Registry::default(),
            routes: Mutex::new(Vec::new()),
            throttles: Mutex::new(Vec::new()),
        };
        registry.register(
            "build",
            "carrier's version",
            Info::new([("version", env!("CARGO_PKG_VERSION"))]),
        );
        let r = &mut registry;
        r.register(
            "messages_received",
            "Messages received from SQS",
            stats.received.clone(),
        );
        r.register(
            "messages_acked",
            "Messages the webhook accepted (then deleted)",
            stats.acked.clone(),
        );
        r.register(
            "messages_retried",
            "Messages the webhook asked to see again later (429/503 with Retry-After)",
            stats.retried.clone(),
        );
        r.register(
            "messages_nacked",
            "Failed deliveries, by reason (status, timeout, connect, ...)",
            stats.nacked.clone(),
        );
        r.register(
            "messages_released",
            "Messages handed back to SQS unsent (shutdown, FIFO order)",
            stats.released.clone(),
        );
        r.register(
            "messages_dead_lettered",
            "Messages moved to the dead-letter queue at the webhook's request",
            stats.dead_lettered.clone(),
        );
        r.register(
            "messages_in_flight",
            "Messages held, from receipt until their last SQS action is confirmed",
            stats.in_flight.clone(),
        );
        r.register_with_unit(
            "webhook_request_duration",
            "Webhook request latency, by status class (2xx, 4xx, 5xx, timeout, error, ...)",
            Unit::Seconds,
            stats.webhook_latency.clone(),
        );
        r.register(
            "sqs_errors",
            "Failed SQS calls and failed batch entries, by operation",
            stats.sqs_errors.clone(),
        );
        r.register_with_unit(
            "sqs_request_duration",
            "SQS call latency, by operation",
            Unit::Seconds,
            stats.sqs_latency.clone(),
        );
        r.register(
            "visibility_extensions",
            "Visibility timeouts extended by the heartbeat",
            stats.extensions.clone(),
        );
        r.register(
            "messages_redelivered_while_held",
            "Messages SQS handed out again while carrier held them (joined their lease, not delivered again)",
            stats.redelivered_while_held.clone(),
        );
        r.register(
            "actor_restarts",
            "Actor restarts performed by supervision, by actor",
            stats.restarts.clone(),
        );
        r.register(
            "batches",
            "Lambda-format batches POSTed, by result (ok, partial, failed, retry)",
            stats.batches.clone(),
        );
        r.register(
            "batch_records",
            "Records per Lambda-format batch",
            stats.batch_records.clone(),
        );
        r.register(
            "messages_unwrapped",
            "With CARRIER_WEBHOOK_UNWRAP: deliveries by what the body was opened as (sns, eventbridge, none: unchanged)",
            stats.unwrapped.clone(),
        );
        r.register(
            "log_lines_dropped",
            "Log lines dropped because the log output could not keep up",
            stats.log_lines_dropped.clone(),
        );
        Stats { registry, ..stats }
    }

    /// The metrics in Prometheus text format.
    pub fn encode(&self) -> String {
        let mut out = String::with_capacity(8 * 1024);
        encode(&mut out, &self.registry).expect("writing to a String cannot fail");
        out
    }

    /// Counts a route from now on: its series appear (at zero) and the snapshot sums it.
    pub(crate) fn add_route(&self, route: &'static str) {
        let mut routes = self.routes.lock().unwrap_or_else(|e| e.into_inner());
        if !routes.contains(&route) {
            routes.push(route);
            let label = [("route", route)];
            for family in [
                &self.received,
                &self.acked,
                &self.retried,
                &self.released,
                &self.dead_lettered,
            ] {
                let _ = family.get_or_create(&label);
            }
            let _ = self.in_flight.get_or_create(&label);
            let _ = self
                .sqs_errors
                .get_or_create(&[("route", route), ("operation", "ReceiveMessage")]);
            let _ = self.batch_records.get_or_create(&label);
        }
    }

    /// Totals over every route.
    pub fn snapshot(&self) -> StatsSnapshot {
        let routes = self.routes.lock().unwrap_or_else(|e| e.into_inner());
        let sum = |family: &Family<RouteLabel, Counter>| -> u64 {
            routes
                .iter()
                .map(|r| family.get_or_create(&[("route", *r)]).get())
                .sum()
        };
        StatsSnapshot {
            received: sum(&self.received),
            acked: sum(&self.acked),
            retried: sum(&self.retried),
            nacked: self.nacked_total.get(),
            released: sum(&self.released),
            dead_lettered: sum(&self.dead_lettered),
            in_flight: routes
                .iter()
                .map(|r| self.in_flight.get_or_create(&[("route", *r)]).get())
                .sum(),
            sqs_errors: self.sqs_errors_total.get(),
            extensions: sum(&self.extensions),
            restarts: self.restarts_total.get(),
            redelivered_while_held: sum(&self.redelivered_while_held),
        }
    }

    /// Failed ReceiveMessage calls, all routes (an idle run must not count them as an empty
    /// queue).
    pub(crate) fn receive_errors(&self) -> u64 {
        let routes = self.routes.lock().unwrap_or_else(|e| e.into_inner());
        routes
            .iter()
            .map(|r| {
                self.sqs_errors
                    .get_or_create(&[("route", *r), ("operation", "ReceiveMessage")])
                    .get()
            })
            .sum()
    }

    /// Whether a warning of `kind` may be logged now. At most [`THROTTLE_BURST`] per kind in each
    /// [`THROTTLE_WINDOW`]; the rest are counted, and [`Stats::take_suppressed`] reports them.
    pub(crate) fn throttle(&self, kind: &'static str) -> bool {
        let now = Instant::now();
        let mut throttles = self.throttles.lock().unwrap_or_else(|e| e.into_inner());
        let t = match throttles.iter_mut().position(|t| t.kind == kind) {
            Some(i) => &mut throttles[i],
            None => {
                throttles.push(Throttle {
                    kind,
                    window_start: now,
                    logged: 0,
                    suppressed: 0,
                });
                throttles.last_mut().expect("just pushed")
            }
        };
        if now.duration_since(t.window_start) >= THROTTLE_WINDOW {
            t.window_start = now;
            t.logged = 0;
        }
        if t.logged < THROTTLE_BURST {
            t.logged += 1;
            true
        } else {
            t.suppressed += 1;
            false
        }
    }

    /// Kinds of warning suppressed since the last call, with how many.
    pub(crate) fn take_suppressed(&self) -> Vec<(&'static str, u64)> {
        let mut throttles = self.throttles.lock().unwrap_or_else(|e| e.into_inner());
        throttles
            .iter_mut()
            .filter(|t| t.suppressed > 0)
            .map(|t| (t.kind, std::mem::take(&mut t.suppressed)))
            .collect()
    }
}

/// At most this many warnings of one kind per window...
const THROTTLE_BURST: u32 = 10;
/// ...of this length; the supervisor logs a summary of the rest once per window.
pub(crate) const THROTTLE_WINDOW: Duration = Duration::from_secs(10);

#[derive(Debug)]
struct Throttle {
    kind: &'static str,
    window_start: Instant,
    logged: u32,
    suppressed: u64,
}

/// Resident set size in bytes and thread count of this process, from `/proc/self/status`
/// (`None` where there is no procfs).
pub fn process_usage() -> Option<(u64, u64)> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse::<u64>().ok())
    };
    Some((field("VmRSS:")? * 1024, field("Threads:")?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metrics_are_served_in_prometheus_text_format() {
        let s = Stats::new();
        s.add_route("orders");
        s.received.get_or_create(&[("route", "orders")]).inc_by(3);
        s.sqs_errors
            .get_or_create(&[("route", "orders"), ("operation", "ReceiveMessage")])
            .inc();
        let text = s.encode();
        assert!(
            text.contains("carrier_messages_received_total{route=\"orders\"} 3"),
            "{text}"
        );
        assert!(
            text.contains(
                "carrier_sqs_errors_total{route=\"orders\",operation=\"ReceiveMessage\"} 1"
            ),
            "{text}"
        );
        assert_eq!(s.snapshot().received, 3);
        assert!(text.contains("carrier_build_info{version="), "{text}");
        assert!(text.ends_with("# EOF\n"));
    }

    #[test]
    fn repeated_warnings_are_bounded_per_kind_and_counted() {
        let s = Stats::new();
        let logged = (0..25).filter(|_| s.throttle("nack")).count();
        assert_eq!(logged, THROTTLE_BURST as usize);
        assert!(s.throttle("other"), "kinds are independent");
        assert_eq!(s.take_suppressed(), [("nack", 15)]);
        assert!(s.take_suppressed().is_empty());
    }

    #[test]
    fn process_usage_reads_procfs() {
        let (rss, threads) = process_usage().expect("procfs on linux");
        assert!(rss > 0 && threads >= 1);
    }
}
