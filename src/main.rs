//! The `carrier` binary: read `CARRIER_*`, set up logging, run the engine until a signal, map how
//! it ended to an exit status. Everything else lives in the `carrier-actors` crate.

mod config;
mod logging;

use std::process::ExitCode;

use carrier_actors::{Carrier, ShutdownHandle};
use slog::{info, o, warn, Logger};
use tokio::signal::unix::{signal, SignalKind};

/// Exit status for an invalid configuration.
const EXIT_BAD_CONFIG: u8 = 2;

fn main() -> ExitCode {
    let config = match config::Config::from_env() {
        Ok(config) => config,
        Err(errors) => {
            eprintln!("carrier: {errors}");
            return ExitCode::from(EXIT_BAD_CONFIG);
        }
    };
    let log = logging::build(config.log);
    let names: Vec<String> = std::env::vars_os()
        .filter_map(|(k, _)| k.into_string().ok())
        .collect();
    for name in config::unknown_variables(names.iter().map(String::as_str)) {
        // The name only: values may be secrets.
        warn!(log, "unknown configuration variable ignored"; "source" => "main", "variable" => name);
    }
    let system = actix_rt::System::new();
    let reason = system.block_on(async move {
        let mut carrier = Carrier::start(config.settings, log.clone());
        actix_rt::spawn(forward_signals(
            carrier.shutdown_handle(),
            log.new(o!("source" => "main")),
        ));
        carrier.wait().await
    });
    ExitCode::from(reason.exit_code())
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
