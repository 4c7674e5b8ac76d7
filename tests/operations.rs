//! Running carrier in a pod (SPEC 4.11, issue 10): the admin endpoints, metrics read by an
//! independent parser, a log reader that stalls, bounded repeated warnings, HTTPS without CA
//! certificates. The real binary against moto and a webhook on 127.0.0.1.

mod support;

use std::time::{Duration, Instant};

use support::fake_sqs::{FakeSqs, QueueConfig};
use support::{admin_get, free_port, parse_metrics, CarrierProcess, Reply, Sink, TestQueue};

const T: Duration = Duration::from_secs(30);

fn with_admin(queue: &TestQueue, sink: &Sink, port: u16) -> Vec<(&'static str, String)> {
    let mut env = CarrierProcess::env_for(queue, sink);
    env.push(("CARRIER_ADMIN_ADDR", format!("127.0.0.1:{port}")));
    env
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_count_exactly_what_the_test_sent() {
    let queue = TestQueue::create("metrics", 30).await;
    for body in ["ok-1", "ok-2", "ok-3", "retry-once", "fail-once"] {
        queue.send(body).await;
    }
    let sink = Sink::start(|r, seen| match (r.body.as_str(), seen) {
        ("retry-once", 0) => Reply::status(429).header("Retry-After", "1"),
        ("fail-once", 0) => Reply::status(500),
        _ => Reply::status(200),
    });
    let port = free_port();
    let mut env = with_admin(&queue, &sink, port);
    env.push(("CARRIER_WEBHOOK_ERROR_VISIBILITY_TIMEOUT", "1s".into()));
    env.push(("CARRIER_SQS_RECEIVER_WORKERS", "5".into()));
    let _carrier = CarrierProcess::start(&env);
    let bodies: Vec<String> = ["ok-1", "ok-2", "ok-3", "retry-once", "fail-once"]
        .map(String::from)
        .to_vec();
    sink.wait_answered_all(&bodies, T).await;
    queue.wait_empty(T).await;
    // The queue is empty once SQS has the deletes; carrier counts them when SQS's answers reach
    // it, a moment later. There is no event for that outside the process: poll, bounded.
    let deadline = Instant::now() + T;
    let m = loop {
        let (status, text) = admin_get(port, "/metrics").await;
        assert_eq!(status, 200);
        let m = parse_metrics(&text);
        if m.get("carrier_messages_in_flight{route=\"default\"}") == Some(&0.0) {
            break m;
        }
        assert!(
            Instant::now() < deadline,
            "in flight never reached 0: {m:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(m["carrier_messages_acked_total{route=\"default\"}"], 5.0);
    assert_eq!(
        m["carrier_messages_received_total{route=\"default\"}"], 7.0,
        "5 sent, 2 redelivered"
    );
    assert_eq!(m["carrier_messages_retried_total{route=\"default\"}"], 1.0);
    assert_eq!(
        m["carrier_messages_nacked_total{reason=\"status\",route=\"default\"}"],
        1.0
    );
    assert_eq!(
        m["carrier_messages_dead_lettered_total{route=\"default\"}"],
        0.0
    );
    assert_eq!(
        m["carrier_webhook_request_duration_seconds_count{class=\"2xx\",route=\"default\"}"],
        5.0
    );
    assert_eq!(
        m["carrier_webhook_request_duration_seconds_count{class=\"4xx\",route=\"default\"}"],
        1.0
    );
    assert_eq!(
        m["carrier_webhook_request_duration_seconds_count{class=\"5xx\",route=\"default\"}"],
        1.0
    );
    assert!(m["carrier_sqs_request_duration_seconds_count{operation=\"ReceiveMessage\",route=\"default\"}"] >= 1.0);
    assert!(
        m["carrier_sqs_request_duration_seconds_count{operation=\"DeleteMessageBatch\",route=\"default\"}"] >= 1.0
    );
    assert_eq!(
        m[&format!(
            "carrier_build_info{{version=\"{}\"}}",
            env!("CARGO_PKG_VERSION")
        )],
        1.0
    );
    assert_eq!(m["carrier_log_lines_dropped_total"], 0.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readyz_turns_false_the_moment_a_drain_begins_while_healthz_stays_up() {
    let queue = TestQueue::create("readyz", 30).await;
    queue.send("slow").await;
    let sink = Sink::start(|_, _| Reply::status(200).after(Duration::from_secs(3)));
    let port = free_port();
    let mut carrier = CarrierProcess::start(&with_admin(&queue, &sink, port));
    carrier.wait_log("admin endpoints listening", T).await;
    assert_eq!(admin_get(port, "/healthz").await.0, 200);
    sink.wait_requests(1, T).await;
    assert_eq!(
        admin_get(port, "/readyz").await.0,
        200,
        "resolved, online, receiving"
    );

    carrier.signal("TERM");
    carrier.wait_log("draining", T).await;
    let (status, body) = admin_get(port, "/readyz").await;
    assert_eq!((status, body.trim()), (503, "not ready"));
    assert_eq!(
        admin_get(port, "/healthz").await.0,
        200,
        "alive while draining"
    );
    assert_eq!(carrier.wait_exit(T).await.code(), Some(0));
    assert_eq!(sink.answered(), ["slow"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readyz_waits_for_the_webhook_to_come_online() {
    let queue = TestQueue::create("readyz-gate", 30).await;
    let sink = Sink::answering(200);
    sink.set_health(503);
    let port = free_port();
    let mut env = with_admin(&queue, &sink, port);
    env.push((
        "CARRIER_WEBHOOK_HEALTH_CHECK_ENDPOINT",
        sink.health_url.clone(),
    ));
    env.push(("CARRIER_WEBHOOK_HEALTH_CHECK_INTERVAL", "100ms".into()));
    let carrier = CarrierProcess::start(&env);
    carrier.wait_log("queue resolved", T).await;
    sink.wait("2 health checks", T, |s| {
        (s.health_checks() >= 2).then_some(())
    })
    .await;
    assert_eq!(admin_get(port, "/readyz").await.0, 503);
    assert_eq!(admin_get(port, "/healthz").await.0, 200);
    sink.set_health(200);
    carrier.wait_log("carrier has arrived", T).await;
    assert_eq!(admin_get(port, "/readyz").await.0, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn repeated_warnings_are_bounded_and_summarised() {
    let queue = TestQueue::create("noisy", 30).await;
    queue.send_many("failing", 30).await;
    let sink = Sink::answering(500);
    let mut env = CarrierProcess::env_for(&queue, &sink);
    env.push(("CARRIER_SQS_BATCH_SIZE", "10".into()));
    env.push(("CARRIER_SQS_RECEIVER_WORKERS", "10".into()));
    let mut carrier = CarrierProcess::start(&env);
    sink.wait_requests(30, T).await;
    carrier.signal("TERM");
    assert_eq!(carrier.wait_exit(T).await.code(), Some(0));
    let logged = carrier
        .logs_with("delivery failed; the message reappears after its visibility timeout")
        .len();
    let suppressed: u64 = carrier
        .logs_with("similar warnings suppressed")
        .iter()
        .filter(|l| l["kind"] == "delivery failed")
        .map(|l| l["count"].as_u64().unwrap())
        .sum();
    assert!(logged <= 20, "bounded: {logged} lines");
    assert_eq!(
        logged as u64 + suppressed,
        30,
        "every failure logged or counted"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_https_webhook_without_ca_certificates_refuses_to_start() {
    let mut carrier = CarrierProcess::start(&[
        ("CARRIER_SQS_QUEUE_NAME", "q".into()),
        (
            "CARRIER_WEBHOOK_ENDPOINT",
            "HTTPS://127.0.0.1:1/events".into(),
        ),
        ("SSL_CERT_FILE", "/nonexistent/ca.pem".into()),
        ("SSL_CERT_DIR", "/nonexistent".into()),
    ]);
    assert_eq!(carrier.wait_exit(T).await.code(), Some(2));
    let stderr = carrier.stderr();
    assert!(stderr.contains("no CA certificates were found"), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_admin_address_is_a_config_error() {
    let mut carrier = CarrierProcess::start(&[
        ("CARRIER_SQS_QUEUE_NAME", "q".into()),
        ("CARRIER_ADMIN_ADDR", "localhost".into()),
    ]);
    assert_eq!(carrier.wait_exit(T).await.code(), Some(2));
    assert!(carrier
        .stderr()
        .contains("CARRIER_ADMIN_ADDR=\"localhost\""));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubernetes_service_variables_are_not_called_unknown() {
    let queue = TestQueue::create("k8s-env", 30).await;
    let sink = Sink::answering(200);
    let mut env = CarrierProcess::env_for(&queue, &sink);
    for (k, v) in [
        ("CARRIER_SERVICE_HOST", "10.0.0.1"),
        ("CARRIER_SERVICE_PORT", "9464"),
        ("CARRIER_SERVICE_PORT_ADMIN", "9464"),
        ("CARRIER_PORT", "tcp://10.0.0.1:9464"),
        ("CARRIER_PORT_9464_TCP", "tcp://10.0.0.1:9464"),
        ("CARRIER_PORT_9464_TCP_PROTO", "tcp"),
        ("CARRIER_PORT_9464_TCP_PORT", "9464"),
        ("CARRIER_PORT_9464_TCP_ADDR", "10.0.0.1"),
        ("CARRIER_WEBHOOK_TIMEOUT", "5s"),
    ] {
        env.push((k, v.into()));
    }
    let carrier = CarrierProcess::start(&env);
    carrier.wait_log("carrier has arrived", T).await;
    let unknown: Vec<_> = carrier
        .logs_with("unknown configuration variable ignored")
        .iter()
        .map(|l| l["variable"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(unknown, ["CARRIER_WEBHOOK_TIMEOUT"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_log_reader_never_stalls_delivery_or_shutdown() {
    // The in-memory SQS server: thousands of debug lines within a second or two.
    let sqs = FakeSqs::start();
    sqs.create_queue("logged", QueueConfig::standard());
    let bodies: Vec<String> = (0..3000).map(|i| format!("logged-{i}")).collect();
    sqs.send_all("logged", &bodies);
    let sink = Sink::answering(200);
    let port = free_port();
    let mut env = sqs.carrier_env("logged", &sink);
    env.push(("CARRIER_ADMIN_ADDR", format!("127.0.0.1:{port}")));
    // Debug lines for every message: far more than a pipe and the log queue hold.
    env.push(("CARRIER_LOG_LEVEL", "debug".into()));
    env.push(("CARRIER_SQS_BATCH_SIZE", "10".into()));
    env.push(("CARRIER_SQS_RECEIVER_WORKERS", "10".into()));
    let (mut carrier, release) = CarrierProcess::start_with_stalled_stdout(&env);
    sqs.wait("every message deleted", Duration::from_secs(60), |s| {
        (s.counts("logged").deleted == 3000).then_some(())
    })
    .await;
    let (_, text) = admin_get(port, "/metrics").await;
    let dropped = parse_metrics(&text)["carrier_log_lines_dropped_total"];
    assert!(dropped > 0.0, "lines were dropped, not waited for");
    let signalled = Instant::now();
    carrier.signal("TERM");
    // Still nobody reads stdout: the drain and the exit must not wait for it.
    assert_eq!(carrier.wait_exit(T).await.code(), Some(0));
    assert!(signalled.elapsed() < Duration::from_secs(10));
    drop(release);
}

/// One `/healthz` GET (HTTP/1.0, so the server closes after answering): the status.
async fn probe_healthz(port: u16) -> std::io::Result<u16> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", port)).await?;
    stream
        .write_all(b"GET /healthz HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")
        .await?;
    let mut response = Vec::new();
    stream.read_to_end(&mut response).await?;
    let status = String::from_utf8_lossy(&response)
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    Ok(status)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn healthz_answers_within_a_second_while_100_idle_or_half_sent_connections_are_open() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    const PROBE_TIMEOUT: Duration = Duration::from_secs(1);
    let queue = TestQueue::create("admin-flood", 30).await;
    let sink = Sink::answering(200);
    let port = free_port();
    let carrier = CarrierProcess::start(&with_admin(&queue, &sink, port));
    carrier.wait_log("admin endpoints listening", T).await;
    assert_eq!(admin_get(port, "/healthz").await.0, 200);

    let mut held = Vec::new();
    for i in 0..100 {
        let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .expect("connect to the admin port");
        if i % 2 == 0 {
            // Half a request, never finished.
            stream
                .write_all(b"GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ")
                .await
                .unwrap();
        }
        held.push(stream);
    }
    for probe in 0..8 {
        let result = tokio::time::timeout(PROBE_TIMEOUT, probe_healthz(port)).await;
        assert!(
            matches!(result, Ok(Ok(200))),
            "probe {probe} with 100 connections open: {result:?}"
        );
    }
    // Idle connections do not stay forever: the server closes them after a few seconds.
    let mut buf = [0u8; 256];
    for stream in held.iter_mut().take(2) {
        let closed = tokio::time::timeout(T, async {
            while stream.read(&mut buf).await.is_ok_and(|n| n > 0) {}
        })
        .await;
        assert!(closed.is_ok(), "an idle admin connection was never closed");
    }
}
