//! The queues themselves: messages, visibility, receive counts, FIFO groups, dead-lettering, dedup,
//! and the per-message ledger the tests read. Plain synchronous state behind one mutex; time is
//! passed in. Knows nothing of HTTP or JSON beyond the error values it returns.
//!
//! Every operation is O(1) amortised in the number of messages: visible messages wait in a ready
//! queue (standard) or their group's queue (FIFO, with a queue of unlocked groups), invisible ones
//! in a heap of visibility deadlines. Entries made stale by a later change carry an old
//! generation number and are skipped when they surface, instead of being searched for.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap, HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use tokio::sync::watch;

use super::api::{ApiError, Op};
use super::digest::{attributes_md5, md5_hex, sha256_hex, AttributeValue};

/// The account in queue URLs and ARNs (moto's).
pub const ACCOUNT: &str = "123456789012";
pub const REGION: &str = "us-east-1";
/// SQS's longest visibility timeout, and the most a message may stay invisible after a receive.
pub const MAX_VISIBILITY_TIMEOUT: u32 = 43_200;
pub const MAX_DELAY_SECONDS: u32 = 900;
pub const MAX_WAIT_SECONDS: u32 = 20;
pub const MAX_MESSAGE_BYTES: usize = 262_144;
/// FIFO deduplication interval.
pub const DEDUP_WINDOW: Duration = Duration::from_secs(300);
/// What moto puts in `SenderId`.
pub const SENDER_ID: &str = "AIDAIT2UOQQY3AUEKVGXU";

/// Which receipt handles may settle a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReceiptPolicy {
    /// moto's behaviour, the default: any handle a message was ever given deletes it or changes its
    /// visibility, also after a later receive; a handle of a deleted message deletes "again" (OK).
    AnyIssued,
    /// The strictest reading of AWS's documentation: only the latest receive's handle works. A
    /// delete with an older one answers OK and deletes nothing; a visibility change with an older
    /// one fails (InvalidParameterValue), and with the latest one on a message no longer in flight
    /// fails with MessageNotInflight.
    LatestOnly,
}

/// Where a message is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MessageState {
    /// Sent with a delay that has not passed yet.
    Delayed,
    Visible,
    InFlight,
    Deleted,
    /// Moved to the dead-letter queue (see that queue for its continuation).
    DeadLettered,
    Purged,
}

impl MessageState {
    fn is_gone(self) -> bool {
        matches!(
            self,
            MessageState::Deleted | MessageState::DeadLettered | MessageState::Purged
        )
    }
}

/// One receive of a message.
#[derive(Debug, Clone)]
pub struct ReceiveRecord {
    pub receipt_handle: String,
    pub at: Instant,
    /// Epoch milliseconds (SQS's clock for the timestamps it reports).
    pub at_ms: u64,
    /// The visibility timeout this receive set.
    pub visibility_timeout: u32,
}

/// What came of a delete or visibility change that named a message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ActionOutcome {
    Done,
    /// Answered OK without effect: a delete of a message already deleted, or (LatestOnly) a delete
    /// with an outdated handle.
    NoEffect,
    /// Answered with this error code (`injected`: by a fault rule rather than by SQS semantics).
    Failed {
        code: String,
        injected: bool,
    },
}

/// One delete or visibility change that named a message by one of its receipt handles.
#[derive(Debug, Clone)]
pub struct ActionRecord {
    pub op: Op,
    pub at: Instant,
    /// Which receive's handle it used (index into `receives`).
    pub receive: usize,
    /// For visibility changes: the timeout asked for.
    pub visibility_timeout: Option<u32>,
    pub outcome: ActionOutcome,
}

/// The delete that removed a message.
#[derive(Debug, Clone)]
pub struct Deletion {
    pub at: Instant,
    /// Which receive's handle deleted it (index into `receives`).
    pub receive: usize,
    pub op: Op,
}

/// Everything that happened to one message in one queue.
#[derive(Debug, Clone)]
pub struct MessageRecord {
    pub queue: String,
    pub message_id: String,
    pub body: String,
    pub attributes: BTreeMap<String, AttributeValue>,
    pub trace_header: Option<String>,
    pub group_id: Option<String>,
    pub dedup_id: Option<String>,
    pub sequence_number: Option<String>,
    pub sent_at: Instant,
    pub sent_ms: u64,
    pub state: MessageState,
    /// SQS's ApproximateReceiveCount: receives here plus, for a dead-lettered copy, in the source.
    pub receive_count: u32,
    pub first_receive_ms: Option<u64>,
    /// Receives in this queue, in order.
    pub receives: Vec<ReceiveRecord>,
    /// Deletes and visibility changes naming it, in order, whatever their outcome.
    pub actions: Vec<ActionRecord>,
    pub deleted: Option<Deletion>,
    pub dead_lettered_at: Option<Instant>,
    /// For a message in a dead-letter queue: the queue it was moved from.
    pub moved_from: Option<String>,
}

impl MessageRecord {
    /// Visibility changes that took effect.
    pub fn visibility_changes(&self) -> Vec<&ActionRecord> {
        self.actions
            .iter()
            .filter(|a| a.visibility_timeout.is_some() && a.outcome == ActionOutcome::Done)
            .collect()
    }

    /// Delete calls or entries naming this message, whatever their outcome.
    pub fn delete_attempts(&self) -> Vec<&ActionRecord> {
        self.actions
            .iter()
            .filter(|a| matches!(a.op, Op::DeleteMessage | Op::DeleteMessageBatch))
            .collect()
    }
}

/// A queue's message counts, each kept up to date as it changes (reading them is O(1)).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct QueueCounts {
    pub visible: u64,
    pub in_flight: u64,
    pub delayed: u64,
    /// Messages that arrived: sent, or moved here as to a dead-letter queue.
    pub sent: u64,
    /// Sends dropped as duplicates inside the FIFO deduplication window.
    pub deduplicated: u64,
    /// Deliveries: every receive of every message.
    pub received: u64,
    pub deleted: u64,
    /// Moved out to the dead-letter queue.
    pub dead_lettered: u64,
    pub purged: u64,
}

/// Server-wide totals, atomics so they are read without the lock.
#[derive(Debug, Default)]
pub struct Totals {
    pub sent: AtomicU64,
    pub received: AtomicU64,
    pub deleted: AtomicU64,
    pub dead_lettered: AtomicU64,
    pub visibility_changes: AtomicU64,
}

fn bump(counter: &AtomicU64, n: u64) {
    counter.fetch_add(n, Ordering::Relaxed);
}

pub fn epoch_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// What a send asks for.
#[derive(Debug, Clone, Default)]
pub struct SendInput {
    pub body: String,
    pub delay_seconds: Option<u32>,
    pub attributes: BTreeMap<String, AttributeValue>,
    pub trace_header: Option<String>,
    pub group_id: Option<String>,
    pub dedup_id: Option<String>,
}

/// What a send answers.
#[derive(Debug, Clone)]
pub struct SendOutput {
    pub message_id: String,
    pub md5_of_body: String,
    pub md5_of_attributes: Option<String>,
    pub md5_of_system_attributes: Option<String>,
    pub sequence_number: Option<String>,
}

/// Which attributes a receive returns.
#[derive(Debug, Clone, Default)]
pub struct ReceiveFilter {
    /// System attribute names asked for (`All` for all).
    pub system: Vec<String>,
    /// Message attribute names asked for: `All`, `.*`, `Prefix.*` or exact names.
    pub message: Vec<String>,
}

impl ReceiveFilter {
    fn wants_system(&self, name: &str) -> bool {
        self.system.iter().any(|n| n == "All" || n == name)
    }

    fn wants_attribute(&self, name: &str) -> bool {
        self.message.iter().any(|pattern| {
            pattern == "All"
                || pattern == name
                || pattern
                    .strip_suffix(".*")
                    .is_some_and(|prefix| name.starts_with(prefix))
        })
    }
}

/// One received message, as the answer shows it.
#[derive(Debug, Clone)]
pub struct OutMessage {
    pub message_id: String,
    pub receipt_handle: String,
    pub body: String,
    pub md5_of_body: String,
    pub attributes: Vec<(&'static str, String)>,
    pub message_attributes: BTreeMap<String, AttributeValue>,
    pub md5_of_message_attributes: Option<String>,
}

#[derive(Debug, Clone)]
struct Redrive {
    target_arn: String,
    max_receive_count: u32,
}

impl Redrive {
    fn target_name(&self) -> &str {
        self.target_arn.rsplit(':').next().unwrap_or("")
    }

    fn to_json(&self) -> String {
        serde_json::json!({
            "deadLetterTargetArn": self.target_arn,
            "maxReceiveCount": self.max_receive_count,
        })
        .to_string()
    }
}

/// Attributes a queue may be created with; the ones without effect here are stored and shown.
const SETTABLE: &[&str] = &[
    "DelaySeconds",
    "MaximumMessageSize",
    "MessageRetentionPeriod",
    "Policy",
    "ReceiveMessageWaitTimeSeconds",
    "VisibilityTimeout",
    "RedrivePolicy",
    "RedriveAllowPolicy",
    "KmsMasterKeyId",
    "KmsDataKeyReusePeriodSeconds",
    "SqsManagedSseEnabled",
    "FifoQueue",
    "ContentBasedDeduplication",
    "DeduplicationScope",
    "FifoThroughputLimit",
];
/// Attributes only read.
const READ_ONLY: &[&str] = &[
    "ApproximateNumberOfMessages",
    "ApproximateNumberOfMessagesNotVisible",
    "ApproximateNumberOfMessagesDelayed",
    "CreatedTimestamp",
    "LastModifiedTimestamp",
    "QueueArn",
];

#[derive(Debug, Clone)]
struct Settings {
    visibility_timeout: u32,
    delay_seconds: u32,
    wait_seconds: u32,
    fifo: bool,
    content_dedup: bool,
    redrive: Option<Redrive>,
    /// Everything else that was set, as given.
    other: BTreeMap<String, String>,
    created_s: u64,
    modified_s: u64,
}

struct Msg {
    record: MessageRecord,
    /// Bumped on every state change; heap and ready entries of an older generation are stale.
    generation: u32,
    /// When an in-flight or delayed message becomes visible.
    visible_at: Instant,
}

/// A FIFO message group: its undeleted messages in order (in-flight ones first).
#[derive(Default)]
struct Group {
    messages: VecDeque<usize>,
    in_flight: u32,
    /// In the queue's list of groups ready to hand out.
    listed: bool,
}

pub(super) struct Queue {
    id: u32,
    name: String,
    arn: String,
    settings: Settings,
    messages: Vec<Msg>,
    by_id: HashMap<String, usize>,
    by_body: HashMap<String, Vec<usize>>,
    /// Standard queues: visible messages, oldest first (with their generation).
    ready: VecDeque<(usize, u32)>,
    /// FIFO queues.
    groups: HashMap<String, Group>,
    ready_groups: VecDeque<String>,
    /// Visibility and delay deadlines.
    timers: BinaryHeap<Reverse<(Instant, usize, u32)>>,
    /// The earliest deadline pushed since the reaper last looked.
    pushed_min: Option<Instant>,
    dedup: HashMap<String, (Instant, usize)>,
    dedup_order: VecDeque<(Instant, String)>,
    sequence: u64,
    counts: QueueCounts,
    /// Bumped whenever a message may have become receivable: long polls wait on it.
    available: watch::Sender<u64>,
}

/// A message leaving a queue for its dead-letter queue.
struct Moving {
    target: String,
    record: MessageRecord,
}

impl Queue {
    fn notify(&self) {
        self.available.send_modify(|n| *n += 1);
    }

    fn push_timer(&mut self, at: Instant, seq: usize) {
        let generation = self.messages[seq].generation;
        self.timers.push(Reverse((at, seq, generation)));
        if self.pushed_min.is_none_or(|t| at < t) {
            self.pushed_min = Some(at);
        }
    }

    /// Moves a message from wherever it is to Visible and where receives find it.
    fn make_visible(&mut self, seq: usize) {
        let m = &mut self.messages[seq];
        match m.record.state {
            MessageState::InFlight => self.counts.in_flight -= 1,
            MessageState::Delayed => self.counts.delayed -= 1,
            _ => return,
        }
        let was_in_flight = m.record.state == MessageState::InFlight;
        m.record.state = MessageState::Visible;
        m.generation += 1;
        let generation = m.generation;
        let group = m.record.group_id.clone();
        self.counts.visible += 1;
        if self.settings.fifo {
            let group = group.unwrap_or_default();
            if was_in_flight {
                if let Some(g) = self.groups.get_mut(&group) {
                    g.in_flight = g.in_flight.saturating_sub(1);
                }
            }
            self.list_group_if_ready(&group);
        } else {
            self.ready.push_back((seq, generation));
        }
        self.notify();
    }

    /// Lists a FIFO group as ready if nothing of it is in flight and its head is visible.
    fn list_group_if_ready(&mut self, name: &str) {
        let Some(group) = self.groups.get_mut(name) else {
            return;
        };
        while let Some(&seq) = group.messages.front() {
            if self.messages[seq].record.state.is_gone() {
                group.messages.pop_front();
            } else {
                break;
            }
        }
        let head_visible = group
            .messages
            .front()
            .is_some_and(|&seq| self.messages[seq].record.state == MessageState::Visible);
        let list = group.in_flight == 0 && head_visible && !group.listed;
        if list {
            group.listed = true;
        }
        let unused = group.messages.is_empty() && group.in_flight == 0 && !group.listed;
        if list {
            self.ready_groups.push_back(name.to_string());
            self.notify();
        }
        if unused {
            self.groups.remove(name);
        }
    }

    /// Takes a message out of circulation (deleted, dead-lettered, purged), and lists its FIFO
    /// group if that unlocked it.
    fn remove(&mut self, seq: usize, state: MessageState) {
        if let Some(group) = self.remove_quietly(seq, state) {
            self.list_group_if_ready(&group);
        }
    }

    /// [`Queue::remove`] without touching the list of ready groups (for use while a receive
    /// walks a group); returns the FIFO group.
    fn remove_quietly(&mut self, seq: usize, state: MessageState) -> Option<String> {
        let m = &mut self.messages[seq];
        let before = m.record.state;
        match before {
            MessageState::Visible => self.counts.visible -= 1,
            MessageState::InFlight => self.counts.in_flight -= 1,
            MessageState::Delayed => self.counts.delayed -= 1,
            _ => return None,
        }
        m.record.state = state;
        m.generation += 1;
        let group = m.record.group_id.clone();
        if !self.settings.fifo {
            return None;
        }
        let group = group.unwrap_or_default();
        if before == MessageState::InFlight {
            if let Some(g) = self.groups.get_mut(&group) {
                g.in_flight = g.in_flight.saturating_sub(1);
            }
        }
        Some(group)
    }

    /// Processes every deadline that has passed; returns how many messages became visible.
    fn expire(&mut self, now: Instant) -> usize {
        let mut n = 0;
        while let Some(Reverse((at, seq, generation))) = self.timers.peek().copied() {
            if at > now {
                break;
            }
            self.timers.pop();
            if self.messages[seq].generation == generation {
                self.make_visible(seq);
                n += 1;
            }
        }
        n
    }

    fn next_deadline(&self) -> Option<Instant> {
        self.timers.peek().map(|Reverse((at, _, _))| *at)
    }

    /// Marks one visible message received; returns what the answer shows.
    fn deliver(
        &mut self,
        seq: usize,
        visibility: u32,
        filter: &ReceiveFilter,
        now: Instant,
        now_ms: u64,
        rng: &mut u64,
    ) -> OutMessage {
        let receive = self.messages[seq].record.receives.len();
        let handle = format!(
            "{}.{}.{}.{:016x}{:016x}",
            self.id,
            seq,
            receive,
            next_random(rng),
            next_random(rng)
        );
        self.counts.visible -= 1;
        self.counts.in_flight += 1;
        self.counts.received += 1;
        let fifo = self.settings.fifo;
        let m = &mut self.messages[seq];
        m.record.state = MessageState::InFlight;
        m.generation += 1;
        m.record.receive_count += 1;
        m.record.first_receive_ms.get_or_insert(now_ms);
        m.record.receives.push(ReceiveRecord {
            receipt_handle: handle.clone(),
            at: now,
            at_ms: now_ms,
            visibility_timeout: visibility,
        });
        m.visible_at = now + Duration::from_secs(visibility.into());
        let r = &m.record;
        let mut attributes: Vec<(&'static str, String)> = Vec::new();
        let mut put = |name: &'static str, value: Option<String>| {
            if let Some(value) = value.filter(|_| filter.wants_system(name)) {
                attributes.push((name, value));
            }
        };
        put("SenderId", Some(SENDER_ID.into()));
        put("SentTimestamp", Some(r.sent_ms.to_string()));
        put("ApproximateReceiveCount", Some(r.receive_count.to_string()));
        put(
            "ApproximateFirstReceiveTimestamp",
            r.first_receive_ms.map(|t| t.to_string()),
        );
        put("AWSTraceHeader", r.trace_header.clone());
        put("MessageGroupId", r.group_id.clone());
        if fifo {
            put("MessageDeduplicationId", r.dedup_id.clone());
            put("SequenceNumber", r.sequence_number.clone());
        }
        let message_attributes: BTreeMap<String, AttributeValue> = r
            .attributes
            .iter()
            .filter(|(name, _)| filter.wants_attribute(name))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        let out = OutMessage {
            message_id: r.message_id.clone(),
            receipt_handle: handle,
            body: r.body.clone(),
            md5_of_body: md5_hex(r.body.as_bytes()),
            attributes,
            md5_of_message_attributes: attributes_md5(&message_attributes),
            message_attributes,
        };
        let at = m.visible_at;
        self.push_timer(at, seq);
        out
    }

    /// Whether this message has been received as often as the redrive policy allows.
    fn due_for_dead_letter(&self, seq: usize) -> bool {
        self.settings
            .redrive
            .as_ref()
            .is_some_and(|r| self.messages[seq].record.receive_count >= r.max_receive_count)
    }

    fn dead_letter(&mut self, seq: usize, now: Instant, moving: &mut Vec<Moving>) {
        let Some(target) = self
            .settings
            .redrive
            .as_ref()
            .map(|r| r.target_name().to_string())
        else {
            return;
        };
        // Quietly: a receive is walking this message's group (FIFO) and relists it after.
        self.remove_quietly(seq, MessageState::DeadLettered);
        self.counts.dead_lettered += 1;
        let record = &mut self.messages[seq].record;
        record.dead_lettered_at = Some(now);
        moving.push(Moving {
            target,
            record: record.clone(),
        });
    }

    /// Up to `max` receivable messages, received; messages due for the dead-letter queue are
    /// moved out on the way (into `moving`), as SQS does at receive time.
    #[allow(clippy::too_many_arguments)]
    fn receive(
        &mut self,
        max: usize,
        visibility: u32,
        filter: &ReceiveFilter,
        now: Instant,
        now_ms: u64,
        rng: &mut u64,
        moving: &mut Vec<Moving>,
    ) -> Vec<OutMessage> {
        let mut out = Vec::new();
        if self.settings.fifo {
            while out.len() < max {
                let Some(name) = self.ready_groups.pop_front() else {
                    break;
                };
                let Some(group) = self.groups.get_mut(&name) else {
                    continue;
                };
                group.listed = false;
                if group.in_flight > 0 {
                    continue;
                }
                let mut i = 0;
                let mut taken = 0;
                while out.len() < max {
                    let Some(&seq) = self.groups.get(&name).and_then(|g| g.messages.get(i)) else {
                        break;
                    };
                    match self.messages[seq].record.state {
                        s if s.is_gone() => {}
                        MessageState::Visible if self.due_for_dead_letter(seq) => {
                            self.dead_letter(seq, now, moving);
                        }
                        MessageState::Visible => {
                            out.push(self.deliver(seq, visibility, filter, now, now_ms, rng));
                            taken += 1;
                        }
                        _ => break,
                    }
                    i += 1;
                }
                if let Some(group) = self.groups.get_mut(&name) {
                    group.in_flight += taken;
                }
                self.list_group_if_ready(&name);
            }
        } else {
            while out.len() < max {
                let Some((seq, generation)) = self.ready.pop_front() else {
                    break;
                };
                let m = &self.messages[seq];
                if m.generation != generation || m.record.state != MessageState::Visible {
                    continue;
                }
                if self.due_for_dead_letter(seq) {
                    self.dead_letter(seq, now, moving);
                    continue;
                }
                out.push(self.deliver(seq, visibility, filter, now, now_ms, rng));
            }
        }
        out
    }

    /// Adds a message (sent, or arriving as to a dead-letter queue).
    fn insert(&mut self, mut record: MessageRecord, now: Instant, delay: u32) -> usize {
        let seq = self.messages.len();
        record.queue = self.name.clone();
        let delayed = delay > 0;
        record.state = if delayed {
            MessageState::Delayed
        } else {
            MessageState::Visible
        };
        self.by_id.insert(record.message_id.clone(), seq);
        self.by_body
            .entry(record.body.clone())
            .or_default()
            .push(seq);
        let group = record.group_id.clone();
        self.messages.push(Msg {
            record,
            generation: 0,
            visible_at: now + Duration::from_secs(delay.into()),
        });
        self.counts.sent += 1;
        if delayed {
            self.counts.delayed += 1;
            self.push_timer(now + Duration::from_secs(delay.into()), seq);
        } else {
            self.counts.visible += 1;
        }
        if self.settings.fifo {
            let name = group.unwrap_or_default();
            self.groups
                .entry(name.clone())
                .or_default()
                .messages
                .push_back(seq);
            self.list_group_if_ready(&name);
        } else if !delayed {
            self.ready.push_back((seq, 0));
            self.notify();
        }
        seq
    }

    /// The message a receipt handle of this queue names, and which receive issued it.
    fn lookup(&self, handle: &str) -> Option<(usize, usize)> {
        let mut parts = handle.splitn(4, '.');
        let id: u32 = parts.next()?.parse().ok()?;
        let seq: usize = parts.next()?.parse().ok()?;
        let receive: usize = parts.next()?.parse().ok()?;
        if id != self.id {
            return None;
        }
        let r = self.messages.get(seq)?.record.receives.get(receive)?;
        (r.receipt_handle == handle).then_some((seq, receive))
    }

    fn attributes(&self) -> BTreeMap<String, String> {
        let s = &self.settings;
        let mut a: BTreeMap<String, String> = s.other.clone();
        let mut put = |k: &str, v: String| {
            a.insert(k.to_string(), v);
        };
        put(
            "ApproximateNumberOfMessages",
            self.counts.visible.to_string(),
        );
        put(
            "ApproximateNumberOfMessagesNotVisible",
            self.counts.in_flight.to_string(),
        );
        put(
            "ApproximateNumberOfMessagesDelayed",
            self.counts.delayed.to_string(),
        );
        put("CreatedTimestamp", s.created_s.to_string());
        put("LastModifiedTimestamp", s.modified_s.to_string());
        put("QueueArn", self.arn.clone());
        put("VisibilityTimeout", s.visibility_timeout.to_string());
        put("DelaySeconds", s.delay_seconds.to_string());
        put("ReceiveMessageWaitTimeSeconds", s.wait_seconds.to_string());
        a.entry("MaximumMessageSize".into())
            .or_insert_with(|| MAX_MESSAGE_BYTES.to_string());
        a.entry("MessageRetentionPeriod".into())
            .or_insert_with(|| "345600".into());
        if let Some(r) = &s.redrive {
            a.insert("RedrivePolicy".into(), r.to_json());
        }
        if s.fifo {
            a.insert("FifoQueue".into(), "true".into());
            a.insert(
                "ContentBasedDeduplication".into(),
                s.content_dedup.to_string(),
            );
        }
        a
    }
}

/// xorshift64: receipt-handle nonces.
fn next_random(state: &mut u64) -> u64 {
    let mut x = *state;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    *state = x;
    x
}

fn uuid(rng: &mut u64) -> String {
    let a = next_random(rng);
    let b = next_random(rng);
    format!(
        "{:08x}-{:04x}-4{:03x}-{:04x}-{:012x}",
        a >> 32,
        (a >> 16) & 0xffff,
        a & 0xfff,
        ((b >> 48) & 0x3fff) | 0x8000,
        b & 0xffff_ffff_ffff
    )
}

fn parse_seconds(name: &str, value: &str, max: u32) -> Result<u32, ApiError> {
    value
        .trim()
        .parse::<u32>()
        .ok()
        .filter(|v| *v <= max)
        .ok_or_else(|| ApiError::invalid_attribute_value(name))
}

fn parse_bool(name: &str, value: &str) -> Result<bool, ApiError> {
    match value.trim().to_ascii_lowercase().as_str() {
        "true" => Ok(true),
        "false" => Ok(false),
        _ => Err(ApiError::invalid_attribute_value(name)),
    }
}

pub(super) struct Engine {
    queues: HashMap<String, Queue>,
    next_queue_id: u32,
    rng: u64,
    pub policy: ReceiptPolicy,
    /// `127.0.0.1:port`, for queue URLs.
    host: String,
    /// When the reaper task will next look at the deadlines; a deadline pushed before that
    /// needs it woken.
    pub armed_until: Option<Instant>,
    pub totals: Arc<Totals>,
}

impl Engine {
    pub fn new(host: String, policy: ReceiptPolicy, seed: u64, totals: Arc<Totals>) -> Engine {
        Engine {
            queues: HashMap::new(),
            next_queue_id: 1,
            rng: seed | 1,
            policy,
            host,
            armed_until: None,
            totals,
        }
    }

    pub fn queue_url(&self, name: &str) -> String {
        format!("http://{}/{ACCOUNT}/{name}", self.host)
    }

    /// The queue a QueueUrl (any host: only the last path segment counts) or name names.
    fn queue_mut(&mut self, url: &str) -> Result<&mut Queue, ApiError> {
        let name = url.trim_end_matches('/').rsplit('/').next().unwrap_or("");
        self.queues
            .get_mut(name)
            .ok_or_else(ApiError::queue_does_not_exist)
    }

    fn queue(&self, url: &str) -> Result<&Queue, ApiError> {
        let name = url.trim_end_matches('/').rsplit('/').next().unwrap_or("");
        self.queues
            .get(name)
            .ok_or_else(ApiError::queue_does_not_exist)
    }

    /// Whether the reaper must be woken for a deadline pushed to this queue.
    fn check_timers(&mut self, url: &str) -> bool {
        let Ok(queue) = self.queue_mut(url) else {
            return false;
        };
        let Some(pushed) = queue.pushed_min.take() else {
            return false;
        };
        self.armed_until.is_none_or(|armed| pushed < armed)
    }

    fn settings(
        &self,
        name: &str,
        attributes: &BTreeMap<String, String>,
        base: Option<&Settings>,
    ) -> Result<Settings, ApiError> {
        let now_s = epoch_ms() / 1000;
        let mut s = base.cloned().unwrap_or(Settings {
            visibility_timeout: 30,
            delay_seconds: 0,
            wait_seconds: 0,
            fifo: false,
            content_dedup: false,
            redrive: None,
            other: BTreeMap::new(),
            created_s: now_s,
            modified_s: now_s,
        });
        s.modified_s = now_s;
        for (key, value) in attributes {
            match key.as_str() {
                "VisibilityTimeout" => {
                    s.visibility_timeout = parse_seconds(key, value, MAX_VISIBILITY_TIMEOUT)?
                }
                "DelaySeconds" => s.delay_seconds = parse_seconds(key, value, MAX_DELAY_SECONDS)?,
                "ReceiveMessageWaitTimeSeconds" => {
                    s.wait_seconds = parse_seconds(key, value, MAX_WAIT_SECONDS)?
                }
                "FifoQueue" if base.is_some() => {
                    return Err(ApiError::invalid_attribute_name(key));
                }
                "FifoQueue" => s.fifo = parse_bool(key, value)?,
                "ContentBasedDeduplication" => s.content_dedup = parse_bool(key, value)?,
                "RedrivePolicy" if value.is_empty() => s.redrive = None,
                "RedrivePolicy" => s.redrive = Some(self.redrive(value)?),
                k if SETTABLE.contains(&k) => {
                    s.other.insert(key.clone(), value.clone());
                }
                _ => return Err(ApiError::invalid_attribute_name(key)),
            }
        }
        if s.fifo != name.ends_with(".fifo") {
            return Err(ApiError::invalid_parameter(
                "The name of a FIFO queue can only include alphanumeric characters, hyphens, or underscores, must end with .fifo suffix. The queue name of a standard queue must not end with .fifo.",
            ));
        }
        if !s.fifo && attributes.contains_key("ContentBasedDeduplication") {
            return Err(ApiError::invalid_attribute_name(
                "ContentBasedDeduplication",
            ));
        }
        if let Some(r) = &s.redrive {
            let target_fifo = r.target_name().ends_with(".fifo");
            if target_fifo != s.fifo {
                return Err(ApiError::invalid_parameter(
                    "Value for parameter RedrivePolicy is invalid. Reason: Dead-letter queue must be same type of queue as the source.",
                ));
            }
        }
        Ok(s)
    }

    fn redrive(&self, value: &str) -> Result<Redrive, ApiError> {
        let bad = |why: &str| {
            ApiError::invalid_parameter(&format!(
                "Value {value} for parameter RedrivePolicy is invalid. Reason: {why}"
            ))
        };
        let json: serde_json::Value =
            serde_json::from_str(value).map_err(|_| bad("Redrive policy is not a valid JSON"))?;
        let target_arn = json["deadLetterTargetArn"]
            .as_str()
            .ok_or_else(|| {
                bad("Redrive policy does not contain mandatory attribute: deadLetterTargetArn.")
            })?
            .to_string();
        let count = &json["maxReceiveCount"];
        let max_receive_count = count
            .as_u64()
            .or_else(|| count.as_str().and_then(|s| s.parse().ok()))
            .filter(|n| (1..=1000).contains(n))
            .ok_or_else(|| {
                bad("Invalid value for maxReceiveCount: must be an integer from 1 to 1000.")
            })? as u32;
        let target = Redrive {
            target_arn,
            max_receive_count,
        };
        if !self.queues.contains_key(target.target_name()) {
            return Err(bad("Dead letter target does not exist."));
        }
        Ok(target)
    }

    pub fn create_queue(
        &mut self,
        name: &str,
        attributes: &BTreeMap<String, String>,
    ) -> Result<String, ApiError> {
        let base = name.strip_suffix(".fifo").unwrap_or(name);
        if base.is_empty()
            || name.len() > 80
            || !base
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        {
            return Err(ApiError::invalid_parameter(
                "Can only include alphanumeric characters, hyphens, or underscores. 1 to 80 in length",
            ));
        }
        let mut attributes = attributes.clone();
        if name.ends_with(".fifo") {
            // AWS needs FifoQueue=true for a .fifo name; moto infers it. Be lenient like moto.
            attributes
                .entry("FifoQueue".into())
                .or_insert_with(|| "true".into());
        }
        if let Some(existing) = self.queues.get(name) {
            let current = existing.attributes();
            let differs = attributes.iter().any(|(k, v)| {
                current.get(k).is_some_and(|c| {
                    c != v
                        && !(k == "RedrivePolicy"
                            && self.redrive(v).map(|r| r.to_json()).ok().as_deref()
                                == Some(c.as_str()))
                })
            });
            if differs {
                return Err(ApiError::sender(
                    "QueueAlreadyExists",
                    "QueueAlreadyExists",
                    "A queue already exists with the same name and a different value for attribute(s)",
                ));
            }
            return Ok(self.queue_url(name));
        }
        let settings = self.settings(name, &attributes, None)?;
        let id = self.next_queue_id;
        self.next_queue_id += 1;
        let (available, _) = watch::channel(0);
        self.queues.insert(
            name.to_string(),
            Queue {
                id,
                name: name.to_string(),
                arn: format!("arn:aws:sqs:{REGION}:{ACCOUNT}:{name}"),
                settings,
                messages: Vec::new(),
                by_id: HashMap::new(),
                by_body: HashMap::new(),
                ready: VecDeque::new(),
                groups: HashMap::new(),
                ready_groups: VecDeque::new(),
                timers: BinaryHeap::new(),
                pushed_min: None,
                dedup: HashMap::new(),
                dedup_order: VecDeque::new(),
                sequence: 0,
                counts: QueueCounts::default(),
                available,
            },
        );
        Ok(self.queue_url(name))
    }

    pub fn set_attributes(
        &mut self,
        url: &str,
        attributes: &BTreeMap<String, String>,
    ) -> Result<(), ApiError> {
        let queue = self.queue(url)?;
        let name = queue.name.clone();
        let settings = self.settings(&name, attributes, Some(&queue.settings))?;
        self.queue_mut(url)?.settings = settings;
        Ok(())
    }

    pub fn delete_queue(&mut self, url: &str) -> Result<(), ApiError> {
        let name = self.queue(url)?.name.clone();
        self.queues.remove(&name);
        Ok(())
    }

    pub fn queue_exists(&self, url: &str) -> Result<(), ApiError> {
        self.queue(url).map(|_| ())
    }

    /// The queue's ReceiveMessageWaitTimeSeconds (the long poll when a receive names none).
    pub fn wait_seconds(&self, url: &str) -> Result<u32, ApiError> {
        Ok(self.queue(url)?.settings.wait_seconds)
    }

    pub fn get_queue_url(&self, name: &str) -> Result<String, ApiError> {
        if self.queues.contains_key(name) {
            Ok(self.queue_url(name))
        } else {
            Err(ApiError::queue_does_not_exist())
        }
    }

    pub fn list_queues(&self, prefix: &str) -> Vec<String> {
        let mut names: Vec<&String> = self
            .queues
            .keys()
            .filter(|n| n.starts_with(prefix))
            .collect();
        names.sort();
        names.into_iter().map(|n| self.queue_url(n)).collect()
    }

    pub fn get_attributes(
        &mut self,
        url: &str,
        names: &[String],
        now: Instant,
    ) -> Result<BTreeMap<String, String>, ApiError> {
        let queue = self.queue_mut(url)?;
        queue.expire(now);
        let all = queue.attributes();
        if names.iter().any(|n| n == "All") {
            return Ok(all);
        }
        let mut out = BTreeMap::new();
        for name in names {
            if !SETTABLE.contains(&name.as_str()) && !READ_ONLY.contains(&name.as_str()) {
                return Err(ApiError::invalid_attribute_name(name));
            }
            if let Some(v) = all.get(name) {
                out.insert(name.clone(), v.clone());
            }
        }
        Ok(out)
    }

    /// Sends one message; returns what SQS answers and whether the reaper needs a wake.
    pub fn send(
        &mut self,
        url: &str,
        input: SendInput,
        now: Instant,
    ) -> Result<(SendOutput, bool), ApiError> {
        if input.body.is_empty() {
            return Err(ApiError::missing_parameter("MessageBody"));
        }
        let size = input.body.len()
            + input
                .attributes
                .iter()
                .map(|(k, v)| {
                    k.len()
                        + v.data_type.len()
                        + v.string_value.as_ref().map_or(0, String::len)
                        + v.binary_value.as_ref().map_or(0, Vec::len)
                })
                .sum::<usize>();
        if size > MAX_MESSAGE_BYTES {
            return Err(ApiError::invalid_parameter(&format!(
                "One or more parameters are invalid. Reason: Message must be shorter than {MAX_MESSAGE_BYTES} bytes."
            )));
        }
        let mut rng = self.rng;
        let queue = self.queue_mut(url)?;
        let s = &queue.settings;
        let delay = match input.delay_seconds {
            Some(d) if d > MAX_DELAY_SECONDS => {
                return Err(ApiError::invalid_parameter(&format!(
                    "Value {d} for parameter DelaySeconds is invalid. Reason: DelaySeconds must be >= 0 and <= 900."
                )))
            }
            Some(_) if s.fifo => {
                return Err(ApiError::invalid_parameter(
                    "Value for parameter DelaySeconds is invalid. Reason: The request include parameter that is not valid for this queue type.",
                ))
            }
            Some(d) => d,
            None => s.delay_seconds,
        };
        let mut dedup_id = input.dedup_id.clone();
        let mut sequence_number = None;
        if s.fifo {
            if input.group_id.is_none() {
                return Err(ApiError::missing_parameter("MessageGroupId"));
            }
            if dedup_id.is_none() {
                if !s.content_dedup {
                    return Err(ApiError::invalid_parameter(
                        "The queue should either have ContentBasedDeduplication enabled or MessageDeduplicationId provided explicitly",
                    ));
                }
                dedup_id = Some(sha256_hex(input.body.as_bytes()));
            }
            while queue
                .dedup_order
                .front()
                .is_some_and(|(expires, _)| *expires <= now)
            {
                if let Some((expires, id)) = queue.dedup_order.pop_front() {
                    if queue.dedup.get(&id).is_some_and(|(e, _)| *e == expires) {
                        queue.dedup.remove(&id);
                    }
                }
            }
            let key = dedup_id.clone().unwrap_or_default();
            if let Some(&(_, seq)) = queue.dedup.get(&key) {
                queue.counts.deduplicated += 1;
                let r = &queue.messages[seq].record;
                return Ok((
                    SendOutput {
                        message_id: r.message_id.clone(),
                        md5_of_body: md5_hex(r.body.as_bytes()),
                        md5_of_attributes: attributes_md5(&r.attributes),
                        md5_of_system_attributes: r.trace_header.as_deref().and_then(trace_md5),
                        sequence_number: r.sequence_number.clone(),
                    },
                    false,
                ));
            }
            queue.sequence += 1;
            sequence_number = Some(format!(
                "{:020}",
                18_000_000_000_000_000_000u128 + queue.sequence as u128
            ));
        } else if dedup_id.is_some() {
            return Err(ApiError::invalid_parameter(
                "Value for parameter MessageDeduplicationId is invalid. Reason: The request includes a parameter that is not valid for this queue type.",
            ));
        }
        let message_id = uuid(&mut rng);
        let output = SendOutput {
            message_id: message_id.clone(),
            md5_of_body: md5_hex(input.body.as_bytes()),
            md5_of_attributes: attributes_md5(&input.attributes),
            md5_of_system_attributes: input.trace_header.as_deref().and_then(trace_md5),
            sequence_number: sequence_number.clone(),
        };
        let record = MessageRecord {
            queue: String::new(),
            message_id,
            body: input.body,
            attributes: input.attributes,
            trace_header: input.trace_header,
            group_id: input.group_id,
            dedup_id: dedup_id.clone(),
            sequence_number,
            sent_at: now,
            sent_ms: epoch_ms(),
            state: MessageState::Visible,
            receive_count: 0,
            first_receive_ms: None,
            receives: Vec::new(),
            actions: Vec::new(),
            deleted: None,
            dead_lettered_at: None,
            moved_from: None,
        };
        let seq = queue.insert(record, now, delay);
        if let Some(id) = dedup_id.filter(|_| queue.settings.fifo) {
            let expires = now + DEDUP_WINDOW;
            queue.dedup.insert(id.clone(), (expires, seq));
            queue.dedup_order.push_back((expires, id));
        }
        self.rng = rng;
        bump(&self.totals.sent, 1);
        let wake = self.check_timers(url);
        Ok((output, wake))
    }

    /// One pass of a receive: what is receivable now (no waiting). Returns the messages and
    /// whether the reaper needs a wake.
    pub fn receive(
        &mut self,
        url: &str,
        max: usize,
        visibility: Option<u32>,
        filter: &ReceiveFilter,
        now: Instant,
    ) -> Result<(Vec<OutMessage>, bool), ApiError> {
        let now_ms = epoch_ms();
        let mut rng = self.rng;
        let mut moving = Vec::new();
        let queue = self.queue_mut(url)?;
        queue.expire(now);
        let visibility = visibility.unwrap_or(queue.settings.visibility_timeout);
        let out = queue.receive(max, visibility, filter, now, now_ms, &mut rng, &mut moving);
        self.rng = rng;
        bump(&self.totals.received, out.len() as u64);
        bump(&self.totals.dead_lettered, moving.len() as u64);
        for m in moving {
            if let Some(target) = self.queues.get_mut(&m.target) {
                let mut record = m.record;
                record.moved_from = Some(record.queue.clone());
                record.receives.clear();
                record.actions.clear();
                record.dead_lettered_at = None;
                target.insert(record, now, 0);
            }
        }
        let wake = self.check_timers(url);
        Ok((out, wake))
    }

    /// A long poll's wake-up channel for this queue, subscribed now (so a change made after this
    /// call, under the same lock, is seen).
    pub fn subscribe(&self, url: &str) -> Result<watch::Receiver<u64>, ApiError> {
        Ok(self.queue(url)?.available.subscribe())
    }

    /// The message id and body a receipt handle names (for entry faults).
    pub fn resolve(&self, url: &str, handle: &str) -> Option<(String, String)> {
        let queue = self.queue(url).ok()?;
        let (seq, _) = queue.lookup(handle)?;
        let r = &queue.messages[seq].record;
        Some((r.message_id.clone(), r.body.clone()))
    }

    /// Records an injected failure against the message a handle names.
    pub fn record_failure(
        &mut self,
        url: &str,
        handle: &str,
        op: Op,
        visibility_timeout: Option<u32>,
        code: &str,
        now: Instant,
    ) {
        let Ok(queue) = self.queue_mut(url) else {
            return;
        };
        if let Some((seq, receive)) = queue.lookup(handle) {
            queue.messages[seq].record.actions.push(ActionRecord {
                op,
                at: now,
                receive,
                visibility_timeout,
                outcome: ActionOutcome::Failed {
                    code: code.into(),
                    injected: true,
                },
            });
        }
    }

    pub fn delete(
        &mut self,
        url: &str,
        handle: &str,
        op: Op,
        now: Instant,
    ) -> Result<(), ApiError> {
        let policy = self.policy;
        let queue = self.queue_mut(url)?;
        let Some((seq, receive)) = queue.lookup(handle) else {
            return Err(ApiError::receipt_handle_is_invalid());
        };
        let m = &queue.messages[seq];
        let latest = receive + 1 == m.record.receives.len();
        let outcome = match m.record.state {
            MessageState::DeadLettered => Err(ApiError::receipt_handle_is_invalid()),
            MessageState::Deleted | MessageState::Purged => Ok(false),
            _ if policy == ReceiptPolicy::LatestOnly && !latest => Ok(false),
            _ => Ok(true),
        };
        let record = ActionRecord {
            op,
            at: now,
            receive,
            visibility_timeout: None,
            outcome: match &outcome {
                Ok(true) => ActionOutcome::Done,
                Ok(false) => ActionOutcome::NoEffect,
                Err(e) => ActionOutcome::Failed {
                    code: e.code.clone(),
                    injected: false,
                },
            },
        };
        queue.messages[seq].record.actions.push(record);
        if outcome.clone()? {
            queue.remove(seq, MessageState::Deleted);
            queue.counts.deleted += 1;
            queue.messages[seq].record.deleted = Some(Deletion {
                at: now,
                receive,
                op,
            });
            bump(&self.totals.deleted, 1);
        }
        outcome.map(|_| ())
    }

    /// Changes a message's visibility; returns whether the reaper needs a wake.
    pub fn change_visibility(
        &mut self,
        url: &str,
        handle: &str,
        timeout: u32,
        op: Op,
        now: Instant,
    ) -> Result<bool, ApiError> {
        let policy = self.policy;
        let totals = self.totals.clone();
        let queue = self.queue_mut(url)?;
        let Some((seq, receive)) = queue.lookup(handle) else {
            return Err(ApiError::receipt_handle_is_invalid());
        };
        let m = &queue.messages[seq];
        let latest = receive + 1 == m.record.receives.len();
        let since_receive = now.saturating_duration_since(m.record.receives[receive].at);
        let result = if timeout > MAX_VISIBILITY_TIMEOUT {
            Err(ApiError::invalid_parameter(&format!(
                "Value {timeout} for parameter VisibilityTimeout is invalid. Reason: Must be between 0 and 43200."
            )))
        } else if m.record.state.is_gone() {
            Err(ApiError::receipt_handle_is_invalid())
        } else if policy == ReceiptPolicy::LatestOnly && !latest {
            Err(ApiError::invalid_parameter(&format!(
                "Value {handle} for parameter ReceiptHandle is invalid. Reason: Message does not exist or is not available for visibility timeout change."
            )))
        } else if policy == ReceiptPolicy::LatestOnly && m.record.state != MessageState::InFlight {
            Err(ApiError::sender(
                "MessageNotInflight",
                "AWS.SimpleQueueService.MessageNotInflight",
                "The message referred to isn't in flight.",
            ))
        } else if since_receive + Duration::from_secs(timeout.into())
            > Duration::from_secs(MAX_VISIBILITY_TIMEOUT.into())
        {
            Err(ApiError::invalid_parameter(&format!(
                "Value {timeout} for parameter VisibilityTimeout is invalid. Reason: Total VisibilityTimeout for the message is beyond the limit [43200 seconds]"
            )))
        } else {
            Ok(())
        };
        queue.messages[seq].record.actions.push(ActionRecord {
            op,
            at: now,
            receive,
            visibility_timeout: Some(timeout),
            outcome: match &result {
                Ok(()) => ActionOutcome::Done,
                Err(e) => ActionOutcome::Failed {
                    code: e.code.clone(),
                    injected: false,
                },
            },
        });
        result?;
        bump(&totals.visibility_changes, 1);
        if timeout == 0 {
            if queue.messages[seq].record.state == MessageState::InFlight {
                queue.make_visible(seq);
            }
            return Ok(false);
        }
        let state = queue.messages[seq].record.state;
        if state != MessageState::InFlight {
            // moto's leniency: a visible (or delayed) message becomes invisible again.
            match state {
                MessageState::Visible => queue.counts.visible -= 1,
                _ => queue.counts.delayed -= 1,
            }
            queue.counts.in_flight += 1;
            queue.messages[seq].record.state = MessageState::InFlight;
            if let Some(g) = queue.messages[seq]
                .record
                .group_id
                .clone()
                .filter(|_| queue.settings.fifo)
                .and_then(|g| queue.groups.get_mut(&g))
            {
                g.in_flight += 1;
            }
        }
        let m = &mut queue.messages[seq];
        m.generation += 1;
        m.visible_at = now + Duration::from_secs(timeout.into());
        let at = m.visible_at;
        queue.push_timer(at, seq);
        Ok(self.check_timers(url))
    }

    pub fn purge(&mut self, url: &str) -> Result<(), ApiError> {
        let queue = self.queue_mut(url)?;
        let mut purged = 0;
        for seq in 0..queue.messages.len() {
            if !queue.messages[seq].record.state.is_gone() {
                queue.remove(seq, MessageState::Purged);
                purged += 1;
            }
        }
        queue.counts.purged += purged;
        queue.ready.clear();
        queue.groups.clear();
        queue.ready_groups.clear();
        queue.timers.clear();
        queue.dedup.clear();
        queue.dedup_order.clear();
        Ok(())
    }

    /// Processes passed deadlines in every queue; returns how many messages became visible, and
    /// the next deadline.
    pub fn expire_all(&mut self, now: Instant) -> (usize, Option<Instant>) {
        let mut next: Option<Instant> = None;
        let mut changed = 0;
        for queue in self.queues.values_mut() {
            changed += queue.expire(now);
            queue.pushed_min = None;
            if let Some(t) = queue.next_deadline() {
                next = Some(next.map_or(t, |n| n.min(t)));
            }
        }
        (changed, next)
    }

    // --- inspection -----------------------------------------------------------------------

    pub fn counts(&mut self, name: &str, now: Instant) -> Option<QueueCounts> {
        let queue = self.queues.get_mut(name)?;
        queue.expire(now);
        Some(queue.counts)
    }

    pub fn record(&self, name: &str, message_id: &str) -> Option<MessageRecord> {
        let queue = self.queues.get(name)?;
        let seq = *queue.by_id.get(message_id)?;
        Some(queue.messages[seq].record.clone())
    }

    pub fn records_with_body(&self, name: &str, body: &str) -> Vec<MessageRecord> {
        let Some(queue) = self.queues.get(name) else {
            return Vec::new();
        };
        queue
            .by_body
            .get(body)
            .map(|seqs| {
                seqs.iter()
                    .map(|&s| queue.messages[s].record.clone())
                    .collect()
            })
            .unwrap_or_default()
    }

    pub fn records(&self, name: &str) -> Vec<MessageRecord> {
        self.queues
            .get(name)
            .map(|q| q.messages.iter().map(|m| m.record.clone()).collect())
            .unwrap_or_default()
    }
}

/// MD5OfMessageSystemAttributes for an AWSTraceHeader.
fn trace_md5(trace: &str) -> Option<String> {
    let mut map = BTreeMap::new();
    map.insert("AWSTraceHeader".to_string(), AttributeValue::string(trace));
    attributes_md5(&map)
}
