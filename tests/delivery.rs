//! Delivery behaviour of the real `carrier` binary against moto and a webhook on 127.0.0.1:
//! what the webhook receives and what each answer does to the message.

mod support;

use std::time::Duration;

use support::{verify_standard_webhooks, CarrierProcess, Reply, Sink, TestQueue};

const T: Duration = Duration::from_secs(30);

/// The usual environment, with `endpoint` as the webhook URL.
fn env_with_endpoint(
    queue: &TestQueue,
    sink: &Sink,
    endpoint: String,
) -> Vec<(&'static str, String)> {
    let mut env = CarrierProcess::env_for(queue, sink);
    env.retain(|(k, _)| *k != "CARRIER_WEBHOOK_ENDPOINT");
    env.push(("CARRIER_WEBHOOK_ENDPOINT", endpoint));
    env
}

/// `url` with `worker:s3cret@` in it (carrier sends those as HTTP Basic auth).
fn with_credentials(url: &str) -> String {
    url.replace("http://", "http://worker:s3cret@")
}

/// The `Authorization` header `worker:s3cret@` stands for.
fn basic_worker_s3cret() -> String {
    use base64::Engine as _;
    let token = base64::engine::general_purpose::STANDARD.encode("worker:s3cret");
    format!("Basic {token}")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delivers_200_messages_across_receivers_workers_and_two_threads_and_empties_the_queue() {
    let queue = TestQueue::create("bulk", 30).await;
    let bodies = queue.send_many("bulk", 200).await;
    let sink = Sink::answering(200);
    let mut env = CarrierProcess::env_for(&queue, &sink);
    env.push(("CARRIER_SQS_BATCH_SIZE", "10".into()));
    env.push(("CARRIER_SQS_RECEIVERS", "2".into()));
    env.push(("CARRIER_SQS_RECEIVER_WORKERS", "10".into()));
    env.push(("CARRIER_THREADS", "2".into()));
    let mut carrier = CarrierProcess::start(&env);

    sink.wait_answered_all(&bodies, Duration::from_secs(90))
        .await;
    queue.wait_empty(T).await;
    carrier.signal("TERM");
    assert!(carrier.wait_exit(T).await.success());
    let stopped = carrier.wait_log("carrier stopped", T).await;
    assert!(stopped["acked"].as_u64().unwrap() >= 200, "{stopped}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_carries_the_body_unchanged_with_content_type_and_carrier_headers() {
    let queue = TestQueue::create("headers", 30).await;
    let body = "{\"text\": \"héllo\\nwörld\", \"n\": 1}\r\n  trailing spaces  ";
    queue.send(body).await;
    queue
        .send_with_content_type("<xml/>", "application/xml")
        .await;
    let sink = Sink::answering(200);
    let _carrier = CarrierProcess::start(&CarrierProcess::env_for(&queue, &sink));

    let requests = sink.wait_requests(2, T).await;
    let json = requests
        .iter()
        .find(|r| r.body == body)
        .expect("body arrives unchanged");
    assert_eq!(json.header("content-type"), Some("application/json"));
    assert_eq!(json.header("x-carrier-receive-count"), Some("1"));
    let first = json
        .header("x-carrier-first-receive-time")
        .expect("first receive time");
    assert!(
        first.len() == 13 && first.bytes().all(|b| b.is_ascii_digit()),
        "epoch ms: {first}"
    );
    assert!(json.header("x-carrier-message-id").is_some());
    assert_eq!(
        json.header("x-carrier-queue-name"),
        Some(queue.name.as_str())
    );
    let xml = requests.iter().find(|r| r.body == "<xml/>").unwrap();
    assert_eq!(xml.header("content-type"), Some("application/xml"));
    queue.wait_empty(T).await;
}

/// One message whose first delivery is answered by `first` and every later one with 200: returns
/// the queue, the carrier, and the time between the first two deliveries (after checking the
/// second is a redelivery of the same message).
async fn redelivery_gap(
    prefix: &str,
    visibility_timeout: u32,
    first: impl Fn() -> Reply + Send + Sync + 'static,
) -> (TestQueue, CarrierProcess, Duration) {
    let queue = TestQueue::create(prefix, visibility_timeout).await;
    let body = format!("payload:{prefix}");
    queue.send(&body).await;
    let sink = Sink::start(move |_, seen| {
        if seen == 0 {
            first()
        } else {
            Reply::status(200)
        }
    });
    let carrier = CarrierProcess::start(&CarrierProcess::env_for(&queue, &sink));
    let requests = sink.wait_requests(2, T).await;
    assert_eq!(requests[1].body, body);
    assert_eq!(requests[1].header("x-carrier-receive-count"), Some("2"));
    queue.wait_empty(T).await;
    (queue, carrier, requests[1].at - requests[0].at)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retry_after_seconds_delays_redelivery_then_ack_deletes() {
    let (_, _, gap) = redelivery_gap("retry-secs", 30, || {
        Reply::status(429).header("Retry-After", "2")
    })
    .await;
    // Not before Retry-After; and long before the queue's 30 s visibility timeout.
    assert!(
        gap >= Duration::from_secs(2) && gap < Duration::from_secs(15),
        "gap {gap:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retry_after_http_date_on_503_delays_redelivery() {
    let (_, _, gap) = redelivery_gap("retry-date", 30, || {
        let at = std::time::SystemTime::now() + Duration::from_secs(3);
        Reply::status(503).header("Retry-After", &httpdate::fmt_http_date(at))
    })
    .await;
    // HTTP dates have one-second resolution: at least 2 s, well under the 30 s visibility timeout.
    assert!(
        gap >= Duration::from_secs(2) && gap < Duration::from_secs(15),
        "gap {gap:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_delivery_is_left_for_the_queue_visibility_timeout() {
    let (_, carrier, gap) = redelivery_gap("fail-once", 3, || Reply::status(500)).await;
    assert!(
        gap >= Duration::from_millis(2500),
        "redelivered after the visibility timeout, not {gap:?}"
    );
    let nack = carrier
        .wait_log(
            "delivery failed; the message reappears after its visibility timeout",
            T,
        )
        .await;
    assert_eq!(nack["reason"], "status 500");
    assert!(
        !carrier.log_lines().iter().any(|l| l.contains("payload:")),
        "bodies are never logged"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_429_without_retry_after_and_a_timeout_are_nacks() {
    let queue = TestQueue::create("nack-kinds", 30).await;
    queue.send("no-retry-after").await;
    queue.send("too-slow").await;
    let sink = Sink::start(|r, _| match r.body.as_str() {
        "too-slow" => Reply::status(200).after(Duration::from_secs(3)),
        _ => Reply::status(429),
    });
    let mut env = CarrierProcess::env_for(&queue, &sink);
    env.push(("CARRIER_WEBHOOK_REQUEST_TIMEOUT", "500ms".into()));
    env.push(("CARRIER_SQS_RECEIVER_WORKERS", "2".into()));
    let carrier = CarrierProcess::start(&env);

    let nacks = carrier
        .wait_log_count(
            "delivery failed; the message reappears after its visibility timeout",
            2,
            T,
        )
        .await;
    let mut reasons: Vec<_> = nacks
        .iter()
        .map(|n| n["reason"].as_str().unwrap().to_string())
        .collect();
    reasons.sort();
    assert_eq!(reasons, ["status 429", "timeout"]);
    // Neither was deleted: both are in flight until the 30 s visibility timeout.
    assert_eq!(queue.counts().await, (0, 2));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_message_does_not_block_the_others() {
    let queue = TestQueue::create("hol", 30).await;
    queue.send("slow").await;
    let fast = queue.send_many("fast", 9).await;
    let sink = Sink::start(|r, _| match r.body.as_str() {
        "slow" => Reply::status(200).after(Duration::from_secs(6)),
        _ => Reply::status(200),
    });
    let mut env = CarrierProcess::env_for(&queue, &sink);
    env.push(("CARRIER_SQS_BATCH_SIZE", "5".into()));
    env.push(("CARRIER_SQS_RECEIVER_WORKERS", "5".into()));
    let _carrier = CarrierProcess::start(&env);

    sink.wait("the slow request to start", T, |s| {
        s.requests().iter().any(|r| r.body == "slow").then_some(())
    })
    .await;
    sink.wait_answered_all(&fast, T).await;
    assert!(
        !sink.answered().contains(&"slow".to_string()),
        "all fast messages were answered while the slow one was still running"
    );
    queue.wait_empty(T).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn odd_input_never_crashes_carrier_or_loses_a_message() {
    let queue = TestQueue::create("odd", 30).await;
    // A content type that would inject a header if copied verbatim.
    queue
        .send_with_content_type("injected?", "text/plain\r\nX-Injected: yes")
        .await;
    // A body near SQS's 256 KiB limit.
    let big = "é".repeat(100 * 1024);
    queue.send(&big).await;
    // A webhook answer far larger than carrier reads.
    queue.send("huge-answer").await;
    // A Retry-After carrier cannot parse.
    queue.send("bad-retry-after").await;
    let sink = Sink::start(|r, seen| match (r.body.as_str(), seen) {
        ("huge-answer", _) => Reply::status(200).body_of(8 * 1024 * 1024),
        ("bad-retry-after", 0) => Reply::status(429).header("Retry-After", "soon-ish"),
        _ => Reply::status(200),
    });
    let mut env = CarrierProcess::env_for(&queue, &sink);
    env.push(("CARRIER_SQS_RECEIVER_WORKERS", "4".into()));
    env.push(("CARRIER_SQS_BATCH_SIZE", "4".into()));
    let carrier = CarrierProcess::start(&env);

    let requests = sink.wait_requests(4, T).await;
    let injected = requests.iter().find(|r| r.body == "injected?").unwrap();
    assert_eq!(
        injected.header("content-type"),
        Some("application/json"),
        "invalid value skipped"
    );
    assert_eq!(injected.header("x-injected"), None);
    assert!(
        requests.iter().any(|r| r.body == big),
        "a large body arrives unchanged"
    );
    carrier
        .wait_log(
            "skipping a header whose value is not a valid header value",
            T,
        )
        .await;
    let nack = carrier
        .wait_log(
            "delivery failed; the message reappears after its visibility timeout",
            T,
        )
        .await;
    assert_eq!(
        nack["reason"], "status 429",
        "unparseable Retry-After is a Nack"
    );
    // Three acked and deleted; the Nack'd one waits for its visibility timeout.
    queue.wait_counts((0, 1), T).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn strict_success_codes_restore_go_s_200_only_rule() {
    let queue = TestQueue::create("strict", 30).await;
    queue.send("no-content").await;
    let sink = Sink::answering(204);
    let mut env = CarrierProcess::env_for(&queue, &sink);
    env.push(("CARRIER_WEBHOOK_SUCCESS_CODES", "200".into()));
    let carrier = CarrierProcess::start(&env);
    let nack = carrier
        .wait_log(
            "delivery failed; the message reappears after its visibility timeout",
            T,
        )
        .await;
    assert_eq!(nack["reason"], "status 204");
    assert_eq!(queue.counts().await, (0, 1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_307_redirect_is_followed_with_the_body_and_a_302_is_a_nack() {
    let queue = TestQueue::create("redirect", 30).await;
    queue.send("follow-me").await;
    queue.send("do-not-follow").await;
    let sink = Sink::start(|r, _| match (r.path.as_str(), r.body.as_str()) {
        ("/events", "follow-me") => Reply::status(307).header("Location", "/events/"),
        ("/events", _) => Reply::status(302).header("Location", "/elsewhere"),
        _ => Reply::status(200),
    });
    let mut env = CarrierProcess::env_for(&queue, &sink);
    env.push(("CARRIER_SQS_RECEIVER_WORKERS", "2".into()));
    let carrier = CarrierProcess::start(&env);

    let nack = carrier
        .wait_log(
            "delivery failed; the message reappears after its visibility timeout",
            T,
        )
        .await;
    assert_eq!(nack["reason"], "status 302");
    let requests = sink.wait_requests(3, T).await;
    let followed = requests
        .iter()
        .find(|r| r.path == "/events/")
        .expect("redirect followed");
    assert_eq!(followed.body, "follow-me");
    assert_eq!(followed.header("x-carrier-receive-count"), Some("1"));
    assert!(
        requests.iter().all(|r| r.path != "/elsewhere"),
        "302 not followed"
    );
    queue.wait_counts((0, 1), T).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redirect_to_another_origin_sends_it_nothing_and_is_a_nack() {
    let queue = TestQueue::create("redirect-away", 30).await;
    queue.send("stay-home").await;
    // Another port of the same host is another origin.
    let other = Sink::answering(200);
    let location = other.url.replace("http://", "http://thief:pw-l3ak@") + "?token=t0ken";
    let sink = Sink::start(move |_, seen| match seen {
        0 => Reply::status(307).header("Location", &location),
        _ => Reply::status(200),
    });
    let mut env = env_with_endpoint(&queue, &sink, with_credentials(&sink.url));
    env.push(("CARRIER_WEBHOOK_ERROR_VISIBILITY_TIMEOUT", "1s".into()));
    let carrier = CarrierProcess::start(&env);

    let nack = carrier
        .wait_log(
            "delivery failed; the message reappears after the error timeout",
            T,
        )
        .await;
    assert_eq!(nack["reason"], "status 307");
    // Not deleted: it comes back, and the second answer (200) acks it.
    let requests = sink.wait_requests(2, T).await;
    assert_eq!(requests[1].body, "stay-home");
    assert_eq!(requests[1].header("x-carrier-receive-count"), Some("2"));
    queue.wait_empty(T).await;
    assert_eq!(other.request_count(), 0, "nothing reaches the other origin");
    let warnings = carrier.logs_with("redirect to another origin not followed; nothing sent there");
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    let shown = warnings[0]["location"].as_str().unwrap();
    assert!(
        shown.starts_with("http://thief:***@127.0.0.1:") && shown.ends_with("/events?***"),
        "{shown}"
    );
    let logs = carrier.log_lines().join("\n");
    for secret in ["t0ken", "pw-l3ak", "s3cret"] {
        assert!(!logs.contains(secret), "{secret} in the logs:\n{logs}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_same_origin_redirect_is_followed_with_credentials_and_a_fresh_signature() {
    let queue = TestQueue::create("redirect-home", 30).await;
    queue.send("follow-me").await;
    queue.send("loop").await;
    // Relative locations, resolved against the URL of the request they answer.
    let sink = Sink::start(|r, _| match (r.body.as_str(), r.path.as_str()) {
        ("loop", _) => Reply::status(307).header("Location", "again"),
        (_, "/hook/in") => Reply::status(307).header("Location", "next"),
        (_, "/hook/next") => Reply::status(308).header("Location", "../done?step=3"),
        _ => Reply::status(200),
    });
    let secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    let endpoint = with_credentials(&sink.url.replace("/events", "/hook/in"));
    let mut env = env_with_endpoint(&queue, &sink, endpoint);
    env.push(("CARRIER_WEBHOOK_SIGNING_SECRET", secret.into()));
    env.push(("CARRIER_SQS_RECEIVER_WORKERS", "2".into()));
    let carrier = CarrierProcess::start(&env);

    let nack = carrier
        .wait_log(
            "delivery failed; the message reappears after its visibility timeout",
            T,
        )
        .await;
    assert_eq!(
        nack["reason"], "status 307",
        "the fourth 307 is not followed"
    );
    // "follow-me" acked and deleted; "loop" in flight until its visibility timeout.
    queue.wait_counts((0, 1), T).await;
    let requests = sink.requests();
    let looped = requests.iter().filter(|r| r.body == "loop").count();
    assert_eq!(looped, 4, "the first request and 3 redirects");
    let followed: Vec<_> = requests
        .into_iter()
        .filter(|r| r.body == "follow-me")
        .collect();
    let paths: Vec<_> = followed.iter().map(|r| r.path.as_str()).collect();
    assert_eq!(paths, ["/hook/in", "/hook/next", "/done"]);
    let auth = basic_worker_s3cret();
    for r in &followed {
        assert_eq!(r.header("authorization"), Some(auth.as_str()), "{}", r.path);
    }
    let verdicts = verify_standard_webhooks(&[secret], &followed);
    assert_eq!(verdicts.len(), 3);
    assert!(verdicts.iter().all(|v| v.ends_with(": ok")), "{verdicts:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_70_kb_attribute_is_skipped_and_the_message_still_delivered() {
    let queue = TestQueue::create("big-attribute", 30).await;
    let huge = "a".repeat(70 * 1024);
    queue
        .send_with_attributes(
            "big-attribute",
            &[
                ("Huge", "String", &huge),
                ("small", "String", "kept"),
                ("count", "Number", "42"),
            ],
        )
        .await;
    let sink = Sink::answering(200);
    let carrier = CarrierProcess::start(&CarrierProcess::env_for(&queue, &sink));

    let r = sink.wait_requests(1, T).await.remove(0);
    assert_eq!(r.body, "big-attribute");
    assert!(
        r.header("x-carrier-attribute-huge").is_none(),
        "the 70 KB attribute is not sent"
    );
    assert_eq!(r.header("x-carrier-attribute-small"), Some("kept"));
    assert_eq!(r.header("x-carrier-attribute-count"), Some("42"));
    queue.wait_empty(T).await;
    let skipped = carrier
        .wait_log("skipping a header whose value is over 1 KiB", T)
        .await;
    assert_eq!(skipped["header"], "Huge");
}
