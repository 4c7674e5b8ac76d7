//! Batches in Lambda's SQS event format (SPEC 5.1, issue 17): the real `carrier` binary against
//! moto, POSTing to a worker built on AWS Lambda Powertools for Python (an independent reader of
//! the event and writer of the answer) or to a webhook on 127.0.0.1 that answers each way Lambda
//! knows.

mod support;

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use serde_json::Value;
use support::powertools::PowertoolsWorker;
use support::{
    free_port, http_get, parse_metrics, verify_standard_webhooks, CarrierProcess, Reply, Request,
    Sink, TestQueue,
};

const T: Duration = Duration::from_secs(30);

/// The usual environment in Lambda format, POSTing to `endpoint`.
fn lambda_env(
    queue: &TestQueue,
    endpoint: &str,
    batch_size: usize,
    window: &str,
) -> Vec<(&'static str, String)> {
    vec![
        ("CARRIER_SQS_ENDPOINT", support::moto().endpoint.clone()),
        ("CARRIER_SQS_QUEUE_NAME", queue.name.clone()),
        ("CARRIER_WEBHOOK_ENDPOINT", endpoint.to_string()),
        ("CARRIER_WEBHOOK_FORMAT", "lambda".into()),
        ("CARRIER_WEBHOOK_BATCH_SIZE", batch_size.to_string()),
        ("CARRIER_WEBHOOK_BATCH_WINDOW", window.into()),
    ]
}

/// The records of a POSTed event.
fn records(request: &Request) -> Vec<Value> {
    let event: Value = serde_json::from_str(&request.body).expect("the event is JSON");
    event["Records"].as_array().expect("Records").clone()
}

fn field<'v>(record: &'v Value, name: &str) -> &'v str {
    record[name].as_str().unwrap_or_default()
}

fn receive_count(record: &Value) -> u32 {
    record["attributes"]["ApproximateReceiveCount"]
        .as_str()
        .and_then(|c| c.parse().ok())
        .expect("ApproximateReceiveCount")
}

/// GETs carrier's `/metrics` (once it answers) and parses it with the independent parser.
async fn metrics(port: u16) -> HashMap<String, f64> {
    let (status, text) = tokio::task::spawn_blocking(move || http_get(port, "/metrics"))
        .await
        .unwrap()
        .expect("the admin endpoint answers");
    assert_eq!(status, 200);
    parse_metrics(&text)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_powertools_worker_takes_the_batches_and_only_the_records_it_failed_come_back() {
    let queue = TestQueue::create("lambda-powertools", 30).await;
    let mut bodies = queue.send_many("order", 22).await;
    for i in 0..3 {
        let body = format!("{{\"order\":{i},\"note\":\"please fail\"}}");
        queue.send(&body).await;
        bodies.push(body);
    }
    let worker = PowertoolsWorker::start();
    let mut env = lambda_env(&queue, &worker.url(), 10, "1s");
    env.push(("CARRIER_WEBHOOK_ERROR_VISIBILITY_TIMEOUT", "1s".into()));
    let mut carrier = CarrierProcess::start(&env);

    // Every record processed once, and each failed one seen again after its error timeout.
    worker
        .wait_for("every record, the failed ones twice", T * 2, |lines| {
            let mut seen: HashMap<&str, usize> = HashMap::new();
            for line in lines.iter().filter(|l| l.get("messageId").is_some()) {
                *seen
                    .entry(line["body"].as_str().unwrap_or_default())
                    .or_default() += 1;
            }
            bodies.iter().all(|b| match b.contains("fail") {
                true => seen.get(b.as_str()).copied().unwrap_or(0) >= 2,
                false => seen.contains_key(b.as_str()),
            })
        })
        .await;
    let lines = worker.lines();
    let invalid: Vec<&Value> = lines
        .iter()
        .filter(|l| l.get("invalid").is_some())
        .collect();
    assert!(invalid.is_empty(), "SqsModel refused an event: {invalid:?}");
    let batches: Vec<usize> = lines
        .iter()
        .filter_map(|l| l["batch"].as_u64())
        .map(|n| n as usize)
        .collect();
    assert!(batches.iter().all(|&n| n <= 10), "{batches:?}");
    assert!(
        batches.iter().any(|&n| n > 1),
        "the window gathers receives into batches: {batches:?}"
    );
    // The records that succeeded were deleted at once; only the failing three remain.
    queue.wait_counts((0, 3), T).await;
    let succeeded: HashSet<&str> = lines
        .iter()
        .filter(|l| l["ok"] == true)
        .filter_map(|l| l["body"].as_str())
        .collect();
    assert_eq!(succeeded.len(), 22);
    let processed = lines.iter().filter(|l| l["ok"] == true).count();
    assert_eq!(processed, 22, "no record that succeeded came back");
    carrier.signal("TERM");
    assert!(carrier.wait_exit(T).await.success());
}

/// Each way Lambda fails a whole batch (and 429 with Retry-After, which retries it), once per
/// message: the first receive of a message is answered that way, the second with success.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_whole_batch_failure_brings_each_record_back_and_a_crash_never_follows() {
    const HUGE: usize = 6 * 1024 * 1024 + 1;
    let ways: [(&str, Reply); 9] = [
        ("status-500", Reply::status(500)),
        (
            "function-error-header",
            Reply::status(200)
                .header("X-Amz-Function-Error", "Unhandled")
                .text("{}"),
        ),
        (
            "not-json",
            Reply::status(200).text("Task timed out after 3.00 seconds"),
        ),
        (
            "function-error-body",
            Reply::status(200).text(r#"{"errorType":"Runtime.Exit","errorMessage":"boom"}"#),
        ),
        (
            "unknown-item",
            Reply::status(200).text(r#"{"batchItemFailures":[{"itemIdentifier":"nope"}]}"#),
        ),
        (
            "empty-item",
            Reply::status(200).text(r#"{"batchItemFailures":[{"itemIdentifier":""}]}"#),
        ),
        ("not-an-object", Reply::status(200).text("[]")),
        ("over-6-mb", Reply::status(200).body_of(HUGE)),
        ("retry-after", Reply::status(429).header("Retry-After", "1")),
    ];
    let queue = TestQueue::create("lambda-failures", 30).await;
    for (way, _) in &ways {
        queue.send(way).await;
    }
    let answers: HashMap<&'static str, Reply> = ways.iter().cloned().collect();
    let sink = Sink::start(move |request, _| {
        let record = &records(request)[0];
        match receive_count(record) {
            1 => answers[field(record, "body")].clone(),
            _ => Reply::status(200).text(r#"{"batchItemFailures":[]}"#),
        }
    });
    let port = free_port();
    let mut env = lambda_env(&queue, &sink.url, 1, "0s");
    env.push(("CARRIER_WEBHOOK_ERROR_VISIBILITY_TIMEOUT", "1s".into()));
    env.push(("CARRIER_ADMIN_ADDR", format!("127.0.0.1:{port}")));
    let mut carrier = CarrierProcess::start(&env);

    sink.wait("each message answered twice", T * 2, |s| {
        let mut counts: HashMap<String, usize> = HashMap::new();
        for r in s.requests() {
            for record in records(&r) {
                *counts
                    .entry(field(&record, "body").to_string())
                    .or_default() += 1;
            }
        }
        ways.iter()
            .all(|(way, _)| counts.get(*way) == Some(&2))
            .then_some(())
    })
    .await;
    queue.wait_counts((0, 0), T).await;
    let m = metrics(port).await;
    assert_eq!(
        m["carrier_batches_total{result=\"failed\",route=\"default\"}"], 8.0,
        "{m:?}"
    );
    assert_eq!(
        m["carrier_batches_total{result=\"retry\",route=\"default\"}"],
        1.0
    );
    assert_eq!(
        m["carrier_batches_total{result=\"ok\",route=\"default\"}"],
        9.0
    );
    assert_eq!(
        m["carrier_messages_nacked_total{reason=\"function_error\",route=\"default\"}"],
        7.0
    );
    assert_eq!(
        m["carrier_messages_nacked_total{reason=\"status\",route=\"default\"}"],
        1.0
    );
    assert_eq!(m["carrier_messages_acked_total{route=\"default\"}"], 9.0);
    assert_eq!(m["carrier_batch_records_count{route=\"default\"}"], 18.0);
    carrier.signal("TERM");
    assert!(carrier.wait_exit(T).await.success());
    let failed = carrier.logs_with("batch failed; every record reappears");
    assert!(!failed.is_empty());
    assert!(
        failed.iter().all(|l| l.get("body").is_none()),
        "never a body: {failed:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_partial_answer_deletes_the_rest_and_the_signed_event_names_its_first_record() {
    let queue = TestQueue::create("lambda-partial", 30).await;
    for body in ["keep-1", "fail-me", "keep-2"] {
        queue.send(body).await;
    }
    let sink = Sink::start(|request, _| {
        let failed: Vec<String> = records(request)
            .iter()
            .filter(|r| field(r, "body") == "fail-me" && receive_count(r) == 1)
            .map(|r| format!(r#"{{"itemIdentifier":"{}"}}"#, field(r, "messageId")))
            .collect();
        Reply::status(200).text(&format!(
            r#"{{"batchItemFailures":[{}]}}"#,
            failed.join(",")
        ))
    });
    let secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    let mut env = lambda_env(&queue, &sink.url, 10, "2s");
    env.push(("CARRIER_WEBHOOK_SIGNING_SECRET", secret.into()));
    env.push(("CARRIER_WEBHOOK_ERROR_VISIBILITY_TIMEOUT", "1s".into()));
    let mut carrier = CarrierProcess::start(&env);

    let requests = sink
        .wait("fail-me delivered again", T, |s| {
            let r = s.requests();
            r.iter()
                .flat_map(records)
                .any(|rec| field(&rec, "body") == "fail-me" && receive_count(&rec) == 2)
                .then_some(r)
        })
        .await;
    queue.wait_counts((0, 0), T).await;
    let first = &requests[0];
    let in_first: Vec<String> = records(first)
        .iter()
        .map(|r| field(r, "body").to_string())
        .collect();
    assert_eq!(
        in_first.len(),
        3,
        "gathered within the window: {in_first:?}"
    );
    assert_eq!(
        first.header("webhook-id"),
        Some(field(&records(first)[0], "messageId"))
    );
    assert_eq!(first.header("content-type"), Some("application/json"));
    let verdicts = verify_standard_webhooks(&[secret], &requests);
    assert_eq!(verdicts.len(), requests.len());
    assert!(verdicts.iter().all(|v| v.ends_with(": ok")), "{verdicts:?}");
    // keep-1 and keep-2 were deleted after the first answer: never POSTed again.
    let keeps = requests
        .iter()
        .flat_map(records)
        .filter(|r| field(r, "body").starts_with("keep"))
        .count();
    assert_eq!(keeps, 2);
    carrier.signal("TERM");
    assert!(carrier.wait_exit(T).await.success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifo_batches_keep_each_groups_order_one_batch_per_group_and_fail_what_follows_a_failure() {
    let queue = TestQueue::create_fifo("lambda-fifo", 30).await;
    let a: Vec<String> = (1..=6).map(|i| format!("a{i}")).collect();
    let b: Vec<String> = (1..=3).map(|i| format!("b{i}")).collect();
    queue.send_fifo("a", &a).await;
    queue.send_fifo("b", &b).await;
    // a3 fails on its first delivery; the function says a4 (after it, same group) succeeded.
    let sink = Sink::start(|request, _| {
        let failed: Vec<String> = records(request)
            .iter()
            .filter(|r| field(r, "body") == "a3" && receive_count(r) == 1)
            .map(|r| format!(r#"{{"itemIdentifier":"{}"}}"#, field(r, "messageId")))
            .collect();
        Reply::status(200)
            .text(&format!(
                r#"{{"batchItemFailures":[{}]}}"#,
                failed.join(",")
            ))
            .after(Duration::from_millis(300))
    });
    let mut env = lambda_env(&queue, &sink.url, 4, "1s");
    env.push(("CARRIER_SQS_RECEIVER_WORKERS", "2".into()));
    env.push(("CARRIER_WEBHOOK_ERROR_VISIBILITY_TIMEOUT", "1s".into()));
    let mut carrier = CarrierProcess::start(&env);

    queue.wait_counts((0, 0), T * 2).await;
    let requests = sink.requests();
    // The records that succeeded, in the order they did: each group in its order, a3 and what
    // followed it in its batch only after a3 came back.
    let mut done: HashMap<char, Vec<String>> = HashMap::new();
    let mut a3_failed = false;
    for r in &requests {
        for rec in records(r) {
            let body = field(&rec, "body").to_string();
            if body == "a3" && receive_count(&rec) == 1 {
                a3_failed = true;
                continue;
            }
            let group = body.chars().next().unwrap();
            let seen = done.entry(group).or_default();
            if a3_failed && group == 'a' && !seen.contains(&"a3".to_string()) && body != "a3" {
                // Released unsent, whatever the function said: not done yet.
                continue;
            }
            if !seen.contains(&body) {
                seen.push(body);
            }
        }
    }
    assert!(a3_failed);
    assert_eq!(done[&'a'], a);
    assert_eq!(done[&'b'], b);
    // In every POST each group's records are in order, and no two POSTs in flight at once share
    // a group (each answer takes 300 ms).
    for (i, r) in requests.iter().enumerate() {
        let groups: Vec<String> = records(r)
            .iter()
            .map(|rec| {
                rec["attributes"]["MessageGroupId"]
                    .as_str()
                    .unwrap()
                    .to_string()
            })
            .collect();
        for other in &requests[i + 1..] {
            let overlapping = other.at < r.at + Duration::from_millis(300);
            let shared = records(other).iter().any(|rec| {
                groups.contains(
                    &rec["attributes"]["MessageGroupId"]
                        .as_str()
                        .unwrap()
                        .to_string(),
                )
            });
            assert!(!(overlapping && shared), "two POSTs of one group in flight");
        }
        let bodies: Vec<String> = records(r)
            .iter()
            .map(|rec| field(rec, "body").to_string())
            .collect();
        for group in ["a", "b"] {
            let of_group: Vec<&String> = bodies.iter().filter(|b| b.starts_with(group)).collect();
            let mut sorted = of_group.clone();
            sorted.sort();
            assert_eq!(of_group, sorted, "order within a POST: {bodies:?}");
        }
    }
    carrier.signal("TERM");
    assert!(carrier.wait_exit(T).await.success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_being_gathered_is_released_at_once_on_sigterm() {
    let queue = TestQueue::create("lambda-drain", 30).await;
    queue.send("early-1").await;
    queue.send("early-2").await;
    let sink = Sink::answering(200);
    let mut env = lambda_env(&queue, &sink.url, 10, "300s");
    env.push(("CARRIER_LOG_LEVEL", "debug".into()));
    let mut carrier = CarrierProcess::start(&env);

    carrier
        .wait(
            |c| {
                let n: u64 = c
                    .logs_with("received messages")
                    .iter()
                    .filter_map(|l| l["count"].as_u64())
                    .sum();
                (n == 2).then_some(())
            },
            T,
        )
        .await;
    queue.wait_counts((0, 2), T).await;
    carrier.signal("TERM");
    assert!(carrier.wait_exit(T).await.success());
    queue.wait_counts((2, 0), T).await;
    assert_eq!(sink.request_count(), 0, "not sent: released");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_heartbeat_keeps_a_slow_batch_invisible_so_no_record_is_posted_twice() {
    let queue = TestQueue::create("lambda-slow", 2).await;
    let bodies = queue.send_many("slow", 5).await;
    let sink = Sink::start(|_, _| Reply::status(200).after(Duration::from_secs(5)));
    let env = lambda_env(&queue, &sink.url, 10, "1s");
    let mut carrier = CarrierProcess::start(&env);

    queue.wait_counts((0, 0), T).await;
    let posted: Vec<String> = sink
        .requests()
        .iter()
        .flat_map(records)
        .map(|r| field(&r, "body").to_string())
        .collect();
    let mut sorted = posted.clone();
    sorted.sort();
    let mut want = bodies.clone();
    want.sort();
    assert_eq!(
        sorted, want,
        "each once, though the job outlasts the visibility timeout twice"
    );
    carrier.signal("TERM");
    assert!(carrier.wait_exit(T).await.success());
}

/// A webhook on 127.0.0.1 that answers the first `cut` POSTs with `head` and then closes the
/// connection (a worker killed mid-answer, a proxy reset), and every later one with an empty
/// success. Returns its URL and the count of POSTs.
fn cutting_webhook(
    head: &'static str,
    cut: usize,
) -> (String, std::sync::Arc<std::sync::atomic::AtomicUsize>) {
    use std::io::{BufRead, BufReader, Read, Write};
    use std::sync::atomic::Ordering;
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/invocations", listener.local_addr().unwrap());
    let posts = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let seen = posts.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming().take(50) {
            let Ok(mut stream) = stream else { continue };
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            // One request per connection: headers, then the body by Content-Length.
            let mut length = 0;
            loop {
                let mut line = String::new();
                if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                    break;
                }
                if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                    length = v.trim().parse().unwrap_or(0);
                }
            }
            let mut body = vec![0; length];
            let _ = reader.read_exact(&mut body);
            let n = seen.fetch_add(1, Ordering::SeqCst);
            let answer = if n < cut {
                head
            } else {
                "HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
            };
            let _ = stream.write_all(answer.as_bytes());
            // Dropped: closed, whatever the head promised.
        }
    });
    (url, posts)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_answer_cut_off_before_its_body_fails_the_batch_instead_of_deleting_it() {
    let heads = [
        "HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n",
        "HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n   ",
        "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n",
    ];
    for head in heads {
        let queue = TestQueue::create("lambda-cut", 30).await;
        queue.send_many("cut", 3).await;
        let (url, posts) = cutting_webhook(head, 1);
        let port = free_port();
        let mut env = lambda_env(&queue, &url, 10, "1s");
        env.push(("CARRIER_WEBHOOK_ERROR_VISIBILITY_TIMEOUT", "1s".into()));
        env.push(("CARRIER_ADMIN_ADDR", format!("127.0.0.1:{port}")));
        let mut carrier = CarrierProcess::start(&env);

        queue.wait_counts((0, 0), T).await;
        let m = metrics(port).await;
        assert!(
            posts.load(std::sync::atomic::Ordering::SeqCst) >= 2,
            "{head:?}: the batch came back and was POSTed again"
        );
        assert_eq!(
            m["carrier_batches_total{result=\"failed\",route=\"default\"}"], 1.0,
            "{head:?}"
        );
        assert_eq!(
            m["carrier_messages_acked_total{route=\"default\"}"], 3.0,
            "{head:?}: once, after the good answer"
        );
        carrier.signal("TERM");
        assert!(carrier.wait_exit(T).await.success());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batches_failing_as_if_the_function_were_down_hold_receiving_after_one_round_of_workers() {
    // One worker, batches of 10: a 502 batch is one failure, and three in a row (the least of a
    // round of workers, at least 3) bring the health check forward and hold receiving; the
    // batches in between must not burn 10 receive counts each (the hold once came after 10).
    let queue = TestQueue::create("lambda-doubt", 30).await;
    let sink = Sink::answering(502);
    let mut env = lambda_env(&queue, &sink.url, 10, "0s");
    env.extend([
        (
            "CARRIER_WEBHOOK_HEALTH_CHECK_ENDPOINT",
            sink.health_url.clone(),
        ),
        ("CARRIER_WEBHOOK_HEALTH_CHECK_INTERVAL", "60s".into()),
        ("CARRIER_WEBHOOK_OFFLINE_THRESHOLD_COUNT", "5".into()),
        ("CARRIER_WEBHOOK_ERROR_VISIBILITY_TIMEOUT", "1s".into()),
    ]);
    let mut carrier = CarrierProcess::start(&env);
    carrier.wait_log("carrier has arrived", T).await;
    sink.set_health(503);
    queue.send_many("doubt", 100).await;
    carrier
        .wait_log(
            "deliveries failing as if the webhook were down; receiving held until a health check passes",
            T,
        )
        .await;
    carrier.wait_log("health check failed", T).await;
    let posts = sink.request_count();
    assert!(
        (3..=4).contains(&posts),
        "{posts} failed batches before the hold"
    );
    carrier.signal("TERM");
    assert_eq!(carrier.wait_exit(T).await.code(), Some(0));
}
