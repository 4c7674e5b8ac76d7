//! Delivery semantics beyond the Go carrier (SPEC 4.2–4.4, 4.7, 4.8, 4.10), each proven with the
//! real `carrier` binary against moto and a webhook on 127.0.0.1: the visibility heartbeat, the
//! Nack policy, dead-letter now, FIFO order, metadata headers, Basic auth and signatures.

mod support;

use std::collections::HashMap;
use std::time::Duration;

use aws_sdk_sqs::types::QueueAttributeName;
use support::{CarrierProcess, Reply, Sink, TestQueue};

const T: Duration = Duration::from_secs(30);
const NACK_LOG: &str = "delivery failed; the message reappears after its visibility timeout";

fn env_with(
    queue: &TestQueue,
    sink: &Sink,
    extra: &[(&'static str, &str)],
) -> Vec<(&'static str, String)> {
    let mut env = CarrierProcess::env_for(queue, sink);
    env.extend(extra.iter().map(|(k, v)| (*k, v.to_string())));
    env
}

/// One message answered by `reply(seen)` until it is acked: returns the gaps between consecutive
/// deliveries (after `answers` deliveries), with the carrier for further checks.
async fn redelivery_gaps(
    prefix: &str,
    visibility_timeout: u32,
    answers: usize,
    extra: &[(&'static str, &str)],
    reply: impl Fn(usize) -> Reply + Send + Sync + 'static,
) -> (Vec<Duration>, CarrierProcess) {
    let queue = TestQueue::create(prefix, visibility_timeout).await;
    queue.send(&format!("payload:{prefix}")).await;
    let sink = Sink::start(move |_, seen| reply(seen));
    let carrier = CarrierProcess::start(&env_with(&queue, &sink, extra));
    let requests = sink.wait_requests(answers, Duration::from_secs(60)).await;
    for (n, r) in requests.iter().enumerate() {
        assert_eq!(
            r.header("x-carrier-receive-count"),
            Some((n + 1).to_string().as_str()),
            "each delivery is the next receive of the same message"
        );
    }
    queue.wait_empty(T).await;
    let gaps = requests.windows(2).map(|w| w[1].at - w[0].at).collect();
    (gaps, carrier)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_webhook_call_longer_than_the_visibility_timeout_is_delivered_exactly_once() {
    // Queue visibility 2 s, a 7 s webhook call, two receivers polling the same queue.
    let queue = TestQueue::create("heartbeat", 2).await;
    queue.send("long-job").await;
    let sink = Sink::start(|_, _| Reply::status(200).after(Duration::from_secs(7)));
    let mut carrier =
        CarrierProcess::start(&env_with(&queue, &sink, &[("CARRIER_SQS_RECEIVERS", "2")]));
    sink.wait("the long job answered", T, |s| {
        (!s.answered().is_empty()).then_some(())
    })
    .await;
    queue.wait_empty(T).await;
    assert_eq!(sink.requests().len(), 1, "delivered exactly once");
    carrier.signal("TERM");
    assert_eq!(carrier.wait_exit(T).await.code(), Some(0));
    let stopped = carrier.wait_log("carrier stopped", T).await;
    let extensions = stopped["extensions"].as_u64().unwrap();
    // Extended at about every half timeout (1 s) for 7 s.
    assert!((4..=9).contains(&extensions), "{stopped}");
    assert_eq!(stopped["acked"], 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_error_visibility_timeout_brings_a_failed_message_back_that_soon() {
    let (gaps, carrier) = redelivery_gaps(
        "error-timeout",
        30,
        2,
        &[("CARRIER_WEBHOOK_ERROR_VISIBILITY_TIMEOUT", "2s")],
        |seen| Reply::status(if seen == 0 { 500 } else { 200 }),
    )
    .await;
    // Not the queue's 30 s, but the error timeout.
    assert!(
        gaps[0] >= Duration::from_millis(1900) && gaps[0] < Duration::from_secs(10),
        "{gaps:?}"
    );
    let nack = carrier
        .wait_log(
            "delivery failed; the message reappears after the error timeout",
            T,
        )
        .await;
    assert_eq!(nack["reappears_in_s"], 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_error_timeout_doubles_with_each_receive_up_to_the_backoff_maximum() {
    // Base 1 s, max 3 s: about 1, 2, then 3, 3 (each ±20 %, never past the maximum).
    let (gaps, _carrier) = redelivery_gaps(
        "backoff",
        30,
        5,
        &[
            ("CARRIER_WEBHOOK_ERROR_VISIBILITY_TIMEOUT", "1s"),
            ("CARRIER_WEBHOOK_ERROR_BACKOFF_MAX", "3s"),
        ],
        |seen| Reply::status(if seen < 4 { 503 } else { 200 }),
    )
    .await;
    // A visibility timeout is whole seconds, rounded up (0.8-1.2 s asks for 1 or 2 s, 1.6-2.4 s
    // for 2 or 3 s, the capped 2.4-3 s for 3 s), and moto's long poll looks for newly visible
    // messages once a second, so each gap may be up to ~1.1 s later than it asked for.
    let s: Vec<f64> = gaps.iter().map(Duration::as_secs_f64).collect();
    assert!(s[0] >= 0.9 && s[0] < 3.2, "first gap 1-2 s: {s:?}");
    assert!(s[1] >= 1.9 && s[1] < 4.2, "second gap 2-3 s: {s:?}");
    for g in &s[2..] {
        assert!(*g >= 2.9 && *g < 4.2, "capped at 3 s: {s:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retry_after_of_zero_is_raised_to_the_minimum_retry_delay() {
    let (gaps, _carrier) = redelivery_gaps(
        "min-retry",
        30,
        2,
        &[("CARRIER_WEBHOOK_MIN_RETRY_DELAY", "3s")],
        |seen| {
            if seen == 0 {
                Reply::status(429).header("Retry-After", "0")
            } else {
                Reply::status(200)
            }
        },
    )
    .await;
    assert!(
        gaps[0] >= Duration::from_millis(2900) && gaps[0] < Duration::from_secs(15),
        "not straight back: {gaps:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn odd_retry_after_values_are_a_nack_or_clamped_never_a_crash() {
    let queue = TestQueue::create("odd-retry", 30).await;
    queue.send("negative").await;
    queue.send("enormous").await;
    let sink = Sink::start(|r, _| match r.body.as_str() {
        "negative" => Reply::status(429).header("Retry-After", "-5"),
        _ => Reply::status(503).header("Retry-After", "99999999"),
    });
    let carrier = CarrierProcess::start(&env_with(
        &queue,
        &sink,
        &[
            ("CARRIER_SQS_RECEIVER_WORKERS", "2"),
            ("CARRIER_LOG_LEVEL", "debug"),
        ],
    ));
    let nack = carrier.wait_log(NACK_LOG, T).await;
    assert_eq!(nack["reason"], "status 429", "-5 is not a delay");
    let retry = carrier.wait_log("webhook asked to retry later", T).await;
    let secs = retry["retry_in_s"].as_u64().unwrap();
    assert!(
        (43_000..=43_200).contains(&secs),
        "clamped to SQS's 12 hours: {retry}"
    );
    queue.wait_counts((0, 2), T).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_letter_answer_moves_the_message_to_the_dlq_once_and_deletes_it() {
    let dlq = TestQueue::create("dlq", 30).await;
    let policy = format!(
        r#"{{"deadLetterTargetArn":"{}","maxReceiveCount":"5"}}"#,
        dlq.arn().await
    );
    let queue = TestQueue::create_with(
        "dead-letter",
        30,
        &[(QueueAttributeName::RedrivePolicy, policy)],
    )
    .await;
    queue
        .send_with_attributes(
            "poison",
            &[
                ("tenant", "String", "acme"),
                ("weight", "Number", "12.5"),
                ("blob", "Binary", "\u{1}\u{2}bytes"),
            ],
        )
        .await;
    let sink = Sink::start(|_, _| Reply::status(422).header("X-Carrier-Dead-Letter", "true"));
    let carrier = CarrierProcess::start(&CarrierProcess::env_for(&queue, &sink));

    carrier
        .wait_log("message moved to the dead-letter queue", T)
        .await;
    queue.wait_empty(T).await;
    let moved = dlq.take_all().await;
    assert_eq!(moved.len(), 1, "in the DLQ exactly once");
    let m = &moved[0];
    assert_eq!(m.body(), Some("poison"));
    let attrs = m.message_attributes().expect("attributes kept");
    assert_eq!(attrs["tenant"].string_value(), Some("acme"));
    assert_eq!(attrs["weight"].data_type(), "Number");
    assert_eq!(attrs["weight"].string_value(), Some("12.5"));
    assert_eq!(
        attrs["blob"].binary_value().map(|b| b.as_ref().to_vec()),
        Some(b"\x01\x02bytes".to_vec())
    );
    assert_eq!(sink.requests().len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_letter_answer_without_a_dlq_is_a_nack_and_one_error_line() {
    let queue = TestQueue::create("no-dlq", 30).await;
    queue.send("poison").await;
    let sink = Sink::start(|_, _| Reply::status(200).header("x-carrier-dead-letter", "TRUE"));
    let carrier = CarrierProcess::start(&CarrierProcess::env_for(&queue, &sink));
    let nack = carrier.wait_log(NACK_LOG, T).await;
    assert_eq!(nack["reason"], "dead letter asked, but no DLQ");
    let errors: Vec<_> = carrier
        .log_lines()
        .into_iter()
        .filter(|l| l.contains("\"ERROR\""))
        .collect();
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert!(errors[0].contains("no RedrivePolicy"), "{errors:?}");
    assert_eq!(
        queue.counts().await,
        (0, 1),
        "not deleted: a 200 is not an Ack here"
    );
}

/// Group and index of a FIFO test body `g-i`.
fn group_index(body: &str) -> (String, usize) {
    let (g, i) = body.split_once('-').unwrap();
    (g.to_string(), i.parse().unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifo_groups_keep_their_order_through_a_failure_and_run_in_parallel() {
    let queue = TestQueue::create_fifo("fifo", 2).await;
    for g in ["a", "b", "c"] {
        let bodies: Vec<String> = (0..10).map(|i| format!("{g}-{i}")).collect();
        queue.send_fifo(g, &bodies).await;
    }
    // One 500 in the middle of group b. Groups a and c answer slowly (4 s per group), b quickly,
    // so a and c still have work to do for the whole time b-4 waits out its visibility timeout
    // (2 s), even when a busy moto hands out the groups' receives seconds apart. (moto's long
    // poll does not wake when a FIFO group unlocks, so this takes a few 20 s polls; AWS answers
    // at once.)
    let sink = Sink::start(|r, seen| {
        let reply = if r.body == "b-4" && seen == 0 {
            Reply::status(500)
        } else {
            Reply::status(200)
        };
        let pause = if r.body.starts_with('b') { 30 } else { 400 };
        reply.after(Duration::from_millis(pause))
    });
    let _carrier = CarrierProcess::start(&env_with(
        &queue,
        &sink,
        &[
            ("CARRIER_SQS_BATCH_SIZE", "10"),
            ("CARRIER_SQS_RECEIVER_WORKERS", "10"),
        ],
    ));
    let all: Vec<String> = ["a", "b", "c"]
        .iter()
        .flat_map(|g| (0..10).map(move |i| format!("{g}-{i}")))
        .collect();
    sink.wait_answered_all(&all, Duration::from_secs(60)).await;
    queue.wait_empty(T).await;

    let requests = sink.requests();
    let mut seen: HashMap<String, Vec<usize>> = HashMap::new();
    for r in &requests {
        let (g, i) = group_index(&r.body);
        assert_eq!(r.header("x-carrier-message-group-id"), Some(g.as_str()));
        // (moto gives no SequenceNumber; X-Carrier-Sequence-Number is sent when SQS gives one.)
        seen.entry(g).or_default().push(i);
    }
    // In every group, the webhook saw the bodies in order; b-4 twice (failed, then acked), and
    // nothing after b-4 before its second, successful delivery.
    assert_eq!(seen["a"], (0..10).collect::<Vec<_>>());
    assert_eq!(seen["c"], (0..10).collect::<Vec<_>>());
    assert_eq!(seen["b"], [0, 1, 2, 3, 4, 4, 5, 6, 7, 8, 9]);
    // Groups in parallel: some request of another group arrived while b waited for b-4.
    let pos = |b: &str| requests.iter().position(|r| r.body == b).unwrap();
    let failed_at = pos("b-4");
    let retried_at = requests.iter().rposition(|r| r.body == "b-4").unwrap();
    assert!(
        requests[failed_at..retried_at]
            .iter()
            .any(|r| !r.body.starts_with('b')),
        "other groups went on while b waited"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn message_attributes_and_trace_context_arrive_as_headers_and_odd_values_are_skipped() {
    let queue = TestQueue::create("metadata", 30).await;
    queue
        .send_with_attributes(
            "with-metadata",
            &[
                ("customer", "String", "42-abc"),
                ("priority", "Number", "7"),
                ("blob", "Binary", "raw"),
                (
                    "traceparent",
                    "String",
                    "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
                ),
                ("tracestate", "String", "vendor=opaque"),
                ("evil", "String", "a\r\nX-Injected: yes"),
            ],
        )
        .await;
    let sink = Sink::answering(200);
    let carrier = CarrierProcess::start(&CarrierProcess::env_for(&queue, &sink));
    let r = sink.wait_requests(1, T).await.remove(0);
    assert_eq!(r.header("x-carrier-attribute-customer"), Some("42-abc"));
    assert_eq!(r.header("x-carrier-attribute-priority"), Some("7"));
    assert_eq!(r.header("x-carrier-attribute-blob"), None, "binary skipped");
    assert_eq!(
        r.header("traceparent"),
        Some("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01")
    );
    assert_eq!(r.header("tracestate"), Some("vendor=opaque"));
    assert_eq!(
        r.header("x-carrier-attribute-evil"),
        None,
        "CR/LF value skipped"
    );
    assert_eq!(r.header("x-injected"), None, "never injected");
    assert_eq!(r.header("x-carrier-queue-name"), Some(queue.name.as_str()));
    assert!(r.header("x-carrier-sent-time").is_some());
    let warning = carrier
        .wait_log(
            "skipping a header whose value is not a valid header value",
            T,
        )
        .await;
    assert_eq!(warning["header"], "evil");
    queue.wait_empty(T).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sqsd_header_style_sends_elastic_beanstalks_headers() {
    let queue = TestQueue::create("sqsd", 30).await;
    queue
        .send_with_attributes("eb-job", &[("task", "String", "resize")])
        .await;
    let sink = Sink::answering(200);
    let _carrier = CarrierProcess::start(&env_with(
        &queue,
        &sink,
        &[("CARRIER_WEBHOOK_HEADER_STYLE", "sqsd")],
    ));
    let r = sink.wait_requests(1, T).await.remove(0);
    assert_eq!(r.header("user-agent"), Some("aws-sqsd/3.0.4"));
    assert!(r.header("x-aws-sqsd-msgid").is_some_and(|v| !v.is_empty()));
    assert_eq!(r.header("x-aws-sqsd-queue"), Some(queue.name.as_str()));
    assert_eq!(r.header("x-aws-sqsd-receive-count"), Some("1"));
    let first = r.header("x-aws-sqsd-first-received-at").unwrap();
    assert!(
        first.len() == 20 && first.ends_with('Z') && first.as_bytes()[10] == b'T',
        "ISO 8601: {first}"
    );
    assert!(r.header("x-aws-sqsd-sender-id").is_some());
    assert_eq!(r.header("x-aws-sqsd-attr-task"), Some("resize"));
    assert!(
        r.headers.keys().all(|k| !k.starts_with("x-carrier-")),
        "{:?}",
        r.headers
    );
    assert_eq!(r.header("content-type"), Some("application/json"));
    queue.wait_empty(T).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn credentials_in_the_webhook_url_send_basic_auth_and_never_reach_a_log_line() {
    let queue = TestQueue::create("basic-auth", 30).await;
    queue.send("authorised").await;
    let sink = Sink::answering(200);
    let with_creds = |url: &str| url.replace("http://", "http://worker:s3cr%40t@") + "?token=t0ken";
    let mut carrier = CarrierProcess::start(&env_with(
        &queue,
        &sink,
        &[
            ("CARRIER_WEBHOOK_ENDPOINT", &with_creds(&sink.url)),
            (
                "CARRIER_WEBHOOK_HEALTH_CHECK_ENDPOINT",
                &with_creds(&sink.health_url),
            ),
        ],
    ));
    let r = sink.wait_requests(1, T).await.remove(0);
    // base64("worker:s3cr@t")
    assert_eq!(
        r.header("authorization"),
        Some("Basic d29ya2VyOnMzY3JAdA==")
    );
    assert_eq!(r.path, "/events");
    queue.wait_empty(T).await;
    carrier.signal("TERM");
    assert_eq!(carrier.wait_exit(T).await.code(), Some(0));
    let online = carrier.wait_log("webhook online", T).await;
    assert!(
        online["endpoint"].as_str().unwrap().contains("worker:***@"),
        "{online}"
    );
    let logs = carrier.log_lines().join("\n");
    for secret in ["s3cr", "t0ken"] {
        assert!(!logs.contains(secret), "{secret} in the logs:\n{logs}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signed_requests_verify_with_an_independent_standard_webhooks_library() {
    let queue = TestQueue::create("signed", 30).await;
    let body = "{\"order\": 17, \"note\": \"héllo\"}";
    queue.send(body).await;
    let old = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    let new = "whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD";
    // First answer fails, so the message is signed twice: the id must stay the same.
    let sink = Sink::start(|_, seen| Reply::status(if seen == 0 { 500 } else { 200 }));
    let _carrier = CarrierProcess::start(&env_with(
        &queue,
        &sink,
        &[
            ("CARRIER_WEBHOOK_SIGNING_SECRET", &format!("{old} {new}")),
            ("CARRIER_WEBHOOK_ERROR_VISIBILITY_TIMEOUT", "0"),
        ],
    ));
    let requests = sink.wait_requests(2, T).await;
    queue.wait_empty(T).await;
    let message_id = requests[0].header("x-carrier-message-id").unwrap();
    for r in &requests {
        assert_eq!(
            r.header("webhook-id"),
            Some(message_id),
            "stable across redeliveries"
        );
        assert_eq!(r.header("webhook-signature").unwrap().split(' ').count(), 2);
    }
    let verdicts = support::verify_standard_webhooks(&[old, new], &requests);
    assert_eq!(verdicts.len(), 4, "{verdicts:?}");
    assert!(verdicts.iter().all(|v| v.ends_with(": ok")), "{verdicts:?}");
    // And a wrong key is refused: the check can fail.
    let wrong =
        support::verify_standard_webhooks(&["whsec_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"], &requests);
    assert!(wrong.iter().all(|v| v.contains(": fail")), "{wrong:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_malformed_signing_secret_is_a_config_error_that_does_not_echo_it() {
    let mut carrier = CarrierProcess::start(&[
        ("CARRIER_SQS_QUEUE_NAME", "q".into()),
        (
            "CARRIER_WEBHOOK_SIGNING_SECRET",
            "whsec_AAAA hunter2".into(),
        ),
    ]);
    assert_eq!(carrier.wait_exit(T).await.code(), Some(2));
    let stderr = carrier.stderr();
    assert!(
        stderr.contains("CARRIER_WEBHOOK_SIGNING_SECRET=<redacted>"),
        "{stderr}"
    );
    assert!(
        !stderr.contains("hunter2") && !stderr.contains("AAAA"),
        "{stderr}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redirect_hops_send_each_header_once_and_share_one_request_timeout() {
    let queue = TestQueue::create("hops", 30).await;
    queue.send("hop-once").await;
    queue.send("hop-slowly").await;
    let sink = Sink::start(|r, _| {
        let slow = Duration::from_millis(700);
        match (r.body.as_str(), r.path.as_str()) {
            ("hop-once", "/events") => Reply::status(307).header("Location", "/events/next"),
            ("hop-once", _) => Reply::status(200),
            // Each hop is under the 1 s timeout; all three together are not.
            (_, "/events") => Reply::status(307)
                .header("Location", "/events/a")
                .after(slow),
            (_, "/events/a") => Reply::status(308)
                .header("Location", "/events/b")
                .after(slow),
            _ => Reply::status(200).after(slow),
        }
    });
    let carrier = CarrierProcess::start(&env_with(
        &queue,
        &sink,
        &[
            ("CARRIER_WEBHOOK_REQUEST_TIMEOUT", "1s"),
            ("CARRIER_SQS_RECEIVER_WORKERS", "2"),
        ],
    ));
    let nack = carrier.wait_log(NACK_LOG, T).await;
    assert_eq!(nack["reason"], "timeout");
    let followed = sink
        .wait("the followed hop", T, |s| {
            s.requests().into_iter().find(|r| r.path == "/events/next")
        })
        .await;
    assert_eq!(
        followed.header("user-agent"),
        Some(concat!("carrier/", env!("CARGO_PKG_VERSION")))
    );
    assert_eq!(followed.header("content-type"), Some("application/json"));
    assert!(!followed
        .header("x-carrier-message-id")
        .unwrap()
        .contains(','));
    queue.wait_counts((0, 1), T).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_fifo_message_goes_to_the_dlq_alone_and_the_rest_of_its_group_is_delivered_once()
{
    // SPEC 4.7 as amended: the guard holds a later message of a blocked group, never hands it
    // back, so it never burns a receive count. a-1 always fails and moves to the DLQ after three
    // receives; a-2 and a-3 must each reach the webhook once, on their first receive, and never
    // reach the DLQ. (Batch size 1, as the README advises for FIFO queues with a DLQ.)
    let dlq = TestQueue::create_fifo("fifo-dlq-target", 30).await;
    let policy = format!(
        r#"{{"deadLetterTargetArn":"{}","maxReceiveCount":"3"}}"#,
        dlq.arn().await
    );
    let queue = TestQueue::create_with(
        "fifo-dlq",
        2,
        &[
            (QueueAttributeName::FifoQueue, "true".to_string()),
            (
                QueueAttributeName::ContentBasedDeduplication,
                "true".to_string(),
            ),
            (QueueAttributeName::RedrivePolicy, policy),
        ],
    )
    .await;
    let bodies: Vec<String> = (1..=3).map(|i| format!("a-{i}")).collect();
    queue.send_fifo("a", &bodies).await;
    let sink = Sink::start(|r, _| Reply::status(if r.body == "a-1" { 500 } else { 200 }));
    let carrier = CarrierProcess::start(&env_with(
        &queue,
        &sink,
        &[("CARRIER_SQS_RECEIVER_WORKERS", "2")],
    ));
    sink.wait_answered_all(&bodies[1..], Duration::from_secs(60))
        .await;
    queue.wait_empty(T).await;
    let requests = sink.requests();
    let later: Vec<_> = requests.iter().filter(|r| r.body != "a-1").collect();
    assert_eq!(later.len(), 2, "a-2 and a-3 once each");
    for r in &later {
        assert_eq!(
            r.header("x-carrier-receive-count"),
            Some("1"),
            "{} was received before: the guard handed it back",
            r.body
        );
    }
    let dead: Vec<_> = dlq
        .take_all()
        .await
        .into_iter()
        .map(|m| m.body().unwrap_or_default().to_string())
        .collect();
    assert_eq!(dead, ["a-1"], "only the failing message is dead-lettered");
    assert!(carrier
        .logs_with("returned a later message of a blocked FIFO group")
        .is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_delivery_cancelled_at_the_shutdown_deadline_is_counted_and_the_counters_add_up() {
    // SPEC 4.13: received = acked + retried + nacked + released + dead-lettered at stop.
    let queue = TestQueue::create("cancelled", 30).await;
    queue.send("stuck").await;
    queue.send("waiting").await;
    let sink = Sink::start(|_, _| Reply::status(200).after(Duration::from_secs(60)));
    let mut carrier = CarrierProcess::start(&env_with(
        &queue,
        &sink,
        &[
            ("CARRIER_SQS_BATCH_SIZE", "2"),
            ("CARRIER_SQS_RECEIVER_WORKERS", "2"),
            ("CARRIER_SHUTDOWN_TIMEOUT", "1s"),
        ],
    ));
    sink.wait_requests(2, T).await;
    carrier.signal("TERM");
    assert_eq!(carrier.wait_exit(T).await.code(), Some(0));
    let stopped = carrier.wait_log("carrier stopped", T).await;
    let n = |k: &str| stopped[k].as_u64().unwrap();
    assert_eq!(n("received"), 2, "{stopped}");
    assert_eq!(n("nacked"), 2, "both cancelled at the deadline: {stopped}");
    let nacks = carrier.logs_with(NACK_LOG);
    assert!(
        nacks
            .iter()
            .all(|l| l["reason"] == "cancelled at the shutdown deadline"),
        "{nacks:?}"
    );
    assert_eq!(
        n("received"),
        n("acked") + n("retried") + n("nacked") + n("released") + n("dead_lettered"),
        "{stopped}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exit_when_idle_never_exits_0_while_the_queue_cannot_be_reached() {
    // SPEC 4.13: a queue URL that does not exist fails every receive; the idle clock counts only
    // receives that succeeded and came back empty, so carrier keeps trying (and is not ready).
    let url = format!(
        "{}/123456789012/no-such-queue-{}?token=s3cret-token",
        support::moto().endpoint,
        std::process::id()
    );
    let sink = Sink::answering(200);
    let mut carrier = CarrierProcess::start(&[
        ("CARRIER_SQS_QUEUE_URL", url),
        ("CARRIER_WEBHOOK_ENDPOINT", sink.url.clone()),
        ("CARRIER_EXIT_WHEN_IDLE", "500ms".to_string()),
    ]);
    // Four failed receives take over 1.4 s of backoff: well past the idle time.
    carrier
        .wait_log_count("failed to receive messages", 4, Duration::from_secs(60))
        .await;
    assert!(
        carrier
            .logs_with("queue idle; draining and exiting")
            .is_empty(),
        "an unreachable queue is not an idle one"
    );
    assert!(
        carrier.logs_with("queue resolved").is_empty(),
        "SQS never answered for it"
    );
    assert!(
        carrier.log_lines().iter().all(|l| !l.contains("s3cret")),
        "the queue URL's query string is never logged"
    );
    carrier.signal("TERM");
    assert_eq!(carrier.wait_exit(T).await.code(), Some(0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fifo_queue_url_with_a_query_string_is_fifo_and_its_query_is_never_logged() {
    let queue = TestQueue::create_fifo("fifo-url", 30).await;
    let sink = Sink::answering(200);
    let carrier = CarrierProcess::start(&[
        ("CARRIER_SQS_ENDPOINT", support::moto().endpoint.clone()),
        (
            "CARRIER_SQS_QUEUE_URL",
            format!("{}?token=s3cret-token", queue.url),
        ),
        ("CARRIER_WEBHOOK_ENDPOINT", sink.url.clone()),
    ]);
    let line = carrier
        .wait(
            |c| {
                c.log_lines().into_iter().find(|l| {
                    l.contains("queue resolved") || l.contains("queue URL not yet confirmed")
                })
            },
            T,
        )
        .await;
    let line: serde_json::Value = serde_json::from_str(&line).unwrap();
    assert_eq!(line["fifo"], true, "{line}");
    assert!(
        carrier.log_lines().iter().all(|l| !l.contains("s3cret")),
        "the queue URL's query string is never logged"
    );
}
