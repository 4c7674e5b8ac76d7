//! The carrier engine: moves messages from one SQS queue to one HTTP webhook, at least once, as a
//! small system of actix actors. It knows nothing of environment variables or process exit codes;
//! the `carrier` binary turns `CARRIER_*` into [`Settings`] and an [`ExitReason`] into a status.
//!
//! # Layout
//!
//! - **`Supervisor`** (`supervisor.rs`) builds the SQS client, resolves the queue (retrying, never
//!   panicking), then starts the children under actix supervision: a crashed child is restarted
//!   with its mailbox and state intact. It gates receiving on the first healthy check, and on
//!   shutdown (or an offline webhook) drains every receiver before reporting how the system ended.
//! - **`SqsReceiverActor`** (`receiver.rs`, one per `CARRIER_SQS_RECEIVERS`) long-polls for as many
//!   messages as it has free delivery slots, sends each to its transmitter as a `Deliver`, and owns
//!   the message until its final SQS action: Ack → batched delete, Retry → visibility change,
//!   Nack → left to the visibility timeout.
//! - **`WebhookTransmitterActor`** (`transmitter.rs`, one per receiver) POSTs one message per
//!   `Deliver` and answers with an `Outcome`. It knows HTTP, not SQS.
//! - **`HealthCheckActor`** (`health.rs`) GETs the health endpoint and reports online / offline.
//! - `messages.rs` holds every message type; `sqs.rs` wraps aws-sdk-sqs (batching, partial
//!   failures, retries); `http.rs` builds the HTTP clients; `stats.rs` counts.
//!
//! # Flow of one message
//!
//! ```text
//! SQS ──ReceiveMessage──▶ SqsReceiverActor ──Deliver──▶ WebhookTransmitterActor ──POST──▶ webhook
//!                               ▲                                │
//!                               └──── Ack | Retry{until} | Nack ◀┘
//! ```
//!
//! # Use
//!
//! Inside an actix system: [`Carrier::start`], then [`Carrier::wait`]; [`Carrier::shutdown`] (or a
//! [`ShutdownHandle`] handed to a signal task) drains gracefully.

mod health;
mod http;
mod messages;
mod receiver;
pub mod sqs;
mod stats;
mod supervisor;
mod transmitter;

use std::sync::Arc;
use std::time::Duration;

use actix::{Actor, Addr};
use slog::Logger;
use tokio::sync::oneshot;

pub use health::HealthCheckSettings;
pub use http::parse_http_url;
pub use messages::Fault;
pub use sqs::QueueAddress;
pub use stats::StatsSnapshot;
pub use transmitter::{SuccessCodes, WebhookSettings};

use messages::{Inject, Shutdown};
use stats::Stats;
use supervisor::Supervisor;

/// Everything the engine needs, already validated.
#[derive(Debug, Clone)]
pub struct Settings {
    pub queue: QueueAddress,
    /// Messages asked for per ReceiveMessage, 1–10.
    pub batch_size: usize,
    /// Number of receivers (each with its own transmitter).
    pub receivers: usize,
    /// Concurrent deliveries per receiver.
    pub workers_per_receiver: usize,
    pub webhook: WebhookSettings,
    /// `None`: no health check, receive at once.
    pub health_check: Option<HealthCheckSettings>,
    /// How long in-flight deliveries may run after a shutdown begins.
    pub shutdown_timeout: Duration,
    /// `Some(interval)`: log a statistics line that often.
    pub stat_log_interval: Option<Duration>,
}

impl Settings {
    /// Defaults of the Go carrier for everything but the queue.
    pub fn new(queue: QueueAddress) -> Self {
        Settings {
            queue,
            batch_size: 1,
            receivers: 1,
            workers_per_receiver: 1,
            webhook: WebhookSettings::default(),
            health_check: None,
            shutdown_timeout: Duration::from_secs(25),
            stat_log_interval: None,
        }
    }
}

/// How a carrier system ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExitReason {
    /// Asked to stop, drained cleanly.
    Shutdown,
    /// The webhook failed its health checks; drained, and the orchestrator should restart us.
    WebhookOffline,
    /// The engine stopped without saying how (a bug): never reported as success.
    Aborted,
}

impl ExitReason {
    /// The process exit status this deserves: 0 for a requested shutdown, else 1.
    pub fn exit_code(self) -> u8 {
        match self {
            ExitReason::Shutdown => 0,
            ExitReason::WebhookOffline | ExitReason::Aborted => 1,
        }
    }
}

/// A running carrier system.
pub struct Carrier {
    supervisor: Addr<Supervisor>,
    exit: oneshot::Receiver<ExitReason>,
    /// How it ended, once known (so `wait` can be called again).
    ended: Option<ExitReason>,
    stats: Arc<Stats>,
}

/// A cloneable handle that can ask a running system to shut down.
#[derive(Clone)]
pub struct ShutdownHandle(Addr<Supervisor>);

impl ShutdownHandle {
    /// Begin a graceful shutdown (idempotent).
    pub fn shutdown(&self) {
        self.0.do_send(Shutdown);
    }
}

impl Carrier {
    /// Starts the system on the current actix arbiter. `log` is the root logger; each actor adds
    /// its own `source`.
    pub fn start(settings: Settings, log: Logger) -> Carrier {
        let stats = Arc::new(Stats::default());
        let (exit_tx, exit) = oneshot::channel();
        let supervisor = Supervisor::new(Arc::new(settings), stats.clone(), log, exit_tx).start();
        Carrier {
            supervisor,
            exit,
            ended: None,
            stats,
        }
    }

    pub fn shutdown_handle(&self) -> ShutdownHandle {
        ShutdownHandle(self.supervisor.clone())
    }

    /// Begin a graceful shutdown.
    pub fn shutdown(&self) {
        self.shutdown_handle().shutdown();
    }

    /// Counters so far.
    pub fn stats(&self) -> StatsSnapshot {
        self.stats.snapshot()
    }

    /// Injects a fault, e.g. stopping an actor as a crash would (for tests and fault drills).
    pub fn inject(&self, fault: Fault) {
        self.supervisor.do_send(Inject(fault));
    }

    /// Waits until the system has ended (drained after a shutdown, or the webhook went offline).
    pub async fn wait(&mut self) -> ExitReason {
        if let Some(reason) = self.ended {
            return reason;
        }
        let reason = (&mut self.exit).await.unwrap_or(ExitReason::Aborted);
        self.ended = Some(reason);
        reason
    }
}
