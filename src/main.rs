//! The `carrier` binary: read `CARRIER_*`, set up logging, run the engine until a signal, map how
//! it ended to an exit status. Everything else lives in the `carrier-actors` crate.

use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use carrier::{config, logging};
use carrier_actors::{Carrier, ShutdownHandle, StartError, Stats};
use slog::{info, o, warn, Logger};
use slog_async::AsyncGuard;
use tokio::signal::unix::{signal, Signal, SignalKind};

/// Exit status for an invalid configuration (or one carrier cannot start with).
const EXIT_BAD_CONFIG: u8 = 2;

fn main() -> ExitCode {
    // Before anything else: from here on a SIGTERM is carrier's to handle (a clean exit 0), where
    // before it would kill the process (143). The runtime only hosts the listeners until start.
    let system = actix_rt::System::new();
    let signals = system.block_on(async { Signals::install() });
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
    let main_log = log.new(o!("source" => "main"));
    for name in &config.unknown_variables {
        // The name only: values may be secrets.
        match config::did_you_mean(name) {
            Some(known) => warn!(main_log, "unknown configuration variable ignored";
                "variable" => name, "did_you_mean" => known),
            None => warn!(main_log, "unknown configuration variable ignored"; "variable" => name),
        }
    }
    for warning in &config.warnings {
        warn!(main_log, "configuration setting does nothing or contradicts another";
            "variable" => &warning.variable, "detail" => &warning.message);
    }
    let mut signals = match signals {
        Ok(signals) => Some(signals),
        Err(e) => {
            warn!(main_log, "cannot listen for signals; stop carrier with SIGKILL"; "error" => %e);
            None
        }
    };
    if let Some(signals) = &mut signals {
        if let Some(name) = system.block_on(signals.pending()) {
            info!(main_log, "signal received before start; exiting"; "signal" => name);
            flush_logs(log_guard);
            return ExitCode::SUCCESS;
        }
    }
    let result = system.block_on(async move {
        let mut carrier = Carrier::start_with_stats(config.settings, log.clone(), stats)?;
        if let Some(signals) = signals {
            actix_rt::spawn(forward_signals(
                signals,
                carrier.shutdown_handle(),
                main_log,
            ));
        }
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
/// Without a thread to spare (a process limit reached), the lines are left unwritten rather than
/// risk waiting for ever.
fn flush_logs(guard: AsyncGuard) {
    let (flushed, done) = std::sync::mpsc::channel();
    let flusher = std::thread::Builder::new().spawn(move || {
        drop(guard);
        let _ = flushed.send(());
    });
    if flusher.is_ok() {
        let _ = done.recv_timeout(LOG_FLUSH_LIMIT);
    }
}

/// The SIGTERM and SIGINT listeners, installed first thing: a signal that comes before carrier
/// is running is kept until it is looked at.
struct Signals {
    term: Signal,
    int: Signal,
}

impl Signals {
    /// Takes over SIGTERM and SIGINT (from the default action, which kills the process). Needs
    /// the runtime.
    fn install() -> std::io::Result<Signals> {
        Ok(Signals {
            term: signal(SignalKind::terminate())?,
            int: signal(SignalKind::interrupt())?,
        })
    }

    /// The signal received so far, if any, without waiting for one.
    async fn pending(&mut self) -> Option<&'static str> {
        // One turn of the runtime reads what the OS handler recorded.
        tokio::task::yield_now().await;
        tokio::select! {
            biased;
            _ = self.term.recv() => Some("SIGTERM"),
            _ = self.int.recv() => Some("SIGINT"),
            () = std::future::ready(()) => None,
        }
    }

    /// The next signal, and the exit status a second one forces (128 + signal number).
    async fn next(&mut self) -> (&'static str, u8) {
        tokio::select! {
            _ = self.term.recv() => ("SIGTERM", 143),
            _ = self.int.recv() => ("SIGINT", 130),
        }
    }
}

/// SIGTERM or SIGINT starts a graceful drain; a second one exits at once (128 + signal number).
async fn forward_signals(mut signals: Signals, carrier: ShutdownHandle, log: Logger) {
    let (first, _) = signals.next().await;
    info!(log, "shutting down"; "signal" => first);
    carrier.shutdown();
    let (second, code) = signals.next().await;
    warn!(log, "second signal: exiting now"; "signal" => second);
    std::process::exit(i32::from(code));
}
