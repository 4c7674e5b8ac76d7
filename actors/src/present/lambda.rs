//! The Lambda SQS event format (SPEC 5.1): a batch of SQS messages as the `{"Records":[...]}`
//! event AWS Lambda gives a function for an SQS event source mapping, and the function's answer
//! read as Lambda reads it with `ReportBatchItemFailures`.
//!
//! Pure functions, no I/O: [`event`] writes the request body, [`read_answer`] turns the answer's
//! status, headers and body into one [`BatchAnswer`]. The FIFO rule (after a failed record, every
//! later record of its group fails too) is the lease ledger's, which applies it to every POST. It
//! must not know HTTP clients or SQS calls.

use std::collections::HashSet;
use std::io::Write;
use std::sync::Arc;
use std::time::SystemTime;

use base64::Engine as _;
use serde_json::Value;

pub use crate::messages::BatchFailure;
use crate::messages::{AttributeValue, Delivery};

/// Lambda's limit on an invocation's payload, and so on an event and on an answer read.
pub const MAX_PAYLOAD: usize = 6 * 1024 * 1024;
/// What an event adds around its records: `{"Records":[` and `]}`.
pub const EVENT_OVERHEAD: usize = 14;
/// Room kept in [`record_bytes`] for a newer receipt handle (a message handed out again while held
/// takes the newer one; they differ by a few bytes).
const RECEIPT_SLACK: usize = 256;

/// The queue the records come from, as the event names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventSource {
    /// The queue's `QueueArn` (`eventSourceARN`).
    pub arn: String,
    /// The queue's region, as in its ARN (`awsRegion`).
    pub region: String,
}

impl EventSource {
    /// What its ARN and region add to each record (as JSON strings, beyond the empty ones
    /// [`record_bytes`] counts).
    pub fn bytes(&self) -> usize {
        let mut counter = Counter(0);
        string(&mut counter, &self.arn);
        string(&mut counter, &self.region);
        counter.0 - 4
    }

    /// From a queue ARN: `arn:aws:sqs:<region>:<account>:<name>`.
    pub fn from_arn(arn: &str) -> EventSource {
        EventSource {
            arn: arn.to_string(),
            region: arn.split(':').nth(3).unwrap_or_default().to_string(),
        }
    }
}

/// One record of a batch: the message and the receipt handle it was received with.
#[derive(Debug, Clone, Copy)]
pub struct Record<'a> {
    pub delivery: &'a Delivery,
    pub receipt: &'a str,
}

/// Writes the `{"Records":[...]}` event for `records`, in their order.
pub fn event(records: &[Record<'_>], source: &EventSource) -> Vec<u8> {
    let mut out = Vec::with_capacity(records.iter().map(|r| r.delivery.body.len() + 640).sum());
    put(&mut out, b"{\"Records\":[");
    for (i, record) in records.iter().enumerate() {
        if i > 0 {
            put(&mut out, b",");
        }
        write_record(&mut out, *record, source);
    }
    put(&mut out, b"]}");
    out
}

/// The most bytes one message adds to an event as a record (its comma included), but for the
/// queue's ARN and region ([`EventSource::bytes`]): exact for the message and this receipt
/// handle, with room for a newer one. A batch whose records add up to at most
/// `MAX_PAYLOAD - EVENT_OVERHEAD` is an event within Lambda's limit.
pub fn record_bytes(delivery: &Delivery, receipt: &str) -> usize {
    let mut counter = Counter(0);
    let source = EventSource {
        arn: String::new(),
        region: String::new(),
    };
    write_record(&mut counter, Record { delivery, receipt }, &source);
    counter.0 + 1 + RECEIPT_SLACK
}

/// Counts what is written to it.
struct Counter(usize);

impl Write for Counter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0 += buf.len();
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Writes to a `Vec` or a [`Counter`], neither of which can fail.
fn put(out: &mut impl Write, bytes: &[u8]) {
    out.write_all(bytes)
        .expect("an in-memory writer cannot fail");
}

/// A JSON string (escaped as JSON requires).
fn string(out: &mut impl Write, value: &str) {
    serde_json::to_writer(out, value).expect("an in-memory writer cannot fail");
}

/// `"key":"value"` for a string value.
fn field(out: &mut impl Write, key: &str, value: &str) {
    put(out, b"\"");
    put(out, key.as_bytes());
    put(out, b"\":");
    string(out, value);
}

fn write_record(out: &mut impl Write, record: Record<'_>, source: &EventSource) {
    let d = record.delivery;
    put(out, b"{");
    field(out, "messageId", &d.message_id);
    put(out, b",");
    field(out, "receiptHandle", record.receipt);
    put(out, b",");
    // SQS bodies are text; bytes that are not UTF-8 cannot be in one (replaced, never dropped).
    field(out, "body", &String::from_utf8_lossy(&d.body));
    put(out, b",\"attributes\":{");
    let system = [
        ("ApproximateReceiveCount", d.receive_count.as_deref()),
        ("SentTimestamp", d.sent_time.as_deref()),
        ("SenderId", d.sender_id.as_deref()),
        (
            "ApproximateFirstReceiveTimestamp",
            d.first_receive_time.as_deref(),
        ),
        ("SequenceNumber", d.sequence_number.as_deref()),
        ("MessageGroupId", d.group_id.as_deref()),
        ("MessageDeduplicationId", d.dedup_id.as_deref()),
        ("AWSTraceHeader", d.trace_header.as_deref()),
    ];
    let mut first = true;
    for (name, value) in system {
        let Some(value) = value else { continue };
        if !first {
            put(out, b",");
        }
        first = false;
        field(out, name, value);
    }
    put(out, b"},\"messageAttributes\":{");
    for (i, a) in d.attributes.iter().enumerate() {
        if i > 0 {
            put(out, b",");
        }
        string(out, &a.name);
        put(out, b":{");
        match &a.value {
            AttributeValue::Text(text) => field(out, "stringValue", text),
            AttributeValue::Binary(bytes) => field(
                out,
                "binaryValue",
                &base64::engine::general_purpose::STANDARD.encode(bytes),
            ),
        }
        put(out, b",\"stringListValues\":[],\"binaryListValues\":[],");
        field(out, "dataType", &a.data_type);
        put(out, b"}");
    }
    put(out, b"},");
    field(
        out,
        "md5OfBody",
        d.md5_of_body.as_deref().unwrap_or_default(),
    );
    if let Some(md5) = &d.md5_of_attributes {
        put(out, b",");
        field(out, "md5OfMessageAttributes", md5);
    }
    put(out, b",");
    field(out, "eventSource", "aws:sqs");
    put(out, b",");
    field(out, "eventSourceARN", &source.arn);
    put(out, b",");
    field(out, "awsRegion", &source.region);
    put(out, b"}");
}

/// What the function's answer means for the batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BatchAnswer {
    /// Every record succeeded: delete them all.
    Ok,
    /// These records failed (each a `messageId` of the batch, once); the others succeeded.
    Partial(Vec<Arc<str>>),
    /// The whole batch failed.
    Failed(BatchFailure),
    /// `429`/`503` with a usable `Retry-After`: every record comes back not before then.
    Retry(SystemTime),
}

/// The parts of an answer [`read_answer`] reads.
#[derive(Debug, Clone, Copy)]
pub struct Answer<'a> {
    pub status: u16,
    /// The status is a success (`CARRIER_WEBHOOK_SUCCESS_CODES`).
    pub success: bool,
    /// The answer carries `X-Amz-Function-Error`.
    pub function_error: bool,
    /// `429`/`503` with a usable `Retry-After`: until then.
    pub retry_until: Option<SystemTime>,
    /// The body as read (at most [`MAX_PAYLOAD`] + 1 bytes: more means too large).
    pub body: &'a [u8],
    /// The answer's `Content-Length`, if it had one. A body shorter than it was cut off; an
    /// empty one without it (chunked, or ended by closing) cannot be told from one cut off
    /// before its first byte, and deleting a batch on a dead worker's behalf would lose it.
    pub declared_length: Option<usize>,
}

/// Reads an answer as Lambda does with `ReportBatchItemFailures`. `batch` holds the records'
/// `messageId`s.
pub fn read_answer(answer: Answer<'_>, batch: &[Arc<str>]) -> BatchAnswer {
    if let (429 | 503, Some(until)) = (answer.status, answer.retry_until) {
        return BatchAnswer::Retry(until);
    }
    let failed = |why| BatchAnswer::Failed(why);
    if !answer.success {
        return failed(BatchFailure::Status(answer.status));
    }
    if answer.function_error {
        return failed(BatchFailure::FunctionErrorHeader);
    }
    if answer.body.len() > MAX_PAYLOAD {
        return failed(BatchFailure::TooLarge);
    }
    let empty = answer.body.trim_ascii().is_empty();
    match answer.declared_length {
        Some(length) if length != answer.body.len() => return failed(BatchFailure::Truncated),
        None if empty => return failed(BatchFailure::Truncated),
        _ if empty => return BatchAnswer::Ok,
        _ => {}
    }
    let Ok(value) = serde_json::from_slice::<Value>(answer.body) else {
        return failed(BatchFailure::NotJson);
    };
    let object = match value {
        Value::Null => return BatchAnswer::Ok,
        Value::Object(object) => object,
        _ => return failed(BatchFailure::NotAnObject),
    };
    if object.contains_key("errorType") || object.contains_key("errorMessage") {
        return failed(BatchFailure::FunctionError);
    }
    let items = match object.get("batchItemFailures") {
        None | Some(Value::Null) => return BatchAnswer::Ok,
        Some(Value::Array(items)) => items,
        Some(_) => return failed(BatchFailure::BadItemIdentifier),
    };
    let members: HashSet<&str> = batch.iter().map(|m| &**m).collect();
    let mut named: HashSet<&str> = HashSet::with_capacity(items.len());
    let mut failures: Vec<Arc<str>> = Vec::with_capacity(items.len());
    for item in items {
        let id = item
            .get("itemIdentifier")
            .and_then(Value::as_str)
            .filter(|id| !id.is_empty());
        let Some(id) = id.and_then(|id| members.get(id)) else {
            return failed(BatchFailure::BadItemIdentifier);
        };
        if named.insert(id) {
            failures.push(Arc::from(*id));
        }
    }
    if failures.is_empty() {
        BatchAnswer::Ok
    } else {
        BatchAnswer::Partial(failures)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::messages::Attribute;

    fn ids(names: &[&str]) -> Vec<Arc<str>> {
        names.iter().map(|n| Arc::from(*n)).collect()
    }

    /// A 200 answer with `body`, for `batch`.
    fn ok_with(body: &[u8], batch: &[Arc<str>]) -> BatchAnswer {
        ok_declaring(body, Some(body.len()), batch)
    }

    /// A 200 answer with `body` and this `Content-Length`, for `batch`.
    fn ok_declaring(
        body: &[u8],
        declared_length: Option<usize>,
        batch: &[Arc<str>],
    ) -> BatchAnswer {
        read_answer(
            Answer {
                status: 200,
                success: true,
                function_error: false,
                retry_until: None,
                body,
                declared_length,
            },
            batch,
        )
    }

    fn ok(body: &str) -> BatchAnswer {
        ok_with(body.as_bytes(), &ids(&["m1", "m2", "m3"]))
    }

    #[test]
    fn every_way_lambda_reads_an_answer() {
        use BatchFailure::*;
        let partial = |names: &[&str]| BatchAnswer::Partial(ids(names));
        let table: &[(&str, BatchAnswer)] = &[
            ("", BatchAnswer::Ok),
            ("  \n", BatchAnswer::Ok),
            ("null", BatchAnswer::Ok),
            ("{}", BatchAnswer::Ok),
            (r#"{"batchItemFailures":null}"#, BatchAnswer::Ok),
            (r#"{"batchItemFailures":[]}"#, BatchAnswer::Ok),
            (r#"{"statusCode":200}"#, BatchAnswer::Ok),
            (
                r#"{"batchItemFailures":[{"itemIdentifier":"m2"}]}"#,
                partial(&["m2"]),
            ),
            (
                r#"{"batchItemFailures":[{"itemIdentifier":"m3"},{"itemIdentifier":"m1"},{"itemIdentifier":"m3"}]}"#,
                partial(&["m3", "m1"]),
            ),
            (
                "Task timed out after 3.00 seconds",
                BatchAnswer::Failed(NotJson),
            ),
            ("{\"batchItemFailures\":[", BatchAnswer::Failed(NotJson)),
            ("[]", BatchAnswer::Failed(NotAnObject)),
            ("\"ok\"", BatchAnswer::Failed(NotAnObject)),
            ("42", BatchAnswer::Failed(NotAnObject)),
            (
                r#"{"errorType":"Runtime.Exit","errorMessage":"boom"}"#,
                BatchAnswer::Failed(FunctionError),
            ),
            (
                r#"{"errorMessage":"boom"}"#,
                BatchAnswer::Failed(FunctionError),
            ),
            (
                r#"{"errorType":"E","batchItemFailures":[{"itemIdentifier":"m1"}]}"#,
                BatchAnswer::Failed(FunctionError),
            ),
            (
                r#"{"batchItemFailures":[{"itemIdentifier":""}]}"#,
                BatchAnswer::Failed(BadItemIdentifier),
            ),
            (
                r#"{"batchItemFailures":[{"itemIdentifier":null}]}"#,
                BatchAnswer::Failed(BadItemIdentifier),
            ),
            (
                r#"{"batchItemFailures":[{}]}"#,
                BatchAnswer::Failed(BadItemIdentifier),
            ),
            (
                r#"{"batchItemFailures":[{"itemIdentifier":"m9"}]}"#,
                BatchAnswer::Failed(BadItemIdentifier),
            ),
            (
                r#"{"batchItemFailures":[{"itemIdentifier":7}]}"#,
                BatchAnswer::Failed(BadItemIdentifier),
            ),
            (
                r#"{"batchItemFailures":["m1"]}"#,
                BatchAnswer::Failed(BadItemIdentifier),
            ),
            (
                r#"{"batchItemFailures":{"itemIdentifier":"m1"}}"#,
                BatchAnswer::Failed(BadItemIdentifier),
            ),
        ];
        for (body, want) in table {
            assert_eq!(&ok(body), want, "{body:?}");
        }
    }

    #[test]
    fn status_headers_and_size_decide_before_the_body() {
        let batch = ids(&["m1"]);
        let answer = |status, success, function_error, retry_until, body: &[u8]| {
            read_answer(
                Answer {
                    status,
                    success,
                    function_error,
                    retry_until,
                    body,
                    declared_length: Some(body.len()),
                },
                &batch,
            )
        };
        let later = SystemTime::now() + std::time::Duration::from_secs(30);
        assert_eq!(
            answer(429, false, false, Some(later), b""),
            BatchAnswer::Retry(later)
        );
        assert_eq!(
            answer(503, false, false, Some(later), b""),
            BatchAnswer::Retry(later)
        );
        assert_eq!(
            answer(429, false, false, None, b""),
            BatchAnswer::Failed(BatchFailure::Status(429))
        );
        assert_eq!(
            answer(500, false, false, None, b"{}"),
            BatchAnswer::Failed(BatchFailure::Status(500))
        );
        assert_eq!(
            answer(200, true, true, None, b"{}"),
            BatchAnswer::Failed(BatchFailure::FunctionErrorHeader)
        );
        let huge = vec![b' '; MAX_PAYLOAD + 1];
        assert_eq!(
            answer(200, true, false, None, &huge),
            BatchAnswer::Failed(BatchFailure::TooLarge)
        );
    }

    #[test]
    fn an_answer_shorter_than_it_said_or_empty_without_saying_fails_the_batch() {
        let batch = ids(&["m1"]);
        let read = |body: &[u8], declared_length| ok_declaring(body, declared_length, &batch);
        let truncated = BatchAnswer::Failed(BatchFailure::Truncated);
        assert_eq!(read(b"", Some(100)), truncated);
        assert_eq!(read(b"   ", Some(100)), truncated);
        assert_eq!(
            read(b"", None),
            truncated,
            "chunked or close-delimited, and empty"
        );
        assert_eq!(read(b"  ", None), truncated);
        assert_eq!(read(b"", Some(0)), BatchAnswer::Ok);
        assert_eq!(
            read(b"{}", None),
            BatchAnswer::Ok,
            "a whole JSON value is an answer"
        );
        assert_eq!(read(b"{}", Some(2)), BatchAnswer::Ok);
    }

    #[test]
    fn record_bytes_bound_the_event_tightly() {
        let source = EventSource::from_arn("arn:aws:sqs:eu-central-1:123456789012:orders");
        let quotes = Delivery {
            body: bytes::Bytes::from("\"\\\u{1}".repeat(100)),
            ..delivery()
        };
        let deliveries = [delivery(), quotes, Delivery::default()];
        let receipt = "AQEB".repeat(80);
        let records: Vec<Record<'_>> = deliveries
            .iter()
            .map(|d| Record {
                delivery: d,
                receipt: &receipt,
            })
            .collect();
        let bound: usize = deliveries
            .iter()
            .map(|d| record_bytes(d, &receipt) + source.bytes())
            .sum::<usize>()
            + EVENT_OVERHEAD;
        let actual = event(&records, &source).len();
        assert!(actual <= bound, "{actual} > {bound}");
        assert!(
            bound - actual <= 3 * (RECEIPT_SLACK + 1),
            "tight: {actual} of {bound}"
        );
    }

    fn delivery() -> Delivery {
        Delivery {
            message_id: "059f36b4-87a3-44ab-83d2-661975830a7d".into(),
            body: bytes::Bytes::from_static(b"{\"order\":\"\xc3\xa9\\\"quoted\\\"\"}"),
            receive_count: Some("1".into()),
            first_receive_time: Some("1545082649185".into()),
            sent_time: Some("1545082649183".into()),
            sender_id: Some("AIDAIENQZJOLO23YVJ4VO".into()),
            md5_of_body: Some("e4e68fb7bd0e697a0ae8f1bb342846b3".into()),
            md5_of_attributes: Some("00484c68b2c7d7c3d1bd3ad1c1f4a0d5".into()),
            attributes: vec![
                Attribute {
                    name: "tenant".into(),
                    data_type: "String".into(),
                    value: AttributeValue::Text("acme".into()),
                },
                Attribute {
                    name: "blob".into(),
                    data_type: "Binary".into(),
                    value: AttributeValue::Binary(bytes::Bytes::from_static(b"\x01\x02")),
                },
            ],
            ..Default::default()
        }
    }

    #[test]
    fn the_event_is_the_one_lambda_gives_a_function() {
        let d = delivery();
        let source = EventSource::from_arn("arn:aws:sqs:us-east-2:123456789012:my-queue");
        assert_eq!(source.region, "us-east-2");
        let body = event(
            &[Record {
                delivery: &d,
                receipt: "AQEBwJnKyrHigUMZj6rYigCgxlaS3SLy0a",
            }],
            &source,
        );
        let v: Value = serde_json::from_slice(&body).expect("valid JSON");
        let r = &v["Records"][0];
        assert_eq!(r["messageId"], "059f36b4-87a3-44ab-83d2-661975830a7d");
        assert_eq!(r["receiptHandle"], "AQEBwJnKyrHigUMZj6rYigCgxlaS3SLy0a");
        assert_eq!(r["body"], "{\"order\":\"é\\\"quoted\\\"\"}");
        assert_eq!(r["attributes"]["ApproximateReceiveCount"], "1");
        assert_eq!(r["attributes"]["SenderId"], "AIDAIENQZJOLO23YVJ4VO");
        assert!(r["attributes"].get("MessageGroupId").is_none());
        assert_eq!(r["messageAttributes"]["tenant"]["stringValue"], "acme");
        assert_eq!(r["messageAttributes"]["tenant"]["dataType"], "String");
        assert_eq!(
            r["messageAttributes"]["tenant"]["stringListValues"],
            serde_json::json!([])
        );
        assert_eq!(r["messageAttributes"]["blob"]["binaryValue"], "AQI=");
        assert_eq!(r["md5OfBody"], "e4e68fb7bd0e697a0ae8f1bb342846b3");
        assert_eq!(
            r["md5OfMessageAttributes"],
            "00484c68b2c7d7c3d1bd3ad1c1f4a0d5"
        );
        assert_eq!(r["eventSource"], "aws:sqs");
        assert_eq!(
            r["eventSourceARN"],
            "arn:aws:sqs:us-east-2:123456789012:my-queue"
        );
        assert_eq!(r["awsRegion"], "us-east-2");
        // Without message attributes SQS gives no md5OfMessageAttributes, and neither do we.
        let bare = Delivery {
            md5_of_attributes: None,
            attributes: Vec::new(),
            ..delivery()
        };
        let body = event(
            &[
                Record {
                    delivery: &bare,
                    receipt: "r",
                },
                Record {
                    delivery: &d,
                    receipt: "s",
                },
            ],
            &source,
        );
        let v: Value = serde_json::from_slice(&body).unwrap();
        assert!(v["Records"][0].get("md5OfMessageAttributes").is_none());
        assert_eq!(v["Records"][1]["receiptHandle"], "s");
    }

    #[test]
    fn the_event_and_answers_round_trip_through_the_rust_lambda_types() {
        use aws_lambda_events::event::sqs::{SqsBatchResponse, SqsEvent};
        let d = delivery();
        let fifo = Delivery {
            message_id: "m-2".into(),
            group_id: Some("g".into()),
            sequence_number: Some("18849496460467696128".into()),
            dedup_id: Some("d-1".into()),
            trace_header: Some("Root=1-5759e988-bd862e3fe1be46a994272793".into()),
            ..delivery()
        };
        let source = EventSource::from_arn("arn:aws:sqs:eu-west-1:123456789012:q.fifo");
        let body = event(
            &[
                Record {
                    delivery: &d,
                    receipt: "r-1",
                },
                Record {
                    delivery: &fifo,
                    receipt: "r-2",
                },
            ],
            &source,
        );
        let parsed: SqsEvent = serde_json::from_slice(&body).expect("an SqsEvent");
        assert_eq!(parsed.records.len(), 2);
        let r = &parsed.records[1];
        assert_eq!(r.message_id.as_deref(), Some("m-2"));
        assert_eq!(r.receipt_handle.as_deref(), Some("r-2"));
        assert_eq!(r.body.as_deref(), Some("{\"order\":\"é\\\"quoted\\\"\"}"));
        assert_eq!(r.attributes["MessageGroupId"], "g");
        assert_eq!(r.attributes["MessageDeduplicationId"], "d-1");
        assert_eq!(r.attributes["SequenceNumber"], "18849496460467696128");
        assert_eq!(
            r.attributes["AWSTraceHeader"],
            "Root=1-5759e988-bd862e3fe1be46a994272793"
        );
        let blob = &r.message_attributes["blob"];
        assert_eq!(
            blob.binary_value.as_ref().map(|b| b.0.clone()),
            Some(vec![1, 2])
        );
        assert_eq!(
            r.message_attributes["tenant"].string_value.as_deref(),
            Some("acme")
        );
        assert_eq!(r.event_source_arn.as_deref(), Some(source.arn.as_str()));
        assert_eq!(r.aws_region.as_deref(), Some("eu-west-1"));
        // What a function built on these types answers is read as it means.
        let batch = ids(&["059f36b4-87a3-44ab-83d2-661975830a7d", "m-2"]);
        let mut response = SqsBatchResponse::default();
        let answer =
            |response: &SqsBatchResponse| ok_with(&serde_json::to_vec(response).unwrap(), &batch);
        assert_eq!(answer(&response), BatchAnswer::Ok);
        response.add_failure("m-2".to_string());
        assert_eq!(answer(&response), BatchAnswer::Partial(ids(&["m-2"])));
    }
}
