//! The one place each observable thing is recorded: a message received, acked, retried, nacked,
//! released or dead-lettered, an SQS call and its errors, a visibility extension, an actor restart.
//! Every method counts the event in [`Stats`] (the stat line and `/metrics`) and writes its log
//! line, so the views cannot disagree. Repeated warnings are rate-bounded per kind; the
//! supervisor logs a summary of what was held back.
//!
//! Message bodies are never passed here; URLs only in redacted form.

use std::sync::Arc;
use std::time::Duration;

use slog::{debug, error, info, warn, Logger};

use crate::messages::{Answer, NackReason, Outcome, SqsError};
use crate::stats::Stats;

/// An actor's (or the SQS wrapper's) handle on events: the shared stats and its own logger.
#[derive(Clone)]
pub(crate) struct Events {
    stats: Arc<Stats>,
    log: Logger,
    /// The route counted under (`""`: shared, no route's).
    route: &'static str,
}

fn ms(d: Duration) -> u64 {
    d.as_millis() as u64
}

/// The status class a webhook answer is counted under.
fn class(answer: &Answer) -> &'static str {
    match (answer.status, &answer.outcome) {
        (Some(s), _) => match s {
            100..=199 => "1xx",
            200..=299 => "2xx",
            300..=399 => "3xx",
            400..=499 => "4xx",
            _ => "5xx",
        },
        (
            None,
            Outcome::Nack {
                reason: NackReason::Timeout,
            },
        ) => "timeout",
        (
            None,
            Outcome::Nack {
                reason: NackReason::Cancelled,
            },
        ) => "cancelled",
        (None, _) => "error",
    }
}

impl Events {
    pub fn new(stats: Arc<Stats>, log: Logger) -> Events {
        Events {
            stats,
            log,
            route: "",
        }
    }

    /// This handle for one route: its counts carry the `route` label, its log lines the
    /// `route` field.
    pub fn for_route(&self, route: &'static str) -> Events {
        self.stats.add_route(route);
        Events {
            stats: self.stats.clone(),
            log: self.log.new(slog::o!("route" => route)),
            route,
        }
    }

    fn route(&self) -> [(&'static str, &'static str); 1] {
        [("route", self.route)]
    }

    fn labelled(&self, name: &'static str, value: &'static str) -> crate::stats::Label {
        [("route", self.route), (name, value)]
    }

    pub fn log(&self) -> &Logger {
        &self.log
    }

    pub fn stats(&self) -> &Arc<Stats> {
        &self.stats
    }

    /// This handle with a new logger (the same stats).
    pub fn with_log(&self, log: Logger) -> Events {
        Events {
            stats: self.stats.clone(),
            log,
            route: self.route,
        }
    }

    fn warn_bounded(&self, kind: &'static str) -> bool {
        self.stats.throttle(kind)
    }

    // --- messages --------------------------------------------------------------------------------

    pub fn received(&self, receiver: usize, count: usize) {
        self.stats
            .received
            .get_or_create(&self.route())
            .inc_by(count as u64);
        debug!(self.log, "received messages"; "receiver" => receiver, "count" => count);
    }

    /// Messages held by one receiver changed by `delta` (receipt: +, last action confirmed: −).
    pub fn in_flight(&self, delta: i64) {
        self.stats
            .in_flight
            .get_or_create(&self.route())
            .inc_by(delta);
    }

    /// The webhook answered (or did not): latency by status class.
    pub fn delivered(&self, message_id: &str, answer: &Answer, elapsed: Duration) {
        self.stats
            .webhook_latency
            .get_or_create(&self.labelled("class", class(answer)))
            .observe(elapsed.as_secs_f64());
        debug!(self.log, "delivered"; "message_id" => message_id, "status" => answer.status,
            "outcome" => ?answer.outcome, "elapsed_ms" => ms(elapsed));
    }

    /// Lambda format: how a batch went, logged once with its size and reason (never a body).
    pub fn batch_answered(&self, first_id: &str, records: usize, answer: &Answer) {
        let result = match (&answer.outcome, answer.failed.len()) {
            (Outcome::Ack, 0) => "ok",
            (Outcome::Ack, _) => "partial",
            (Outcome::Retry { .. }, _) => "retry",
            _ => "failed",
        };
        self.stats
            .batches
            .get_or_create(&self.labelled("result", result))
            .inc();
        self.stats
            .batch_records
            .get_or_create(&self.route())
            .observe(records as f64);
        match &answer.outcome {
            Outcome::Ack if answer.failed.is_empty() => {
                debug!(self.log, "batch delivered"; "first_message_id" => first_id,
                    "records" => records, "status" => answer.status)
            }
            Outcome::Ack => {
                info!(self.log, "batch partly failed; the failed records reappear, the others are deleted";
                    "first_message_id" => first_id, "records" => records,
                    "failed" => answer.failed.len())
            }
            Outcome::Retry { .. } => {
                info!(self.log, "the function asked to retry the whole batch later";
                    "first_message_id" => first_id, "records" => records, "status" => answer.status)
            }
            Outcome::Nack { reason } => {
                if self.warn_bounded("batch failed") {
                    warn!(self.log, "batch failed; every record reappears";
                        "first_message_id" => first_id, "records" => records,
                        "status" => answer.status, "reason" => %reason)
                }
            }
            Outcome::DeadLetter => {}
        }
    }

    /// With an envelope configured: what one delivery's body was opened as (`sns`,
    /// `eventbridge`, or `none`: delivered unchanged).
    pub fn unwrapped(&self, envelope: &'static str) {
        self.stats
            .unwrapped
            .get_or_create(&self.labelled("envelope", envelope))
            .inc();
    }

    pub fn acked(&self) {
        self.stats.acked.get_or_create(&self.route()).inc();
    }

    pub fn retried(&self, message_id: &str, retry_in_s: u32) {
        self.stats.retried.get_or_create(&self.route()).inc();
        debug!(self.log, "webhook asked to retry later"; "message_id" => message_id,
            "retry_in_s" => retry_in_s);
    }

    /// A failed delivery; `reappears_in_s` when the Nack policy set a visibility (else the message
    /// reappears when its current visibility timeout ends).
    pub fn nacked(
        &self,
        message_id: &str,
        reason: &NackReason,
        elapsed: Duration,
        reappears_in_s: Option<u32>,
    ) {
        self.stats
            .nacked
            .get_or_create(&self.labelled("reason", reason.label()))
            .inc();
        self.stats.nacked_total.inc();
        if self.warn_bounded("delivery failed") {
            match reappears_in_s {
                None => {
                    warn!(self.log, "delivery failed; the message reappears after its visibility timeout";
                    "message_id" => message_id, "reason" => %reason, "elapsed_ms" => ms(elapsed))
                }
                Some(s) => {
                    warn!(self.log, "delivery failed; the message reappears after the error timeout";
                    "message_id" => message_id, "reason" => %reason, "elapsed_ms" => ms(elapsed),
                    "reappears_in_s" => s)
                }
            }
        }
    }

    pub fn dead_lettered(&self, message_id: &str) {
        self.stats.dead_lettered.get_or_create(&self.route()).inc();
        info!(self.log, "message moved to the dead-letter queue"; "message_id" => message_id);
    }

    pub fn no_dead_letter_queue(&self, message_id: &str) {
        error!(self.log, "webhook asked for the dead-letter queue, but the queue has none (no RedrivePolicy); treated as a failed delivery";
            "message_id" => message_id);
    }

    /// The move failed: counted as a failed delivery (it reappears).
    pub fn dead_letter_failed(&self, message_id: &str, error: &SqsError) {
        self.sqs_error_counted(error.operation);
        let reason = NackReason::DeadLetterFailed;
        self.stats
            .nacked
            .get_or_create(&self.labelled("reason", reason.label()))
            .inc();
        self.stats.nacked_total.inc();
        error!(self.log, "could not move the message to the dead-letter queue; it reappears after its visibility timeout";
            "message_id" => message_id, "error" => %error);
    }

    /// Messages handed back to SQS unsent (FIFO order after a failure, held too long while
    /// paused, shutdown).
    pub fn released(&self, receiver: usize) {
        self.stats.released.get_or_create(&self.route()).inc();
        info!(self.log, "releasing messages unsent"; "receiver" => receiver, "count" => 1);
    }

    /// SQS handed out a message this receiver still holds (its visibility lapsed under a slow
    /// SQS): it joined its lease and is not delivered again.
    pub fn redelivered_while_held(&self, message_id: &str) {
        self.stats
            .redelivered_while_held
            .get_or_create(&self.route())
            .inc();
        if self.warn_bounded("redelivered while held") {
            warn!(self.log, "SQS handed out a message carrier still holds; it is not delivered again";
                "message_id" => message_id);
        }
    }

    // --- heartbeat -------------------------------------------------------------------------------

    pub fn extended(&self, count: usize) {
        self.stats
            .extensions
            .get_or_create(&self.route())
            .inc_by(count as u64);
    }

    pub fn extension_refused(&self, message_id: &str, code: &str) {
        self.sqs_error_counted("ChangeMessageVisibility");
        if self.warn_bounded("extension refused") {
            warn!(self.log, "SQS refused a visibility extension; the delivery goes on, and its outcome is still applied";
                "message_id" => message_id, "code" => code);
        }
    }

    // --- SQS -------------------------------------------------------------------------------------

    /// One SQS call's latency.
    pub fn sqs_call(&self, operation: &'static str, elapsed: Duration) {
        self.stats
            .sqs_latency
            .get_or_create(&self.labelled("operation", operation))
            .observe(elapsed.as_secs_f64());
    }

    fn sqs_error_counted(&self, operation: &'static str) {
        self.stats
            .sqs_errors
            .get_or_create(&self.labelled("operation", operation))
            .inc();
        self.stats.sqs_errors_total.inc();
    }

    pub fn receive_failed(&self, receiver: usize, error: &SqsError, retry_in: Duration) {
        self.sqs_error_counted(error.operation);
        warn!(self.log, "failed to receive messages"; "receiver" => receiver, "error" => %error,
            "retry_in_ms" => ms(retry_in));
    }

    pub fn receiving_again(&self, receiver: usize) {
        info!(self.log, "receiving again"; "receiver" => receiver);
    }

    pub fn resolve_failed(&self, queue_name: &str, error: &SqsError, retry_in: Duration) {
        self.sqs_error_counted(error.operation);
        warn!(self.log, "failed to resolve queue URL, retrying"; "queue_name" => queue_name,
            "error" => %error, "retry_in_ms" => ms(retry_in));
    }

    pub fn attributes_failed(&self, error: &SqsError, attempt: u32) {
        self.sqs_error_counted(error.operation);
        warn!(self.log, "failed to read the queue's attributes"; "error" => %error, "attempt" => attempt);
    }

    /// A settling call (delete, visibility change, dead-letter send) failed as a whole.
    pub fn settle_call_failed(&self, error: &SqsError, attempt: u32, entries: usize) {
        self.sqs_error_counted(error.operation);
        if self.warn_bounded("SQS call failed") {
            warn!(self.log, "SQS call failed"; "error" => %error, "attempt" => attempt,
                "entries" => entries);
        }
    }

    /// SQS refused one entry for good (the sender's fault, e.g. an expired receipt handle).
    pub fn entry_rejected(
        &self,
        operation: &'static str,
        action: &'static str,
        message_id: &str,
        code: &str,
        detail: &str,
    ) {
        self.sqs_error_counted(operation);
        if self.warn_bounded("SQS rejected an entry") {
            warn!(self.log, "SQS rejected an entry; the message reappears after its visibility timeout";
                "action" => action, "message_id" => message_id, "code" => code, "detail" => detail);
        }
    }

    /// One entry failed through SQS's fault; it is retried.
    pub fn entry_failed(
        &self,
        operation: &'static str,
        action: &'static str,
        message_id: &str,
        code: &str,
    ) {
        self.sqs_error_counted(operation);
        debug!(self.log, "SQS failed an entry, retrying"; "action" => action,
            "message_id" => message_id, "code" => code);
    }

    /// A batch answer named an entry id we never sent.
    pub fn unknown_entry(&self, operation: &'static str, id: &str) {
        self.sqs_error_counted(operation);
        warn!(self.log, "SQS answered for an entry carrier did not send; the entries it left unanswered are retried";
            "operation" => operation, "entry_id" => id);
    }

    pub fn gave_up(&self, action: &'static str, message_id: &str) {
        error!(self.log, "giving up on SQS action; the message reappears after its visibility timeout";
            "action" => action, "message_id" => message_id);
    }

    pub fn no_batch_api(&self, operation: &'static str) {
        warn!(self.log, "endpoint has no batch API; using single calls"; "operation" => operation);
    }

    // --- actors ----------------------------------------------------------------------------------

    pub fn restarted(&self, actor: &'static str) {
        self.stats
            .restarts
            .get_or_create(&self.labelled("actor", actor))
            .inc();
        self.stats.restarts_total.inc();
    }

    /// Logs a summary of the warnings the rate bound held back since the last call.
    pub fn log_suppressed(&self) {
        for (kind, count) in self.stats.take_suppressed() {
            warn!(self.log, "similar warnings suppressed"; "kind" => kind, "count" => count,
                "window_s" => crate::stats::THROTTLE_WINDOW.as_secs());
        }
    }
}
