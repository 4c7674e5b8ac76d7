//! The lease ledger: every message one receiver holds, from ReceiveMessage until SQS has confirmed
//! its last action (delete, visibility change, release or dead-letter).
//!
//! A lease holds the receipt handle, its delivery slot, its visibility deadline (for the
//! heartbeat), its FIFO group and its receive count. Its states are few and named:
//! `Held` (received while paused) / `Queued` (FIFO: waiting behind its group) → `Delivering` →
//! `Settling` (its action decided) → removed (done). A slot frees only when the lease is removed,
//! so slow or throttled settling pushes back on receiving.
//!
//! Three rules keep a message from being delivered twice or burning receive counts:
//! - A message handed out again while held (its visibility lapsed under a slow SQS) joins its
//!   lease: the lease takes the newer receipt handle; nothing is delivered again. [`Holders`]
//!   tells which receiver holds what, so one handed to another receiver is passed to its holder.
//! - The heartbeat has one state per lease ([`Heartbeat`]): due at a time, a call out, or off. A
//!   visibility action decided while a call is out waits for it (`Settling { sent: false }`), so
//!   the two cannot cross. Every visibility asked for is capped here, at SQS's 12 hours.
//! - FIFO (SPEC 4.7): a group's messages in hand are delivered one at a time in received order.
//!   After a failure the rest of the group in hand is released and the group is blocked until
//!   the failed message is due back; a later message of a blocked group that SQS hands out anyway
//!   is *held* (kept invisible, its slot taken), never handed back, until the failed one is back
//!   (it goes first) or is due. A block is forgotten once due, so its memory is bounded.
//!
//! POSTs: a lease that may go is *ready*; the ledger gathers ready leases into POSTs (a
//! [`Step::Deliver`] of one or more) within [`Posts`]: its size, window, bytes and concurrency. One
//! message per POST is a batch of one with no window. A POST's answer gives each of its leases its
//! own outcome ([`Ledger::answered`]), in order, so the FIFO rule above holds inside a batch too: a
//! failed record releases the later records of its group, whatever the answer said of them.
//!
//! This is plain data and logic: no actors, no I/O, no clock (every call takes `now`), so it is
//! tested without a runtime. The receiver actor wires timers, SQS calls and `Deliver` → `Outcome`
//! around it: it performs the [`Step`]s the ledger hands back and reports how they went.

use std::collections::{BTreeSet, HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

pub use crate::limits::{LeaseId, PostId};
pub use crate::messages::Incoming;
use crate::messages::{Delivery, Outcome};

/// SQS's 12-hour bound on a message's total invisibility, counted from its receipt.
const MAX_HOLD: Duration = Duration::from_secs(crate::limits::MAX_VISIBILITY_TIMEOUT_SECS);
/// Slack kept below SQS's 12 hours for clocks and transit.
const MAX_HOLD_SLACK: Duration = Duration::from_secs(5);
/// After a FIFO group's failed message is due to reappear, how long the group's held messages
/// still wait for it to come back to this receiver (a poll's round trip) before they go.
const BLOCK_GRACE: Duration = Duration::from_secs(2);

/// What a Nack does (`CARRIER_WEBHOOK_ERROR_VISIBILITY_TIMEOUT`, `_ERROR_BACKOFF_MAX`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct NackPolicy {
    /// Set: a Nack changes the message's visibility to this (the backoff's base).
    pub error_visibility: Option<Duration>,
    /// Set: the error timeout doubles with each receive, jittered ±20 %, up to this.
    pub backoff_max: Option<Duration>,
}

impl NackPolicy {
    /// The visibility timeout a failed delivery gets, or `None` to leave the message alone (it
    /// reappears when its current visibility timeout ends: the Go behaviour). `base_fallback` is
    /// the backoff's base when only the maximum is set (the queue's visibility timeout);
    /// `jitter` is drawn from `[-1, 1]`.
    pub fn visibility(
        &self,
        receive_count: u32,
        base_fallback: Duration,
        jitter: f64,
    ) -> Option<Duration> {
        match (self.error_visibility, self.backoff_max) {
            (None, None) => None,
            (Some(fixed), None) => Some(fixed),
            (base, Some(max)) => {
                let base = base.unwrap_or(base_fallback);
                let doublings = receive_count.saturating_sub(1).min(32);
                let grown = base.saturating_mul(1u32 << doublings.min(31)).min(max);
                let jittered = grown.mul_f64(1.0 + 0.2 * jitter.clamp(-1.0, 1.0));
                Some(jittered.min(max))
            }
        }
    }
}

/// How the ledger turns outcomes into SQS actions, and keeps messages invisible while held.
#[derive(Debug, Clone)]
pub struct LedgerSettings {
    /// Delivery slots: the most leases held at once.
    pub slots: usize,
    /// FIFO queue: one message per group at a time, in received order.
    pub fifo: bool,
    /// The visibility timeout each receive gives a message (the queue's, or
    /// `CARRIER_SQS_VISIBILITY_TIMEOUT`), and what each heartbeat extension asks for.
    pub visibility: Duration,
    /// Extend visibility while a message is held (off when the timeout is under a second).
    pub heartbeat: bool,
    /// A delivery is never extended past its start plus this (request timeout plus a margin).
    pub delivery_bound: Duration,
    pub nack: NackPolicy,
    /// A Retry never asks for less than this (`CARRIER_WEBHOOK_MIN_RETRY_DELAY`).
    pub min_retry_delay: Duration,
    /// How messages are gathered into POSTs: one each, or batches (SPEC 5.1).
    pub posts: Posts,
}

/// How messages are gathered into POSTs. One message per POST is a batch of one with no window.
#[derive(Debug, Clone, Copy)]
pub struct Posts {
    /// Most records per POST.
    pub size: usize,
    /// How long a POST that is not full waits for more records (zero: it takes what is ready).
    pub window: Duration,
    /// Most POSTs in flight at once.
    pub concurrency: usize,
    /// A POST's records together never pass this many bytes ([`Posts::record_bytes`] each).
    pub max_bytes: usize,
    /// The most bytes one record can add to a POST's body, given its receipt handle (0: bytes are
    /// not counted).
    pub record_bytes: fn(&Delivery, &str) -> usize,
    /// What every record adds besides (e.g. the queue's ARN in each Lambda record).
    pub record_overhead: usize,
}

impl Posts {
    /// One message per POST, up to `concurrency` at once (formats other than Lambda's).
    pub fn single(concurrency: usize) -> Posts {
        Posts {
            size: 1,
            window: Duration::ZERO,
            concurrency: concurrency.max(1),
            max_bytes: usize::MAX,
            record_bytes: |_, _| 0,
            record_overhead: 0,
        }
    }
}

/// Why a visibility change is made.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Why {
    /// The webhook asked to retry later.
    Retry,
    /// The Nack policy's error timeout.
    Nack,
    /// Handed back unsent (visibility 0): FIFO order after a failure, held too long while
    /// paused, or shutdown.
    Release,
}

/// An SQS action for one lease. The actor runs it and reports with [`Ledger::settled`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    Delete,
    /// `secs` as it is applied (capped at SQS's 12 hours from receipt).
    Visibility {
        secs: u32,
        why: Why,
    },
    /// Send to the dead-letter queue, then delete.
    DeadLetter,
}

/// What the actor must do next.
#[derive(Debug, Clone)]
pub enum Step {
    /// Send these messages to the webhook in one POST, in this order; report the answer with
    /// [`Ledger::answered`].
    Deliver(PostId, Vec<(LeaseId, Incoming)>),
    /// Run this SQS action; report with [`Ledger::settled`].
    Act(LeaseId, Action),
}

/// What [`Ledger::admit`] made of one receive.
#[derive(Debug, Default)]
pub struct Admitted {
    pub steps: Vec<Step>,
    /// New leases (each counts as received).
    pub new: usize,
    /// Messages this ledger already held, handed out again: they joined their lease.
    pub rejoined: Vec<Arc<str>>,
    /// Messages another receiver holds, handed out again to this one: pass each to its holder
    /// (the receiver's index), which joins it to its lease.
    pub forward: Vec<(usize, Incoming)>,
}

/// Which receiver holds which message, shared by the receivers of one carrier; and which
/// messages were settled while a receive was open, so that one such receive handing a message out
/// again after its lease ended does not deliver it twice.
#[derive(Debug, Clone, Default)]
pub struct Holders(Arc<Mutex<Held>>);

#[derive(Debug, Default)]
struct Held {
    /// Message → the receiver holding it.
    by: HashMap<Arc<str>, usize>,
    /// Messages acknowledged (deleted, or dead-lettered) while a receive was open → when.
    acked: HashMap<Arc<str>, Instant>,
    /// Each receiver's open receive → when it was started.
    polls: HashMap<usize, Instant>,
}

impl Holders {
    fn lock(&self) -> std::sync::MutexGuard<'_, Held> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Marks `message_id` as held by `receiver`; `Err` with its holder when another holds it.
    fn claim(&self, message_id: &Arc<str>, receiver: usize) -> Result<(), usize> {
        let mut held = self.lock();
        match held.by.get(message_id) {
            Some(&holder) if holder != receiver => Err(holder),
            _ => {
                held.by.insert(message_id.clone(), receiver);
                Ok(())
            }
        }
    }

    /// `receiver` no longer holds `message_id`; `acked`: it was acknowledged (remembered while
    /// a receive that could hand it out again is open).
    fn release(&self, message_id: &Arc<str>, receiver: usize, acked: bool, now: Instant) {
        let mut held = self.lock();
        if held.by.get(message_id) == Some(&receiver) {
            held.by.remove(message_id);
        }
        if acked && !held.polls.is_empty() {
            held.acked.insert(message_id.clone(), now);
        }
    }

    /// The message was acknowledged after a receive sent at `sent_at` began: that receive
    /// handed it out while carrier held it.
    fn acked_since(&self, message_id: &str, sent_at: Instant) -> bool {
        self.lock()
            .acked
            .get(message_id)
            .is_some_and(|at| *at >= sent_at)
    }

    fn poll_started(&self, receiver: usize, at: Instant) {
        self.lock().polls.insert(receiver, at);
    }

    /// `receiver`'s receive came back (its messages taken): acknowledgements older than every
    /// receive still open can no longer come back through one, and are forgotten.
    fn poll_done(&self, receiver: usize) {
        let mut held = self.lock();
        held.polls.remove(&receiver);
        match held.polls.values().min().copied() {
            None => held.acked.clear(),
            Some(oldest) => held.acked.retain(|_, at| *at >= oldest),
        }
    }

    /// Messages held by any receiver, and acknowledgements remembered.
    #[cfg(test)]
    fn len(&self) -> (usize, usize) {
        let held = self.lock();
        (held.by.len(), held.acked.len())
    }
}

/// What one lease's outcome decided (see [`Ledger::answered`]).
#[derive(Debug, Default)]
pub struct Decided {
    /// The lease's own SQS action as it will be applied (`None`: left to its visibility timeout),
    /// even when it waits for an extension call to return first.
    pub action: Option<Action>,
    pub steps: Vec<Step>,
}

/// What [`Ledger::answered`] decided for a POST: each record's outcome and action, in order (a
/// record released because an earlier one of its FIFO group failed is not among them: its
/// release is one of the steps), and the steps to take.
#[derive(Debug, Default)]
pub struct Answered {
    pub records: Vec<RecordOutcome>,
    pub steps: Vec<Step>,
}

/// One record of an answered POST.
#[derive(Debug)]
pub struct RecordOutcome {
    pub delivery: Arc<Delivery>,
    pub outcome: Outcome,
    /// As in [`Decided::action`].
    pub action: Option<Action>,
}

/// A due visibility extension: run it, report with [`Ledger::extended`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Extension {
    pub lease: LeaseId,
    pub secs: u32,
    /// The receipt handle it was asked with (a lease may take a newer one while the call is out).
    pub receipt: Arc<str>,
    /// When the message becomes visible unless this call succeeds: the call is cut off then.
    pub visible_until: Instant,
}

/// How an extension went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Extended {
    Ok,
    /// SQS refused it for good (the receipt handle is gone): no more extensions for this lease.
    Refused,
    /// It failed for now; try again soon.
    Failed,
    /// It was cut off at the visibility left: try again at once while the lease is held.
    CutOff,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum State {
    /// Received while receiving is paused: kept invisible (at most one visibility timeout), not
    /// yet placed.
    Held,
    /// FIFO: waiting for its blocked group to open.
    Queued,
    /// Waiting to be gathered into a POST (since then: the batch window runs from the oldest).
    /// FIFO: taken only when no POST of its group is in flight, after its group's earlier ones.
    Ready { since: Instant },
    /// In POST `post`, with a transmitter.
    Delivering { since: Instant, post: PostId },
    /// Its outcome is known and this action decided. `sent`: handed to the actor (`false` while
    /// it waits for an extension call to return, so the two cannot cross).
    Settling { action: Action, sent: bool },
}

/// The visibility heartbeat of one lease: one state, one source of truth.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Heartbeat {
    /// The next extension is due then.
    Due(Instant),
    /// An extension call is out.
    Extending,
    /// No more extensions: refused, past its bound, or a visibility change was decided.
    Off,
}

#[derive(Debug)]
struct Lease {
    delivery: Arc<Delivery>,
    /// The newest receipt handle (SQS acts only on the latest one).
    receipt: Arc<str>,
    /// When the first receive call that brought it was sent: SQS's 12 hours run from there.
    received_at: Instant,
    state: State,
    /// When SQS makes the message visible again, as far as we know (conservatively early).
    visible_until: Instant,
    heartbeat: Heartbeat,
    /// The message was handed out again while its action was out: run this with the newer
    /// receipt handle once that call returns.
    redo: Option<Action>,
    /// The most bytes it adds to a POST ([`Posts::record_bytes`]).
    bytes: usize,
}

impl Lease {
    /// Its action hands the message straight back (visibility 0): a receive may bring it again.
    fn is_released(&self) -> bool {
        matches!(
            self.state,
            State::Settling {
                action: Action::Visibility { secs: 0, .. },
                ..
            }
        )
    }

    /// Kept invisible while held: everything but a lease whose visibility change is decided.
    fn extendable(&self) -> bool {
        !matches!(
            self.state,
            State::Settling {
                action: Action::Visibility { .. },
                ..
            }
        )
    }
}

/// FIFO: one group's leases in hand and its block.
#[derive(Debug, Default)]
struct Group {
    /// Queued, ready or delivering, in received order; those delivering are at the front, in
    /// one POST.
    leases: VecDeque<LeaseId>,
    /// A failed message of the group is not in hand: until it comes back or `until` passes, the
    /// group's later messages are held.
    blocked: Option<Blocked>,
}

#[derive(Debug, Clone)]
struct Blocked {
    message_id: Arc<str>,
    /// When the failed message is due back, plus [`BLOCK_GRACE`].
    until: Instant,
}

/// Every lease of one receiver. See the module documentation.
#[derive(Debug)]
pub struct Ledger {
    settings: LedgerSettings,
    leases: HashMap<LeaseId, Lease>,
    /// Which lease holds a message, so a message handed out again joins it.
    by_message: HashMap<Arc<str>, LeaseId>,
    /// This ledger's receiver, and what every receiver holds.
    receiver: usize,
    holders: Holders,
    next_id: LeaseId,
    /// FIFO groups with a lease in hand or a block.
    groups: HashMap<Arc<str>, Group>,
    /// Leases waiting for a POST, in received order, and the bytes they add up to; and by the
    /// time they became ready (the oldest starts the batch window).
    ready: BTreeSet<LeaseId>,
    ready_bytes: usize,
    ready_since: BTreeSet<(Instant, LeaseId)>,
    /// POSTs in flight: their leases in order, and how many of them are still delivering.
    posts: HashMap<PostId, InFlight>,
    next_post: PostId,
    /// Leases whose action is decided (their slots free as soon as SQS confirms).
    settling: usize,
    rng: fastrand::Rng,
}

#[derive(Debug)]
struct InFlight {
    leases: Vec<LeaseId>,
    delivering: usize,
}

impl Ledger {
    pub fn new(settings: LedgerSettings) -> Ledger {
        Ledger::with_rng(settings, fastrand::Rng::new())
    }

    /// With a seeded random source (the Nack policy's jitter), for tests.
    pub fn with_rng(settings: LedgerSettings, rng: fastrand::Rng) -> Ledger {
        Ledger {
            settings,
            leases: HashMap::new(),
            by_message: HashMap::new(),
            receiver: 0,
            holders: Holders::default(),
            next_id: 0,
            groups: HashMap::new(),
            ready: BTreeSet::new(),
            ready_bytes: 0,
            ready_since: BTreeSet::new(),
            posts: HashMap::new(),
            next_post: 0,
            settling: 0,
            rng,
        }
    }

    /// The ledger of receiver `receiver`, one of those sharing `holders`.
    pub fn shared(mut self, receiver: usize, holders: Holders) -> Ledger {
        self.receiver = receiver;
        self.holders = holders;
        self
    }

    pub fn settings(&self) -> &LedgerSettings {
        &self.settings
    }

    /// The queue's real visibility timeout became known: new leases and extensions use it.
    pub fn set_visibility(&mut self, visibility: Duration) {
        self.settings.visibility = visibility;
        self.settings.heartbeat = visibility >= Duration::from_secs(1);
    }

    /// Leases held (each holds a slot).
    pub fn len(&self) -> usize {
        self.leases.len()
    }

    pub fn is_empty(&self) -> bool {
        self.leases.is_empty()
    }

    /// Slots free for new messages: none while a whole POST's bytes are waiting (more would only
    /// be held in memory, not sent sooner).
    pub fn free_slots(&self) -> usize {
        if self.ready_bytes >= self.settings.posts.max_bytes {
            return 0;
        }
        self.settings.slots.saturating_sub(self.leases.len())
    }

    /// Leases whose delivery is running.
    pub fn delivering(&self) -> usize {
        self.leases
            .values()
            .filter(|l| matches!(l.state, State::Delivering { .. }))
            .count()
    }

    /// FIFO groups remembered (in hand or blocked).
    #[cfg(test)]
    pub fn groups(&self) -> usize {
        self.groups.len()
    }

    /// The receipt handle of a lease (for its SQS action).
    pub fn receipt(&self, id: LeaseId) -> Option<&Arc<str>> {
        self.leases.get(&id).map(|l| &l.receipt)
    }

    pub fn delivery(&self, id: LeaseId) -> Option<&Arc<Delivery>> {
        self.leases.get(&id).map(|l| &l.delivery)
    }

    /// The first message of a POST in flight.
    pub fn first_of(&self, post: PostId) -> Option<Arc<Delivery>> {
        let first = self.posts.get(&post)?.leases.first()?;
        self.delivery(*first).cloned()
    }

    /// Takes the messages of one receive call, sent at `sent_at`. Each becomes a lease and is
    /// delivered at once or queued behind its FIFO group (or held while its group is blocked);
    /// one already held joins its lease. With `hold` (receiving is paused), new leases are only
    /// held, kept invisible, until [`Ledger::deliver_held`].
    pub fn admit(
        &mut self,
        now: Instant,
        sent_at: Instant,
        incoming: Vec<Incoming>,
        hold: bool,
    ) -> Admitted {
        let mut admitted = Admitted::default();
        let visibility = self.settings.visibility;
        let first_extension = |heartbeat: bool| match heartbeat {
            true => Heartbeat::Due(sent_at + visibility / 2),
            false => Heartbeat::Off,
        };
        for message in incoming {
            let message_id = message.delivery.message_id.clone();
            let held = self.by_message.get(&message_id).copied();
            if let Some(lease) = held.and_then(|id| self.leases.get_mut(&id)) {
                if lease.is_released() {
                    // Handed back (visibility 0) and now out again, as asked: a new receipt, a
                    // new lease. The old one ends when its call returns.
                    self.by_message.remove(&message_id);
                } else {
                    // Handed out again while held: the newer receipt is the one SQS acts on.
                    lease.receipt = message.receipt;
                    lease.visible_until = sent_at + visibility;
                    match (&lease.state, lease.heartbeat) {
                        (State::Settling { action, sent: true }, _) => {
                            lease.redo = Some(match action {
                                Action::DeadLetter => Action::Delete,
                                other => other.clone(),
                            })
                        }
                        _ if !lease.extendable() => {}
                        (_, Heartbeat::Extending) => {}
                        _ => lease.heartbeat = first_extension(self.settings.heartbeat),
                    }
                    admitted.rejoined.push(message_id);
                    continue;
                }
            }
            if self.holders.acked_since(&message_id, sent_at) {
                // Acknowledged after this receive was sent: SQS handed it out while its lease was
                // held (it lapsed). Not delivered again; deleted with the newest receipt.
                let id = self.lease(message, sent_at, first_extension(false));
                admitted.steps.extend(self.settle(id, Action::Delete));
                admitted.rejoined.push(message_id);
                continue;
            }
            if let Err(holder) = self
                .holders
                .claim(&message.delivery.message_id, self.receiver)
            {
                admitted.forward.push((holder, message));
                continue;
            }
            let id = self.lease(message, sent_at, first_extension(self.settings.heartbeat));
            admitted.new += 1;
            if !hold {
                self.place(now, id);
            }
        }
        admitted.steps.extend(self.form(now));
        admitted
    }

    /// A new lease for a received message, `Held`.
    fn lease(&mut self, message: Incoming, sent_at: Instant, heartbeat: Heartbeat) -> LeaseId {
        let id = self.next_id;
        self.next_id += 1;
        let posts = &self.settings.posts;
        let bytes =
            (posts.record_bytes)(&message.delivery, &message.receipt) + posts.record_overhead;
        self.by_message
            .insert(message.delivery.message_id.clone(), id);
        let _ = self
            .holders
            .claim(&message.delivery.message_id, self.receiver);
        self.leases.insert(
            id,
            Lease {
                delivery: message.delivery,
                receipt: message.receipt,
                received_at: sent_at,
                state: State::Held,
                visible_until: sent_at + self.settings.visibility,
                heartbeat,
                redo: None,
                bytes,
            },
        );
        id
    }

    /// A receive call is about to be sent (acknowledgements from now on are remembered for it).
    pub fn poll_started(&self, at: Instant) {
        self.holders.poll_started(self.receiver, at);
    }

    /// The receive call came back and its messages were admitted (or it was aborted).
    pub fn poll_done(&self) {
        self.holders.poll_done(self.receiver);
    }

    /// Receiving resumed: the held leases go on their way, in the order they were received.
    pub fn deliver_held(&mut self, now: Instant) -> Vec<Step> {
        for id in self.ids_where(|l| l.state == State::Held) {
            self.place(now, id);
        }
        self.form(now)
    }

    /// The ids of the leases that match, in received order.
    fn ids_where(&self, matches: impl Fn(&Lease) -> bool) -> Vec<LeaseId> {
        let mut ids: Vec<LeaseId> = self
            .leases
            .iter()
            .filter(|(_, l)| matches(l))
            .map(|(id, _)| *id)
            .collect();
        ids.sort_unstable();
        ids
    }

    /// Sends a held lease on: ready for a POST, or queued in its blocked FIFO group.
    fn place(&mut self, now: Instant, id: LeaseId) {
        let Some(lease) = self.leases.get_mut(&id) else {
            return;
        };
        let group = self
            .settings
            .fifo
            .then(|| lease.delivery.group_id.clone())
            .flatten();
        let Some(group_id) = group else {
            self.make_ready(now, id);
            return;
        };
        lease.state = State::Queued;
        let group = self.groups.entry(group_id.clone()).or_default();
        match group.blocked.take() {
            // The failed message is back: it goes first, and order is ours to keep again.
            Some(b) if b.message_id == lease.delivery.message_id => group.leases.push_front(id),
            // Due: it went to the DLQ or to another consumer.
            Some(b) if now >= b.until => group.leases.push_back(id),
            // Held (invisible, its slot taken) until the failed one is back or due.
            still => {
                group.blocked = still;
                group.leases.push_back(id);
            }
        }
        self.open_group(now, &group_id);
    }

    /// Unless a FIFO group is blocked, its queued leases are ready (a POST takes them in the
    /// group's order, once no earlier POST of the group is in flight).
    fn open_group(&mut self, now: Instant, group_id: &Arc<str>) {
        let Some(group) = self.groups.get(group_id) else {
            return;
        };
        if group.blocked.is_some() {
            return;
        }
        let queued: Vec<LeaseId> = group
            .leases
            .iter()
            .copied()
            .filter(|id| {
                self.leases
                    .get(id)
                    .is_some_and(|l| l.state == State::Queued)
            })
            .collect();
        for id in queued {
            self.make_ready(now, id);
        }
    }

    /// A lease waits for a POST.
    fn make_ready(&mut self, now: Instant, id: LeaseId) {
        let Some(lease) = self.leases.get_mut(&id) else {
            return;
        };
        if let State::Ready { since } = lease.state {
            self.ready_since.remove(&(since, id));
        }
        lease.state = State::Ready { since: now };
        self.ready_since.insert((now, id));
        if self.ready.insert(id) {
            self.ready_bytes += lease.bytes;
        }
    }

    /// A lease is leaving its state: the ready set and the POSTs in flight forget it.
    fn leave(&mut self, id: LeaseId) {
        let Some(lease) = self.leases.get(&id) else {
            return;
        };
        match lease.state {
            State::Ready { since } => {
                self.ready_since.remove(&(since, id));
                if self.ready.remove(&id) {
                    self.ready_bytes -= lease.bytes;
                }
            }
            State::Delivering { post, .. } => {
                if let Some(in_flight) = self.posts.get_mut(&post) {
                    in_flight.delivering -= 1;
                    if in_flight.delivering == 0 {
                        self.posts.remove(&post);
                    }
                }
            }
            State::Settling { .. } => self.settling -= 1,
            State::Held | State::Queued => {}
        }
    }

    /// No more messages can be received until a POST is answered: every slot is taken by a
    /// lease that is not about to end, or a whole POST's bytes are waiting.
    fn cannot_gather(&self) -> bool {
        self.ready_bytes >= self.settings.posts.max_bytes
            || self.leases.len() - self.settling >= self.settings.slots
    }

    /// The ready leases the next POST would take, in order: at most [`Posts::size`] and
    /// [`Posts::max_bytes`]; a FIFO group's in its order and only while no POST of the group is
    /// in flight. `full`: it cannot take more (size or bytes reached).
    fn next_post(&self) -> (Vec<LeaseId>, bool) {
        let posts = &self.settings.posts;
        let mut taken = Vec::new();
        let mut bytes = 0usize;
        let mut seen_groups: HashSet<&Arc<str>> = HashSet::new();
        let mut take = |id: LeaseId, taken: &mut Vec<LeaseId>| -> Result<(), ()> {
            let lease_bytes = self.leases.get(&id).map_or(0, |l| l.bytes);
            if taken.len() >= posts.size
                || (!taken.is_empty() && bytes + lease_bytes > posts.max_bytes)
            {
                return Err(());
            }
            bytes += lease_bytes;
            taken.push(id);
            Ok(())
        };
        for &id in &self.ready {
            let Some(lease) = self.leases.get(&id) else {
                continue;
            };
            let group = lease
                .delivery
                .group_id
                .as_ref()
                .filter(|_| self.settings.fifo);
            let Some(group_id) = group else {
                if take(id, &mut taken).is_err() {
                    return (taken, true);
                }
                continue;
            };
            if !seen_groups.insert(group_id) {
                continue;
            }
            let Some(group) = self.groups.get(group_id) else {
                continue;
            };
            for member in &group.leases {
                match self.leases.get(member).map(|l| &l.state) {
                    Some(State::Ready { .. }) => {
                        if take(*member, &mut taken).is_err() {
                            return (taken, true);
                        }
                    }
                    // A POST of the group is in flight, or an earlier one waits: not yet.
                    _ => break,
                }
            }
        }
        (taken, false)
    }

    /// Gathers ready leases into POSTs while there is room for one in flight: a full one at once;
    /// one that is not full once the oldest of its records has waited the window, or at once when
    /// the window is zero or nothing more can be received ([`Ledger::cannot_gather`]).
    fn form(&mut self, now: Instant) -> Vec<Step> {
        let mut steps = Vec::new();
        while self.posts.len() < self.settings.posts.concurrency {
            // What is ready may not all be free to go (FIFO), so these are necessary, not
            // sufficient; without one of them, no POST can go and none is looked for.
            let posts = &self.settings.posts;
            let may_send = self.ready.len() >= posts.size
                || self.ready_bytes > posts.max_bytes
                || self.cannot_gather()
                || self
                    .ready_since
                    .first()
                    .is_some_and(|(since, _)| now >= *since + posts.window);
            if !may_send {
                break;
            }
            let (leases, full) = self.next_post();
            let Some(oldest) = self.oldest_ready(&leases) else {
                break;
            };
            let send = full || self.cannot_gather() || now >= oldest + self.settings.posts.window;
            if !send {
                break;
            }
            let post = self.next_post;
            self.next_post += 1;
            let mut records = Vec::with_capacity(leases.len());
            for &id in &leases {
                self.leave(id);
                let Some(lease) = self.leases.get_mut(&id) else {
                    continue;
                };
                lease.state = State::Delivering { since: now, post };
                records.push((
                    id,
                    Incoming {
                        receipt: lease.receipt.clone(),
                        delivery: lease.delivery.clone(),
                    },
                ));
            }
            self.posts.insert(
                post,
                InFlight {
                    delivering: leases.len(),
                    leases,
                },
            );
            steps.push(Step::Deliver(post, records));
        }
        steps
    }

    /// When the oldest of these ready leases became ready.
    fn oldest_ready(&self, ids: &[LeaseId]) -> Option<Instant> {
        ids.iter()
            .filter_map(|id| match self.leases.get(id)?.state {
                State::Ready { since } => Some(since),
                _ => None,
            })
            .min()
    }

    /// The webhook answered POST `post`: each of its records' outcome, in the POST's order
    /// (`outcome_of` gives it). On a FIFO queue a failed record fails every later record of its
    /// group (they are released unsent, whatever the answer said for them).
    pub fn answered(
        &mut self,
        now: Instant,
        post: PostId,
        outcome_of: impl Fn(&Delivery) -> Outcome,
    ) -> Answered {
        let mut answered = Answered::default();
        let Some(leases) = self.posts.get(&post).map(|p| p.leases.clone()) else {
            return answered;
        };
        for id in leases {
            let Some(lease) = self.leases.get(&id) else {
                continue;
            };
            if !matches!(lease.state, State::Delivering { post: p, .. } if p == post) {
                continue;
            }
            let delivery = lease.delivery.clone();
            let outcome = outcome_of(&delivery);
            let decided = self.decide(now, id, &outcome);
            answered.steps.extend(decided.steps);
            answered.records.push(RecordOutcome {
                delivery,
                outcome,
                action: decided.action,
            });
        }
        answered.steps.extend(self.form(now));
        answered
    }

    /// The webhook's outcome for a delivering lease: its SQS action (none for a Nack left to the
    /// visibility timeout: the lease is then done at once), and in a FIFO group the next message's
    /// delivery, or after a failure the release of the rest of the group in hand.
    #[cfg(test)]
    pub fn outcome(&mut self, now: Instant, id: LeaseId, outcome: &Outcome) -> Decided {
        let mut decided = self.decide(now, id, outcome);
        decided.steps.extend(self.form(now));
        decided
    }

    /// One lease's outcome, without gathering the next POSTs (a POST's answer gathers once, after
    /// all its records).
    fn decide(&mut self, now: Instant, id: LeaseId, outcome: &Outcome) -> Decided {
        let mut decided = Decided::default();
        let Some(lease) = self.leases.get_mut(&id) else {
            return decided;
        };
        if !matches!(lease.state, State::Delivering { .. }) {
            return decided;
        }
        let receive_count = lease.delivery.receive_count();
        let jitter = self.rng.f64() * 2.0 - 1.0;
        let cap = max_visibility_secs(lease.received_at, now);
        let visibility = |wait: Duration, why| Action::Visibility {
            secs: ceil_secs(wait).min(cap),
            why,
        };
        let action = match outcome {
            Outcome::Ack => Some(Action::Delete),
            Outcome::DeadLetter => Some(Action::DeadLetter),
            Outcome::Retry { until } => {
                let wait = until
                    .duration_since(SystemTime::now())
                    .unwrap_or_default()
                    .max(self.settings.min_retry_delay);
                Some(visibility(wait, Why::Retry))
            }
            Outcome::Nack { .. } => self
                .settings
                .nack
                .visibility(receive_count, self.settings.visibility, jitter)
                .map(|timeout| visibility(timeout, Why::Nack)),
        };
        // When the message is due back (for a FIFO block); `None`: it is gone for good. Left to
        // its visibility timeout while an extension call is out, it may be extended once more.
        let reappears_at = match &action {
            Some(Action::Visibility { secs, .. }) => {
                Some(now + Duration::from_secs((*secs).into()))
            }
            Some(_) => None,
            None if lease.heartbeat == Heartbeat::Extending => {
                Some(lease.visible_until.max(now + self.settings.visibility))
            }
            None => Some(lease.visible_until),
        };
        let group = lease
            .delivery
            .group_id
            .clone()
            .filter(|_| self.settings.fifo);
        let message_id = lease.delivery.message_id.clone();
        decided.action = action.clone();
        match action {
            Some(action) => decided.steps.extend(self.settle(id, action)),
            None => {
                self.remove(now, id, false);
            }
        }
        if let Some(group) = group {
            self.after_group_outcome(&group, id, message_id, reappears_at, &mut decided.steps);
        }
        decided
    }

    /// Moves a lease to `Settling` with its action: sent now, or once an extension call out for
    /// it has returned (so the two cannot cross).
    fn settle(&mut self, id: LeaseId, action: Action) -> Option<Step> {
        self.leave(id);
        let lease = self.leases.get_mut(&id)?;
        let waits = lease.heartbeat == Heartbeat::Extending;
        if matches!(action, Action::Visibility { .. }) && !waits {
            lease.heartbeat = Heartbeat::Off;
        }
        let sent = !(waits && matches!(action, Action::Visibility { .. }));
        self.settling += 1;
        lease.state = State::Settling {
            action: action.clone(),
            sent,
        };
        sent.then_some(Step::Act(id, action))
    }

    /// FIFO bookkeeping once the front of `group` has its outcome.
    fn after_group_outcome(
        &mut self,

        group_id: &Arc<str>,
        id: LeaseId,
        message_id: Arc<str>,
        reappears_at: Option<Instant>,
        steps: &mut Vec<Step>,
    ) {
        // (A lease done at once already left its group, and an emptied group was dropped.)
        let group = self.groups.entry(group_id.clone()).or_default();
        // A POST's records leave their group from its front, in order.
        if group.leases.front() == Some(&id) {
            group.leases.pop_front();
        } else {
            group.leases.retain(|l| *l != id);
        }
        match reappears_at {
            // Delivered (acked or dead-lettered): the next of the group may go.
            None if group.leases.is_empty() => {
                self.groups.remove(group_id);
            }
            // Nothing of an unblocked group is queued: its ready leases may go.
            None => {}
            Some(due) => {
                // Failed: the rest of the group in hand goes back unsent, and later messages of
                // the group are held until this one has come round again.
                let rest: Vec<LeaseId> = group.leases.drain(..).collect();
                group.blocked = Some(Blocked {
                    message_id,
                    until: due + BLOCK_GRACE,
                });
                for later in rest {
                    steps.extend(self.release(later));
                }
            }
        }
    }

    /// Hands a lease that was never sent back: visibility 0.
    fn release(&mut self, id: LeaseId) -> Option<Step> {
        self.settle(
            id,
            Action::Visibility {
                secs: 0,
                why: Why::Release,
            },
        )
    }

    /// Time-driven changes, due by `now`: blocked FIFO groups whose failed message is due open
    /// (their held messages go, the block is forgotten), and leases held while paused for a
    /// whole visibility timeout are released, so other consumers can take them.
    pub fn tick(&mut self, now: Instant) -> Vec<Step> {
        let mut steps = Vec::new();
        let due: Vec<Arc<str>> = self
            .groups
            .iter()
            .filter(|(_, g)| g.blocked.as_ref().is_some_and(|b| now >= b.until))
            .map(|(k, _)| k.clone())
            .collect();
        for group_id in due {
            if let Some(group) = self.groups.get_mut(&group_id) {
                group.blocked = None;
                if group.leases.is_empty() {
                    self.groups.remove(&group_id);
                }
            }
            self.open_group(now, &group_id);
        }
        let visibility = self.settings.visibility;
        let stale = self.ids_where(|l| l.state == State::Held && now >= l.received_at + visibility);
        steps.extend(stale.into_iter().filter_map(|id| self.release(id)));
        steps.extend(self.form(now));
        steps
    }

    /// Draining: every lease not yet sent goes back (visibility 0), a batch being gathered too.
    pub fn release_queued(&mut self) -> Vec<Step> {
        let queued = self
            .ids_where(|l| matches!(l.state, State::Queued | State::Held | State::Ready { .. }));
        for group in self.groups.values_mut() {
            group.leases.retain(|l| !queued.contains(l));
        }
        self.groups
            .retain(|_, g| !g.leases.is_empty() || g.blocked.is_some());
        queued
            .into_iter()
            .filter_map(|id| self.release(id))
            .collect()
    }

    /// The lease's SQS action finished (`ok`: it succeeded; a failed one leaves the message to
    /// its visibility timeout). The lease is done and its slot free, unless the message was
    /// handed out again meanwhile: then the action runs again with the newer receipt handle (a
    /// dead-letter move that succeeded becomes a delete; one that failed is left to reappear).
    pub fn settled(&mut self, now: Instant, id: LeaseId, ok: bool) -> Option<Step> {
        let lease = self.leases.get_mut(&id)?;
        let State::Settling { action, .. } = &lease.state else {
            self.remove(now, id, false);
            return None;
        };
        let acked = match action {
            Action::Delete => true,
            Action::DeadLetter => ok,
            Action::Visibility { .. } => false,
        };
        let redo = lease
            .redo
            .take()
            .filter(|_| acked || !matches!(action, Action::DeadLetter));
        if let Some(redo) = redo {
            lease.state = State::Settling {
                action: redo.clone(),
                sent: true,
            };
            return Some(Step::Act(id, redo));
        }
        self.remove(now, id, acked);
        None
    }

    /// The shutdown deadline passed: every running delivery is given up (left to its visibility
    /// timeout, no more extensions). Returns their messages.
    pub fn abandon_deliveries(&mut self, now: Instant) -> Vec<Arc<Delivery>> {
        let running = self.ids_where(|l| {
            matches!(
                l.state,
                State::Delivering { .. } | State::Queued | State::Held | State::Ready { .. }
            )
        });
        running
            .into_iter()
            .filter_map(|id| self.remove(now, id, false))
            .collect()
    }

    /// Ends a lease; `acked`: its message was acknowledged (see [`Holders`]).
    fn remove(&mut self, now: Instant, id: LeaseId, acked: bool) -> Option<Arc<Delivery>> {
        self.leave(id);
        let lease = self.leases.remove(&id)?;
        if self.by_message.get(&lease.delivery.message_id) == Some(&id) {
            self.by_message.remove(&lease.delivery.message_id);
            self.holders
                .release(&lease.delivery.message_id, self.receiver, acked, now);
        }
        if let Some(group_id) = lease.delivery.group_id.as_ref() {
            if let Some(group) = self.groups.get_mut(group_id) {
                // A settling lease already left its group (its outcome, or its release, took it
                // out): no need to look through a long group for it.
                if !matches!(lease.state, State::Settling { .. }) {
                    group.leases.retain(|l| *l != id);
                }
                if group.leases.is_empty() && group.blocked.is_none() {
                    self.groups.remove(group_id);
                }
            }
        }
        Some(lease.delivery)
    }

    /// When the ledger next needs the actor: an extension due, a FIFO block ending, a lease
    /// held while paused for a whole visibility timeout, or a batch window ending.
    pub fn next_wakeup(&self) -> Option<Instant> {
        let visibility = self.settings.visibility;
        let leases = self
            .leases
            .values()
            .filter_map(|l| match (l.heartbeat, &l.state) {
                (_, State::Held) => Some(match l.heartbeat {
                    Heartbeat::Due(at) => at.min(l.received_at + visibility),
                    _ => l.received_at + visibility,
                }),
                (Heartbeat::Due(at), _) => Some(at),
                _ => None,
            });
        let blocks = self
            .groups
            .values()
            .filter_map(|g| g.blocked.as_ref().map(|b| b.until));
        // A batch that is not full goes when the window of its oldest record ends.
        let window = (self.posts.len() < self.settings.posts.concurrency
            && !self.ready.is_empty()
            && !self.settings.posts.window.is_zero())
        .then(|| match self.settings.fifo {
            // FIFO: only the records free to go count (a busy group's wait for its POST).
            true => self.oldest_ready(&self.next_post().0),
            // Every ready lease is free to go: the oldest is at hand.
            false => self.ready_since.first().map(|(since, _)| *since),
        })
        .flatten()
        .map(|oldest| oldest + self.settings.posts.window);
        leases.chain(blocks).chain(window).min()
    }

    /// Extensions due by `now` (and those due shortly after, so they share one batch call).
    /// Each asks for the visibility timeout again, but never past the lease's bound: its delivery's
    /// start plus the delivery bound, and SQS's 12 hours from receipt. A lease past its bound gets
    /// no more extensions.
    pub fn due_extensions(&mut self, now: Instant) -> Vec<Extension> {
        let visibility = self.settings.visibility;
        let horizon = now + visibility / 8;
        let mut due = Vec::new();
        for (id, lease) in self.leases.iter_mut() {
            let Heartbeat::Due(at) = lease.heartbeat else {
                continue;
            };
            if at > horizon {
                continue;
            }
            let hold_bound = lease.received_at + MAX_HOLD - MAX_HOLD_SLACK;
            let bound = match lease.state {
                State::Delivering { since, .. } => since + self.settings.delivery_bound,
                _ => hold_bound,
            }
            .min(hold_bound);
            let want = visibility.min(bound.saturating_duration_since(now));
            if !lease.extendable() || want < Duration::from_secs(1) {
                lease.heartbeat = Heartbeat::Off;
                continue;
            }
            lease.heartbeat = Heartbeat::Extending;
            due.push(Extension {
                lease: *id,
                secs: ceil_secs(want),
                receipt: lease.receipt.clone(),
                visible_until: lease.visible_until,
            });
        }
        due.sort_by_key(|e| e.lease);
        due
    }

    /// An extension call (sent at `sent_at`) came back. Returns the lease's visibility action if
    /// one waited for it.
    pub fn extended(
        &mut self,
        now: Instant,
        sent_at: Instant,
        extension: &Extension,
        result: Extended,
    ) -> Option<Step> {
        let lease = self.leases.get_mut(&extension.lease)?;
        let extendable = lease.extendable();
        let current = Arc::ptr_eq(&extension.receipt, &lease.receipt);
        let retry_soon = now + (self.settings.visibility / 8).min(Duration::from_secs(1));
        lease.heartbeat = match (current, result) {
            // The message was handed out again while the call was out: extend the new receipt.
            (false, _) => Heartbeat::Due(now),
            (true, Extended::Ok) => {
                let granted = Duration::from_secs(extension.secs.into());
                lease.visible_until = sent_at + granted;
                Heartbeat::Due(sent_at + granted / 2)
            }
            (true, Extended::Refused) => Heartbeat::Off,
            (true, Extended::Failed) if retry_soon < lease.visible_until => {
                Heartbeat::Due(retry_soon)
            }
            (true, Extended::CutOff) if now < lease.visible_until => Heartbeat::Due(now),
            (true, _) => Heartbeat::Off,
        };
        if !extendable {
            lease.heartbeat = Heartbeat::Off;
        }
        match &mut lease.state {
            State::Settling { action, sent } if !*sent => {
                *sent = true;
                Some(Step::Act(extension.lease, action.clone()))
            }
            _ => None,
        }
    }
}

/// The longest visibility timeout SQS still accepts at `now` for a message received at
/// `received_at` (its 12 hours run from receipt), less a few seconds for clock and transit.
fn max_visibility_secs(received_at: Instant, now: Instant) -> u32 {
    (received_at + MAX_HOLD - MAX_HOLD_SLACK)
        .saturating_duration_since(now)
        .as_secs() as u32
}

/// Whole seconds, rounded up (a visibility "not before" must hold), capped at SQS's 12 hours.
fn ceil_secs(d: Duration) -> u32 {
    let secs = d.as_secs() + u64::from(d.subsec_nanos() > 0);
    secs.min(crate::limits::MAX_VISIBILITY_TIMEOUT_SECS) as u32
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::messages::NackReason;

    fn settings() -> LedgerSettings {
        LedgerSettings {
            slots: 10,
            fifo: false,
            visibility: Duration::from_secs(2),
            heartbeat: true,
            delivery_bound: Duration::from_secs(65),
            nack: NackPolicy::default(),
            min_retry_delay: Duration::from_secs(1),
            posts: Posts::single(10),
        }
    }

    fn msg(id: &str, group: Option<&str>) -> Incoming {
        Incoming {
            receipt: format!("rh-{id}").into(),
            delivery: Arc::new(Delivery {
                message_id: id.into(),
                body: bytes::Bytes::from(id.to_string()),
                group_id: group.map(Into::into),
                receive_count: Some("1".into()),
                ..Default::default()
            }),
        }
    }

    fn admit(
        l: &mut Ledger,
        now: Instant,
        sent_at: Instant,
        m: Vec<Incoming>,
        hold: bool,
    ) -> Vec<Step> {
        l.admit(now, sent_at, m, hold).steps
    }

    fn outcome(l: &mut Ledger, now: Instant, id: LeaseId, o: &Outcome) -> Vec<Step> {
        l.outcome(now, id, o).steps
    }

    fn delivered(steps: &[Step]) -> Vec<String> {
        steps
            .iter()
            .filter_map(|s| match s {
                Step::Deliver(_, records) => Some(
                    records
                        .iter()
                        .map(|(_, m)| m.delivery.message_id.to_string())
                        .collect::<Vec<_>>(),
                ),
                _ => None,
            })
            .flatten()
            .collect()
    }

    fn acts(steps: &[Step]) -> Vec<(LeaseId, Action)> {
        steps
            .iter()
            .filter_map(|s| match s {
                Step::Act(id, a) => Some((*id, a.clone())),
                _ => None,
            })
            .collect()
    }

    fn nack() -> Outcome {
        Outcome::Nack {
            reason: NackReason::Status(500),
        }
    }

    #[test]
    fn a_slot_frees_only_when_the_last_sqs_action_is_confirmed() {
        let mut l = Ledger::new(LedgerSettings {
            slots: 2,
            ..settings()
        });
        let t = Instant::now();
        let steps = admit(&mut l, t, t, vec![msg("a", None), msg("b", None)], false);
        assert_eq!(delivered(&steps), ["a", "b"]);
        assert_eq!((l.free_slots(), l.delivering()), (0, 2));
        let steps = outcome(&mut l, t, 0, &Outcome::Ack);
        assert_eq!(l.delivering(), 1);
        assert_eq!(acts(&steps), [(0, Action::Delete)]);
        assert_eq!(l.free_slots(), 0, "the delete is not confirmed yet");
        l.settled(t, 0, true);
        assert_eq!(l.free_slots(), 1);
    }

    #[test]
    fn a_nack_without_policy_needs_no_sqs_call_and_frees_its_slot_at_once() {
        let mut l = Ledger::new(settings());
        let t = Instant::now();
        admit(&mut l, t, t, vec![msg("a", None)], false);
        assert!(outcome(&mut l, t, 0, &nack()).is_empty());
        assert!(l.is_empty());
    }

    #[test]
    fn nack_policy_sets_the_error_timeout_and_backs_off_with_the_receive_count() {
        let fixed = NackPolicy {
            error_visibility: Some(Duration::from_secs(5)),
            backoff_max: None,
        };
        assert_eq!(
            fixed.visibility(7, Duration::from_secs(30), 1.0),
            Some(Duration::from_secs(5))
        );
        let backoff = NackPolicy {
            error_visibility: Some(Duration::from_secs(2)),
            backoff_max: Some(Duration::from_secs(60)),
        };
        let at = |n, j| backoff.visibility(n, Duration::from_secs(30), j).unwrap();
        assert_eq!(at(1, 0.0), Duration::from_secs(2));
        assert_eq!(at(3, 0.0), Duration::from_secs(8));
        assert_eq!(at(3, 1.0), Duration::from_millis(9600), "+20 %");
        assert_eq!(at(3, -1.0), Duration::from_millis(6400), "-20 %");
        assert_eq!(at(10, 0.0), Duration::from_secs(60), "capped");
        assert_eq!(at(10, 1.0), Duration::from_secs(60), "never past the cap");
        assert_eq!(at(u32::MAX, 0.0), Duration::from_secs(60));
        let only_max = NackPolicy {
            error_visibility: None,
            backoff_max: Some(Duration::from_secs(600)),
        };
        assert_eq!(
            only_max.visibility(2, Duration::from_secs(30), 0.0),
            Some(Duration::from_secs(60)),
            "the queue's visibility timeout is the base"
        );
        assert_eq!(
            NackPolicy::default().visibility(3, Duration::ZERO, 0.0),
            None
        );
    }

    #[test]
    fn a_retry_is_raised_to_the_minimum_delay() {
        let mut l = Ledger::new(settings());
        let t = Instant::now();
        admit(&mut l, t, t, vec![msg("a", None)], false);
        let steps = outcome(
            &mut l,
            t,
            0,
            &Outcome::Retry {
                until: SystemTime::now(),
            },
        );
        assert_eq!(
            acts(&steps),
            [(
                0,
                Action::Visibility {
                    secs: 1,
                    why: Why::Retry
                }
            )]
        );
    }

    #[test]
    fn heartbeat_extends_at_half_the_timeout_and_stops_at_the_delivery_bound() {
        let mut l = Ledger::new(LedgerSettings {
            delivery_bound: Duration::from_secs(5),
            ..settings()
        });
        let t = Instant::now();
        admit(&mut l, t, t, vec![msg("a", None)], false);
        assert_eq!(l.next_wakeup(), Some(t + Duration::from_secs(1)));
        assert!(l.due_extensions(t + Duration::from_millis(500)).is_empty());
        let mut now = t + Duration::from_secs(1);
        let mut extensions = 0;
        while let Some(at) = l.next_wakeup() {
            now = now.max(at);
            let due = l.due_extensions(now);
            for e in &due {
                assert!(e.secs <= 2);
                l.extended(now, now, e, Extended::Ok);
                extensions += 1;
            }
            assert!(extensions < 100, "bounded");
        }
        // Extended until 5 s after the delivery began, no further.
        assert!(now <= t + Duration::from_secs(5), "{:?}", now - t);
        assert!((4..=6).contains(&extensions), "{extensions}");
    }

    #[test]
    fn an_extension_refused_by_sqs_ends_the_heartbeat_but_not_the_lease() {
        let mut l = Ledger::new(settings());
        let t = Instant::now();
        admit(&mut l, t, t, vec![msg("a", None)], false);
        let due = l.due_extensions(t + Duration::from_secs(1));
        assert_eq!(due.len(), 1);
        assert!(l.next_wakeup().is_none(), "none while the call is out");
        l.extended(t, t, &due[0], Extended::Refused);
        assert!(l.next_wakeup().is_none());
        assert_eq!(
            acts(&outcome(&mut l, t, 0, &Outcome::Ack)),
            [(0, Action::Delete)]
        );
    }

    #[test]
    fn a_visibility_change_waits_for_an_extension_in_flight() {
        let mut l = Ledger::new(settings());
        let t = Instant::now();
        admit(&mut l, t, t, vec![msg("a", None)], false);
        let due = l.due_extensions(t + Duration::from_secs(1));
        let steps = outcome(
            &mut l,
            t,
            0,
            &Outcome::Retry {
                until: SystemTime::now() + Duration::from_secs(5),
            },
        );
        assert!(acts(&steps).is_empty(), "held back");
        let step = l.extended(t, t, &due[0], Extended::Ok);
        assert!(matches!(
            step,
            Some(Step::Act(
                0,
                Action::Visibility {
                    why: Why::Retry,
                    ..
                }
            ))
        ));
    }

    #[test]
    fn several_due_extensions_share_one_call() {
        let mut l = Ledger::new(settings());
        let t = Instant::now();
        admit(&mut l, t, t, vec![msg("a", None), msg("b", None)], false);
        admit(
            &mut l,
            t,
            t + Duration::from_millis(100),
            vec![msg("c", None)],
            false,
        );
        let due = l.due_extensions(t + Duration::from_secs(1));
        assert_eq!(due.len(), 3, "c is due 100 ms later: taken along");
    }

    #[test]
    fn fifo_delivers_one_message_per_group_in_order_and_groups_in_parallel() {
        let mut l = Ledger::new(LedgerSettings {
            fifo: true,
            ..settings()
        });
        let t = Instant::now();
        let steps = admit(
            &mut l,
            t,
            t,
            vec![
                msg("a1", Some("a")),
                msg("a2", Some("a")),
                msg("b1", Some("b")),
                msg("a3", Some("a")),
            ],
            false,
        );
        assert_eq!(delivered(&steps), ["a1", "b1"]);
        assert_eq!(delivered(&outcome(&mut l, t, 0, &Outcome::Ack)), ["a2"]);
        assert_eq!(delivered(&outcome(&mut l, t, 1, &Outcome::Ack)), ["a3"]);
        assert!(delivered(&outcome(&mut l, t, 3, &Outcome::Ack)).is_empty());
    }

    #[test]
    fn after_a_failure_the_rest_of_its_fifo_group_is_released_unsent() {
        let mut l = Ledger::new(LedgerSettings {
            fifo: true,
            ..settings()
        });
        let t = Instant::now();
        admit(
            &mut l,
            t,
            t,
            vec![
                msg("a1", Some("a")),
                msg("a2", Some("a")),
                msg("a3", Some("a")),
                msg("b1", Some("b")),
            ],
            false,
        );
        let steps = outcome(&mut l, t, 0, &nack());
        let released: Vec<_> = acts(&steps).into_iter().map(|(id, _)| id).collect();
        assert_eq!(released, [1, 2]);
        assert!(acts(&steps).iter().all(|(_, a)| *a
            == Action::Visibility {
                secs: 0,
                why: Why::Release
            }));
        assert!(delivered(&steps).is_empty());
    }

    fn fifo() -> Ledger {
        Ledger::new(LedgerSettings {
            fifo: true,
            ..settings()
        })
    }

    #[test]
    fn a_later_message_of_a_blocked_group_is_held_never_handed_back_and_goes_after_the_failed_one()
    {
        let mut l = fifo();
        let t = Instant::now();
        admit(&mut l, t, t, vec![msg("a1", Some("a"))], false);
        // Nack with no policy: a1 reappears when its visibility (2 s from receipt) ends.
        outcome(&mut l, t, 0, &nack());
        // An endpoint that ignores the group lock hands out a2 anyway: held, no SQS action.
        let steps = admit(&mut l, t, t, vec![msg("a2", Some("a"))], false);
        assert!(steps.is_empty(), "{steps:?}");
        assert_eq!(l.free_slots(), 9, "it holds its slot");
        // ...kept invisible by the heartbeat meanwhile.
        assert_eq!(l.due_extensions(t + Duration::from_secs(1)).len(), 1);
        // a1 comes back first: delivered before a2.
        let later = t + Duration::from_secs(2);
        let steps = admit(&mut l, later, later, vec![msg("a1", Some("a"))], false);
        assert_eq!(delivered(&steps), ["a1"]);
        assert_eq!(delivered(&outcome(&mut l, later, 2, &Outcome::Ack)), ["a2"]);
    }

    #[test]
    fn a_blocked_groups_held_message_goes_once_the_failed_one_is_due_and_the_block_is_forgotten() {
        let mut l = fifo();
        let t = Instant::now();
        admit(&mut l, t, t, vec![msg("a1", Some("a"))], false);
        outcome(&mut l, t, 0, &nack());
        admit(&mut l, t, t, vec![msg("a2", Some("a"))], false);
        let due = l.next_wakeup().unwrap();
        assert!(l.tick(t + Duration::from_secs(1)).is_empty(), "not yet due");
        // The failed message went elsewhere (the DLQ, another consumer): a2 goes once due.
        let steps = l.tick(t + Duration::from_secs(2) + BLOCK_GRACE);
        assert_eq!(delivered(&steps), ["a2"]);
        assert!(due <= t + Duration::from_secs(2) + BLOCK_GRACE);
        outcome(&mut l, t, 1, &Outcome::Ack);
        l.settled(t, 1, true);
        assert_eq!(l.groups(), 0, "nothing remembered");
        // A block with nothing held is forgotten once due too.
        admit(&mut l, t, t, vec![msg("b1", Some("b"))], false);
        outcome(&mut l, t, 2, &nack());
        assert_eq!(l.groups(), 1);
        l.tick(t + Duration::from_secs(10));
        assert_eq!(l.groups(), 0);
        assert!(l.next_wakeup().is_none());
    }

    #[test]
    fn a_message_handed_out_again_while_held_joins_its_lease_and_takes_the_new_receipt() {
        let mut l = Ledger::new(settings());
        let t = Instant::now();
        admit(&mut l, t, t, vec![msg("a", None)], false);
        let again = Incoming {
            receipt: "rh-a-2".into(),
            ..msg("a", None)
        };
        let later = t + Duration::from_secs(3);
        let admitted = l.admit(later, later, vec![again.clone()], false);
        assert!(admitted.steps.is_empty(), "not delivered again");
        assert_eq!((admitted.new, admitted.rejoined.len()), (0, 1));
        assert_eq!(l.len(), 1);
        assert_eq!(l.receipt(0).map(|r| &**r), Some("rh-a-2"));
        // Handed out once more while its delete is out: the delete runs again with the newest.
        assert_eq!(
            acts(&outcome(&mut l, later, 0, &Outcome::Ack)),
            [(0, Action::Delete)]
        );
        let third = Incoming {
            receipt: "rh-a-3".into(),
            ..msg("a", None)
        };
        l.admit(later, later, vec![third], false);
        assert!(matches!(
            l.settled(t, 0, true),
            Some(Step::Act(0, Action::Delete))
        ));
        assert_eq!(l.receipt(0).map(|r| &**r), Some("rh-a-3"));
        assert!(l.settled(t, 0, true).is_none());
        assert!(l.is_empty());
    }

    #[test]
    fn a_message_another_receiver_holds_is_passed_to_it_and_forgotten_once_done() {
        let holders = Holders::default();
        let mut a = Ledger::new(settings()).shared(0, holders.clone());
        let mut b = Ledger::new(settings()).shared(1, holders.clone());
        let t = Instant::now();
        admit(&mut a, t, t, vec![msg("m", None)], false);
        let admitted = b.admit(t, t, vec![msg("m", None), msg("n", None)], false);
        assert_eq!(delivered(&admitted.steps), ["n"], "m is a's");
        assert_eq!(admitted.forward.len(), 1);
        assert_eq!(admitted.forward[0].0, 0);
        let joined = a.admit(t, t, vec![admitted.forward[0].1.clone()], false);
        assert_eq!((joined.new, joined.rejoined.len()), (0, 1));
        outcome(&mut a, t, 0, &Outcome::Ack);
        a.settled(t, 0, true);
        assert_eq!(holders.len().0, 1, "only n is held now");
        outcome(&mut b, t, 0, &nack());
        assert_eq!(holders.len().0, 0);
    }

    #[test]
    fn a_released_message_received_again_is_a_new_lease_not_a_second_release() {
        let mut l = Ledger::new(LedgerSettings {
            nack: NackPolicy {
                error_visibility: Some(Duration::ZERO),
                backoff_max: None,
            },
            ..settings()
        });
        let t = Instant::now();
        admit(&mut l, t, t, vec![msg("a", None)], false);
        let steps = outcome(&mut l, t, 0, &nack());
        assert_eq!(acts(&steps).len(), 1, "visibility 0");
        // Back at once, as asked, while the change's answer is still on its way.
        let again = Incoming {
            receipt: "rh-a-2".into(),
            ..msg("a", None)
        };
        let admitted = l.admit(t, t, vec![again], false);
        assert_eq!(
            delivered(&admitted.steps),
            ["a"],
            "delivered as a new receive"
        );
        assert_eq!((admitted.new, admitted.rejoined.len()), (1, 0));
        assert!(l.settled(t, 0, true).is_none(), "the old lease just ends");
        assert_eq!(l.len(), 1);
        assert_eq!(l.receipt(1).map(|r| &**r), Some("rh-a-2"));
    }

    #[test]
    fn a_message_acked_while_a_receive_was_open_and_brought_by_it_is_deleted_not_delivered() {
        let holders = Holders::default();
        let mut a = Ledger::new(settings()).shared(0, holders.clone());
        let mut b = Ledger::new(settings()).shared(1, holders.clone());
        let t = Instant::now();
        admit(&mut a, t, t, vec![msg("m", None)], false);
        // b's receive is sent; SQS hands it m (lapsed) while a still delivers it...
        let sent = t + Duration::from_secs(3);
        b.poll_started(sent);
        // ...and a's delete is confirmed before b takes its answer.
        outcome(&mut a, sent, 0, &Outcome::Ack);
        a.settled(sent, 0, true);
        let again = Incoming {
            receipt: "rh-m-2".into(),
            ..msg("m", None)
        };
        let admitted = b.admit(sent, sent, vec![again.clone()], false);
        assert!(delivered(&admitted.steps).is_empty(), "not delivered twice");
        assert_eq!(acts(&admitted.steps), [(0, Action::Delete)]);
        assert_eq!((admitted.new, admitted.rejoined.len()), (0, 1));
        b.poll_done();
        assert_eq!(
            holders.len(),
            (1, 0),
            "b holds it until its delete returns; no receive open"
        );
        b.settled(sent, 0, true);
        assert_eq!(holders.len(), (0, 0), "no receive open: nothing remembered");
        // A receive sent after the delete is an ordinary one.
        let later = sent + Duration::from_secs(1);
        let admitted = b.admit(later, later, vec![again], false);
        assert_eq!(delivered(&admitted.steps), ["m"]);
    }

    #[test]
    fn a_nack_left_to_the_timeout_during_an_extension_blocks_its_group_past_that_extension() {
        let mut l = fifo();
        let t = Instant::now();
        admit(&mut l, t, t, vec![msg("a1", Some("a"))], false);
        let now = t + Duration::from_secs(1);
        let _due = l.due_extensions(now);
        outcome(&mut l, now, 0, &nack());
        admit(&mut l, now, now, vec![msg("a2", Some("a"))], false);
        // The extension out may keep a1 invisible until now + 2 s: a2 waits past that.
        assert!(l.tick(t + Duration::from_secs(2) + BLOCK_GRACE).is_empty());
        assert_eq!(
            delivered(&l.tick(now + Duration::from_secs(2) + BLOCK_GRACE)),
            ["a2"]
        );
    }

    #[test]
    fn an_extension_cut_off_at_the_visibility_left_is_retried_at_once() {
        let mut l = Ledger::new(settings());
        let t = Instant::now();
        admit(&mut l, t, t, vec![msg("a", None)], false);
        let now = t + Duration::from_secs(1);
        let due = l.due_extensions(now);
        assert_eq!(due[0].visible_until, t + Duration::from_secs(2));
        let cut = due[0].visible_until;
        l.extended(
            cut - Duration::from_millis(1),
            now,
            &due[0],
            Extended::CutOff,
        );
        assert_eq!(l.next_wakeup(), Some(cut - Duration::from_millis(1)));
        // Past the visibility left there is nothing to keep: no more tries.
        let due = l.due_extensions(cut - Duration::from_millis(1));
        l.extended(cut, cut, &due[0], Extended::CutOff);
        assert!(l.next_wakeup().is_none());
    }

    #[test]
    fn an_extension_answer_for_an_old_receipt_extends_the_new_one_at_once() {
        let mut l = Ledger::new(settings());
        let t = Instant::now();
        admit(&mut l, t, t, vec![msg("a", None)], false);
        let now = t + Duration::from_secs(1);
        let due = l.due_extensions(now);
        let again = Incoming {
            receipt: "rh-a-2".into(),
            ..msg("a", None)
        };
        l.admit(now, now, vec![again], false);
        l.extended(now, now, &due[0], Extended::Refused);
        assert_eq!(
            l.next_wakeup(),
            Some(now),
            "the refusal was for the old receipt"
        );
    }

    #[test]
    fn a_decided_visibility_is_reported_even_while_it_waits_for_an_extension() {
        let mut l = Ledger::new(LedgerSettings {
            nack: NackPolicy {
                error_visibility: Some(Duration::from_secs(7)),
                backoff_max: None,
            },
            ..settings()
        });
        let t = Instant::now();
        admit(&mut l, t, t, vec![msg("a", None)], false);
        let _due = l.due_extensions(t + Duration::from_secs(1));
        let decided = l.outcome(t, 0, &nack());
        assert!(decided.steps.is_empty(), "held back");
        assert_eq!(
            decided.action,
            Some(Action::Visibility {
                secs: 7,
                why: Why::Nack
            })
        );
    }

    #[test]
    fn messages_held_while_paused_are_released_after_one_visibility_timeout() {
        let mut l = Ledger::new(settings());
        let t = Instant::now();
        admit(&mut l, t, t, vec![msg("a", None)], true);
        let mut now = t;
        let mut released = Vec::new();
        while let Some(at) = l.next_wakeup() {
            now = at;
            released.extend(acts(&l.tick(now)));
            for e in l.due_extensions(now) {
                l.extended(now, now, &e, Extended::Ok);
            }
            if !released.is_empty() {
                break;
            }
        }
        assert_eq!(now, t + Duration::from_secs(2), "one visibility timeout");
        assert_eq!(
            released,
            [(
                0,
                Action::Visibility {
                    secs: 0,
                    why: Why::Release
                }
            )]
        );
    }

    #[test]
    fn messages_received_while_paused_are_held_invisible_then_delivered_in_order() {
        let mut l = Ledger::new(LedgerSettings {
            fifo: true,
            ..settings()
        });
        let t = Instant::now();
        let steps = admit(
            &mut l,
            t,
            t,
            vec![msg("a1", Some("a")), msg("a2", Some("a")), msg("x", None)],
            true,
        );
        assert!(steps.is_empty(), "nothing sent while paused");
        assert_eq!(l.free_slots(), 7, "held leases hold their slots");
        assert_eq!(
            l.due_extensions(t + Duration::from_secs(1)).len(),
            3,
            "and stay invisible"
        );
        let steps = l.deliver_held(t);
        assert_eq!(delivered(&steps), ["a1", "x"]);
    }

    #[test]
    fn a_fifo_message_without_a_group_is_delivered_on_its_own() {
        let mut l = Ledger::new(LedgerSettings {
            fifo: true,
            ..settings()
        });
        let t = Instant::now();
        let steps = admit(&mut l, t, t, vec![msg("x", None), msg("y", None)], false);
        assert_eq!(delivered(&steps), ["x", "y"]);
    }

    #[test]
    fn draining_releases_queued_leases_and_abandons_running_ones() {
        let mut l = Ledger::new(LedgerSettings {
            fifo: true,
            ..settings()
        });
        let t = Instant::now();
        admit(
            &mut l,
            t,
            t,
            vec![msg("a1", Some("a")), msg("a2", Some("a"))],
            false,
        );
        let steps = l.release_queued();
        assert_eq!(
            acts(&steps),
            [(
                1,
                Action::Visibility {
                    secs: 0,
                    why: Why::Release
                }
            )]
        );
        l.settled(t, 1, true);
        assert_eq!(l.delivering(), 1);
        assert_eq!(l.abandon_deliveries(t).len(), 1);
        assert_eq!(l.delivering(), 0);
        assert!(l.is_empty());
        assert!(
            outcome(&mut l, t, 0, &Outcome::Ack).is_empty(),
            "a late answer is ignored"
        );
    }

    #[test]
    fn no_extension_past_twelve_hours_from_receipt() {
        let mut l = Ledger::new(LedgerSettings {
            visibility: Duration::from_secs(43_200),
            delivery_bound: Duration::from_secs(100_000),
            ..settings()
        });
        let t = Instant::now();
        admit(&mut l, t, t, vec![msg("a", None)], false);
        let due = l.due_extensions(t + Duration::from_secs(21_600));
        assert_eq!(due.len(), 1);
        assert!(due[0].secs <= 21_600 - 5, "{}", due[0].secs);
    }

    fn batches(size: usize, window: Duration, concurrency: usize) -> LedgerSettings {
        LedgerSettings {
            slots: size * concurrency,
            posts: Posts {
                size,
                window,
                concurrency,
                max_bytes: usize::MAX,
                record_bytes: |d, _| d.body.len(),
                record_overhead: 0,
            },
            ..settings()
        }
    }

    /// FIFO messages, each of the group its id starts with (`a1` of group `a`).
    fn grouped(ids: &[&str]) -> Vec<Incoming> {
        ids.iter().map(|id| msg(id, Some(&id[..1]))).collect()
    }

    /// The POSTs among `steps`: each its messages, in order.
    fn posts(steps: &[Step]) -> Vec<Vec<String>> {
        steps
            .iter()
            .filter_map(|s| match s {
                Step::Deliver(_, records) => Some(
                    records
                        .iter()
                        .map(|(_, m)| m.delivery.message_id.to_string())
                        .collect(),
                ),
                _ => None,
            })
            .collect()
    }

    fn post_id(steps: &[Step]) -> PostId {
        steps
            .iter()
            .find_map(|s| match s {
                Step::Deliver(post, _) => Some(*post),
                _ => None,
            })
            .expect("a POST")
    }

    #[test]
    fn a_batch_goes_when_full_or_when_its_window_ends() {
        let mut l = Ledger::new(batches(3, Duration::from_secs(5), 1));
        let t = Instant::now();
        let steps = admit(&mut l, t, t, vec![msg("a", None), msg("b", None)], false);
        assert!(posts(&steps).is_empty(), "gathering");
        assert_eq!(
            l.next_wakeup(),
            Some(t + Duration::from_secs(1)),
            "heartbeat first"
        );
        assert!(l.tick(t + Duration::from_secs(4)).is_empty());
        let later = t + Duration::from_secs(1);
        let steps = admit(
            &mut l,
            later,
            later,
            vec![msg("c", None), msg("d", None)],
            false,
        );
        assert_eq!(posts(&steps), [["a", "b", "c"]], "full");
        assert_eq!(
            l.free_slots(),
            0,
            "3 slots (workers × batch size), 4 held: d waits"
        );
        let steps = l.answered(later, post_id(&steps), |_| Outcome::Ack).steps;
        assert_eq!(acts(&steps).len(), 3);
        assert!(
            posts(&steps).is_empty(),
            "d's window runs from its own arrival"
        );
        assert!(posts(&l.tick(later + Duration::from_millis(4999))).is_empty());
        assert_eq!(posts(&l.tick(later + Duration::from_secs(5))), [["d"]]);
    }

    #[test]
    fn with_no_window_a_batch_takes_what_is_in_hand_and_waits_for_a_free_worker() {
        let mut l = Ledger::new(batches(10, Duration::ZERO, 1));
        let t = Instant::now();
        let steps = admit(&mut l, t, t, vec![msg("a", None), msg("b", None)], false);
        assert_eq!(posts(&steps), [["a", "b"]]);
        let first = post_id(&steps);
        let steps = admit(&mut l, t, t, vec![msg("c", None), msg("d", None)], false);
        assert!(posts(&steps).is_empty(), "one POST at a time");
        let steps = l.answered(t, first, |_| Outcome::Ack).steps;
        assert_eq!(posts(&steps), [["c", "d"]]);
    }

    #[test]
    fn a_batch_is_cut_before_its_bytes_pass_the_limit_and_receiving_stops_while_a_full_one_waits() {
        let mut settings = batches(10, Duration::from_secs(60), 1);
        settings.posts.max_bytes = 5;
        let mut l = Ledger::new(settings);
        let t = Instant::now();
        // Bodies are the ids: 2 bytes each.
        let steps = admit(
            &mut l,
            t,
            t,
            vec![
                msg("a1", None),
                msg("b1", None),
                msg("c1", None),
                msg("d1", None),
            ],
            false,
        );
        assert_eq!(posts(&steps), [["a1", "b1"]], "a third would make 6 bytes");
        assert_eq!(
            l.free_slots(),
            6,
            "c1 and d1 wait: 4 bytes, under a POST's worth"
        );
        admit(&mut l, t, t, vec![msg("e1", None)], false);
        assert_eq!(
            l.free_slots(),
            0,
            "a full POST's bytes wait: nothing more is received"
        );
    }

    #[test]
    fn each_record_of_a_batch_takes_its_own_outcome() {
        let mut l = Ledger::new(LedgerSettings {
            nack: NackPolicy {
                error_visibility: Some(Duration::from_secs(9)),
                backoff_max: None,
            },
            ..batches(3, Duration::ZERO, 1)
        });
        let t = Instant::now();
        let steps = admit(
            &mut l,
            t,
            t,
            vec![msg("a", None), msg("b", None), msg("c", None)],
            false,
        );
        let failed = |d: &Delivery| match &*d.message_id {
            "b" => nack(),
            _ => Outcome::Ack,
        };
        let answered = l.answered(t, post_id(&steps), failed);
        let got: Vec<(String, Option<Action>)> = answered
            .records
            .iter()
            .map(|r| (r.delivery.message_id.to_string(), r.action.clone()))
            .collect();
        let nacked = Action::Visibility {
            secs: 9,
            why: Why::Nack,
        };
        assert_eq!(
            got,
            [
                ("a".to_string(), Some(Action::Delete)),
                ("b".to_string(), Some(nacked.clone())),
                ("c".to_string(), Some(Action::Delete)),
            ]
        );
        assert_eq!(
            acts(&answered.steps),
            [(0, Action::Delete), (1, nacked), (2, Action::Delete)]
        );
        assert!(
            l.answered(t, post_id(&steps), failed).records.is_empty(),
            "a second answer to the same POST changes nothing"
        );
    }

    #[test]
    fn fifo_batches_keep_group_order_and_a_group_has_one_batch_in_flight() {
        let mut l = Ledger::new(LedgerSettings {
            fifo: true,
            ..batches(2, Duration::ZERO, 2)
        });
        let t = Instant::now();
        let steps = admit(&mut l, t, t, grouped(&["a1", "a2", "a3", "b1"]), false);
        assert_eq!(
            posts(&steps),
            [vec!["a1", "a2"], vec!["b1"]],
            "a3 waits for the POST of its group, though a worker is free"
        );
        let first = post_id(&steps);
        let steps = l.answered(t, first, |_| Outcome::Ack).steps;
        assert_eq!(posts(&steps), [["a3"]]);
    }

    #[test]
    fn after_a_failed_fifo_record_the_rest_of_its_group_is_released_whatever_the_answer_said() {
        let mut l = Ledger::new(LedgerSettings {
            fifo: true,
            ..batches(10, Duration::ZERO, 1)
        });
        let t = Instant::now();
        let steps = admit(&mut l, t, t, grouped(&["a1", "b1", "a2", "a3"]), false);
        assert_eq!(
            posts(&steps),
            [["a1", "a2", "a3", "b1"]],
            "each group in its order"
        );
        let answered = l.answered(t, post_id(&steps), |d| match &*d.message_id {
            "a2" => nack(),
            _ => Outcome::Ack,
        });
        let outcomes: Vec<&str> = answered
            .records
            .iter()
            .map(|r| &*r.delivery.message_id)
            .collect();
        assert_eq!(
            outcomes,
            ["a1", "a2", "b1"],
            "a3 is not acked, though the answer said so"
        );
        let release = Action::Visibility {
            secs: 0,
            why: Why::Release,
        };
        assert_eq!(
            acts(&answered.steps),
            [(0, Action::Delete), (3, release), (1, Action::Delete)]
        );
        // a2 failed: a later message of group a is held until a2 is back.
        let steps = admit(&mut l, t, t, vec![msg("a4", Some("a"))], false);
        assert!(posts(&steps).is_empty());
    }

    #[test]
    fn draining_releases_a_batch_being_gathered() {
        let mut l = Ledger::new(batches(10, Duration::from_secs(30), 1));
        let t = Instant::now();
        admit(&mut l, t, t, vec![msg("a", None), msg("b", None)], false);
        let steps = l.release_queued();
        assert_eq!(acts(&steps).len(), 2);
        assert!(l
            .next_wakeup()
            .is_none_or(|at| at < t + Duration::from_secs(30)));
        assert!(posts(&l.tick(t + Duration::from_secs(60))).is_empty());
    }
}
