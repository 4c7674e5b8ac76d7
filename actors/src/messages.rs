//! Every message the actors exchange, in one place.
//!
//! The vocabulary is the domain's: a receiver hands a [`Deliver`] to a transmitter, the transmitter
//! answers with an [`Outcome`] (`Ack`, `Retry { until }` or `Nack`), and the receiver turns that into
//! an SQS action. Lifecycle messages (`Resume`, `Drain`, `HealthReport`, `Shutdown`) flow between
//! the supervisor and its children. This module holds data only, no behaviour beyond small helpers.

use std::time::{Duration, SystemTime};

use actix::Message;
use tokio::sync::oneshot;

/// One SQS message on its way to the webhook: everything the transmitter needs to build the HTTP
/// request, and nothing SQS-specific it could act on (no receipt handle: only the receiver settles).
#[derive(Debug, Clone)]
pub struct Delivery {
    /// SQS `MessageId`, for logs and the `X-Carrier-Message-Id` header.
    pub message_id: String,
    /// The message body, sent unchanged.
    pub body: String,
    /// The `Body.ContentType` String attribute, when the producer set one.
    pub content_type: Option<String>,
    /// SQS `ApproximateReceiveCount`, as SQS gives it.
    pub receive_count: Option<String>,
    /// SQS `ApproximateFirstReceiveTimestamp` (epoch milliseconds), as SQS gives it.
    pub first_receive_time: Option<String>,
    /// SQS `SentTimestamp` (epoch milliseconds), as SQS gives it.
    pub sent_time: Option<String>,
}

/// Ask a transmitter to POST one message; it answers with the message's [`Outcome`].
#[derive(Message)]
#[rtype(result = "Outcome")]
pub struct Deliver(pub Delivery);

/// What the webhook's answer means for the message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The webhook accepted the message: delete it.
    Ack,
    /// The webhook asked to see it again, not before `until`: change its visibility timeout.
    Retry { until: SystemTime },
    /// Anything else: leave it to SQS (it reappears when its visibility timeout ends).
    Nack { reason: NackReason },
}

/// Why a delivery did not succeed; logged, and later counted per reason.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NackReason {
    /// The webhook answered with a status that is neither success nor a usable retry.
    Status(u16),
    /// No answer within `CARRIER_WEBHOOK_REQUEST_TIMEOUT`.
    Timeout,
    /// The request could not be sent (connection refused, TLS, DNS, ...).
    Connect(String),
    /// The transmitter went away while holding the message (it was restarted).
    TransmitterLost,
}

impl std::fmt::Display for NackReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            NackReason::Status(code) => write!(f, "status {code}"),
            NackReason::Timeout => f.write_str("timeout"),
            NackReason::Connect(e) => write!(f, "request failed: {e}"),
            NackReason::TransmitterLost => f.write_str("transmitter restarted"),
        }
    }
}

/// A delivery finished: sent by the task that awaited the transmitter back to the receiver that owns
/// the message. It travels through the receiver's mailbox, so it survives a receiver restart.
#[derive(Message)]
#[rtype(result = "()")]
pub(crate) struct Settle {
    pub token: u64,
    pub outcome: Outcome,
    pub elapsed: Duration,
}

/// An SQS action (delete or visibility change) finished; the receiver stops counting it as pending.
#[derive(Message)]
#[rtype(result = "()")]
pub(crate) struct ActionsDone;

/// Start (or restart) receiving: the webhook is ready.
#[derive(Message)]
#[rtype(result = "()")]
pub(crate) struct Resume;

/// Stop receiving, let in-flight deliveries finish until `deadline`, flush their outcomes and
/// report on `done`.
#[derive(Message)]
#[rtype(result = "()")]
pub(crate) struct Drain {
    pub deadline: std::time::Instant,
    pub done: oneshot::Sender<()>,
}

/// The health checker's verdict on the webhook.
#[derive(Message, Debug, Clone, Copy, PartialEq, Eq)]
#[rtype(result = "()")]
pub(crate) enum HealthReport {
    Online,
    Offline,
}

/// Begin a graceful shutdown (a signal, or the embedding program asked).
#[derive(Message)]
#[rtype(result = "()")]
pub(crate) struct Shutdown;

/// Stop an actor as a crash would, so supervision restarts it. For tests and fault drills.
#[derive(Message)]
#[rtype(result = "()")]
pub(crate) struct Crash;

/// A fault to inject into a running system (see [`crate::Carrier::inject`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// Stop receiver `n` (modulo the pool size) as if it had failed.
    StopReceiver(usize),
    /// Stop transmitter `n` (modulo the pool size) as if it had failed.
    StopTransmitter(usize),
}

#[derive(Message)]
#[rtype(result = "()")]
pub(crate) struct Inject(pub Fault);
