//! `SqsReceiverActor`: long-polls SQS, hands each message to a transmitter as a [`Deliver`], and
//! owns the message until its final SQS action (delete, visibility change, or release).
//!
//! Flow control: it asks SQS for at most as many messages as it has free delivery slots (never more
//! than the batch size) and polls again as soon as a slot frees, so a slow delivery holds one slot,
//! never the batch. Acks are buffered and deleted in batches (by size, or after [`FLUSH_DELAY`]).
//!
//! Restart safety: everything asynchronous (the long poll, each delivery, each SQS action) runs as
//! a detached task that reports back through this actor's mailbox, and the ownership table lives in
//! the actor struct, which supervision keeps across a restart. So a restarted receiver still settles
//! every message it held. It must not talk HTTP or decide what a webhook answer means.

use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use actix::prelude::*;
use slog::{debug, info, warn, Logger};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::messages::{
    ActionsDone, Crash, Deliver, Delivery, Drain, NackReason, Outcome, Resume, Settle,
};
use crate::sqs::{Backoff, Settlement, SqsError, SqsQueue, MAX_BATCH_SIZE};
use crate::stats::Stats;
use crate::transmitter::WebhookTransmitterActor;

/// How long an Ack waits for companions before its delete is sent (unless 10 are ready first).
const FLUSH_DELAY: Duration = Duration::from_millis(10);
/// On drain, an outstanding poll gets this long to come back before it is aborted: a poll that
/// found messages answers within milliseconds (and those are then released, not stranded
/// invisible), while an empty long poll would otherwise hold shutdown for up to 20 s.
const POLL_ABORT_GRACE: Duration = Duration::from_millis(250);
/// An empty receive that came back sooner than this was not a long poll (some emulators and
/// proxies ignore WaitTimeSeconds): wait this long before the next, instead of spinning.
const MIN_EMPTY_POLL: Duration = Duration::from_secs(1);
/// Receive errors back off from this...
const POLL_BACKOFF_BASE: Duration = Duration::from_millis(200);
/// ...up to this, so an unreachable SQS costs one call (and one log line) per ~10 s per receiver.
const POLL_BACKOFF_MAX: Duration = Duration::from_secs(10);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Waiting for the webhook to be healthy: no polling.
    Paused,
    Running,
    /// Shutting down: no polling, finishing in-flight deliveries.
    Draining,
}

/// A received batch, reported back by the detached poll task, with how long the call took.
#[derive(Message)]
#[rtype(result = "()")]
struct Received(Result<Vec<(Settlement, Delivery)>, SqsError>, Duration);

pub struct SqsReceiverActor {
    id: usize,
    queue: SqsQueue,
    transmitter: Addr<WebhookTransmitterActor>,
    /// Most messages asked for per ReceiveMessage (`CARRIER_SQS_BATCH_SIZE`).
    batch_size: usize,
    /// Delivery slots (`CARRIER_SQS_RECEIVER_WORKERS`): the most messages this receiver holds.
    workers: usize,
    state: State,
    /// Every message this receiver holds, by token, from receipt until its outcome is known.
    in_flight: HashMap<u64, Settlement>,
    next_token: u64,
    /// The outstanding long poll, if any; aborted on drain so shutdown never waits on it.
    poll: Option<JoinHandle<()>>,
    /// Set while waiting out a receive error.
    backoff_timer: Option<SpawnHandle>,
    backoff: Backoff,
    /// Acked messages not yet deleted.
    deletes: Vec<Settlement>,
    /// Messages waiting for a visibility change, with the timeout in seconds.
    visibility: Vec<(Settlement, u64)>,
    flush_timer: Option<SpawnHandle>,
    /// SQS delete / visibility calls still running; drain waits for them.
    actions_in_flight: usize,
    /// Where to report that draining finished.
    drained: Option<oneshot::Sender<()>>,
    /// When in-flight deliveries stop being waited for (set once draining).
    drain_deadline: Option<Instant>,
    /// The shutdown timeout passed with deliveries still running: stop waiting for them.
    abandon_in_flight: bool,
    stats: Arc<Stats>,
    log: Logger,
}

impl SqsReceiverActor {
    pub fn new(
        id: usize,
        queue: SqsQueue,
        transmitter: Addr<WebhookTransmitterActor>,
        batch_size: usize,
        workers: usize,
        stats: Arc<Stats>,
        log: Logger,
    ) -> Self {
        SqsReceiverActor {
            id,
            queue,
            transmitter,
            batch_size: batch_size.clamp(1, MAX_BATCH_SIZE),
            workers: workers.max(1),
            state: State::Paused,
            in_flight: HashMap::new(),
            next_token: 0,
            poll: None,
            backoff_timer: None,
            backoff: Backoff::new(POLL_BACKOFF_BASE, POLL_BACKOFF_MAX),
            deletes: Vec::new(),
            visibility: Vec::new(),
            flush_timer: None,
            actions_in_flight: 0,
            drained: None,
            drain_deadline: None,
            abandon_in_flight: false,
            stats,
            log,
        }
    }

    /// Starts a long poll if receiving, none is outstanding, and a slot is free.
    fn poll(&mut self, ctx: &mut Context<Self>) {
        let free = self.workers.saturating_sub(self.in_flight.len());
        if self.state != State::Running
            || self.poll.is_some()
            || self.backoff_timer.is_some()
            || free == 0
        {
            return;
        }
        let max = free.min(self.batch_size);
        let queue = self.queue.clone();
        let me = ctx.address();
        self.poll = Some(actix_rt::spawn(async move {
            let started = Instant::now();
            let result = queue.receive(max).await;
            me.do_send(Received(result, started.elapsed()));
        }));
    }

    /// Polls again after `delay` (no poll starts meanwhile).
    fn wait_then_poll(&mut self, delay: Duration, ctx: &mut Context<Self>) {
        self.backoff_timer = Some(ctx.run_later(delay, |act, ctx| {
            act.backoff_timer = None;
            act.poll(ctx);
        }));
    }

    /// Hands one message to the transmitter; its outcome comes back as a [`Settle`].
    fn dispatch(&mut self, settlement: Settlement, delivery: Delivery, ctx: &mut Context<Self>) {
        let token = self.next_token;
        self.next_token += 1;
        self.in_flight.insert(token, settlement);
        let transmitter = self.transmitter.clone();
        let me = ctx.address();
        actix_rt::spawn(async move {
            let started = Instant::now();
            let outcome = transmitter
                .send(Deliver(delivery))
                .await
                .unwrap_or(Outcome::Nack {
                    reason: NackReason::TransmitterLost,
                });
            me.do_send(Settle {
                token,
                outcome,
                elapsed: started.elapsed(),
            });
        });
    }

    /// Sends buffered deletes and visibility changes now.
    fn flush(&mut self, ctx: &mut Context<Self>) {
        if let Some(timer) = self.flush_timer.take() {
            ctx.cancel_future(timer);
        }
        if !self.deletes.is_empty() {
            let entries = std::mem::take(&mut self.deletes);
            let queue = self.queue.clone();
            self.spawn_action(ctx, async move { queue.delete(entries).await });
        }
        if !self.visibility.is_empty() {
            let entries = std::mem::take(&mut self.visibility);
            let queue = self.queue.clone();
            self.spawn_action(ctx, async move { queue.change_visibility(entries).await });
        }
    }

    /// Flushes at once when a batch is full or we are draining, else after [`FLUSH_DELAY`].
    fn schedule_flush(&mut self, ctx: &mut Context<Self>) {
        let full = self.deletes.len() >= MAX_BATCH_SIZE || self.visibility.len() >= MAX_BATCH_SIZE;
        if full || self.state == State::Draining {
            self.flush(ctx);
        } else if self.flush_timer.is_none()
            && !(self.deletes.is_empty() && self.visibility.is_empty())
        {
            self.flush_timer = Some(ctx.run_later(FLUSH_DELAY, |act, ctx| {
                act.flush_timer = None;
                act.flush(ctx);
            }));
        }
    }

    fn spawn_action(
        &mut self,
        ctx: &mut Context<Self>,
        action: impl Future<Output = ()> + 'static,
    ) {
        self.actions_in_flight += 1;
        let me = ctx.address();
        actix_rt::spawn(async move {
            action.await;
            me.do_send(ActionsDone);
        });
    }

    /// Reports the drain finished once nothing is held, buffered or being sent.
    fn check_drained(&mut self) {
        let idle = (self.in_flight.is_empty() || self.abandon_in_flight)
            && self.poll.is_none()
            && self.deletes.is_empty()
            && self.visibility.is_empty()
            && self.actions_in_flight == 0;
        if idle {
            if let Some(done) = self.drained.take() {
                info!(self.log, "receiver drained"; "receiver" => self.id);
                let _ = done.send(());
            }
        }
    }

    /// Timers of a drain (the poll abort, the shutdown deadline). Armed when the drain begins, and
    /// again if the receiver restarts mid-drain (a restart drops its context's timers).
    fn arm_drain(&mut self, ctx: &mut Context<Self>) {
        let Some(deadline) = self.drain_deadline else {
            return;
        };
        self.stop_polling(ctx);
        ctx.run_later(deadline.saturating_duration_since(Instant::now()), |act, ctx| {
            if !act.in_flight.is_empty() {
                warn!(act.log, "shutdown timeout reached; unfinished deliveries reappear after their visibility timeout";
                    "receiver" => act.id, "in_flight" => act.in_flight.len());
                act.abandon_in_flight = true;
            }
            act.flush(ctx);
            act.check_drained();
        });
    }

    /// Stops receiving: no new polls; the outstanding one is aborted after [`POLL_ABORT_GRACE`].
    fn stop_polling(&mut self, ctx: &mut Context<Self>) {
        if let Some(timer) = self.backoff_timer.take() {
            ctx.cancel_future(timer);
        }
        if self.poll.is_some() {
            ctx.run_later(POLL_ABORT_GRACE, |act, _ctx| {
                if let Some(poll) = act.poll.take() {
                    poll.abort();
                }
                act.check_drained();
            });
        }
    }
}

impl Actor for SqsReceiverActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        debug!(self.log, "receiver started"; "receiver" => self.id,
            "batch_size" => self.batch_size, "workers" => self.workers);
        self.schedule_flush(ctx);
        self.arm_drain(ctx);
        self.poll(ctx);
    }
}

impl Supervised for SqsReceiverActor {
    /// Timers died with the old context; the poll task, the ownership table and the buffers live on.
    fn restarting(&mut self, _ctx: &mut Self::Context) {
        self.stats.restarted();
        warn!(self.log, "receiver restarting"; "receiver" => self.id, "in_flight" => self.in_flight.len());
        self.backoff_timer = None;
        self.flush_timer = None;
        self.backoff.reset();
    }
}

impl Handler<Received> for SqsReceiverActor {
    type Result = ();

    fn handle(&mut self, Received(result, took): Received, ctx: &mut Self::Context) {
        self.poll = None;
        match result {
            Ok(messages) => {
                if self.backoff.failures() > 0 {
                    info!(self.log, "receiving again"; "receiver" => self.id);
                }
                self.backoff.reset();
                if messages.is_empty() {
                    self.check_drained();
                    if took < MIN_EMPTY_POLL && self.state == State::Running {
                        return self.wait_then_poll(MIN_EMPTY_POLL - took, ctx);
                    }
                    return self.poll(ctx);
                }
                self.stats.received(messages.len());
                debug!(self.log, "received messages"; "count" => messages.len());
                if self.state == State::Running {
                    for (settlement, delivery) in messages {
                        self.dispatch(settlement, delivery, ctx);
                    }
                } else {
                    // The poll finished as we stopped receiving: hand these straight back.
                    self.stats.released(messages.len());
                    info!(self.log, "releasing messages received while stopping"; "count" => messages.len());
                    let entries = messages.into_iter().map(|(s, _)| (s, 0)).collect();
                    let queue = self.queue.clone();
                    self.spawn_action(ctx, async move { queue.change_visibility(entries).await });
                }
                self.check_drained();
                self.poll(ctx);
            }
            Err(e) if self.state == State::Draining => {
                debug!(self.log, "receive failed while draining"; "error" => %e);
                self.check_drained();
            }
            Err(e) => {
                self.stats.sqs_error();
                let delay = self.backoff.next_delay();
                warn!(self.log, "failed to receive messages"; "receiver" => self.id, "error" => %e,
                    "retry_in_ms" => delay.as_millis() as u64);
                self.wait_then_poll(delay, ctx);
            }
        }
    }
}

impl Handler<Settle> for SqsReceiverActor {
    type Result = ();

    fn handle(&mut self, settle: Settle, ctx: &mut Self::Context) {
        let Some(settlement) = self.in_flight.remove(&settle.token) else {
            return;
        };
        self.stats.settled();
        match settle.outcome {
            Outcome::Ack => {
                self.stats.acked();
                self.deletes.push(settlement);
            }
            Outcome::Retry { until } => {
                self.stats.retried();
                let wait = until.duration_since(SystemTime::now()).unwrap_or_default();
                // Round up: "not before `until`" must hold.
                let secs = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
                debug!(self.log, "webhook asked to retry later"; "message_id" => &settlement.message_id,
                    "retry_in_s" => secs);
                self.visibility.push((settlement, secs));
            }
            Outcome::Nack { reason } => {
                self.stats.nacked();
                warn!(self.log, "delivery failed; the message reappears after its visibility timeout";
                    "message_id" => &settlement.message_id, "reason" => %reason,
                    "elapsed_ms" => settle.elapsed.as_millis() as u64);
            }
        }
        self.schedule_flush(ctx);
        self.check_drained();
        self.poll(ctx);
    }
}

impl Handler<ActionsDone> for SqsReceiverActor {
    type Result = ();

    fn handle(&mut self, _: ActionsDone, _ctx: &mut Self::Context) {
        self.actions_in_flight = self.actions_in_flight.saturating_sub(1);
        self.check_drained();
    }
}

impl Handler<Resume> for SqsReceiverActor {
    type Result = ();

    fn handle(&mut self, _: Resume, ctx: &mut Self::Context) {
        if self.state == State::Paused {
            self.state = State::Running;
            self.poll(ctx);
        }
    }
}

impl Handler<Drain> for SqsReceiverActor {
    type Result = ();

    fn handle(&mut self, drain: Drain, ctx: &mut Self::Context) {
        self.state = State::Draining;
        self.drained = Some(drain.done);
        self.drain_deadline = Some(drain.deadline);
        if !self.in_flight.is_empty() {
            info!(self.log, "waiting for in-flight deliveries"; "receiver" => self.id,
                "in_flight" => self.in_flight.len());
        }
        self.arm_drain(ctx);
        self.flush(ctx);
        self.check_drained();
    }
}

impl Handler<Crash> for SqsReceiverActor {
    type Result = ();

    fn handle(&mut self, _: Crash, ctx: &mut Self::Context) {
        ctx.stop();
    }
}
