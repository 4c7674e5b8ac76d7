//! The carrier engine: moves messages from SQS queues to HTTP webhooks, at least once, as a
//! small system of actix actors. It knows nothing of environment variables or process exit codes;
//! the `carrier` binary turns `CARRIER_*` into [`Settings`] and an [`ExitReason`] into a status.
//!
//! # Layout, top to bottom (each layer imports only those below it)
//!
//! - **`Supervisor`** (`supervisor.rs`) starts one **route** per queue (`route.rs`: the queue
//!   resolved, retrying, never panicking; its visibility timeout and dead-letter queue read, or
//!   retried in the background; then its receivers and transmitters, under actix supervision: a
//!   crashed child is restarted with its mailbox and state intact). It owns what the routes
//!   share: the health check, the delivery slots (`slots.rs` around the plain `scheduler.rs`:
//!   weighted or strict, SPEC 5.3), the threads, the drain. It gates receiving on the first
//!   healthy check, pauses or drains when the webhook goes offline, ends an idle run when asked,
//!   and on shutdown drains every receiver before reporting how the system ended.
//! - **`SqsReceiverActor`** (`receiver.rs`, `CARRIER_SQS_RECEIVERS` per route) asks the slots
//!   before each receive, long-polls for as many messages as it may take, sends them to its
//!   transmitter as `Deliver`s (one message each, or in Lambda format batches the ledger
//!   gathers), and owns each as a **lease** until SQS confirms its last action: Ack → batched
//!   delete, Retry → visibility change, Nack → the Nack policy, DeadLetter → copy to the DLQ and
//!   delete. While a lease is held, its visibility is extended (the heartbeat), and should SQS
//!   hand it out again it joins its lease instead of being delivered twice; on FIFO queues, one
//!   message per group at a time. The ledger of leases (`lease.rs`) is plain data and logic,
//!   tested without a runtime.
//! - **`WebhookTransmitterActor`** (`transmitter.rs`, one per receiver) makes one POST per
//!   `Deliver` (what `present/` makes of it: one message with headers from its metadata, an SNS
//!   or EventBridge envelope opened, or a Lambda event; optionally signed: `signing.rs`) and
//!   answers with an `Outcome` (per record, for a batch). It knows HTTP, not SQS.
//! - **`HealthCheckActor`** (`health.rs`) GETs the health endpoint and reports online / offline.
//! - `sqs.rs` wraps aws-sdk-sqs (batching, per-entry results, retries, dead-letter copies);
//!   `http.rs` builds the HTTP clients and reads endpoint URLs; `events.rs` records every
//!   observable event once, into the log and `stats.rs` (the metrics, by route); `admin.rs`
//!   serves `/healthz`, `/readyz` and `/metrics`; `messages.rs` holds the data and every message
//!   type; `limits.rs`, at the bottom, SQS's limits and the ids.
//!
//! # Flow of one message
//!
//! ```text
//! SQS ──ReceiveMessage──▶ SqsReceiverActor ──Deliver──▶ WebhookTransmitterActor ──POST──▶ webhook
//!        ▲    (lease: heartbeat,   ▲                                │
//!        │     FIFO group order)   └── Ack | Retry{until} | Nack | DeadLetter
//!        └── DeleteMessageBatch / ChangeMessageVisibilityBatch / SendMessage (DLQ)
//! ```
//!
//! # Use
//!
//! Inside an actix system: [`Carrier::start`], then [`Carrier::wait`]; [`Carrier::shutdown`] (or a
//! [`ShutdownHandle`] handed to a signal task) drains gracefully.

mod admin;
mod events;
mod health;
pub mod http;
mod lease;
mod limits;
mod messages;
pub mod present;
mod receiver;
mod route;
mod scheduler;
mod signing;
mod slots;
pub mod sqs;
mod stats;
mod supervisor;
mod transmitter;

use std::sync::Arc;
use std::time::Duration;

use actix::{Addr, AsyncContext, Context};
use slog::Logger;
use tokio::sync::oneshot;

pub use health::{HealthCheckSettings, OfflineAction};
pub use http::{parse_http_url, Endpoint};
pub use lease::NackPolicy;
pub use messages::{Attribute, AttributeValue, Delivery, Fault};
pub use scheduler::Policy;
pub use signing::SigningKeys;
pub use sqs::QueueAddress;
pub use stats::{Stats, StatsSnapshot};
pub use supervisor::Readiness;
pub use transmitter::{request_headers, HeaderStyle, SuccessCodes, WebhookSettings};

use messages::{Inject, Shutdown};
use supervisor::Supervisor;

/// One route (SPEC 5.3): a queue and how its messages are delivered. With `CARRIER_ROUTES` unset
/// there is one, `default`, built from the top-level variables.
#[derive(Debug, Clone)]
pub struct RouteSettings {
    /// `[a-z0-9_]`, at most 16 of them: the `route` of its log lines and metrics.
    pub name: String,
    pub queue: QueueAddress,
    /// Messages asked for per ReceiveMessage, 1–10.
    pub batch_size: usize,
    /// `CARRIER_SQS_VISIBILITY_TIMEOUT`: asked for on every receive and kept up by the heartbeat.
    /// `None`: the queue's own.
    pub visibility_timeout: Option<Duration>,
    pub webhook: WebhookSettings,
    /// What a failed delivery does to the message's visibility.
    pub nack: NackPolicy,
    /// A Retry-After below this is raised to it.
    pub min_retry_delay: Duration,
    /// Its share of the delivery slots while several routes have messages (1–1000).
    pub weight: u32,
}

impl RouteSettings {
    /// The Go carrier's defaults for everything but the queue.
    pub fn new(name: &str, queue: QueueAddress) -> Self {
        RouteSettings {
            name: name.into(),
            queue,
            batch_size: 1,
            visibility_timeout: None,
            webhook: WebhookSettings::default(),
            nack: NackPolicy::default(),
            min_retry_delay: Duration::from_secs(1),
            weight: 1,
        }
    }
}

/// Everything the engine needs, already validated.
#[derive(Debug, Clone)]
pub struct Settings {
    /// The queues served, in `CARRIER_ROUTES` order (at least one).
    pub routes: Vec<RouteSettings>,
    /// How the delivery slots are shared while several routes have messages.
    pub policy: Policy,
    /// Number of receivers per route (each with its own transmitter).
    pub receivers: usize,
    /// Concurrent deliveries per receiver.
    pub workers_per_receiver: usize,
    /// Event-loop threads the receivers (each with its transmitter) are spread over; 1: all on
    /// the caller's arbiter, no extra thread.
    pub threads: usize,
    /// `None`: no health check, receive at once.
    pub health_check: Option<HealthCheckSettings>,
    /// How long in-flight deliveries may run after a shutdown begins.
    pub shutdown_timeout: Duration,
    /// `Some(interval)`: log a statistics line that often.
    pub stat_log_interval: Option<Duration>,
    /// `Some(d)`: once nothing was received for `d` and nothing is in flight, drain and end.
    pub exit_when_idle: Option<Duration>,
    /// Serve `/healthz`, `/readyz` and `/metrics` here.
    pub admin_addr: Option<std::net::SocketAddr>,
}

impl Settings {
    /// Defaults of the Go carrier for everything but the queue: one route, `default`.
    pub fn new(queue: QueueAddress) -> Self {
        Settings {
            routes: vec![RouteSettings::new(DEFAULT_ROUTE, queue)],
            policy: Policy::Weighted,
            receivers: 1,
            workers_per_receiver: 1,
            threads: 1,
            health_check: None,
            shutdown_timeout: Duration::from_secs(20),
            stat_log_interval: None,
            exit_when_idle: None,
            admin_addr: None,
        }
    }

    /// The first route (the only one unless `CARRIER_ROUTES` is set).
    pub fn route(&mut self) -> &mut RouteSettings {
        &mut self.routes[0]
    }

    /// The delivery slots all routes share: receivers × workers (SPEC 5.3).
    pub fn slots(&self) -> usize {
        self.receivers.max(1) * self.workers_per_receiver.max(1)
    }
}

/// The one route's name when `CARRIER_ROUTES` is unset.
pub const DEFAULT_ROUTE: &str = "default";

/// How a carrier system ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExitReason {
    /// Asked to stop, drained cleanly.
    Shutdown,
    /// `exit_when_idle`: the queue stayed empty, drained cleanly.
    Idle,
    /// The webhook failed its health checks; drained, and the orchestrator should restart us.
    WebhookOffline,
    /// The webhook never answered its health check within the startup timeout.
    WebhookNeverOnline,
    /// The engine stopped without saying how (a bug): never reported as success.
    Aborted,
}

impl ExitReason {
    /// The process exit status this deserves: 0 for a requested or idle end, else 1.
    pub fn exit_code(self) -> u8 {
        match self {
            ExitReason::Shutdown | ExitReason::Idle => 0,
            ExitReason::WebhookOffline | ExitReason::WebhookNeverOnline | ExitReason::Aborted => 1,
        }
    }
}

/// Why a system cannot start at all.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("{0}")]
    Tls(String),
    #[error("cannot serve the admin endpoints on {addr}: {error}")]
    Admin {
        addr: std::net::SocketAddr,
        error: std::io::Error,
    },
}

/// A running carrier system.
pub struct Carrier {
    supervisor: Addr<Supervisor>,
    exit: oneshot::Receiver<ExitReason>,
    /// How it ended, once known (so `wait` can be called again).
    ended: Option<ExitReason>,
    stats: Arc<Stats>,
    readiness: Arc<Readiness>,
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
    pub fn start(settings: Settings, log: Logger) -> Result<Carrier, StartError> {
        Carrier::start_with_stats(settings, log, Arc::new(Stats::new()))
    }

    /// The same, counting into `stats` (which the caller may already have handed to its logger).
    pub fn start_with_stats(
        settings: Settings,
        log: Logger,
        stats: Arc<Stats>,
    ) -> Result<Carrier, StartError> {
        // Each route (and the health check) gets the verifying or the accept-any configuration
        // its own `TLS_INSECURE_SKIP_VERIFY` says: one route's choice never weakens another's.
        let health = settings
            .health_check
            .as_ref()
            .map(|h| (h.endpoint.https, h.tls_insecure_skip_verify));
        let endpoints = settings
            .routes
            .iter()
            .map(|r| (r.webhook.endpoint.https, r.webhook.tls_insecure_skip_verify))
            .chain(health);
        let tls = http::TlsConfigs::new(endpoints).map_err(StartError::Tls)?;
        let readiness = Arc::new(Readiness::default());
        let (exit_tx, exit) = oneshot::channel();
        // Bound before the supervisor starts: a start that fails here leaves no actor behind
        // (one dropped with the system outside its runtime would panic on the way out).
        let admin = settings
            .admin_addr
            .map(|addr| {
                std::net::TcpListener::bind(addr)
                    .map(|listener| (addr, listener))
                    .map_err(|error| StartError::Admin { addr, error })
            })
            .transpose()?;
        // The supervisor's mailbox exists before the actor runs, so the admin endpoints can be
        // started first: if they cannot be (no thread for them), no actor has started, and none
        // is dropped with the system outside its runtime (which panics on the way out).
        let context = Context::<Supervisor>::new();
        if let Some((addr, listener)) = admin {
            admin::serve(
                listener,
                context.address(),
                stats.clone(),
                readiness.clone(),
                log.clone(),
            )
            .map_err(|error| StartError::Admin { addr, error })?;
        }
        let supervisor = context.run(Supervisor::new(
            Arc::new(settings),
            stats.clone(),
            tls,
            readiness.clone(),
            log,
            exit_tx,
        ));
        Ok(Carrier {
            supervisor,
            exit,
            ended: None,
            stats,
            readiness,
        })
    }

    /// Ready to receive: queue resolved, webhook online, not draining (what `/readyz` says).
    pub fn ready(&self) -> bool {
        self.readiness.ready()
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
