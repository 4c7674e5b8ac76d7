//! The AWS JSON 1.0 protocol as aws-sdk-sqs 1.x speaks it (`x-amz-target: AmazonSQS.<Op>`, JSON
//! bodies, errors as `{"__type", "message"}` plus the `x-amzn-query-error` header the SDK reads
//! its error codes from): parses each call, applies call and entry faults, runs it on the engine,
//! counts it, and renders the answer. Long polls wait here, on the queue's wake-up channel.

use std::collections::{BTreeMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{json, Map, Value};
use tokio::sync::{watch, Notify};

use super::digest::{base64_decode, base64_encode, AttributeValue};
use super::engine::{
    Engine, OutMessage, ReceiptPolicy, ReceiveFilter, SendInput, Totals, MAX_VISIBILITY_TIMEOUT,
    MAX_WAIT_SECONDS,
};
use super::faults::{Fault, FaultPlan};

/// SQS's most entries per batch call and messages per receive.
pub const MAX_BATCH: usize = 10;
/// SQS's most message attributes per message.
pub const MAX_ATTRIBUTES: usize = 10;

/// The operations the server knows (and `Unknown` for any other target, answered InvalidAction).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Op {
    CreateQueue,
    DeleteQueue,
    GetQueueUrl,
    GetQueueAttributes,
    SetQueueAttributes,
    ListQueues,
    PurgeQueue,
    SendMessage,
    SendMessageBatch,
    ReceiveMessage,
    DeleteMessage,
    DeleteMessageBatch,
    ChangeMessageVisibility,
    ChangeMessageVisibilityBatch,
    Unknown,
}

impl Op {
    pub const ALL: [Op; 15] = [
        Op::CreateQueue,
        Op::DeleteQueue,
        Op::GetQueueUrl,
        Op::GetQueueAttributes,
        Op::SetQueueAttributes,
        Op::ListQueues,
        Op::PurgeQueue,
        Op::SendMessage,
        Op::SendMessageBatch,
        Op::ReceiveMessage,
        Op::DeleteMessage,
        Op::DeleteMessageBatch,
        Op::ChangeMessageVisibility,
        Op::ChangeMessageVisibilityBatch,
        Op::Unknown,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Op::CreateQueue => "CreateQueue",
            Op::DeleteQueue => "DeleteQueue",
            Op::GetQueueUrl => "GetQueueUrl",
            Op::GetQueueAttributes => "GetQueueAttributes",
            Op::SetQueueAttributes => "SetQueueAttributes",
            Op::ListQueues => "ListQueues",
            Op::PurgeQueue => "PurgeQueue",
            Op::SendMessage => "SendMessage",
            Op::SendMessageBatch => "SendMessageBatch",
            Op::ReceiveMessage => "ReceiveMessage",
            Op::DeleteMessage => "DeleteMessage",
            Op::DeleteMessageBatch => "DeleteMessageBatch",
            Op::ChangeMessageVisibility => "ChangeMessageVisibility",
            Op::ChangeMessageVisibilityBatch => "ChangeMessageVisibilityBatch",
            Op::Unknown => "Unknown",
        }
    }

    fn from_target(target: &str) -> Op {
        let name = target.strip_prefix("AmazonSQS.").unwrap_or("");
        Op::ALL
            .into_iter()
            .find(|op| *op != Op::Unknown && op.name() == name)
            .unwrap_or(Op::Unknown)
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// An SQS error answer: HTTP status, the `__type` code, the code in `x-amzn-query-error` (which
/// is what aws-sdk-sqs reports as `code()` when present), whose fault, and the message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    pub status: u16,
    pub code: String,
    pub query_code: String,
    pub sender_fault: bool,
    pub message: String,
}

impl ApiError {
    /// A 400, the sender's fault.
    pub fn sender(code: &str, query_code: &str, message: &str) -> ApiError {
        ApiError {
            status: 400,
            code: code.into(),
            query_code: query_code.into(),
            sender_fault: true,
            message: message.into(),
        }
    }

    /// A 5xx, SQS's fault.
    pub fn server(status: u16, code: &str, message: &str) -> ApiError {
        ApiError {
            status,
            code: code.into(),
            query_code: code.into(),
            sender_fault: false,
            message: message.into(),
        }
    }

    pub fn queue_does_not_exist() -> ApiError {
        ApiError::sender(
            "QueueDoesNotExist",
            "AWS.SimpleQueueService.NonExistentQueue",
            "The specified queue does not exist.",
        )
    }

    pub fn receipt_handle_is_invalid() -> ApiError {
        ApiError::sender(
            "ReceiptHandleIsInvalid",
            "ReceiptHandleIsInvalid",
            "The input receipt handle is invalid.",
        )
    }

    pub fn invalid_parameter(message: &str) -> ApiError {
        ApiError::sender("InvalidParameterValue", "InvalidParameterValue", message)
    }

    pub fn invalid_attribute_name(name: &str) -> ApiError {
        ApiError::sender(
            "InvalidAttributeName",
            "InvalidAttributeName",
            &format!("Unknown Attribute {name}."),
        )
    }

    pub fn invalid_attribute_value(name: &str) -> ApiError {
        ApiError::sender(
            "InvalidAttributeValue",
            "InvalidAttributeValue",
            &format!("Invalid value for the parameter {name}."),
        )
    }

    pub fn missing_parameter(name: &str) -> ApiError {
        ApiError::sender(
            "MissingParameter",
            "MissingParameter",
            &format!("The request must contain the parameter {name}."),
        )
    }

    fn invalid_action(target: &str) -> ApiError {
        ApiError::sender(
            "InvalidAction",
            "InvalidAction",
            &format!("The action {target} is not valid for this endpoint."),
        )
    }

    fn serialization() -> ApiError {
        ApiError::sender(
            "SerializationException",
            "SerializationException",
            "The request body is not valid JSON.",
        )
    }
}

/// Counters of one operation, updated on every call (reading them never scans anything).
#[derive(Debug, Default)]
pub struct OpCounters {
    calls: AtomicU64,
    entries: AtomicU64,
    failed_entries: AtomicU64,
    errors: AtomicU64,
    faults: AtomicU64,
    retries: AtomicU64,
    abandoned: AtomicU64,
}

/// A snapshot of one operation's counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct OpStats {
    /// Calls received (each SDK attempt is a call).
    pub calls: u64,
    /// Entries in batch calls; 1 per single-message call; messages returned by receives (for
    /// calls that reached the operation: not those a call fault answered).
    pub entries: u64,
    /// Batch entries answered in `Failed` (injected or not).
    pub failed_entries: u64,
    /// Calls answered with an error (injected or not).
    pub errors: u64,
    /// Calls a call fault fired on.
    pub faults: u64,
    /// Calls the SDK marked as a retry (`amz-sdk-request: attempt=N`, N > 1).
    pub retries: u64,
    /// Calls whose client hung up before the answer (an abandoned long poll, a client timeout):
    /// their wait was cancelled, nothing more was done for them.
    pub abandoned: u64,
}

fn add(counter: &AtomicU64, n: u64) {
    counter.fetch_add(n, Ordering::Relaxed);
}

/// Everything the connections share.
pub(super) struct Shared {
    pub engine: Mutex<Engine>,
    pub faults: Mutex<FaultPlan>,
    pub stats: Vec<OpCounters>,
    pub totals: Arc<Totals>,
    /// Bumped after every call and every visibility expiry: tests wait on it.
    pub events: watch::Sender<u64>,
    /// Wakes the reaper when a deadline earlier than the one it sleeps until was set.
    pub reaper: Notify,
    /// TCP connections accepted.
    pub connections: AtomicU64,
}

impl Shared {
    pub fn new(host: String, policy: ReceiptPolicy, seed: u64) -> Shared {
        let totals = Arc::new(Totals::default());
        Shared {
            engine: Mutex::new(Engine::new(host, policy, seed, totals.clone())),
            faults: Mutex::new(FaultPlan::new(seed ^ 0x9e37_79b9_7f4a_7c15)),
            stats: Op::ALL.iter().map(|_| OpCounters::default()).collect(),
            totals,
            events: watch::channel(0).0,
            reaper: Notify::new(),
            connections: AtomicU64::new(0),
        }
    }

    pub fn bump(&self) {
        self.events.send_modify(|n| *n += 1);
    }

    pub fn stats(&self, op: Op) -> OpStats {
        let c = &self.stats[op.index()];
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        OpStats {
            calls: get(&c.calls),
            entries: get(&c.entries),
            failed_entries: get(&c.failed_entries),
            errors: get(&c.errors),
            faults: get(&c.faults),
            retries: get(&c.retries),
            abandoned: get(&c.abandoned),
        }
    }

    /// Counts a call whose client hung up before it was answered.
    pub fn abandoned(&self, target: &str) {
        add(&self.stats[Op::from_target(target).index()].abandoned, 1);
        self.bump();
    }

    fn engine(&self) -> std::sync::MutexGuard<'_, Engine> {
        self.engine.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn wake_reaper(&self, wake: bool) {
        if wake {
            self.reaper.notify_one();
        }
    }
}

/// What the connection does with a call.
pub(super) enum Reply {
    Answer {
        status: u16,
        body: Vec<u8>,
        query_error: Option<String>,
    },
    /// Reset the connection without answering.
    Reset,
    /// Close the connection without answering.
    Close,
}

fn ok(body: Value) -> Reply {
    Reply::Answer {
        status: 200,
        body: serde_json::to_vec(&body).unwrap_or_default(),
        query_error: None,
    }
}

fn error(e: &ApiError) -> Reply {
    Reply::Answer {
        status: e.status,
        body: serde_json::to_vec(&json!({
            "__type": format!("com.amazonaws.sqs#{}", e.code),
            "message": e.message,
        }))
        .unwrap_or_default(),
        query_error: Some(format!(
            "{};{}",
            e.query_code,
            if e.sender_fault { "Sender" } else { "Receiver" }
        )),
    }
}

/// Handles one call: `target` is the `x-amz-target` header, `attempt` the SDK's attempt number.
pub(super) async fn handle(shared: &Shared, target: &str, body: &[u8], attempt: u32) -> Reply {
    let op = Op::from_target(target);
    let counters = &shared.stats[op.index()];
    add(&counters.calls, 1);
    if attempt > 1 {
        add(&counters.retries, 1);
    }
    let fault = shared
        .faults
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .take_call(op);
    let mut reset_after = false;
    let mut answer_after = None;
    if let Some(fault) = fault {
        add(&counters.faults, 1);
        shared.bump();
        match fault {
            Fault::Error(e) => {
                add(&counters.errors, 1);
                return error(&e);
            }
            Fault::Reset => return Reply::Reset,
            Fault::ResetAfter => reset_after = true,
            Fault::Hang(d) => {
                tokio::time::sleep(d).await;
                return Reply::Close;
            }
            Fault::Delay(d) => tokio::time::sleep(d).await,
            Fault::DelayAnswer(d) => answer_after = Some(d),
        }
    }
    let result = match serde_json::from_slice::<Value>(body) {
        Ok(input) if input.is_object() => dispatch(shared, op, target, &input).await,
        _ => Err(ApiError::serialization()),
    };
    shared.bump();
    if let Some(d) = answer_after {
        tokio::time::sleep(d).await;
    }
    if reset_after {
        return Reply::Reset;
    }
    match result {
        Ok(v) => ok(v),
        Err(e) => {
            add(&counters.errors, 1);
            error(&e)
        }
    }
}

async fn dispatch(shared: &Shared, op: Op, target: &str, input: &Value) -> Result<Value, ApiError> {
    let now = Instant::now();
    let counters = &shared.stats[op.index()];
    match op {
        Op::CreateQueue => {
            let name = string(input, "QueueName")?;
            let attributes = string_map(&input["Attributes"]);
            let url = shared.engine().create_queue(name, &attributes)?;
            Ok(json!({ "QueueUrl": url }))
        }
        Op::DeleteQueue => {
            shared.engine().delete_queue(string(input, "QueueUrl")?)?;
            Ok(json!({}))
        }
        Op::GetQueueUrl => {
            let url = shared.engine().get_queue_url(string(input, "QueueName")?)?;
            Ok(json!({ "QueueUrl": url }))
        }
        Op::GetQueueAttributes => {
            let names = strings(&input["AttributeNames"]);
            let attributes =
                shared
                    .engine()
                    .get_attributes(string(input, "QueueUrl")?, &names, now)?;
            if attributes.is_empty() {
                Ok(json!({}))
            } else {
                Ok(json!({ "Attributes": attributes }))
            }
        }
        Op::SetQueueAttributes => {
            let attributes = string_map(&input["Attributes"]);
            shared
                .engine()
                .set_attributes(string(input, "QueueUrl")?, &attributes)?;
            Ok(json!({}))
        }
        Op::ListQueues => {
            let prefix = input["QueueNamePrefix"].as_str().unwrap_or("");
            let urls = shared.engine().list_queues(prefix);
            if urls.is_empty() {
                Ok(json!({}))
            } else {
                Ok(json!({ "QueueUrls": urls }))
            }
        }
        Op::PurgeQueue => {
            shared.engine().purge(string(input, "QueueUrl")?)?;
            Ok(json!({}))
        }
        Op::SendMessage => {
            add(&counters.entries, 1);
            let url = string(input, "QueueUrl")?;
            let message = send_input(input)?;
            if let Some(f) = entry_fault(shared, op, None, Some(&message.body)) {
                return Err(f);
            }
            let (out, wake) = shared.engine().send(url, message, now)?;
            shared.wake_reaper(wake);
            Ok(send_result(None, &out))
        }
        Op::SendMessageBatch => {
            let url = string(input, "QueueUrl")?;
            let entries = batch_entries(input, "Send")?;
            add(&counters.entries, entries.len() as u64);
            let total: usize = entries
                .iter()
                .map(|e| e["MessageBody"].as_str().map_or(0, str::len))
                .sum();
            if total > super::engine::MAX_MESSAGE_BYTES {
                return Err(ApiError::sender(
                    "BatchRequestTooLong",
                    "AWS.SimpleQueueService.BatchRequestTooLong",
                    &format!("Batch requests cannot be longer than 262144 bytes. You have sent {total} bytes."),
                ));
            }
            shared.engine().queue_exists(url)?;
            let mut successful = Vec::new();
            let mut failed = Vec::new();
            for entry in entries {
                let id = entry["Id"].as_str().unwrap_or("");
                let result = send_input(entry).and_then(|message| {
                    if let Some(f) = entry_fault(shared, op, None, Some(&message.body)) {
                        return Err(f);
                    }
                    let (out, wake) = shared.engine().send(url, message, now)?;
                    shared.wake_reaper(wake);
                    Ok(out)
                });
                match result {
                    Ok(out) => successful.push(send_result(Some(id), &out)),
                    Err(e) => failed.push(failed_entry(id, &e)),
                }
            }
            add(&counters.failed_entries, failed.len() as u64);
            Ok(json!({ "Successful": successful, "Failed": failed }))
        }
        Op::ReceiveMessage => receive(shared, input).await,
        Op::DeleteMessage | Op::ChangeMessageVisibility => {
            add(&counters.entries, 1);
            let url = string(input, "QueueUrl")?;
            let handle = string(input, "ReceiptHandle")?;
            let timeout = if op == Op::ChangeMessageVisibility {
                Some(
                    visibility(input)?
                        .ok_or_else(|| ApiError::missing_parameter("VisibilityTimeout"))?,
                )
            } else {
                None
            };
            settle(shared, op, url, handle, timeout, now)?;
            Ok(json!({}))
        }
        Op::DeleteMessageBatch | Op::ChangeMessageVisibilityBatch => {
            let url = string(input, "QueueUrl")?;
            let entries = batch_entries(
                input,
                if op == Op::DeleteMessageBatch {
                    "Delete"
                } else {
                    "ChangeMessageVisibility"
                },
            )?;
            add(&counters.entries, entries.len() as u64);
            shared.engine().queue_exists(url)?;
            let mut successful = Vec::new();
            let mut failed = Vec::new();
            for entry in entries {
                let id = entry["Id"].as_str().unwrap_or("");
                let result = string(entry, "ReceiptHandle").and_then(|handle| {
                    let timeout = if op == Op::ChangeMessageVisibilityBatch {
                        Some(
                            visibility(entry)?
                                .ok_or_else(|| ApiError::missing_parameter("VisibilityTimeout"))?,
                        )
                    } else {
                        None
                    };
                    settle(shared, op, url, handle, timeout, now)
                });
                match result {
                    Ok(()) => successful.push(json!({ "Id": id })),
                    Err(e) => failed.push(failed_entry(id, &e)),
                }
            }
            add(&counters.failed_entries, failed.len() as u64);
            Ok(json!({ "Successful": successful, "Failed": failed }))
        }
        Op::Unknown => Err(ApiError::invalid_action(
            target.strip_prefix("AmazonSQS.").unwrap_or(target),
        )),
    }
}

/// One delete or visibility change (a single call or a batch entry), entry faults first.
fn settle(
    shared: &Shared,
    op: Op,
    url: &str,
    handle: &str,
    timeout: Option<u32>,
    now: Instant,
) -> Result<(), ApiError> {
    let named = shared.engine().resolve(url, handle);
    let (id, body) = match &named {
        Some((id, body)) => (Some(id.as_str()), Some(body.as_str())),
        None => (None, None),
    };
    if let Some(e) = entry_fault(shared, op, id, body) {
        shared
            .engine()
            .record_failure(url, handle, op, timeout, &e.code, now);
        return Err(e);
    }
    let mut engine = shared.engine();
    match timeout {
        None => engine.delete(url, handle, op, now),
        Some(t) => {
            let wake = engine.change_visibility(url, handle, t, op, now)?;
            drop(engine);
            shared.wake_reaper(wake);
            Ok(())
        }
    }
}

/// The entry fault for this entry, as the error it answers with.
fn entry_fault(shared: &Shared, op: Op, id: Option<&str>, body: Option<&str>) -> Option<ApiError> {
    let fault = shared
        .faults
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .take_entry(op, id, body)?;
    add(&shared.stats[op.index()].faults, 1);
    Some(ApiError {
        status: if fault.sender_fault { 400 } else { 500 },
        code: fault.code.clone(),
        query_code: fault.code,
        sender_fault: fault.sender_fault,
        message: fault.message,
    })
}

fn failed_entry(id: &str, e: &ApiError) -> Value {
    json!({ "Id": id, "SenderFault": e.sender_fault, "Code": e.code, "Message": e.message })
}

async fn receive(shared: &Shared, input: &Value) -> Result<Value, ApiError> {
    let url = string(input, "QueueUrl")?;
    let max = input["MaxNumberOfMessages"].as_i64().unwrap_or(1);
    if !(1..=MAX_BATCH as i64).contains(&max) {
        return Err(ApiError::invalid_parameter(&format!(
            "Value {max} for parameter MaxNumberOfMessages is invalid. Reason: Must be between 1 and 10, if provided."
        )));
    }
    let timeout = visibility(input)?;
    let wait = match input.get("WaitTimeSeconds").and_then(Value::as_i64) {
        Some(w) if !(0..=MAX_WAIT_SECONDS as i64).contains(&w) => {
            return Err(ApiError::invalid_parameter(&format!(
                "Value {w} for parameter WaitTimeSeconds is invalid. Reason: Must be >= 0 and <= 20, if provided."
            )))
        }
        Some(w) => w as u32,
        None => shared.engine().wait_seconds(url)?,
    };
    let mut system = strings(&input["AttributeNames"]);
    system.extend(strings(&input["MessageSystemAttributeNames"]));
    let filter = ReceiveFilter {
        system,
        message: strings(&input["MessageAttributeNames"]),
    };
    let deadline = tokio::time::Instant::now() + Duration::from_secs(wait.into());
    loop {
        let (messages, waiter) = {
            let mut engine = shared.engine();
            let (messages, wake) =
                engine.receive(url, max as usize, timeout, &filter, Instant::now())?;
            shared.wake_reaper(wake);
            let waiter = if messages.is_empty() && tokio::time::Instant::now() < deadline {
                Some(engine.subscribe(url)?)
            } else {
                None
            };
            (messages, waiter)
        };
        let Some(mut waiter) = waiter else {
            add(
                &shared.stats[Op::ReceiveMessage.index()].entries,
                messages.len() as u64,
            );
            if messages.is_empty() {
                return Ok(json!({}));
            }
            let messages: Vec<Value> = messages.iter().map(message_json).collect();
            return Ok(json!({ "Messages": messages }));
        };
        // Woken by a send, an expiry or an unlocked group; or the wait ends (a last pass, then).
        let _ = tokio::time::timeout_at(deadline, waiter.changed()).await;
    }
}

fn message_json(m: &OutMessage) -> Value {
    let mut v = Map::new();
    v.insert("MessageId".into(), m.message_id.clone().into());
    v.insert("ReceiptHandle".into(), m.receipt_handle.clone().into());
    v.insert("MD5OfBody".into(), m.md5_of_body.clone().into());
    v.insert("Body".into(), m.body.clone().into());
    if !m.attributes.is_empty() {
        let attributes: Map<String, Value> = m
            .attributes
            .iter()
            .map(|(k, v)| (k.to_string(), Value::from(v.clone())))
            .collect();
        v.insert("Attributes".into(), attributes.into());
    }
    if let Some(md5) = &m.md5_of_message_attributes {
        v.insert("MD5OfMessageAttributes".into(), md5.clone().into());
        let attributes: Map<String, Value> = m
            .message_attributes
            .iter()
            .map(|(k, a)| (k.clone(), attribute_json(a)))
            .collect();
        v.insert("MessageAttributes".into(), attributes.into());
    }
    v.into()
}

fn attribute_json(a: &AttributeValue) -> Value {
    let mut v = Map::new();
    v.insert("DataType".into(), a.data_type.clone().into());
    if let Some(s) = &a.string_value {
        v.insert("StringValue".into(), s.clone().into());
    }
    if let Some(b) = &a.binary_value {
        v.insert("BinaryValue".into(), base64_encode(b).into());
    }
    v.into()
}

fn send_result(id: Option<&str>, out: &super::engine::SendOutput) -> Value {
    let mut v = Map::new();
    if let Some(id) = id {
        v.insert("Id".into(), id.into());
    }
    v.insert("MessageId".into(), out.message_id.clone().into());
    v.insert("MD5OfMessageBody".into(), out.md5_of_body.clone().into());
    if let Some(md5) = &out.md5_of_attributes {
        v.insert("MD5OfMessageAttributes".into(), md5.clone().into());
    }
    if let Some(md5) = &out.md5_of_system_attributes {
        v.insert("MD5OfMessageSystemAttributes".into(), md5.clone().into());
    }
    if let Some(n) = &out.sequence_number {
        v.insert("SequenceNumber".into(), n.clone().into());
    }
    v.into()
}

fn send_input(v: &Value) -> Result<SendInput, ApiError> {
    let body = v["MessageBody"]
        .as_str()
        .ok_or_else(|| ApiError::missing_parameter("MessageBody"))?;
    let delay_seconds = match v.get("DelaySeconds").and_then(Value::as_i64) {
        Some(d) if d < 0 => {
            return Err(ApiError::invalid_parameter(&format!(
                "Value {d} for parameter DelaySeconds is invalid."
            )))
        }
        d => d.map(|d| d.min(u32::MAX as i64) as u32),
    };
    let attributes = message_attributes(&v["MessageAttributes"])?;
    let trace_header = match v["MessageSystemAttributes"].as_object() {
        None => None,
        Some(system) => {
            if let Some(name) = system.keys().find(|k| *k != "AWSTraceHeader") {
                return Err(ApiError::invalid_parameter(&format!(
                    "Message system attribute name '{name}' is invalid."
                )));
            }
            system
                .get("AWSTraceHeader")
                .and_then(|a| a["StringValue"].as_str())
                .map(str::to_string)
        }
    };
    Ok(SendInput {
        body: body.to_string(),
        delay_seconds,
        attributes,
        trace_header,
        group_id: v["MessageGroupId"].as_str().map(str::to_string),
        dedup_id: v["MessageDeduplicationId"].as_str().map(str::to_string),
    })
}

fn message_attributes(v: &Value) -> Result<BTreeMap<String, AttributeValue>, ApiError> {
    let mut out = BTreeMap::new();
    let Some(map) = v.as_object() else {
        return Ok(out);
    };
    if map.len() > MAX_ATTRIBUTES {
        return Err(ApiError::invalid_parameter(&format!(
            "Number of message attributes [{}] exceeds the allowed maximum [{MAX_ATTRIBUTES}].",
            map.len()
        )));
    }
    for (name, a) in map {
        let data_type = a["DataType"].as_str().unwrap_or("");
        let base = data_type.split('.').next().unwrap_or("");
        let value = match base {
            "String" | "Number" => a["StringValue"].as_str().map(|s| AttributeValue {
                data_type: data_type.to_string(),
                string_value: Some(s.to_string()),
                binary_value: None,
            }),
            "Binary" => a["BinaryValue"]
                .as_str()
                .and_then(base64_decode)
                .map(|b| AttributeValue {
                    data_type: data_type.to_string(),
                    string_value: None,
                    binary_value: Some(b),
                }),
            _ => {
                return Err(ApiError::invalid_parameter(&format!(
                    "The message attribute '{name}' has an invalid message attribute type, the set of supported type prefixes is Binary, Number, and String."
                )))
            }
        };
        let value = value.ok_or_else(|| {
            ApiError::invalid_parameter(&format!(
                "The message attribute '{name}' must contain a non-empty value of message attribute type '{data_type}'."
            ))
        })?;
        out.insert(name.clone(), value);
    }
    Ok(out)
}

/// A batch call's entries, checked as SQS checks them (count, then ids).
fn batch_entries<'a>(input: &'a Value, kind: &str) -> Result<&'a [Value], ApiError> {
    let entries = input["Entries"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or(&[]);
    if entries.is_empty() {
        return Err(ApiError::sender(
            "EmptyBatchRequest",
            "AWS.SimpleQueueService.EmptyBatchRequest",
            &format!("There should be at least one {kind}MessageBatchRequestEntry in the request."),
        ));
    }
    if entries.len() > MAX_BATCH {
        return Err(ApiError::sender(
            "TooManyEntriesInBatchRequest",
            "AWS.SimpleQueueService.TooManyEntriesInBatchRequest",
            &format!(
                "Maximum number of entries per request are 10. You have sent {}.",
                entries.len()
            ),
        ));
    }
    let mut seen = HashSet::new();
    for entry in entries {
        let id = entry["Id"].as_str().unwrap_or("");
        if id.is_empty()
            || id.len() > 80
            || !id
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        {
            return Err(ApiError::sender(
                "InvalidBatchEntryId",
                "AWS.SimpleQueueService.InvalidBatchEntryId",
                "A batch entry id can only contain alphanumeric characters, hyphens and underscores. It can be at most 80 letters long.",
            ));
        }
        if !seen.insert(id) {
            return Err(ApiError::sender(
                "BatchEntryIdsNotDistinct",
                "AWS.SimpleQueueService.BatchEntryIdsNotDistinct",
                &format!("Id {id} repeated."),
            ));
        }
    }
    Ok(entries)
}

/// The optional `VisibilityTimeout` parameter, checked against SQS's limit.
fn visibility(v: &Value) -> Result<Option<u32>, ApiError> {
    match v.get("VisibilityTimeout").and_then(Value::as_i64) {
        None => Ok(None),
        Some(t) if (0..=MAX_VISIBILITY_TIMEOUT as i64).contains(&t) => Ok(Some(t as u32)),
        Some(t) => Err(ApiError::invalid_parameter(&format!(
            "Value {t} for parameter VisibilityTimeout is invalid. Reason: Must be between 0 and 43200."
        ))),
    }
}

fn string<'a>(v: &'a Value, name: &str) -> Result<&'a str, ApiError> {
    v[name]
        .as_str()
        .ok_or_else(|| ApiError::missing_parameter(name))
}

fn strings(v: &Value) -> Vec<String> {
    v.as_array()
        .map(|a| {
            a.iter()
                .filter_map(|s| s.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

fn string_map(v: &Value) -> BTreeMap<String, String> {
    v.as_object()
        .map(|m| {
            m.iter()
                .filter_map(|(k, v)| v.as_str().map(|s| (k.clone(), s.to_string())))
                .collect()
        })
        .unwrap_or_default()
}
