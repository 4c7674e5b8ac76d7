//! Counters shared by every actor: what the stat log prints and what tests and (later) metrics read.
//!
//! Plain atomics, incremented at the one place each event happens; no locks, no allocation.

use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};

/// Live counters of one carrier system.
#[derive(Debug, Default)]
pub struct Stats {
    received: AtomicU64,
    acked: AtomicU64,
    retried: AtomicU64,
    nacked: AtomicU64,
    released: AtomicU64,
    in_flight: AtomicI64,
    sqs_errors: AtomicU64,
    restarts: AtomicU64,
}

/// A point-in-time copy of [`Stats`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StatsSnapshot {
    /// Messages received from SQS.
    pub received: u64,
    /// Deliveries the webhook accepted (messages queued for deletion).
    pub acked: u64,
    /// Deliveries answered with a usable Retry-After.
    pub retried: u64,
    /// Deliveries that failed (left to the visibility timeout).
    pub nacked: u64,
    /// Messages handed back to SQS unsent at shutdown.
    pub released: u64,
    /// Deliveries currently running.
    pub in_flight: i64,
    /// Failed SQS calls and failed batch entries.
    pub sqs_errors: u64,
    /// Actor restarts performed by supervision.
    pub restarts: u64,
}

macro_rules! bump {
    ($($name:ident => $field:ident),* $(,)?) => {
        $(pub(crate) fn $name(&self) { self.$field.fetch_add(1, Ordering::Relaxed); })*
    };
}

impl Stats {
    bump! {
        acked => acked,
        retried => retried,
        nacked => nacked,
        sqs_error => sqs_errors,
        restarted => restarts,
    }

    pub(crate) fn received(&self, n: usize) {
        self.received.fetch_add(n as u64, Ordering::Relaxed);
        self.in_flight.fetch_add(n as i64, Ordering::Relaxed);
    }

    /// A delivery finished (whatever its outcome) or was released unsent.
    pub(crate) fn settled(&self) {
        self.in_flight.fetch_sub(1, Ordering::Relaxed);
    }

    /// Messages handed back to SQS unsent: no longer in flight.
    pub(crate) fn released(&self, n: usize) {
        self.released.fetch_add(n as u64, Ordering::Relaxed);
        self.in_flight.fetch_sub(n as i64, Ordering::Relaxed);
    }

    pub fn snapshot(&self) -> StatsSnapshot {
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        StatsSnapshot {
            received: get(&self.received),
            acked: get(&self.acked),
            retried: get(&self.retried),
            nacked: get(&self.nacked),
            released: get(&self.released),
            in_flight: self.in_flight.load(Ordering::Relaxed),
            sqs_errors: get(&self.sqs_errors),
            restarts: get(&self.restarts),
        }
    }
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
    fn in_flight_follows_receive_and_settle() {
        let s = Stats::default();
        s.received(3);
        s.settled();
        s.acked();
        let snap = s.snapshot();
        assert_eq!((snap.received, snap.in_flight, snap.acked), (3, 2, 1));
    }

    #[test]
    fn process_usage_reads_procfs() {
        let (rss, threads) = process_usage().expect("procfs on linux");
        assert!(rss > 0 && threads >= 1);
    }
}
