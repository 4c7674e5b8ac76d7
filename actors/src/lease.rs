//! The lease ledger: every message one receiver holds, from ReceiveMessage until SQS has confirmed
//! its last action (delete, visibility change, release or dead-letter).
//!
//! A lease holds the receipt handle, its delivery slot, its visibility deadline (for the
//! heartbeat), its FIFO group and its receive count. Its states are few and named:
//! `Queued` (FIFO: waiting behind its group) → `Delivering` → `Settling` → removed (done). A slot
//! frees only when the lease is removed, so slow or throttled settling pushes back on receiving.
//!
//! This is plain data and logic: no actors, no I/O, no clock (every call takes `now`), so it is
//! tested without a runtime. The receiver actor wires timers, SQS calls and `Deliver` → `Outcome`
//! around it: it performs the [`Step`]s the ledger hands back and reports how they went.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use crate::messages::{Delivery, Outcome};

/// A lease's key, unique within one receiver for its lifetime (it survives a restart).
pub type LeaseId = u64;

/// SQS's 12-hour bound on a message's total invisibility, counted from its receipt.
const MAX_HOLD: Duration = Duration::from_secs(crate::sqs::MAX_VISIBILITY_TIMEOUT_SECS);
/// Slack kept below SQS's 12 hours for clocks and transit.
const MAX_HOLD_SLACK: Duration = Duration::from_secs(5);
/// How long a FIFO group stays blocked after its failed message was due to reappear, in case that
/// message never comes back to us (another consumer took it, or SQS moved it to the DLQ).
const BLOCK_GRACE: Duration = Duration::from_secs(5);
/// Shortest visibility a bounced FIFO message gets (so a bounce never turns into a hot loop).
const MIN_BOUNCE: Duration = Duration::from_secs(1);

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
}

/// Why a visibility change is made.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Why {
    /// The webhook asked to retry later.
    Retry,
    /// The Nack policy's error timeout.
    Nack,
    /// Handed back unsent (visibility 0): FIFO order after a failure, or shutdown.
    Release,
    /// FIFO: a later message of a blocked group, back until the failed one is due to reappear.
    Bounce,
}

/// An SQS action for one lease. The actor runs it and reports with [`Ledger::settled`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    Delete,
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
    /// Send this message to the webhook; report its outcome with [`Ledger::outcome`].
    Deliver(LeaseId, Arc<Delivery>),
    /// Run this SQS action; report with [`Ledger::settled`].
    Act(LeaseId, Action),
}

/// One received message, as the ledger takes it.
#[derive(Debug, Clone)]
pub struct Incoming {
    pub receipt: Arc<str>,
    pub delivery: Arc<Delivery>,
}

/// A due visibility extension: run it, report with [`Ledger::extended`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Extension {
    pub lease: LeaseId,
    pub secs: u32,
}

/// How an extension went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Extended {
    Ok,
    /// SQS refused it for good (the receipt handle is gone): no more extensions for this lease.
    Refused,
    /// It failed for now; try again soon.
    Failed,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Received while receiving is paused: kept invisible, not yet placed.
    Held,
    /// FIFO: waiting behind an earlier message of its group.
    Queued,
    /// Its `Deliver` is with a transmitter.
    Delivering { since: Instant },
    /// Its outcome is known and its SQS action runs (or waits for an extension call to return).
    Settling { extendable: bool },
}

#[derive(Debug)]
struct Lease {
    delivery: Arc<Delivery>,
    receipt: Arc<str>,
    /// When the receive call that brought it was sent: SQS's clocks started no earlier.
    received_at: Instant,
    state: State,
    /// When SQS makes the message visible again, as far as we know (conservatively early).
    visible_until: Instant,
    /// When the next extension is due; `None`: no more extensions.
    next_extension: Option<Instant>,
    /// An extension call for it is out.
    extending: bool,
    /// A visibility action held back until that call returns, so the two cannot cross.
    deferred: Option<Action>,
}

/// A FIFO group whose message failed and is not in hand: later messages of the group that SQS
/// hands out anyway go back until the failed one is due to reappear.
#[derive(Debug, Clone)]
struct Blocked {
    message_id: Arc<str>,
    reappears_at: Instant,
}

/// Every lease of one receiver. See the module documentation.
#[derive(Debug)]
pub struct Ledger {
    settings: LedgerSettings,
    leases: HashMap<LeaseId, Lease>,
    next_id: LeaseId,
    /// FIFO: leases in hand per group, in received order; the front is the one delivering.
    groups: HashMap<Arc<str>, VecDeque<LeaseId>>,
    blocked: HashMap<Arc<str>, Blocked>,
    /// Leases in `Delivering`, counted as they move in and out (asked for on every outcome).
    delivering: usize,
    rng: fastrand::Rng,
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
            next_id: 0,
            groups: HashMap::new(),
            blocked: HashMap::new(),
            delivering: 0,
            rng,
        }
    }

    pub fn settings(&self) -> &LedgerSettings {
        &self.settings
    }

    /// Leases held (each holds a slot).
    pub fn len(&self) -> usize {
        self.leases.len()
    }

    pub fn is_empty(&self) -> bool {
        self.leases.is_empty()
    }

    /// Slots free for new messages.
    pub fn free_slots(&self) -> usize {
        self.settings.slots.saturating_sub(self.leases.len())
    }

    /// Leases whose delivery is running.
    pub fn delivering(&self) -> usize {
        self.delivering
    }

    /// The receipt handle of a lease (for its SQS action).
    pub fn receipt(&self, id: LeaseId) -> Option<&Arc<str>> {
        self.leases.get(&id).map(|l| &l.receipt)
    }

    pub fn delivery(&self, id: LeaseId) -> Option<&Arc<Delivery>> {
        self.leases.get(&id).map(|l| &l.delivery)
    }

    /// When the lease's message was received (SQS's 12 hours count from here).
    pub fn received_at(&self, id: LeaseId) -> Option<Instant> {
        self.leases.get(&id).map(|l| l.received_at)
    }

    /// Takes the messages of one receive call, sent at `sent_at`. Each becomes a lease and is
    /// delivered at once, queued behind its FIFO group, or (FIFO, its group blocked) bounced.
    /// With `hold` (receiving is paused), they are only held, kept invisible, until
    /// [`Ledger::deliver_held`].
    pub fn admit(
        &mut self,
        now: Instant,
        sent_at: Instant,
        incoming: Vec<Incoming>,
        hold: bool,
    ) -> Vec<Step> {
        let mut steps = Vec::with_capacity(incoming.len());
        let visibility = self.settings.visibility;
        for message in incoming {
            let id = self.next_id;
            self.next_id += 1;
            let lease = Lease {
                delivery: message.delivery,
                receipt: message.receipt,
                received_at: sent_at,
                state: State::Held,
                visible_until: sent_at + visibility,
                next_extension: self.settings.heartbeat.then_some(sent_at + visibility / 2),
                extending: false,
                deferred: None,
            };
            self.leases.insert(id, lease);
            if !hold {
                steps.extend(self.place(now, id));
            }
        }
        steps
    }

    /// Receiving resumed: the held leases go on their way, in the order they were received.
    pub fn deliver_held(&mut self, now: Instant) -> Vec<Step> {
        let mut held: Vec<LeaseId> = self
            .leases
            .iter()
            .filter(|(_, l)| l.state == State::Held)
            .map(|(id, _)| *id)
            .collect();
        held.sort_unstable();
        held.into_iter()
            .filter_map(|id| self.place(now, id))
            .collect()
    }

    /// Sends a held lease on: delivered, queued behind its FIFO group, or bounced.
    fn place(&mut self, now: Instant, id: LeaseId) -> Option<Step> {
        let lease = self.leases.get_mut(&id)?;
        let group = self
            .settings
            .fifo
            .then(|| lease.delivery.group_id.clone())
            .flatten();
        let Some(group) = group else {
            lease.state = State::Delivering { since: now };
            self.delivering += 1;
            return Some(Step::Deliver(id, lease.delivery.clone()));
        };
        if let Some(block) = self.blocked.get(&group) {
            if now >= block.reappears_at + BLOCK_GRACE
                || block.message_id == lease.delivery.message_id
            {
                // Expired, or the failed message is back: it goes first, and order is ours to
                // keep again.
                self.blocked.remove(&group);
            } else {
                let wait = block
                    .reappears_at
                    .saturating_duration_since(now)
                    .max(MIN_BOUNCE);
                lease.state = State::Settling { extendable: false };
                lease.next_extension = None;
                return Some(Step::Act(
                    id,
                    Action::Visibility {
                        secs: ceil_secs(wait),
                        why: Why::Bounce,
                    },
                ));
            }
        }
        let queue = self.groups.entry(group).or_default();
        queue.push_back(id);
        if queue.len() == 1 {
            lease.state = State::Delivering { since: now };
            self.delivering += 1;
            Some(Step::Deliver(id, lease.delivery.clone()))
        } else {
            lease.state = State::Queued;
            None
        }
    }

    /// The webhook's outcome for a delivering lease: its SQS action (none for a Nack left to the
    /// visibility timeout: the lease is then done at once), and in a FIFO group the next message's
    /// delivery, or after a failure the release of the rest of the group in hand.
    pub fn outcome(&mut self, now: Instant, id: LeaseId, outcome: &Outcome) -> Vec<Step> {
        let Some(lease) = self.leases.get_mut(&id) else {
            return Vec::new();
        };
        if !matches!(lease.state, State::Delivering { .. }) {
            return Vec::new();
        }
        // It leaves `Delivering` now: for `Settling`, or (no action) removed below.
        self.delivering -= 1;
        lease.state = State::Settling { extendable: true };
        let receive_count = lease.delivery.receive_count();
        let jitter = self.rng.f64() * 2.0 - 1.0;
        let (action, reappears_at) = match outcome {
            Outcome::Ack => (Some(Action::Delete), None),
            Outcome::DeadLetter => (Some(Action::DeadLetter), None),
            Outcome::Retry { until } => {
                let wait = until
                    .duration_since(SystemTime::now())
                    .unwrap_or_default()
                    .max(self.settings.min_retry_delay);
                let secs = ceil_secs(wait);
                let action = Action::Visibility {
                    secs,
                    why: Why::Retry,
                };
                (Some(action), Some(now + Duration::from_secs(secs.into())))
            }
            Outcome::Nack { .. } => {
                match self
                    .settings
                    .nack
                    .visibility(receive_count, self.settings.visibility, jitter)
                {
                    Some(timeout) => {
                        let secs = ceil_secs(timeout);
                        let action = Action::Visibility {
                            secs,
                            why: Why::Nack,
                        };
                        (Some(action), Some(now + Duration::from_secs(secs.into())))
                    }
                    None => (None, Some(lease.visible_until)),
                }
            }
        };
        let group = lease
            .delivery
            .group_id
            .clone()
            .filter(|_| self.settings.fifo);
        let message_id = lease.delivery.message_id.clone();
        let mut steps = Vec::new();
        let done = action.is_none();
        if let Some(action) = action {
            let visibility_change = matches!(action, Action::Visibility { .. });
            lease.state = State::Settling {
                extendable: !visibility_change,
            };
            if visibility_change {
                lease.next_extension = None;
            }
            if lease.extending && visibility_change {
                // An extension call is out: apply this after it returns, so it wins.
                lease.deferred = Some(action);
            } else {
                steps.push(Step::Act(id, action));
            }
        }
        if let Some(group) = group {
            self.after_group_outcome(now, &group, id, message_id, reappears_at, &mut steps);
        }
        if done {
            self.remove(id);
        }
        steps
    }

    /// FIFO bookkeeping once the front of `group` has its outcome.
    fn after_group_outcome(
        &mut self,
        now: Instant,
        group: &Arc<str>,
        id: LeaseId,
        message_id: Arc<str>,
        reappears_at: Option<Instant>,
        steps: &mut Vec<Step>,
    ) {
        let queue = self.groups.remove(group).unwrap_or_default();
        let rest: VecDeque<LeaseId> = queue.into_iter().filter(|l| *l != id).collect();
        match reappears_at {
            None => {
                // Delivered (acked or dead-lettered): the next of the group may go.
                if let Some(&next) = rest.front() {
                    if let Some(lease) = self.leases.get_mut(&next) {
                        lease.state = State::Delivering { since: now };
                        self.delivering += 1;
                        steps.push(Step::Deliver(next, lease.delivery.clone()));
                    }
                    self.groups.insert(group.clone(), rest);
                }
            }
            Some(reappears_at) => {
                // Failed: the rest of the group goes back unsent, and stays back until this one
                // has come round again.
                for later in rest {
                    steps.extend(self.release(later));
                }
                self.blocked.insert(
                    group.clone(),
                    Blocked {
                        message_id,
                        reappears_at,
                    },
                );
            }
        }
    }

    /// Hands a queued (never sent) lease back: visibility 0.
    fn release(&mut self, id: LeaseId) -> Option<Step> {
        let lease = self.leases.get_mut(&id)?;
        lease.state = State::Settling { extendable: false };
        lease.next_extension = None;
        let action = Action::Visibility {
            secs: 0,
            why: Why::Release,
        };
        if lease.extending {
            lease.deferred = Some(action);
            None
        } else {
            Some(Step::Act(id, action))
        }
    }

    /// Draining: every lease not yet sent goes back (visibility 0).
    pub fn release_queued(&mut self) -> Vec<Step> {
        let queued: Vec<LeaseId> = self
            .leases
            .iter()
            .filter(|(_, l)| matches!(l.state, State::Queued | State::Held))
            .map(|(id, _)| *id)
            .collect();
        for queue in self.groups.values_mut() {
            queue.retain(|l| !queued.contains(l));
        }
        self.groups.retain(|_, q| !q.is_empty());
        queued
            .into_iter()
            .filter_map(|id| self.release(id))
            .collect()
    }

    /// The lease's SQS action finished (whatever its result: a failed one leaves the message to
    /// its visibility timeout). The lease is done and its slot free.
    pub fn settled(&mut self, id: LeaseId) {
        self.remove(id);
    }

    /// The shutdown deadline passed: every running delivery is given up (left to its visibility
    /// timeout, no more extensions). Returns how many.
    pub fn abandon_deliveries(&mut self) -> usize {
        let running: Vec<LeaseId> = self
            .leases
            .iter()
            .filter(|(_, l)| {
                matches!(
                    l.state,
                    State::Delivering { .. } | State::Queued | State::Held
                )
            })
            .map(|(id, _)| *id)
            .collect();
        for id in &running {
            self.remove(*id);
        }
        running.len()
    }

    fn remove(&mut self, id: LeaseId) {
        if let Some(lease) = self.leases.remove(&id) {
            if matches!(lease.state, State::Delivering { .. }) {
                self.delivering -= 1;
            }
            if let Some(group) = lease.delivery.group_id.as_ref() {
                if let Some(queue) = self.groups.get_mut(group) {
                    queue.retain(|l| *l != id);
                    if queue.is_empty() {
                        self.groups.remove(group);
                    }
                }
            }
        }
    }

    /// When the next extension is due, if any.
    pub fn next_extension(&self) -> Option<Instant> {
        self.leases
            .values()
            .filter(|l| !l.extending)
            .filter_map(|l| l.next_extension)
            .min()
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
            let Some(at) = lease.next_extension else {
                continue;
            };
            if lease.extending || at > horizon {
                continue;
            }
            let bound = match lease.state {
                State::Delivering { since } => since + self.settings.delivery_bound,
                State::Held | State::Queued | State::Settling { extendable: true } => {
                    lease.received_at + MAX_HOLD
                }
                State::Settling { extendable: false } => {
                    lease.next_extension = None;
                    continue;
                }
            }
            .min(lease.received_at + MAX_HOLD - MAX_HOLD_SLACK);
            let want = visibility.min(bound.saturating_duration_since(now));
            if want < Duration::from_secs(1) {
                lease.next_extension = None;
                continue;
            }
            lease.extending = true;
            due.push(Extension {
                lease: *id,
                secs: ceil_secs(want),
            });
        }
        due.sort_by_key(|e| e.lease);
        due
    }

    /// An extension call (sent at `sent_at`, asking for `secs`) came back. Returns the lease's
    /// deferred visibility action, if one waited for it.
    pub fn extended(
        &mut self,
        now: Instant,
        sent_at: Instant,
        extension: &Extension,
        result: Extended,
    ) -> Option<Step> {
        let lease = self.leases.get_mut(&extension.lease)?;
        lease.extending = false;
        let still_held = matches!(
            lease.state,
            State::Held
                | State::Queued
                | State::Delivering { .. }
                | State::Settling { extendable: true }
        );
        match result {
            Extended::Ok => {
                let granted = Duration::from_secs(extension.secs.into());
                lease.visible_until = sent_at + granted;
                lease.next_extension = still_held.then_some(sent_at + granted / 2);
            }
            Extended::Refused => lease.next_extension = None,
            Extended::Failed => {
                let retry = now + (self.settings.visibility / 8).min(Duration::from_secs(1));
                lease.next_extension = (still_held && retry < lease.visible_until).then_some(retry);
            }
        }
        lease
            .deferred
            .take()
            .map(|action| Step::Act(extension.lease, action))
    }
}

/// Whole seconds, rounded up (a visibility "not before" must hold), capped at SQS's 12 hours.
fn ceil_secs(d: Duration) -> u32 {
    let secs = d.as_secs() + u64::from(d.subsec_nanos() > 0);
    secs.min(crate::sqs::MAX_VISIBILITY_TIMEOUT_SECS) as u32
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

    fn delivered(steps: &[Step]) -> Vec<String> {
        steps
            .iter()
            .filter_map(|s| match s {
                Step::Deliver(_, d) => Some(d.message_id.to_string()),
                _ => None,
            })
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
        let steps = l.admit(t, t, vec![msg("a", None), msg("b", None)], false);
        assert_eq!(delivered(&steps), ["a", "b"]);
        assert_eq!((l.free_slots(), l.delivering()), (0, 2));
        let steps = l.outcome(t, 0, &Outcome::Ack);
        assert_eq!(l.delivering(), 1);
        assert_eq!(acts(&steps), [(0, Action::Delete)]);
        assert_eq!(l.free_slots(), 0, "the delete is not confirmed yet");
        l.settled(0);
        assert_eq!(l.free_slots(), 1);
    }

    #[test]
    fn a_nack_without_policy_needs_no_sqs_call_and_frees_its_slot_at_once() {
        let mut l = Ledger::new(settings());
        let t = Instant::now();
        l.admit(t, t, vec![msg("a", None)], false);
        assert!(l.outcome(t, 0, &nack()).is_empty());
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
        l.admit(t, t, vec![msg("a", None)], false);
        let steps = l.outcome(
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
        l.admit(t, t, vec![msg("a", None)], false);
        assert_eq!(l.next_extension(), Some(t + Duration::from_secs(1)));
        assert!(l.due_extensions(t + Duration::from_millis(500)).is_empty());
        let mut now = t + Duration::from_secs(1);
        let mut extensions = 0;
        while let Some(at) = l.next_extension() {
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
        l.admit(t, t, vec![msg("a", None)], false);
        let due = l.due_extensions(t + Duration::from_secs(1));
        assert_eq!(due.len(), 1);
        assert!(l.next_extension().is_none(), "none while the call is out");
        l.extended(t, t, &due[0], Extended::Refused);
        assert!(l.next_extension().is_none());
        assert_eq!(acts(&l.outcome(t, 0, &Outcome::Ack)), [(0, Action::Delete)]);
    }

    #[test]
    fn a_visibility_change_waits_for_an_extension_in_flight() {
        let mut l = Ledger::new(settings());
        let t = Instant::now();
        l.admit(t, t, vec![msg("a", None)], false);
        let due = l.due_extensions(t + Duration::from_secs(1));
        let steps = l.outcome(
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
        l.admit(t, t, vec![msg("a", None), msg("b", None)], false);
        l.admit(
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
        let steps = l.admit(
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
        assert_eq!(delivered(&l.outcome(t, 0, &Outcome::Ack)), ["a2"]);
        assert_eq!(delivered(&l.outcome(t, 1, &Outcome::Ack)), ["a3"]);
        assert!(delivered(&l.outcome(t, 3, &Outcome::Ack)).is_empty());
    }

    #[test]
    fn after_a_failure_the_rest_of_its_fifo_group_is_released_unsent() {
        let mut l = Ledger::new(LedgerSettings {
            fifo: true,
            ..settings()
        });
        let t = Instant::now();
        l.admit(
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
        let steps = l.outcome(t, 0, &nack());
        let released: Vec<_> = acts(&steps).into_iter().map(|(id, _)| id).collect();
        assert_eq!(released, [1, 2]);
        assert!(acts(&steps).iter().all(|(_, a)| *a
            == Action::Visibility {
                secs: 0,
                why: Why::Release
            }));
        assert!(delivered(&steps).is_empty());
    }

    #[test]
    fn a_later_message_of_a_blocked_group_goes_back_until_the_failed_one_returns() {
        let mut l = Ledger::new(LedgerSettings {
            fifo: true,
            ..settings()
        });
        let t = Instant::now();
        l.admit(t, t, vec![msg("a1", Some("a"))], false);
        // Nack with no policy: a1 reappears when its visibility (2 s from receipt) ends.
        l.outcome(t, 0, &nack());
        // An endpoint that ignores the group lock hands out a2 anyway.
        let steps = l.admit(t, t, vec![msg("a2", Some("a"))], false);
        assert_eq!(
            acts(&steps),
            [(
                1,
                Action::Visibility {
                    secs: 2,
                    why: Why::Bounce
                }
            )]
        );
        l.settled(1);
        // a1 comes back first: delivered, and the group is ours to order again.
        let later = t + Duration::from_secs(2);
        let steps = l.admit(
            later,
            later,
            vec![msg("a1", Some("a")), msg("a2", Some("a"))],
            false,
        );
        assert_eq!(delivered(&steps), ["a1"]);
        assert_eq!(delivered(&l.outcome(later, 2, &Outcome::Ack)), ["a2"]);
    }

    #[test]
    fn messages_received_while_paused_are_held_invisible_then_delivered_in_order() {
        let mut l = Ledger::new(LedgerSettings {
            fifo: true,
            ..settings()
        });
        let t = Instant::now();
        let steps = l.admit(
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
        let steps = l.admit(t, t, vec![msg("x", None), msg("y", None)], false);
        assert_eq!(delivered(&steps), ["x", "y"]);
    }

    #[test]
    fn draining_releases_queued_leases_and_abandons_running_ones() {
        let mut l = Ledger::new(LedgerSettings {
            fifo: true,
            ..settings()
        });
        let t = Instant::now();
        l.admit(
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
        l.settled(1);
        assert_eq!(l.delivering(), 1);
        assert_eq!(l.abandon_deliveries(), 1);
        assert_eq!(l.delivering(), 0);
        assert!(l.is_empty());
        assert!(
            l.outcome(t, 0, &Outcome::Ack).is_empty(),
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
        l.admit(t, t, vec![msg("a", None)], false);
        let due = l.due_extensions(t + Duration::from_secs(21_600));
        assert_eq!(due.len(), 1);
        assert!(due[0].secs <= 21_600 - 5, "{}", due[0].secs);
    }
}
