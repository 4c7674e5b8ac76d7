//! The root logger: JSON lines on stdout (Go carrier's keys: `time`, `level`, `msg`, plus
//! `source` and fields), or coloured human lines with `CARRIER_ENABLE_COLORIZED_LOGGING`.
//!
//! Lines are written by a thread of their own through a bounded queue (slog-async), so a stdout
//! that blocks (a slow log shipper) never freezes the actors, the drain or the signal handling:
//! when the queue is full a line is dropped and counted (`carrier_log_lines_dropped_total`).
//! Message bodies and secrets are never passed to it by the engine.

use std::sync::Mutex;

use slog::{o, Drain, FnValue, Level, Logger, OwnedKVList, PushFnValue, Record};
use slog_async::{AsyncCore, AsyncError, AsyncGuard};

use crate::config::LogSettings;

/// Lines queued for the writer thread at most; past that they are dropped, never waited for.
/// (A line queued costs a few hundred bytes: this bounds the queue to a few hundred KiB.)
const QUEUE_LINES: usize = 1024;

/// RFC 3339 with milliseconds in UTC, as Go's `log/slog` JSON handler writes `time`.
const TIME_FORMAT: &[time::format_description::FormatItem<'static>] = time::macros::format_description!(
    "[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]Z"
);

/// Level names as Go's `log/slog` writes them, so existing log queries keep matching.
fn level_name(level: Level) -> &'static str {
    match level {
        Level::Critical | Level::Error => "ERROR",
        Level::Warning => "WARN",
        Level::Info => "INFO",
        Level::Debug | Level::Trace => "DEBUG",
    }
}

/// The root logger, and the guard that flushes its queue when dropped (drop it before exiting).
/// `on_dropped` is called for each line the full queue refused.
pub fn build(
    settings: LogSettings,
    on_dropped: impl Fn() + Send + Sync + std::panic::RefUnwindSafe + std::panic::UnwindSafe + 'static,
) -> (Logger, AsyncGuard) {
    if settings.colorized {
        let decorator = slog_term::TermDecorator::new()
            .stdout()
            .force_color()
            .build();
        let drain = slog_term::FullFormat::new(decorator).build();
        return root(Mutex::new(drain).ignore_res(), settings.level, on_dropped);
    }
    let json = slog_json::Json::new(std::io::stdout())
        .set_newlines(true)
        .set_flush(true)
        .add_key_value(o!(
            "time" => FnValue(|_: &Record| {
                time::OffsetDateTime::now_utc().format(&TIME_FORMAT).ok()
            }),
            "level" => FnValue(|r: &Record| level_name(r.level())),
            "msg" => PushFnValue(|r: &Record, s| s.emit(r.msg())),
        ))
        .build();
    // A failed write to stdout must not take carrier down: drop the line.
    root(json.ignore_res(), settings.level, on_dropped)
}

fn root<D, F>(drain: D, level: Level, on_dropped: F) -> (Logger, AsyncGuard)
where
    D: Drain<Ok = (), Err = slog::Never> + Send + 'static,
    F: Fn() + Send + Sync + std::panic::RefUnwindSafe + std::panic::UnwindSafe + 'static,
{
    let (core, guard) = AsyncCore::custom(drain)
        .chan_size(QUEUE_LINES)
        .blocking(false)
        .thread_name("carrier-log".into())
        .build_with_guard();
    let drain = CountDropped { core, on_dropped };
    let drain = slog::LevelFilter::new(drain, level);
    (Logger::root(drain.fuse(), o!()), guard)
}

/// The asynchronous core, counting the lines it had no room for instead of blocking.
struct CountDropped<F> {
    core: AsyncCore,
    on_dropped: F,
}

impl<F: Fn()> Drain for CountDropped<F> {
    type Ok = ();
    type Err = slog::Never;

    fn log(&self, record: &Record, values: &OwnedKVList) -> Result<(), slog::Never> {
        // Any other error means the writer thread is gone (only at exit): nothing to do.
        if let Err(AsyncError::Full) = self.core.log(record, values) {
            (self.on_dropped)();
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_are_written_as_go_writes_them() {
        let at =
            time::OffsetDateTime::from_unix_timestamp_nanos(1_763_933_644_614_999_999).unwrap();
        assert_eq!(at.format(&TIME_FORMAT).unwrap(), "2025-11-23T21:34:04.614Z");
        assert_eq!(level_name(Level::Warning), "WARN");
    }
}
