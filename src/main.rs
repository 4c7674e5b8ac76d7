//! The `carrier` binary: read `CARRIER_*`, set up logging, run the engine until a signal, map how
//! it ended to an exit status. Everything else lives in the `carrier-actors` crate.

use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use carrier::{config, logging};
use carrier_actors::{Carrier, ShutdownHandle, StartError, Stats};
use slog::{info, o, warn, Logger};
use slog_async::AsyncGuard;
use tokio::signal::unix::{signal, SignalKind};

/// Exit status for an invalid configuration (or one carrier cannot start with).
const EXIT_BAD_CONFIG: u8 = 2;

fn main() -> ExitCode {
    let config = match config::Config::from_env() {
        Ok(config) => config,
        Err(errors) => {
            eprintln!("carrier: {errors}");
            return ExitCode::from(EXIT_BAD_CONFIG);
        }
    };
    let stats = Arc::new(Stats::new());
    let dropped = stats.log_lines_dropped.clone();
    let (log, log_guard) = logging::build(config.log, move || {
        dropped.inc();
    });
    let names: Vec<String> = std::env::vars_os()
        .filter_map(|(k, _)| k.into_string().ok())
        .collect();
    for name in config::unknown_variables(names.iter().map(String::as_str)) {
        // The name only: values may be secrets.
        warn!(log, "unknown configuration variable ignored"; "source" => "main", "variable" => name);
    }
    let system = actix_rt::System::new();
    let result = system.block_on(async move {
        let mut carrier = Carrier::start_with_stats(config.settings, log.clone(), stats)?;
        actix_rt::spawn(forward_signals(
            carrier.shutdown_handle(),
            log.new(o!("source" => "main")),
        ));
        Ok::<_, StartError>(carrier.wait().await)
    });
    flush_logs(log_guard);
    match result {
        Ok(reason) => ExitCode::from(reason.exit_code()),
        Err(e) => {
            eprintln!("carrier: cannot start: {e}");
            ExitCode::from(EXIT_BAD_CONFIG)
        }
    }
}

/// How long the last log lines ("carrier stopped") may take to reach stdout at exit.
const LOG_FLUSH_LIMIT: Duration = Duration::from_secs(2);

/// Writes out the queued log lines, but never waits more than [`LOG_FLUSH_LIMIT`] for a stdout that
/// does not drain (a stalled log shipper must not keep carrier from exiting).
fn flush_logs(guard: AsyncGuard) {
    let (flushed, done) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        drop(guard);
        let _ = flushed.send(());
    });
    let _ = done.recv_timeout(LOG_FLUSH_LIMIT);
}

/// SIGTERM or SIGINT starts a graceful drain; a second one exits at once (128 + signal number).
async fn forward_signals(carrier: ShutdownHandle, log: Logger) {
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        warn!(log, "cannot listen for signals; stop carrier with SIGKILL");
        return;
    };
    let first = tokio::select! {
        _ = term.recv() => "SIGTERM",
        _ = int.recv() => "SIGINT",
    };
    info!(log, "shutting down"; "signal" => first);
    carrier.shutdown();
    let (second, code) = tokio::select! {
        _ = term.recv() => ("SIGTERM", 143),
        _ = int.recv() => ("SIGINT", 130),
    };
    warn!(log, "second signal: exiting now"; "signal" => second);
    std::process::exit(code);
}
