//! `SqsReceiverActor`: long-polls SQS, hands messages to a transmitter as [`Deliver`]s (one each,
//! or the batches the ledger gathers in Lambda format), and owns each as a lease (see `lease.rs`)
//! until SQS has confirmed its last action.
//!
//! The actor is the wiring around the [`Ledger`]: it polls for as many messages as the ledger has
//! free slots (never more than the batch size), performs the ledger's steps (deliveries, deletes
//! and visibility changes, batched per receiver, dead-letter moves), runs the visibility heartbeat
//! on the ledger's schedule, and reports every event through [`Events`]. It must not talk HTTP or
//! decide what a webhook answer means.
//!
//! Accounting: every message received becomes a lease and ends in exactly one of acked,
//! retried, nacked (a delivery cancelled at the shutdown deadline too), released or
//! dead-lettered, so the counters add up; a message handed out again while held joins its lease
//! and is counted apart (`carrier_messages_redelivered_while_held_total`).
//!
//! Restart safety: everything asynchronous (the long poll, each delivery, each SQS action) runs as
//! a detached task that reports back through this actor's mailbox, and the ledger lives in the
//! actor struct, which supervision keeps across a restart. So a restarted receiver still settles
//! every message it held.

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::prelude::*;
use slog::{debug, info, warn};
use tokio::sync::{oneshot, watch};
use tokio::task::JoinHandle;

use crate::events::Events;
use crate::lease::{Action, Extended, Extension, Incoming, LeaseId, Ledger, PostId, Step, Why};
use crate::messages::{
    Answer, Crash, Deliver, Drain, NackReason, Outcome, Pause, Peers, Rejoin, Resume, Settle,
    Suspect,
};
use crate::scheduler::Grant;
use crate::slots::{RouteSlots, Wake};
use crate::sqs::{
    Action as SqsAction, Backoff, DeadLetterQueue, Entry, EntryResult, Received, SqsError,
    SqsQueue, MAX_BATCH_SIZE,
};
use crate::transmitter::WebhookTransmitterActor;

/// How long an action waits for companions before its batch is sent (unless 10 are ready first).
const FLUSH_DELAY: Duration = Duration::from_millis(10);
/// Draining with nothing else left, an open poll gets this long to come back before it is
/// aborted: a poll that found messages answers within milliseconds (and those are then
/// released), while an empty long poll would otherwise hold shutdown for up to 20 s.
const POLL_ABORT_GRACE: Duration = Duration::from_millis(250);
/// An empty receive that came back sooner than this was not a long poll (some emulators and
/// proxies ignore WaitTimeSeconds): wait this long before the next, instead of spinning.
const MIN_EMPTY_POLL: Duration = Duration::from_secs(1);
/// Receive errors back off from this...
const POLL_BACKOFF_BASE: Duration = Duration::from_millis(200);
/// ...up to this, so an unreachable SQS costs one call (and one log line) per ~10 s per receiver.
const POLL_BACKOFF_MAX: Duration = Duration::from_secs(10);
/// Visibility extension calls one receiver has out at once.
const EXTENSION_CALLS: usize = 16;
/// Down-looking failures in a row before the health checker is told: one round of workers,
/// clamped to this range.
const SUSPECT_AFTER: (usize, usize) = (3, 10);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Waiting for the webhook to be healthy (or paused while it is offline): no polling.
    Paused,
    Running,
    /// Shutting down: no polling, finishing in-flight deliveries.
    Draining,
}

/// A receive call came back.
#[derive(Message)]
#[rtype(result = "()")]
struct Polled(Result<Received, SqsError>);

/// Deletes or visibility changes came back: each lease is done. `call_done`: the call is over
/// (else these came back early while the rest of its entries are retried).
#[derive(Message)]
#[rtype(result = "()")]
struct Settled {
    results: Vec<(LeaseId, EntryResult)>,
    call_done: bool,
}

/// A batch of visibility extensions came back (`None`: cut off at the visibility left).
#[derive(Message)]
#[rtype(result = "()")]
struct ExtensionsDone {
    sent_at: Instant,
    extensions: Vec<Extension>,
    results: Option<Vec<(LeaseId, EntryResult)>>,
}

/// A dead-letter move came back (copied to the DLQ and deleted, or not).
#[derive(Message)]
#[rtype(result = "()")]
struct DeadLettered {
    lease: LeaseId,
    result: Result<(), SqsError>,
}

/// The supervisor learned the queue's attributes after start (they could not be read then): the
/// real visibility timeout for new leases and receives, and the dead-letter queue, if any.
#[derive(Message)]
#[rtype(result = "()")]
pub(crate) struct QueueKnown {
    /// The queue's own timeout (`None`: still unknown, or `CARRIER_SQS_VISIBILITY_TIMEOUT` is
    /// set): receives stop asking for one and use the queue's.
    pub visibility: Option<Duration>,
    pub dead_letter: Option<Arc<DeadLetterQueue>>,
}

/// What a receiver is built with.
pub(crate) struct ReceiverParts {
    pub id: usize,
    pub queue: SqsQueue,
    pub transmitter: Addr<WebhookTransmitterActor>,
    /// Most messages asked for per ReceiveMessage (`CARRIER_SQS_BATCH_SIZE`).
    pub batch_size: usize,
    /// `CARRIER_SQS_VISIBILITY_TIMEOUT` in seconds, asked for on every receive; `None`: the queue's.
    pub receive_visibility: Option<u32>,
    pub ledger: Ledger,
    pub dead_letter: Option<Arc<DeadLetterQueue>>,
    /// The health checker, when there is one: told when deliveries fail as if it were down.
    pub suspect: Option<Recipient<Suspect>>,
    /// Every receiver of this route, by index: a message another one holds is passed to it.
    pub peers: Peers,
    /// The delivery slots shared with the other routes: asked before each receive.
    pub slots: RouteSlots,
    pub events: Events,
}

pub struct SqsReceiverActor {
    id: usize,
    queue: SqsQueue,
    transmitter: Addr<WebhookTransmitterActor>,
    batch_size: usize,
    receive_visibility: Option<u32>,
    state: State,
    /// Every message this receiver holds.
    ledger: Ledger,
    /// How many leases the in-flight gauge has been told about.
    reported_in_flight: usize,
    /// The outstanding long poll, if any, and what the scheduler granted it.
    poll: Option<JoinHandle<()>>,
    grant: Grant,
    /// The open poll answers at once (the scheduler's choice; never with one route).
    short_poll: bool,
    slots: RouteSlots,
    /// Set while waiting out a receive error (or an instant empty receive).
    backoff_timer: Option<SpawnHandle>,
    backoff: Backoff,
    /// Deletes not yet sent.
    deletes: Vec<Entry>,
    /// Visibility changes not yet sent.
    visibility: Vec<Entry>,
    flush_timer: Option<SpawnHandle>,
    /// The ledger's next wake-up (heartbeat, FIFO blocks, held leases) and its timer.
    heartbeat: Option<(Instant, SpawnHandle)>,
    /// SQS calls still running; drain waits for them.
    actions_in_flight: usize,
    /// Bounds the heartbeat's calls out at once.
    extension_calls: Arc<tokio::sync::Semaphore>,
    dead_letter: Option<Arc<DeadLetterQueue>>,
    suspect: Option<Recipient<Suspect>>,
    peers: Peers,
    /// Deliveries in a row that failed as if the webhook were down.
    failing: usize,
    /// Turned `true` at the shutdown deadline: every running delivery is cancelled.
    cancel: watch::Sender<bool>,
    /// Where to report that draining finished.
    drained: Option<oneshot::Sender<()>>,
    /// When in-flight deliveries stop being waited for (set once draining).
    drain_deadline: Option<Instant>,
    /// The poll-abort grace timer is armed.
    abort_armed: bool,
    events: Events,
}

impl SqsReceiverActor {
    pub(crate) fn new(parts: ReceiverParts) -> Self {
        let (cancel, _) = watch::channel(false);
        SqsReceiverActor {
            id: parts.id,
            queue: parts.queue,
            transmitter: parts.transmitter,
            batch_size: parts.batch_size.clamp(1, MAX_BATCH_SIZE),
            receive_visibility: parts.receive_visibility,
            state: State::Paused,
            ledger: parts.ledger,
            reported_in_flight: 0,
            poll: None,
            grant: Grant::Wait,
            short_poll: false,
            slots: parts.slots,
            backoff_timer: None,
            backoff: Backoff::new(POLL_BACKOFF_BASE, POLL_BACKOFF_MAX),
            deletes: Vec::new(),
            visibility: Vec::new(),
            flush_timer: None,
            heartbeat: None,
            actions_in_flight: 0,
            extension_calls: Arc::new(tokio::sync::Semaphore::new(EXTENSION_CALLS)),
            dead_letter: parts.dead_letter,
            suspect: parts.suspect,
            peers: parts.peers,
            failing: 0,
            cancel,
            drained: None,
            drain_deadline: None,
            abort_armed: false,
            events: parts.events,
        }
    }

    /// Starts a long poll if receiving, none is outstanding, a slot of its own is free and the
    /// scheduler grants one of the shared ones. Whether it asked the scheduler.
    fn poll(&mut self, ctx: &mut Context<Self>) -> bool {
        let free = self.ledger.free_slots();
        if self.state != State::Running
            || self.poll.is_some()
            || self.backoff_timer.is_some()
            || free == 0
        {
            return false;
        }
        let want = free.min(self.batch_size);
        let (grant, short) = self.slots.ask(self.id, want, ctx.address().recipient());
        let max = match grant {
            Grant::Receive(n) | Grant::Probe(n) if n > 0 => n,
            // Woken with `Wake` when this route may ask again.
            _ => return true,
        };
        self.grant = grant;
        self.short_poll = short;
        let (queue, visibility, me) = (self.queue.clone(), self.receive_visibility, ctx.address());
        self.ledger.poll_started(Instant::now());
        self.poll = Some(actix_rt::spawn(async move {
            let result = queue.receive(max, visibility, short).await;
            me.do_send(Polled(result));
        }));
        true
    }

    /// Polls again after `delay` (no poll starts meanwhile).
    fn wait_then_poll(&mut self, delay: Duration, ctx: &mut Context<Self>) {
        self.backoff_timer = Some(ctx.run_later(delay, |act, ctx| {
            act.backoff_timer = None;
            act.poll(ctx);
        }));
    }

    /// Performs the ledger's steps.
    fn run(&mut self, steps: Vec<Step>, ctx: &mut Context<Self>) {
        for step in steps {
            match step {
                Step::Deliver(post, records) => self.dispatch(post, records, ctx),
                Step::Act(lease, action) => self.act(lease, action, ctx),
            }
        }
        self.schedule_flush(ctx);
        self.sync_in_flight();
    }

    /// Hands one POST's messages to the transmitter; its answer comes back as a [`Settle`].
    fn dispatch(
        &mut self,
        post: PostId,
        records: Vec<(LeaseId, Incoming)>,
        ctx: &mut Context<Self>,
    ) {
        let transmitter = self.transmitter.clone();
        let cancel = self.cancel.subscribe();
        let me = ctx.address();
        let records = records.into_iter().map(|(_, r)| r).collect();
        actix_rt::spawn(async move {
            let started = Instant::now();
            let answer = transmitter
                .send(Deliver { records, cancel })
                .await
                .unwrap_or(Answer::new(
                    Outcome::Nack {
                        reason: NackReason::TransmitterLost,
                    },
                    None,
                ));
            me.do_send(Settle {
                post,
                answer,
                elapsed: started.elapsed(),
            });
        });
    }

    /// Queues one SQS action for a lease (or starts it, for a dead-letter move).
    fn act(&mut self, lease: LeaseId, action: Action, ctx: &mut Context<Self>) {
        let (Some(receipt), Some(delivery)) = (
            self.ledger.receipt(lease).cloned(),
            self.ledger.delivery(lease).cloned(),
        ) else {
            return;
        };
        let entry = |secs| Entry {
            key: lease,
            receipt: receipt.clone(),
            message_id: delivery.message_id.clone(),
            secs,
        };
        match action {
            Action::Delete => self.deletes.push(entry(0)),
            Action::Visibility { secs, why } => {
                if why == Why::Release {
                    self.events.released(self.id);
                }
                self.visibility.push(entry(secs));
            }
            Action::DeadLetter => {
                let Some(dlq) = self.dead_letter.clone() else {
                    return;
                };
                let (queue, me, entry) = (self.queue.clone(), ctx.address(), entry(0));
                self.spawn_action(async move {
                    let result = async {
                        let url = dlq.url(&queue).await?;
                        queue.send_copy(&url, &delivery).await
                    }
                    .await;
                    if result.is_ok() {
                        // Copied: now it must leave the source queue. If this delete fails, the
                        // message reappears there (a duplicate in the DLQ beats a lost message).
                        queue.delete(vec![entry]).await;
                    }
                    me.do_send(DeadLettered { lease, result });
                });
            }
        }
    }

    /// Sends buffered deletes and visibility changes now.
    fn flush(&mut self, ctx: &mut Context<Self>) {
        if let Some(timer) = self.flush_timer.take() {
            ctx.cancel_future(timer);
        }
        for action in [SqsAction::Delete, SqsAction::ChangeVisibility] {
            let pending = match action {
                SqsAction::Delete => &mut self.deletes,
                SqsAction::ChangeVisibility | SqsAction::Extend => &mut self.visibility,
            };
            if pending.is_empty() {
                continue;
            }
            let entries = std::mem::take(pending);
            let (queue, me) = (self.queue.clone(), ctx.address());
            self.spawn_action(async move {
                // What succeeds frees its slot at once, not after the retries of the rest.
                let early = |results| {
                    me.do_send(Settled {
                        results,
                        call_done: false,
                    })
                };
                let results = queue.settle(action, entries, Some(&early)).await;
                me.do_send(Settled {
                    results,
                    call_done: true,
                });
            });
        }
    }

    /// Flushes at once when a batch is full or we are draining, else after [`FLUSH_DELAY`].
    /// At once, too, when no delivery is running: no companion can come (waiting would
    /// only hold the slots; with Go's defaults of one worker it would cap a receiver at one
    /// message per flush delay).
    fn schedule_flush(&mut self, ctx: &mut Context<Self>) {
        let full = self.deletes.len() >= MAX_BATCH_SIZE || self.visibility.len() >= MAX_BATCH_SIZE;
        if full || self.state == State::Draining || self.ledger.delivering() == 0 {
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

    /// Runs an SQS action as a detached task (it survives a restart); its completion message
    /// brings `actions_in_flight` back down.
    fn spawn_action(&mut self, action: impl Future<Output = ()> + 'static) {
        self.actions_in_flight += 1;
        actix_rt::spawn(action);
    }

    /// SQS confirmed these leases' last action: each is done, and its slot free (or, handed out
    /// again meanwhile, its action runs again with the newer receipt handle).
    fn settled(&mut self, results: Vec<(LeaseId, EntryResult)>, ctx: &mut Context<Self>) {
        let again: Vec<Step> = results
            .into_iter()
            .filter_map(|(lease, result)| {
                self.ledger
                    .settled(Instant::now(), lease, result == EntryResult::Done)
            })
            .collect();
        self.run(again, ctx);
        self.poll(ctx);
        self.check_drained(ctx);
    }

    fn action_done(&mut self) {
        self.actions_in_flight = self.actions_in_flight.saturating_sub(1);
    }

    /// Tells the in-flight gauge how many leases this receiver holds now.
    fn sync_in_flight(&mut self) {
        let now = self.ledger.len();
        if now != self.reported_in_flight {
            self.events
                .in_flight(now as i64 - self.reported_in_flight as i64);
            self.slots.holding(self.reported_in_flight, now);
            self.reported_in_flight = now;
        }
    }

    /// The open poll is over (`got` messages taken, `ok`: it succeeded): its grant goes back.
    fn poll_over(&mut self, got: usize, ok: bool) {
        let grant = std::mem::replace(&mut self.grant, Grant::Wait);
        if grant != Grant::Wait {
            self.slots.received(grant, got, ok);
        }
    }

    /// Takes the messages of one receive as leases. Paused (the webhook went offline while the
    /// poll was open): held, kept invisible, delivered on resume; no receive count is burned.
    /// Draining (the poll finished as we stopped receiving): handed straight back. One another
    /// receiver holds is passed to it.
    fn take(&mut self, sent_at: Instant, messages: Vec<Incoming>, ctx: &mut Context<Self>) {
        let hold = self.state != State::Running;
        let admitted = self.ledger.admit(Instant::now(), sent_at, messages, hold);
        self.events.received(self.id, admitted.new);
        for message_id in &admitted.rejoined {
            self.events.redelivered_while_held(message_id);
        }
        for (holder, message) in admitted.forward {
            match self.peers.get().and_then(|p| p.get(holder)) {
                Some(peer) => peer.do_send(Rejoin { sent_at, message }),
                // Not possible once started; the message reappears after its visibility timeout.
                None => debug!(self.events.log(), "no receiver to pass a held message to";
                    "message_id" => message.delivery.message_id.as_ref()),
            }
        }
        let mut steps = admitted.steps;
        if self.state == State::Draining {
            steps.extend(self.ledger.release_queued());
        }
        self.run(steps, ctx);
        self.arm_heartbeat(ctx);
    }

    /// Arms the timer for the ledger's next wake-up (if earlier than the armed one).
    fn arm_heartbeat(&mut self, ctx: &mut Context<Self>) {
        let Some(next) = self.ledger.next_wakeup() else {
            return;
        };
        if let Some((armed, handle)) = self.heartbeat {
            if armed <= next {
                return;
            }
            ctx.cancel_future(handle);
        }
        let delay = next.saturating_duration_since(Instant::now());
        let handle = ctx.run_later(delay, |act, ctx| {
            act.heartbeat = None;
            let steps = act.ledger.tick(Instant::now());
            act.run(steps, ctx);
            act.extend_due(ctx);
            act.arm_heartbeat(ctx);
            act.poll(ctx);
            act.check_drained(ctx);
        });
        self.heartbeat = Some((next, handle));
    }

    /// Sends the extensions that are due, one batch call per 10, side by side (at most
    /// [`EXTENSION_CALLS`] at once): a batch of thousands of records must not wait for its calls
    /// one after another. Each call is cut off when the first of its messages would become
    /// visible: one slow call must not outlive the lease (the ledger then tries again at once).
    fn extend_due(&mut self, ctx: &mut Context<Self>) {
        let extensions = self.ledger.due_extensions(Instant::now());
        for chunk in extensions.chunks(MAX_BATCH_SIZE) {
            let Some(cut_off) = chunk.iter().map(|e| e.visible_until).min() else {
                continue;
            };
            let entries: Vec<Entry> = chunk
                .iter()
                .filter_map(|e| {
                    Some(Entry {
                        key: e.lease,
                        receipt: e.receipt.clone(),
                        message_id: self.ledger.delivery(e.lease)?.message_id.clone(),
                        secs: e.secs,
                    })
                })
                .collect();
            let (queue, me, sent_at) = (self.queue.clone(), ctx.address(), Instant::now());
            let (extensions, calls) = (chunk.to_vec(), self.extension_calls.clone());
            self.spawn_action(async move {
                let call = async {
                    let _permit = calls.acquire().await;
                    queue.extend(entries).await
                };
                let results = tokio::time::timeout_at(cut_off.into(), call).await.ok();
                me.do_send(ExtensionsDone {
                    sent_at,
                    extensions,
                    results,
                });
            });
        }
    }

    /// Reports the drain finished once nothing is held, buffered or being sent. With nothing else
    /// left, an open poll is aborted after a short grace.
    fn check_drained(&mut self, ctx: &mut Context<Self>) {
        if self.state != State::Draining {
            return;
        }
        let settled = self.ledger.is_empty()
            && self.deletes.is_empty()
            && self.visibility.is_empty()
            && self.actions_in_flight == 0;
        if settled && self.poll.is_some() && !self.abort_armed {
            self.abort_armed = true;
            ctx.run_later(POLL_ABORT_GRACE, |act, ctx| {
                act.abort_armed = false;
                if act.ledger.is_empty() {
                    if let Some(poll) = act.poll.take() {
                        poll.abort();
                        act.ledger.poll_done();
                        act.poll_over(0, true);
                    }
                }
                act.check_drained(ctx);
            });
        }
        if settled && self.poll.is_none() {
            if let Some(done) = self.drained.take() {
                info!(self.events.log(), "receiver drained"; "receiver" => self.id);
                let _ = done.send(());
            }
        }
    }

    /// The shutdown deadline: deliveries still running are cancelled and left to their visibility
    /// timeout (not released: a worker still busy with one must not see it twice at once).
    fn arm_deadline(&mut self, ctx: &mut Context<Self>) {
        let Some(deadline) = self.drain_deadline else {
            return;
        };
        ctx.run_later(deadline.saturating_duration_since(Instant::now()), |act, ctx| {
            let abandoned = act.ledger.abandon_deliveries(Instant::now());
            if !abandoned.is_empty() {
                warn!(act.events.log(), "shutdown timeout reached; unfinished deliveries reappear after their visibility timeout";
                    "receiver" => act.id, "in_flight" => abandoned.len());
            }
            for delivery in &abandoned {
                act.events.nacked(&delivery.message_id, &NackReason::Cancelled, Duration::ZERO, None);
            }
            let _ = act.cancel.send(true);
            act.sync_in_flight();
            act.flush(ctx);
            act.check_drained(ctx);
        });
    }

    /// Tells the health checker when [`SUSPECT_AFTER`] deliveries in a row (one round of this
    /// receiver's workers, at least 3 and at most 10) failed as if the webhook were down, so that
    /// receiving is held before the regular checks notice: every message received meanwhile would
    /// fail and burn a receive count. An answer that shows it is up resets the count.
    fn watch_for_outage(&mut self, outcome: &Outcome) {
        let Some(health) = &self.suspect else {
            return;
        };
        match outcome {
            Outcome::Nack { reason } if reason.looks_down() => {
                self.failing += 1;
                // One round of workers: POSTs, whatever each carries.
                let after = self
                    .ledger
                    .settings()
                    .posts
                    .concurrency
                    .clamp(SUSPECT_AFTER.0, SUSPECT_AFTER.1);
                if self.failing >= after {
                    self.failing = 0;
                    health.do_send(Suspect);
                }
            }
            // A Retry-After (429, or a load balancer's 503) is somebody answering, but not
            // necessarily the worker; a restarted transmitter or the shutdown deadline says
            // nothing. None of them counts either way.
            Outcome::Retry { .. }
            | Outcome::Nack {
                reason: NackReason::TransmitterLost | NackReason::Cancelled,
            } => {}
            _ => self.failing = 0,
        }
    }
}

impl Actor for SqsReceiverActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        debug!(self.events.log(), "receiver started"; "receiver" => self.id,
            "batch_size" => self.batch_size, "workers" => self.ledger.settings().slots);
        self.schedule_flush(ctx);
        self.arm_heartbeat(ctx);
        self.arm_deadline(ctx);
        self.poll(ctx);
        self.check_drained(ctx);
    }
}

impl Supervised for SqsReceiverActor {
    /// Timers died with the old context; the poll task, the ledger and the buffers live on.
    fn restarting(&mut self, _ctx: &mut Self::Context) {
        self.events.restarted("receiver");
        warn!(self.events.log(), "receiver restarting"; "receiver" => self.id,
            "in_flight" => self.ledger.len());
        self.backoff_timer = None;
        self.flush_timer = None;
        self.heartbeat = None;
        self.abort_armed = false;
        self.backoff.reset();
    }
}

impl Handler<Polled> for SqsReceiverActor {
    type Result = ();

    fn handle(&mut self, Polled(result): Polled, ctx: &mut Self::Context) {
        self.poll = None;
        match result {
            Ok(Received { sent_at, messages }) => {
                if self.backoff.failures() > 0 {
                    self.events.receiving_again(self.id);
                }
                self.backoff.reset();
                let got = messages.len();
                if messages.is_empty() {
                    let took = sent_at.elapsed();
                    // (A short poll answers at once by design: its route is empty now, and
                    // asks again as a probe, a long poll.)
                    if took < MIN_EMPTY_POLL && self.state == State::Running && !self.short_poll {
                        self.wait_then_poll(MIN_EMPTY_POLL - took, ctx);
                    }
                } else {
                    self.take(sent_at, messages, ctx);
                }
                // After `take`: its messages count as held before the grant goes back.
                self.poll_over(got, true);
            }
            Err(e) if self.state == State::Draining => {
                debug!(self.events.log(), "receive failed while draining"; "error" => %e);
                self.poll_over(0, false);
            }
            Err(e) => {
                let delay = self.backoff.next_delay();
                self.events.receive_failed(self.id, &e, delay);
                self.poll_over(0, false);
                self.wait_then_poll(delay, ctx);
            }
        }
        // Its messages are taken: acknowledgements it could have brought back are forgotten.
        self.ledger.poll_done();
        self.poll(ctx);
        self.check_drained(ctx);
    }
}

impl Handler<Settle> for SqsReceiverActor {
    type Result = ();

    /// Each record of the POST takes its outcome (a POST abandoned at the shutdown deadline has
    /// none left: its answer no longer counts).
    fn handle(&mut self, settle: Settle, ctx: &mut Self::Context) {
        let mut answer = settle.answer;
        if answer.outcome == Outcome::DeadLetter && self.dead_letter.is_none() {
            answer.outcome = Outcome::Nack {
                reason: NackReason::NoDeadLetterQueue,
            };
            let first = self.ledger.first_of(settle.post);
            if let Some(d) = first {
                self.events.no_dead_letter_queue(&d.message_id);
            }
        }
        self.watch_for_outage(&answer.outcome);
        let answered = self.ledger.answered(Instant::now(), settle.post, |d| {
            answer.outcome_of(&d.message_id)
        });
        for record in &answered.records {
            let message_id = record.delivery.message_id.as_ref();
            // The applied visibility, even when it waits for an extension call to return first.
            let secs = match record.action {
                Some(Action::Visibility { secs, .. }) => Some(secs),
                _ => None,
            };
            match &record.outcome {
                Outcome::Ack => self.events.acked(),
                Outcome::Retry { .. } => self.events.retried(message_id, secs.unwrap_or(0)),
                Outcome::Nack { reason } => {
                    self.events.nacked(message_id, reason, settle.elapsed, secs)
                }
                Outcome::DeadLetter => {}
            }
        }
        self.run(answered.steps, ctx);
        self.arm_heartbeat(ctx);
        self.poll(ctx);
        self.check_drained(ctx);
    }
}

impl Handler<Settled> for SqsReceiverActor {
    type Result = ();

    fn handle(&mut self, settled: Settled, ctx: &mut Self::Context) {
        if settled.call_done {
            self.action_done();
        }
        self.settled(settled.results, ctx);
    }
}

impl Handler<ExtensionsDone> for SqsReceiverActor {
    type Result = ();

    fn handle(&mut self, done: ExtensionsDone, ctx: &mut Self::Context) {
        self.action_done();
        let now = Instant::now();
        let mut ok = 0;
        let mut steps = Vec::new();
        for extension in &done.extensions {
            let Some(results) = &done.results else {
                steps.extend(
                    self.ledger
                        .extended(now, done.sent_at, extension, Extended::CutOff),
                );
                continue;
            };
            let result = results
                .iter()
                .find(|(k, _)| *k == extension.lease)
                .map(|(_, r)| r);
            let result = match result {
                Some(EntryResult::Done) => {
                    ok += 1;
                    Extended::Ok
                }
                Some(EntryResult::Refused(code)) => {
                    if let Some(d) = self.ledger.delivery(extension.lease) {
                        self.events.extension_refused(&d.message_id, code);
                    }
                    Extended::Refused
                }
                Some(EntryResult::GaveUp) | None => Extended::Failed,
            };
            steps.extend(self.ledger.extended(now, done.sent_at, extension, result));
        }
        self.events.extended(ok);
        self.run(steps, ctx);
        self.arm_heartbeat(ctx);
        self.poll(ctx);
        self.check_drained(ctx);
    }
}

impl Handler<DeadLettered> for SqsReceiverActor {
    type Result = ();

    fn handle(&mut self, done: DeadLettered, ctx: &mut Self::Context) {
        self.action_done();
        if let Some(d) = self.ledger.delivery(done.lease) {
            match &done.result {
                Ok(()) => self.events.dead_lettered(&d.message_id),
                Err(e) => self.events.dead_letter_failed(&d.message_id, e),
            }
        }
        let result = match done.result {
            Ok(()) => EntryResult::Done,
            Err(_) => EntryResult::GaveUp,
        };
        self.settled(vec![(done.lease, result)], ctx);
    }
}

impl Handler<Resume> for SqsReceiverActor {
    type Result = ();

    fn handle(&mut self, _: Resume, ctx: &mut Self::Context) {
        if self.state == State::Paused {
            self.state = State::Running;
            // Failures of deliveries that were in flight during the pause are old news.
            self.failing = 0;
            let steps = self.ledger.deliver_held(Instant::now());
            self.run(steps, ctx);
            // Their batch window starts now.
            self.arm_heartbeat(ctx);
            self.poll(ctx);
        }
    }
}

impl Handler<Pause> for SqsReceiverActor {
    type Result = ();

    /// No new polls. The open one is let finish (aborting it would strand what SQS hands it
    /// invisible for the whole visibility timeout): what it brings is held, kept invisible, and
    /// delivered on resume.
    fn handle(&mut self, _: Pause, ctx: &mut Self::Context) {
        if self.state == State::Running {
            self.state = State::Paused;
            if let Some(timer) = self.backoff_timer.take() {
                ctx.cancel_future(timer);
            }
        }
    }
}

impl Handler<Drain> for SqsReceiverActor {
    type Result = ();

    fn handle(&mut self, drain: Drain, ctx: &mut Self::Context) {
        self.state = State::Draining;
        self.drained = Some(drain.done);
        self.drain_deadline = Some(drain.deadline);
        if let Some(timer) = self.backoff_timer.take() {
            ctx.cancel_future(timer);
        }
        if !self.ledger.is_empty() {
            info!(self.events.log(), "waiting for in-flight deliveries"; "receiver" => self.id,
                "in_flight" => self.ledger.len());
        }
        let steps = self.ledger.release_queued();
        self.run(steps, ctx);
        self.arm_deadline(ctx);
        self.flush(ctx);
        self.check_drained(ctx);
    }
}

impl Handler<Rejoin> for SqsReceiverActor {
    type Result = ();

    fn handle(&mut self, rejoin: Rejoin, ctx: &mut Self::Context) {
        self.take(rejoin.sent_at, vec![rejoin.message], ctx);
        self.poll(ctx);
        self.check_drained(ctx);
    }
}

impl Handler<QueueKnown> for SqsReceiverActor {
    type Result = ();

    /// The queue's attributes were read after start: new receives and leases use them.
    fn handle(&mut self, known: QueueKnown, _ctx: &mut Self::Context) {
        if let Some(visibility) = known.visibility {
            self.receive_visibility = None;
            self.ledger.set_visibility(visibility);
        }
        if known.dead_letter.is_some() {
            self.dead_letter = known.dead_letter;
        }
    }
}

impl Handler<Wake> for SqsReceiverActor {
    type Result = ();

    /// The scheduler has slots for this route again. A receiver that will not ask now (paused,
    /// draining, backing off, polling or full) says so, or its route would keep a turn it
    /// does not take.
    fn handle(&mut self, _: Wake, ctx: &mut Self::Context) {
        if !self.poll(ctx) {
            self.slots.not_asking(self.id);
        }
    }
}

impl Handler<Crash> for SqsReceiverActor {
    type Result = ();

    fn handle(&mut self, _: Crash, ctx: &mut Self::Context) {
        ctx.stop();
    }
}
