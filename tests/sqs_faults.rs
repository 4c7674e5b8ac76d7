//! How the real `carrier` binary handles SQS faults moto cannot produce on cue: per-entry failures
//! inside batch calls, and endpoints without batch APIs (a scripted fake SQS on 127.0.0.1).

mod support;

use std::time::Duration;

use support::fake_sqs::{FakeSqs, Mode};
use support::{CarrierProcess, Sink};

const T: Duration = Duration::from_secs(30);

fn env(sqs: &FakeSqs, sink: &Sink) -> Vec<(&'static str, String)> {
    vec![
        ("CARRIER_SQS_ENDPOINT", sqs.endpoint.clone()),
        ("CARRIER_SQS_QUEUE_NAME", "fake".into()),
        ("CARRIER_WEBHOOK_ENDPOINT", sink.url.clone()),
        ("CARRIER_SQS_BATCH_SIZE", "3".into()),
        ("CARRIER_SQS_RECEIVER_WORKERS", "3".into()),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batch_entries_that_fail_are_retried_or_reported_one_by_one() {
    let sqs = FakeSqs::start(Mode::BatchApi, &["ok", "retry-me", "bad-handle"]);
    let sink = Sink::answering(200);
    let carrier = CarrierProcess::start(&env(&sqs, &sink));

    let deleted = |s: &FakeSqs| -> Vec<String> {
        s.calls_of("DeleteMessageBatch")
            .into_iter()
            .flat_map(|c| c.receipts)
            .collect()
    };
    sqs.wait("retry-me deleted twice (failed once, retried)", T, |s| {
        (deleted(s).iter().filter(|r| *r == "retry-me").count() == 2).then_some(())
    })
    .await;
    carrier
        .wait_log(
            "SQS rejected an entry; the message reappears after its visibility timeout",
            T,
        )
        .await;
    let deleted = deleted(&sqs);
    assert_eq!(
        deleted.iter().filter(|r| *r == "ok").count(),
        1,
        "a successful entry is not resent: {deleted:?}"
    );
    assert_eq!(
        deleted.iter().filter(|r| *r == "bad-handle").count(),
        1,
        "the sender's fault is not retried: {deleted:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn endpoints_without_batch_apis_get_single_calls() {
    let sqs = FakeSqs::start(Mode::NoBatchApi, &["a", "b", "c"]);
    let sink = Sink::answering(200);
    let carrier = CarrierProcess::start(&env(&sqs, &sink));

    let singles = sqs
        .wait("three single DeleteMessage calls", T, |s| {
            let calls = s.calls_of("DeleteMessage");
            (calls.len() >= 3).then_some(calls)
        })
        .await;
    let mut receipts: Vec<_> = singles.into_iter().flat_map(|c| c.receipts).collect();
    receipts.sort();
    assert_eq!(receipts, ["a", "b", "c"]);
    assert_eq!(
        carrier
            .logs_with("endpoint has no batch API; using single calls")
            .len(),
        1
    );
}
