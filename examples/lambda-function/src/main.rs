//! A Lambda function for SQS batches, on the real Rust runtime: it takes the `{"Records":[...]}`
//! event Lambda gives a function with an SQS event source (and carrier's
//! `CARRIER_WEBHOOK_FORMAT=lambda` POSTs) and answers as a function with
//! `ReportBatchItemFailures` does: every record whose body contains `fail` is named in
//! `batchItemFailures` (to be retried), the others succeed (to be deleted).
//!
//! It logs one line per record and one per batch on stderr, which `scripts/lambda-demo` reads:
//!
//! ```text
//! record <messageId> ok|fail receive_count=<ApproximateReceiveCount>
//! batch records=<n> ok=<n> fail=<n>
//! ```

use aws_lambda_events::event::sqs::{SqsBatchResponse, SqsEvent};
use lambda_runtime::{run, service_fn, Error, LambdaEvent};

async fn handler(event: LambdaEvent<SqsEvent>) -> Result<SqsBatchResponse, Error> {
    let mut response = SqsBatchResponse::default();
    let (mut ok, mut fail) = (0usize, 0usize);
    for record in &event.payload.records {
        let id = record.message_id.as_deref().unwrap_or("<none>");
        let receive_count = record
            .attributes
            .get("ApproximateReceiveCount")
            .map_or("?", String::as_str);
        if record.body.as_deref().unwrap_or_default().contains("fail") {
            fail += 1;
            response.add_failure(id);
            eprintln!("record {id} fail receive_count={receive_count}");
        } else {
            ok += 1;
            eprintln!("record {id} ok receive_count={receive_count}");
        }
    }
    eprintln!("batch records={} ok={ok} fail={fail}", ok + fail);
    Ok(response)
}

#[tokio::main]
async fn main() -> Result<(), Error> {
    run(service_fn(handler)).await
}
