//! A scriptable fake SQS endpoint (AWS JSON 1.0 protocol) on 127.0.0.1, for fault injection only:
//! batch calls that fail per entry, or endpoints without batch APIs. The SQS protocol itself is
//! proven against moto; this exists because moto cannot be made to fail on cue.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use actix_web::{web, HttpRequest, HttpResponse};
use serde_json::{json, Value};
use tokio::sync::watch;

/// How the fake answers the settling calls.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Batch calls succeed, except for two scripted receipts: `retry-me` fails once (SQS's fault)
    /// and `bad-handle` always fails (the sender's fault).
    BatchApi,
    /// DeleteMessageBatch and ChangeMessageVisibilityBatch do not exist.
    NoBatchApi,
}

/// One SQS call the fake received: the operation and the receipt handles it named.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Call {
    pub operation: String,
    pub receipts: Vec<String>,
}

struct State {
    mode: Mode,
    /// Receipt handles still to hand out (each doubles as message id and body).
    queue: Mutex<Vec<String>>,
    calls: Mutex<Vec<Call>>,
    failed_once: Mutex<bool>,
    events: watch::Sender<u64>,
}

pub struct FakeSqs {
    pub endpoint: String,
    state: Arc<State>,
}

impl FakeSqs {
    pub fn start(mode: Mode, receipts: &[&str]) -> FakeSqs {
        let (events, _) = watch::channel(0);
        let state = Arc::new(State {
            mode,
            queue: Mutex::new(receipts.iter().map(|r| r.to_string()).collect()),
            calls: Mutex::new(Vec::new()),
            failed_once: Mutex::new(false),
            events,
        });
        let port = super::serve(state.clone(), |app| {
            app.default_service(web::to(handle));
        });
        FakeSqs {
            endpoint: format!("http://127.0.0.1:{port}"),
            state,
        }
    }

    pub fn calls(&self) -> Vec<Call> {
        self.state.calls.lock().unwrap().clone()
    }

    /// Calls of one operation.
    pub fn calls_of(&self, operation: &str) -> Vec<Call> {
        self.calls()
            .into_iter()
            .filter(|c| c.operation == operation)
            .collect()
    }

    pub async fn wait<T>(
        &self,
        what: &str,
        timeout: Duration,
        check: impl Fn(&FakeSqs) -> Option<T>,
    ) -> T {
        let mut rx = self.state.events.subscribe();
        super::wait_on(&mut rx, what, timeout, || check(self)).await
    }
}

fn error(status: u16, code: &str) -> HttpResponse {
    HttpResponse::build(actix_web::http::StatusCode::from_u16(status).unwrap())
        .content_type("application/x-amz-json-1.0")
        .json(json!({"__type": format!("com.amazonaws.sqs#{code}"), "message": code}))
}

fn ok(body: Value) -> HttpResponse {
    HttpResponse::Ok()
        .content_type("application/x-amz-json-1.0")
        .json(body)
}

async fn handle(req: HttpRequest, body: web::Bytes, state: web::Data<State>) -> HttpResponse {
    let target = req
        .headers()
        .get("x-amz-target")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .trim_start_matches("AmazonSQS.")
        .to_string();
    let input: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let entries = input["Entries"].as_array().cloned().unwrap_or_default();
    let receipts = match input["ReceiptHandle"].as_str() {
        Some(r) => vec![r.to_string()],
        None => entries
            .iter()
            .filter_map(|e| e["ReceiptHandle"].as_str().map(str::to_string))
            .collect(),
    };
    if target != "ReceiveMessage" {
        state.calls.lock().unwrap().push(Call {
            operation: target.clone(),
            receipts: receipts.clone(),
        });
        state.events.send_modify(|n| *n += 1);
    }
    let no_batch = state.mode == Mode::NoBatchApi;
    match target.as_str() {
        "GetQueueUrl" => ok(
            json!({"QueueUrl": format!("http://{}/000000000000/fake", req.connection_info().host())}),
        ),
        "ReceiveMessage" => {
            let max = input["MaxNumberOfMessages"].as_u64().unwrap_or(1) as usize;
            let batch: Vec<String> = {
                let mut queue = state.queue.lock().unwrap();
                let n = max.min(queue.len());
                queue.drain(..n).collect()
            };
            if batch.is_empty() {
                // An empty long poll, shortened.
                actix_rt::time::sleep(Duration::from_millis(300)).await;
            }
            let messages: Vec<Value> = batch
                .iter()
                .map(|r| {
                    json!({"MessageId": r, "ReceiptHandle": r, "Body": r, "MD5OfBody": "",
                           "Attributes": {"ApproximateReceiveCount": "1"}})
                })
                .collect();
            ok(json!({"Messages": messages}))
        }
        "DeleteMessageBatch" | "ChangeMessageVisibilityBatch" if no_batch => {
            error(400, "InvalidAction")
        }
        "DeleteMessageBatch" | "ChangeMessageVisibilityBatch" => {
            let mut successful = Vec::new();
            let mut failed = Vec::new();
            for e in &entries {
                let id = e["Id"].clone();
                match e["ReceiptHandle"].as_str().unwrap_or("") {
                    "bad-handle" => failed.push(json!({"Id": id, "SenderFault": true,
                        "Code": "ReceiptHandleIsInvalid", "Message": "bad handle"})),
                    "retry-me"
                        if !std::mem::replace(&mut *state.failed_once.lock().unwrap(), true) =>
                    {
                        failed
                            .push(json!({"Id": id, "SenderFault": false, "Code": "InternalError"}))
                    }
                    _ => successful.push(json!({"Id": id})),
                }
            }
            ok(json!({"Successful": successful, "Failed": failed}))
        }
        "DeleteMessage" | "ChangeMessageVisibility" => ok(json!({})),
        _ => error(400, "InvalidAction"),
    }
}
