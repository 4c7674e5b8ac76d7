//! Every message the actors exchange, in one place.
//!
//! The vocabulary is the domain's: a receiver hands a [`Deliver`] to a transmitter, the transmitter
//! answers with an [`Outcome`] (`Ack`, `Retry { until }`, `Nack` or `DeadLetter`), and the receiver
//! turns that into an SQS action. Lifecycle messages (`Resume`, `Pause`, `Drain`, `HealthReport`,
//! `Shutdown`) flow between the supervisor and its children. This module holds data only, no
//! behaviour beyond small helpers.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use actix::Message;
use bytes::Bytes;
use tokio::sync::{oneshot, watch};

/// One message attribute, as the producer set it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attribute {
    pub name: String,
    /// SQS data type: `String`, `Number`, `Binary`, or one of those with a custom suffix
    /// (`Number.float`).
    pub data_type: String,
    pub value: AttributeValue,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AttributeValue {
    /// String and Number attributes.
    Text(String),
    Binary(Bytes),
}

/// One SQS message on its way to the webhook: what the transmitter needs to build the HTTP request
/// (and the receiver to dead-letter it). The receipt handle travels beside it, in
/// [`Incoming`], only where a format shows it (Lambda's event).
#[derive(Debug, Clone, Default)]
pub struct Delivery {
    /// SQS `MessageId`: logs, `X-Carrier-Message-Id`, the signature's `webhook-id`.
    pub message_id: Arc<str>,
    /// The message body, sent unchanged.
    pub body: Bytes,
    /// SQS `ApproximateReceiveCount`, as SQS gives it.
    pub receive_count: Option<String>,
    /// SQS `ApproximateFirstReceiveTimestamp` (epoch milliseconds), as SQS gives it.
    pub first_receive_time: Option<String>,
    /// SQS `SentTimestamp` (epoch milliseconds), as SQS gives it.
    pub sent_time: Option<String>,
    /// SQS `SenderId` (the producer's account or role id).
    pub sender_id: Option<String>,
    /// FIFO queues: `MessageGroupId`.
    pub group_id: Option<Arc<str>>,
    /// FIFO queues: `SequenceNumber`.
    pub sequence_number: Option<String>,
    /// The `AWSTraceHeader` system attribute (X-Ray), sent as `X-Amzn-Trace-Id`.
    pub trace_header: Option<String>,
    /// FIFO queues: `MessageDeduplicationId`.
    pub dedup_id: Option<String>,
    /// SQS `MD5OfBody`, as SQS gives it (the Lambda event's `md5OfBody`).
    pub md5_of_body: Option<String>,
    /// SQS `MD5OfMessageAttributes`, when the message has attributes.
    pub md5_of_attributes: Option<String>,
    /// Every message attribute, in the order SQS gave them.
    pub attributes: Vec<Attribute>,
}

impl Delivery {
    /// A String (or Number) attribute by exact name.
    pub fn text_attribute(&self, name: &str) -> Option<&str> {
        self.attributes
            .iter()
            .find(|a| a.name == name)
            .and_then(|a| match &a.value {
                AttributeValue::Text(t) => Some(t.as_str()),
                AttributeValue::Binary(_) => None,
            })
    }

    /// `ApproximateReceiveCount` as a number (1 when SQS did not say).
    pub fn receive_count(&self) -> u32 {
        self.receive_count
            .as_deref()
            .and_then(|c| c.parse().ok())
            .unwrap_or(1)
    }
}

/// Ask a transmitter to POST messages (one, or a batch in Lambda's format, in this order); it
/// answers with their [`Outcome`]s.
#[derive(Message)]
#[rtype(result = "Answer")]
pub struct Deliver {
    pub records: Vec<Incoming>,
    /// Turns `true` when the shutdown deadline passes: the request is abandoned at once.
    pub cancel: watch::Receiver<bool>,
}

/// What the transmitter found out: the outcome, and for metrics the status it came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    /// Every record's outcome, but those in `failed`.
    pub outcome: Outcome,
    /// A batch the function answered in part: these records failed (each a Nack); the others
    /// took `outcome` (an Ack).
    pub failed: HashSet<Arc<str>>,
    /// The final HTTP status, when the webhook answered at all.
    pub status: Option<u16>,
}

impl Answer {
    pub fn new(outcome: Outcome, status: Option<u16>) -> Answer {
        Answer {
            outcome,
            failed: HashSet::new(),
            status,
        }
    }

    /// The outcome of one record.
    pub fn outcome_of(&self, message_id: &str) -> Outcome {
        if self.failed.contains(message_id) {
            return Outcome::Nack {
                reason: NackReason::ItemFailed,
            };
        }
        self.outcome.clone()
    }
}

/// What the webhook's answer means for the message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The webhook accepted the message: delete it.
    Ack,
    /// The webhook asked to see it again, not before `until`: change its visibility timeout.
    Retry { until: SystemTime },
    /// Anything else: the Nack policy decides when it reappears.
    Nack { reason: NackReason },
    /// The webhook answered `X-Carrier-Dead-Letter: true`: move it to the dead-letter queue now.
    DeadLetter,
}

/// Why a delivery did not succeed; logged, and counted per reason.
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
    /// The shutdown deadline passed while the request was running.
    Cancelled,
    /// The webhook asked for the dead-letter queue, but the queue has none.
    NoDeadLetterQueue,
    /// The webhook asked for the dead-letter queue, but the move failed (it reappears).
    DeadLetterFailed,
    /// Lambda format: the function reported this record in `batchItemFailures`.
    ItemFailed,
    /// Lambda format: the function's answer failed the whole batch (SPEC 5.1's rules).
    Function(BatchFailure),
}

impl NackReason {
    /// The way a webhook that is down (not one that rejects a message) fails a delivery: no
    /// connection, no answer in time, or a gateway's 502/503/504. A plain 500 is the worker
    /// answering, so it does not count.
    pub fn looks_down(&self) -> bool {
        matches!(
            self,
            NackReason::Connect(_) | NackReason::Timeout | NackReason::Status(502..=504)
        )
    }

    /// A short, fixed label for metrics.
    pub fn label(&self) -> &'static str {
        match self {
            NackReason::Status(_) => "status",
            NackReason::Timeout => "timeout",
            NackReason::Connect(_) => "connect",
            NackReason::TransmitterLost => "transmitter_lost",
            NackReason::Cancelled => "cancelled",
            NackReason::NoDeadLetterQueue => "no_dead_letter_queue",
            NackReason::DeadLetterFailed => "dead_letter_failed",
            NackReason::ItemFailed => "item_failed",
            NackReason::Function(_) => "function_error",
        }
    }
}

impl std::fmt::Display for NackReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            NackReason::Status(code) => write!(f, "status {code}"),
            NackReason::Timeout => f.write_str("timeout"),
            NackReason::Connect(e) => write!(f, "request failed: {e}"),
            NackReason::TransmitterLost => f.write_str("transmitter restarted"),
            NackReason::Cancelled => f.write_str("cancelled at the shutdown deadline"),
            NackReason::NoDeadLetterQueue => f.write_str("dead letter asked, but no DLQ"),
            NackReason::DeadLetterFailed => f.write_str("dead letter asked, but the move failed"),
            NackReason::ItemFailed => f.write_str("the function reported this record failed"),
            NackReason::Function(why) => write!(f, "the batch failed: {why}"),
        }
    }
}

/// A delivery finished: sent by the task that awaited the transmitter back to the receiver that owns
/// the message. It travels through the receiver's mailbox, so it survives a receiver restart.
#[derive(Message)]
#[rtype(result = "()")]
pub(crate) struct Settle {
    pub post: crate::limits::PostId,
    pub answer: Answer,
    pub elapsed: Duration,
}

/// Start (or restart) receiving: the webhook is ready.
#[derive(Message)]
#[rtype(result = "()")]
pub(crate) struct Resume;

/// Stop receiving for now (the webhook is offline and the offline action is `pause`); in-flight
/// deliveries carry on.
#[derive(Message)]
#[rtype(result = "()")]
pub(crate) struct Pause;

/// Stop receiving, let in-flight deliveries finish until `deadline`, flush their outcomes and
/// report on `done`.
#[derive(Message)]
#[rtype(result = "()")]
pub(crate) struct Drain {
    pub deadline: std::time::Instant,
    pub done: oneshot::Sender<()>,
}

/// A receiver saw several deliveries in a row fail the way a down webhook fails them
/// ([`NackReason::looks_down`]): check the webhook now instead of at the next interval.
#[derive(Message)]
#[rtype(result = "()")]
pub(crate) struct Suspect;

/// The health checker's verdict on the webhook.
#[derive(Message, Debug, Clone, Copy, PartialEq, Eq)]
#[rtype(result = "()")]
pub(crate) enum HealthReport {
    /// Healthy: came online, or passed a check while in doubt.
    Online,
    /// Deliveries suggest it is down; checks are running early. Hold receiving until one passes
    /// (`Online`) or the regular checks find it offline (`Offline`).
    Doubtful,
    Offline,
    /// It never came online within `CARRIER_WEBHOOK_STARTUP_TIMEOUT`.
    StartupTimedOut,
}

/// Begin a graceful shutdown (a signal, or the embedding program asked).
#[derive(Message)]
#[rtype(result = "()")]
pub(crate) struct Shutdown;

/// Are you there? The admin `/healthz` asks the supervisor.
#[derive(Message)]
#[rtype(result = "()")]
pub(crate) struct Ping;

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

/// A message SQS handed to one receiver while another holds it: passed to the holder, which joins
/// it to its lease (or, its lease done meanwhile, takes it as new).
#[derive(Message)]
#[rtype(result = "()")]
pub(crate) struct Rejoin {
    /// When the receive that brought it was sent.
    pub sent_at: std::time::Instant,
    pub message: Incoming,
}

/// The receivers of one carrier, by index, once all are started (for [`Rejoin`]).
pub(crate) type Peers = Arc<std::sync::OnceLock<Vec<actix::Recipient<Rejoin>>>>;

/// One received message, as the ledger takes it: its receipt handle and the message.
#[derive(Debug, Clone)]
pub struct Incoming {
    pub receipt: Arc<str>,
    pub delivery: Arc<Delivery>,
}

/// Why a whole batch failed (logged with the batch's size; never a body).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BatchFailure {
    #[error("status {0}")]
    Status(u16),
    #[error("the answer carries X-Amz-Function-Error")]
    FunctionErrorHeader,
    #[error("the answer is over 6 MB")]
    TooLarge,
    #[error("the answer ended before its body did (or was empty without a Content-Length)")]
    Truncated,
    #[error("the answer is not JSON")]
    NotJson,
    #[error("the answer is neither a JSON object nor null")]
    NotAnObject,
    #[error("the function reported an error")]
    FunctionError,
    #[error("batchItemFailures is malformed or names an item that is not in the batch")]
    BadItemIdentifier,
}

/// An error from SQS, already rendered for a log line.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{operation} failed: {detail}")]
pub struct SqsError {
    pub operation: &'static str,
    pub code: Option<String>,
    pub detail: String,
    /// SQS said the request itself was wrong (a 4xx other than throttling): retrying the same
    /// request cannot help.
    pub sender_fault: bool,
}

#[cfg(test)]
mod tests {
    use super::NackReason;

    #[test]
    fn only_failures_of_a_down_webhook_look_down() {
        let down = [
            NackReason::Connect("refused".into()),
            NackReason::Timeout,
            NackReason::Status(502),
            NackReason::Status(503),
            NackReason::Status(504),
        ];
        let up = [
            NackReason::Status(500),
            NackReason::Status(501),
            NackReason::Status(404),
            NackReason::Status(429),
            NackReason::TransmitterLost,
            NackReason::Cancelled,
            NackReason::NoDeadLetterQueue,
        ];
        assert!(down.iter().all(NackReason::looks_down));
        assert!(!up.iter().any(NackReason::looks_down));
    }
}
