//! Faults on cue: what a call or a batch entry does instead of its normal answer, and for how many
//! calls. Rules are set and cleared while clients run; the HTTP layer asks for a call fault before
//! doing an operation, the API layer asks for an entry fault before settling each entry.

use std::collections::HashMap;
use std::time::Duration;

use super::api::{ApiError, Op};

/// What one call does instead of answering normally.
#[derive(Debug, Clone)]
pub enum Fault {
    /// Answer with this error; the operation is not done.
    Error(ApiError),
    /// Close the TCP connection with a reset, without answering; the operation is not done.
    Reset,
    /// Do the operation, then reset the connection: the client never learns that it happened
    /// (e.g. messages received but never handed over, which reappear after their timeout).
    ResetAfter,
    /// Hold the request this long (past the client's timeout, say), then close the connection
    /// without answering; the operation is not done.
    Hang(Duration),
    /// Answer normally, after this long.
    Delay(Duration),
    /// Do the operation at once, then answer this much later (a slow network on the way back:
    /// SQS has acted, the client does not know yet).
    DelayAnswer(Duration),
}

impl Fault {
    /// HTTP 500 `InternalError`: the SDK's standard retry mode retries it itself.
    pub fn internal_error() -> Fault {
        Fault::Error(ApiError::server(
            500,
            "InternalError",
            "We encountered an internal error. Please try again.",
        ))
    }

    /// HTTP 503 `ServiceUnavailable`: retried by the SDK like any 500/502/503/504.
    pub fn service_unavailable() -> Fault {
        Fault::Error(ApiError::server(
            503,
            "ServiceUnavailable",
            "Service is unavailable. Try again later.",
        ))
    }

    /// HTTP 400 `RequestThrottled`, SQS's own throttling code (a throttling error to the SDK).
    pub fn throttled() -> Fault {
        Fault::Error(ApiError::sender(
            "RequestThrottled",
            "RequestThrottled",
            "Request is throttled.",
        ))
    }

    /// HTTP 400 `ThrottlingException`, the generic AWS throttling code (also retried by the SDK).
    pub fn throttling_exception() -> Fault {
        Fault::Error(ApiError::sender(
            "ThrottlingException",
            "ThrottlingException",
            "Rate exceeded",
        ))
    }

    /// HTTP 400 `InvalidAction`: what an endpoint without this API answers.
    pub fn invalid_action() -> Fault {
        Fault::Error(ApiError::sender(
            "InvalidAction",
            "InvalidAction",
            "The action is not valid for this endpoint.",
        ))
    }
}

/// How often a rule fires.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Times {
    /// The next n calls (or, for entry faults, matching entries); then the rule is spent.
    Next(u64),
    /// Every call until cleared.
    Always,
    /// Each call with this probability (0–1), until cleared. Draws are from a seeded generator,
    /// so a run is repeatable given the same sequence of calls.
    Fraction(f64),
}

/// How one batch entry (or a single DeleteMessage / ChangeMessageVisibility / SendMessage call,
/// which then answers with this error) fails.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EntryFault {
    pub code: String,
    /// true: the client's fault (SQS: not worth retrying); false: SQS's fault (retry).
    pub sender_fault: bool,
    pub message: String,
}

impl EntryFault {
    pub fn new(code: &str, sender_fault: bool) -> EntryFault {
        EntryFault {
            code: code.into(),
            sender_fault,
            message: format!("injected {code}"),
        }
    }

    /// SQS's fault: `InternalError`, SenderFault false.
    pub fn internal_error() -> EntryFault {
        EntryFault::new("InternalError", false)
    }

    /// The sender's fault: `ReceiptHandleIsInvalid`, SenderFault true.
    pub fn receipt_handle_is_invalid() -> EntryFault {
        EntryFault::new("ReceiptHandleIsInvalid", true)
    }
}

/// Which entries an entry fault applies to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Entries {
    Any,
    /// Entries naming (through their receipt handle) a message with this body; for sends, this body.
    Body(String),
    MessageId(String),
}

impl Entries {
    fn matches(&self, message_id: Option<&str>, body: Option<&str>) -> bool {
        match self {
            Entries::Any => true,
            Entries::Body(b) => body == Some(b.as_str()),
            Entries::MessageId(id) => message_id == Some(id.as_str()),
        }
    }
}

/// Names one rule, to clear it or ask how often it fired.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct FaultId(u64);

struct Rule<T> {
    id: FaultId,
    op: Op,
    what: T,
    times: Times,
}

/// Every active rule, and how often each rule (active or not) has fired.
pub(super) struct FaultPlan {
    next_id: u64,
    calls: Vec<Rule<Fault>>,
    entries: Vec<Rule<(Entries, EntryFault)>>,
    hits: HashMap<FaultId, u64>,
    rng: u64,
}

impl FaultPlan {
    pub fn new(seed: u64) -> FaultPlan {
        FaultPlan {
            next_id: 1,
            calls: Vec::new(),
            entries: Vec::new(),
            hits: HashMap::new(),
            rng: seed | 1,
        }
    }

    fn id(&mut self) -> FaultId {
        self.next_id += 1;
        FaultId(self.next_id)
    }

    pub fn add_call(&mut self, op: Op, fault: Fault, times: Times) -> FaultId {
        let id = self.id();
        self.calls.push(Rule {
            id,
            op,
            what: fault,
            times,
        });
        id
    }

    pub fn add_entries(
        &mut self,
        op: Op,
        entries: Entries,
        fault: EntryFault,
        times: Times,
    ) -> FaultId {
        let id = self.id();
        self.entries.push(Rule {
            id,
            op,
            what: (entries, fault),
            times,
        });
        id
    }

    pub fn remove(&mut self, id: FaultId) {
        self.calls.retain(|r| r.id != id);
        self.entries.retain(|r| r.id != id);
    }

    pub fn clear_op(&mut self, op: Op) {
        self.calls.retain(|r| r.op != op);
        self.entries.retain(|r| r.op != op);
    }

    pub fn clear(&mut self) {
        self.calls.clear();
        self.entries.clear();
    }

    pub fn hits(&self, id: FaultId) -> u64 {
        self.hits.get(&id).copied().unwrap_or(0)
    }

    /// The call fault for this call of `op`, if a rule fires (the first that does).
    pub fn take_call(&mut self, op: Op) -> Option<Fault> {
        if self.calls.is_empty() {
            return None;
        }
        let index = fire(&mut self.calls, &mut self.rng, &mut self.hits, |r| {
            r.op == op
        })?;
        let fault = self.calls[index].what.clone();
        spend(&mut self.calls, index);
        Some(fault)
    }

    /// The entry fault for this entry of `op`, if a rule fires.
    pub fn take_entry(
        &mut self,
        op: Op,
        message_id: Option<&str>,
        body: Option<&str>,
    ) -> Option<EntryFault> {
        if self.entries.is_empty() {
            return None;
        }
        let index = fire(&mut self.entries, &mut self.rng, &mut self.hits, |r| {
            r.op == op && r.what.0.matches(message_id, body)
        })?;
        let fault = self.entries[index].what.1.clone();
        spend(&mut self.entries, index);
        Some(fault)
    }
}

/// The index of the first matching rule that fires now, its hit counted.
fn fire<T>(
    rules: &mut [Rule<T>],
    rng: &mut u64,
    hits: &mut HashMap<FaultId, u64>,
    matches: impl Fn(&Rule<T>) -> bool,
) -> Option<usize> {
    for (i, rule) in rules.iter().enumerate() {
        if !matches(rule) {
            continue;
        }
        let fires = match rule.times {
            Times::Next(n) => n > 0,
            Times::Always => true,
            Times::Fraction(p) => next_unit(rng) < p,
        };
        if fires {
            *hits.entry(rule.id).or_insert(0) += 1;
            return Some(i);
        }
    }
    None
}

/// Counts one use of a `Next(n)` rule; a spent rule is removed (its hits stay readable).
fn spend<T>(rules: &mut Vec<Rule<T>>, index: usize) {
    if let Times::Next(n) = &mut rules[index].times {
        *n -= 1;
        if *n == 0 {
            rules.remove(index);
        }
    }
}

/// xorshift64*: a uniform draw in [0, 1).
fn next_unit(state: &mut u64) -> f64 {
    let mut x = *state;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    *state = x;
    (x.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 11) as f64 / (1u64 << 53) as f64
}
