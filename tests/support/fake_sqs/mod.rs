//! An in-memory SQS server for tests: real SQS semantics at thousands of messages a second, faults
//! on cue, and an exact per-message ledger. It runs in the test process on a free 127.0.0.1 port,
//! on a thread and tokio runtime of its own (so it outlives any one test's runtime), and speaks
//! the AWS JSON 1.0 protocol of aws-sdk-sqs 1.x. tests/conformance.rs runs the same scenarios
//! against moto and against it, and both must agree.
//!
//! # Layout
//! - `engine.rs`: queues and messages — visibility with real time, receive counts, receipt
//!   handles, FIFO group locking, dead-lettering, dedup — and the ledger. O(1) amortised per call.
//! - `api.rs`: the protocol (parse, fault, run, count, render); long polls wait here.
//! - `http.rs`: a minimal HTTP/1.1 server, able to reset a connection or hang on cue.
//! - `faults.rs`: fault rules (which operation or entry, what happens, how often).
//! - `digest.rs`: MD5 / SHA-256 / base64 as SQS uses them.
//!
//! # Use
//! ```ignore
//! let sqs = FakeSqs::start();
//! sqs.create_queue("jobs-dlq", QueueConfig::standard());
//! sqs.create_queue("jobs", QueueConfig::standard().visibility_timeout(2).dead_letter_queue("jobs-dlq", 3));
//! let id = sqs.send("jobs", "hello");                       // or Message::new("hello").group("g")
//! let carrier = CarrierProcess::start(&sqs.carrier_env("jobs", &sink));
//! let f = sqs.inject(Op::ReceiveMessage, Fault::service_unavailable(), Times::Next(3));
//! sqs.fail_entries(Op::DeleteMessageBatch, Entries::Body("hello".into()), EntryFault::internal_error(), Times::Next(1));
//! sqs.wait("hello deleted", T, |s| s.message("jobs", &id).filter(|m| m.deleted.is_some())).await;
//! assert_eq!(sqs.message("jobs", &id).unwrap().receives.len(), 1);
//! sqs.clear_faults();
//! ```

mod api;
mod digest;
mod engine;
mod faults;
mod http;

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::watch;

// Each test binary uses a different part of this surface.
#[allow(unused_imports)]
pub use api::{ApiError, Op, OpStats};
#[allow(unused_imports)]
pub use digest::{
    attributes_md5, base64_decode, base64_encode, md5_hex, sha256_hex, AttributeValue,
};
#[allow(unused_imports)]
pub use engine::{
    ActionOutcome, ActionRecord, Deletion, MessageRecord, MessageState, QueueCounts, ReceiptPolicy,
    ReceiveRecord, ACCOUNT, REGION,
};
#[allow(unused_imports)]
pub use faults::{Entries, EntryFault, Fault, FaultId, Times};

use api::Shared;
use engine::SendInput;

/// How the server is set up.
#[derive(Debug, Clone)]
pub struct Options {
    pub receipt_policy: ReceiptPolicy,
    /// Seeds receipt handles, message ids and `Times::Fraction` draws.
    pub seed: u64,
    /// Threads of the server's runtime (1 keeps a request and its answer on one thread, which
    /// is what a latency-bound client on a 2-core machine wants; see tests/bench.rs).
    pub worker_threads: usize,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            receipt_policy: ReceiptPolicy::AnyIssued,
            seed: 0x5eed_cafe_f00d_beef,
            worker_threads: 2,
        }
    }
}

/// A queue's attributes, as CreateQueue takes them.
#[derive(Debug, Clone, Default)]
pub struct QueueConfig {
    attributes: BTreeMap<String, String>,
}

impl QueueConfig {
    /// A standard queue with SQS's defaults (visibility timeout 30 s).
    pub fn standard() -> QueueConfig {
        QueueConfig::default()
    }

    /// A FIFO queue (its name must end in `.fifo`).
    pub fn fifo() -> QueueConfig {
        QueueConfig::default().attribute("FifoQueue", "true")
    }

    pub fn visibility_timeout(self, secs: u32) -> QueueConfig {
        self.attribute("VisibilityTimeout", &secs.to_string())
    }

    /// Dead-letter to this (existing) queue after `max_receive_count` receives.
    pub fn dead_letter_queue(self, dlq: &str, max_receive_count: u32) -> QueueConfig {
        let policy = serde_json::json!({
            "deadLetterTargetArn": format!("arn:aws:sqs:{REGION}:{ACCOUNT}:{dlq}"),
            "maxReceiveCount": max_receive_count,
        });
        self.attribute("RedrivePolicy", &policy.to_string())
    }

    pub fn content_based_deduplication(self) -> QueueConfig {
        self.attribute("ContentBasedDeduplication", "true")
    }

    pub fn receive_wait_time(self, secs: u32) -> QueueConfig {
        self.attribute("ReceiveMessageWaitTimeSeconds", &secs.to_string())
    }

    pub fn delay(self, secs: u32) -> QueueConfig {
        self.attribute("DelaySeconds", &secs.to_string())
    }

    pub fn attribute(mut self, name: &str, value: &str) -> QueueConfig {
        self.attributes.insert(name.into(), value.into());
        self
    }
}

/// A message to seed a queue with directly (no HTTP).
#[derive(Debug, Clone)]
pub struct Message(SendInput);

impl Message {
    pub fn new(body: &str) -> Message {
        Message(SendInput {
            body: body.into(),
            ..Default::default()
        })
    }

    pub fn group(mut self, group_id: &str) -> Message {
        self.0.group_id = Some(group_id.into());
        self
    }

    pub fn dedup_id(mut self, id: &str) -> Message {
        self.0.dedup_id = Some(id.into());
        self
    }

    pub fn attribute(mut self, name: &str, value: AttributeValue) -> Message {
        self.0.attributes.insert(name.into(), value);
        self
    }

    pub fn trace_header(mut self, value: &str) -> Message {
        self.0.trace_header = Some(value.into());
        self
    }

    pub fn delay(mut self, secs: u32) -> Message {
        self.0.delay_seconds = Some(secs);
        self
    }
}

impl From<&str> for Message {
    fn from(body: &str) -> Message {
        Message::new(body)
    }
}

impl From<&String> for Message {
    fn from(body: &String) -> Message {
        Message::new(body)
    }
}

/// Server-wide totals (atomics: constant time to read).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TotalCounts {
    pub sent: u64,
    pub received: u64,
    pub deleted: u64,
    pub dead_lettered: u64,
    pub visibility_changes: u64,
}

/// The running server. Dropping it stops it.
pub struct FakeSqs {
    /// `http://127.0.0.1:<port>`
    pub endpoint: String,
    shared: Arc<Shared>,
    stop: watch::Sender<bool>,
}

impl FakeSqs {
    pub fn start() -> FakeSqs {
        FakeSqs::start_with(Options::default())
    }

    pub fn start_with(options: Options) -> FakeSqs {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind the fake SQS");
        listener
            .set_nonblocking(true)
            .expect("non-blocking listener");
        let port = listener.local_addr().expect("local address").port();
        let shared = Arc::new(Shared::new(
            format!("127.0.0.1:{port}"),
            options.receipt_policy,
            options.seed,
        ));
        let (stop, stopped) = watch::channel(false);
        let server = shared.clone();
        std::thread::Builder::new()
            .name("fake-sqs".into())
            .spawn(move || {
                let runtime = tokio::runtime::Builder::new_multi_thread()
                    .worker_threads(options.worker_threads.max(1))
                    .thread_name("fake-sqs-worker")
                    .enable_all()
                    .build()
                    .expect("the fake SQS runtime");
                runtime.block_on(async move {
                    let listener =
                        tokio::net::TcpListener::from_std(listener).expect("tokio listener");
                    tokio::spawn(reaper(server.clone()));
                    http::serve(listener, server, stopped).await;
                });
                // Dropping the runtime ends every connection and the reaper.
            })
            .expect("spawn the fake SQS thread");
        FakeSqs {
            endpoint: format!("http://127.0.0.1:{port}"),
            shared,
            stop,
        }
    }

    fn engine(&self) -> std::sync::MutexGuard<'_, engine::Engine> {
        self.shared.engine.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn faults(&self) -> std::sync::MutexGuard<'_, faults::FaultPlan> {
        self.shared.faults.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// An SQS client for this server, configured as carrier configures its own.
    pub async fn client(&self) -> aws_sdk_sqs::Client {
        carrier_actors::sqs::client(&carrier_actors::QueueAddress {
            endpoint: Some(self.endpoint.clone()),
            ..Default::default()
        })
        .await
    }

    /// The environment that points carrier at `queue` here and at `sink`.
    pub fn carrier_env(&self, queue: &str, sink: &super::Sink) -> Vec<(&'static str, String)> {
        vec![
            ("CARRIER_SQS_ENDPOINT", self.endpoint.clone()),
            ("CARRIER_SQS_QUEUE_NAME", queue.into()),
            ("CARRIER_WEBHOOK_ENDPOINT", sink.url.clone()),
        ]
    }

    // --- queues and messages ----------------------------------------------------------------

    /// Creates a queue (as CreateQueue would); returns its URL. Panics on invalid attributes.
    pub fn create_queue(&self, name: &str, config: QueueConfig) -> String {
        let url = self
            .engine()
            .create_queue(name, &config.attributes)
            .unwrap_or_else(|e| panic!("create queue {name}: {e:?}"));
        self.shared.bump();
        url
    }

    pub fn queue_url(&self, name: &str) -> String {
        self.engine().queue_url(name)
    }

    /// Changes one queue attribute (as SetQueueAttributes would). Panics if invalid.
    pub fn set_queue_attribute(&self, queue: &str, name: &str, value: &str) {
        let attributes = BTreeMap::from([(name.to_string(), value.to_string())]);
        self.engine()
            .set_attributes(queue, &attributes)
            .unwrap_or_else(|e| panic!("set {name} on {queue}: {e:?}"));
        self.shared.bump();
    }

    /// Which receipt handles settle a message from now on.
    pub fn set_receipt_policy(&self, policy: ReceiptPolicy) {
        self.engine().policy = policy;
    }

    /// Sends one message (as SendMessage would); returns its message id. Panics if invalid.
    pub fn send(&self, queue: &str, message: impl Into<Message>) -> String {
        let (out, wake) = self
            .engine()
            .send(queue, message.into().0, Instant::now())
            .unwrap_or_else(|e| panic!("send to {queue}: {e:?}"));
        if wake {
            self.shared.reaper.notify_one();
        }
        self.shared.bump();
        out.message_id
    }

    /// Sends one message per body; returns the message ids in the same order.
    pub fn send_all<S: AsRef<str>>(&self, queue: &str, bodies: &[S]) -> Vec<String> {
        bodies
            .iter()
            .map(|b| self.send(queue, b.as_ref()))
            .collect()
    }

    // --- the ledger ---------------------------------------------------------------------------

    /// The queue's counts (constant time, after processing passed visibility deadlines).
    pub fn counts(&self, queue: &str) -> QueueCounts {
        self.engine()
            .counts(queue, Instant::now())
            .unwrap_or_else(|| panic!("no queue {queue}"))
    }

    /// Everything that happened to one message in one queue.
    pub fn message(&self, queue: &str, message_id: &str) -> Option<MessageRecord> {
        self.engine().record(queue, message_id)
    }

    /// The messages of a queue with this body (most tests use distinct bodies: at most one).
    pub fn messages_with_body(&self, queue: &str, body: &str) -> Vec<MessageRecord> {
        self.engine().records_with_body(queue, body)
    }

    /// The one message of a queue with this body; panics unless there is exactly one.
    pub fn message_with_body(&self, queue: &str, body: &str) -> MessageRecord {
        let mut found = self.messages_with_body(queue, body);
        assert_eq!(found.len(), 1, "messages with body {body:?} in {queue}");
        found.remove(0)
    }

    /// Every message a queue ever had, in the order they arrived (a copy: for final checks).
    pub fn messages(&self, queue: &str) -> Vec<MessageRecord> {
        self.engine().records(queue)
    }

    /// One operation's counters (constant time).
    pub fn stats(&self, op: Op) -> OpStats {
        self.shared.stats(op)
    }

    /// Calls of one operation so far.
    pub fn calls(&self, op: Op) -> u64 {
        self.stats(op).calls
    }

    pub fn totals(&self) -> TotalCounts {
        let t = &self.shared.totals;
        let get = |a: &std::sync::atomic::AtomicU64| a.load(Ordering::Relaxed);
        TotalCounts {
            sent: get(&t.sent),
            received: get(&t.received),
            deleted: get(&t.deleted),
            dead_lettered: get(&t.dead_lettered),
            visibility_changes: get(&t.visibility_changes),
        }
    }

    /// TCP connections accepted so far (a client that reuses connections opens few).
    pub fn connections(&self) -> u64 {
        self.shared.connections.load(Ordering::Relaxed)
    }

    /// A channel bumped after every call, every visibility expiry and every change made through
    /// this handle.
    pub fn events(&self) -> watch::Receiver<u64> {
        self.shared.events.subscribe()
    }

    /// Waits until `check` yields, re-checking on every event; panics after `timeout`.
    pub async fn wait<T>(
        &self,
        what: &str,
        timeout: Duration,
        check: impl Fn(&FakeSqs) -> Option<T>,
    ) -> T {
        let mut rx = self.events();
        super::wait_on(&mut rx, what, timeout, || check(self)).await
    }

    // --- faults -------------------------------------------------------------------------------

    /// From now on, calls of `op` do `fault` (`times` says how often). Returns the rule's id.
    pub fn inject(&self, op: Op, fault: Fault, times: Times) -> FaultId {
        self.faults().add_call(op, fault, times)
    }

    /// From now on, entries of `op` that match `entries` fail with `fault` (batch calls answer
    /// them in `Failed`; single calls answer with the error). `times` counts entries.
    pub fn fail_entries(
        &self,
        op: Op,
        entries: Entries,
        fault: EntryFault,
        times: Times,
    ) -> FaultId {
        self.faults().add_entries(op, entries, fault, times)
    }

    /// The "no batch API" endpoint: every batch call answers InvalidAction until cleared.
    pub fn disable_batch_apis(&self) -> Vec<FaultId> {
        [
            Op::SendMessageBatch,
            Op::DeleteMessageBatch,
            Op::ChangeMessageVisibilityBatch,
        ]
        .into_iter()
        .map(|op| self.inject(op, Fault::invalid_action(), Times::Always))
        .collect()
    }

    pub fn clear_fault(&self, id: FaultId) {
        self.faults().remove(id);
    }

    pub fn clear_faults_of(&self, op: Op) {
        self.faults().clear_op(op);
    }

    pub fn clear_faults(&self) {
        self.faults().clear();
    }

    /// How often a rule has fired (also after it was spent or cleared).
    pub fn fault_hits(&self, id: FaultId) -> u64 {
        self.faults().hits(id)
    }
}

impl Drop for FakeSqs {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
    }
}

/// Makes messages visible when their deadline passes, so long polls wake at that moment (rather
/// than when the next call happens to look), and bumps the event channel for waiting tests.
async fn reaper(shared: Arc<Shared>) {
    loop {
        let (changed, until) = {
            let mut engine = shared.engine.lock().unwrap_or_else(|e| e.into_inner());
            let now = Instant::now();
            let (changed, next) = engine.expire_all(now);
            let until = next.unwrap_or(now + Duration::from_secs(3600));
            engine.armed_until = Some(until);
            (changed, until)
        };
        if changed > 0 {
            shared.bump();
        }
        tokio::select! {
            _ = tokio::time::sleep_until(tokio::time::Instant::from_std(until)) => {}
            _ = shared.reaper.notified() => {}
        }
    }
}
