//! The root logger: JSON lines on stdout (Go carrier's keys: `time`, `level`, `msg`, plus
//! `source` and fields), or coloured human lines with `CARRIER_ENABLE_COLORIZED_LOGGING`.
//! Message bodies and secrets are never passed to it by the engine.

use std::sync::Mutex;

use slog::{o, Drain, FnValue, Level, Logger, PushFnValue, Record};

use crate::config::LogSettings;

/// Level names as Go's `log/slog` writes them, so existing log queries keep matching.
fn level_name(level: Level) -> &'static str {
    match level {
        Level::Critical | Level::Error => "ERROR",
        Level::Warning => "WARN",
        Level::Info => "INFO",
        Level::Debug | Level::Trace => "DEBUG",
    }
}

pub fn build(settings: LogSettings) -> Logger {
    if settings.colorized {
        let decorator = slog_term::TermDecorator::new()
            .stdout()
            .force_color()
            .build();
        let drain = slog_term::FullFormat::new(decorator).build();
        return root(Mutex::new(drain), settings.level);
    }
    let json = slog_json::Json::new(std::io::stdout())
        .set_newlines(true)
        .set_flush(true)
        .add_key_value(o!(
            "time" => FnValue(|_: &Record| {
                time::OffsetDateTime::now_utc()
                    .format(&time::format_description::well_known::Rfc3339)
                    .ok()
            }),
            "level" => FnValue(|r: &Record| level_name(r.level())),
            "msg" => PushFnValue(|r: &Record, s| s.emit(r.msg())),
        ))
        .build();
    root(Mutex::new(json), settings.level)
}

fn root<D>(drain: D, level: Level) -> Logger
where
    D: Drain + Send + Sync + std::panic::RefUnwindSafe + std::panic::UnwindSafe + 'static,
    D::Err: std::fmt::Debug,
{
    // A failed write to stdout must not take carrier down: drop the line.
    let drain = slog::LevelFilter::new(drain.ignore_res(), level);
    Logger::root(drain.fuse(), o!())
}
