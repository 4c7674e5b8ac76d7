//! Lifecycle of the real `carrier` binary: configuration errors, health gating, signals, and
//! behaviour when SQS is unreachable.

mod support;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use support::{free_port, moto, CarrierProcess, Reply, Sink, TestQueue};

const T: Duration = Duration::from_secs(30);

/// The usual environment plus a health check of the sink every `interval`.
fn health_checked(
    queue: &TestQueue,
    sink: &Sink,
    interval: &str,
    threshold: &str,
) -> Vec<(&'static str, String)> {
    let mut env = CarrierProcess::env_for(queue, sink);
    env.push((
        "CARRIER_WEBHOOK_HEALTH_CHECK_ENDPOINT",
        sink.health_url.clone(),
    ));
    env.push(("CARRIER_WEBHOOK_HEALTH_CHECK_INTERVAL", interval.into()));
    env.push(("CARRIER_WEBHOOK_OFFLINE_THRESHOLD_COUNT", threshold.into()));
    env
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_config_exits_2_naming_every_bad_variable() {
    let mut carrier = CarrierProcess::start(&[
        ("CARRIER_SQS_BATCH_SIZE", "11".into()),
        ("CARRIER_SQS_RECEIVER_WORKERS", "many".into()),
        ("CARRIER_WEBHOOK_ENDPOINT", "localhost:9000".into()),
        ("CARRIER_WEBHOOK_REQUEST_TIMEOUT", "60".into()),
        ("CARRIER_ENABLE_STAT_LOG", "yes".into()),
    ]);
    let status = carrier.wait_exit(T).await;
    assert_eq!(status.code(), Some(2));
    let stderr = carrier.stderr();
    for needle in [
        "CARRIER_SQS_QUEUE_NAME is required",
        "CARRIER_SQS_BATCH_SIZE=\"11\": must be a whole number from 0 to 10",
        "CARRIER_SQS_RECEIVER_WORKERS=\"many\"",
        "CARRIER_WEBHOOK_ENDPOINT=\"localhost:9000\"",
        "CARRIER_WEBHOOK_REQUEST_TIMEOUT=\"60\": expected a duration such as 300ms, 30s, 2m, 1h30m or 1.5h",
        "CARRIER_ENABLE_STAT_LOG=\"yes\": must be true or false",
    ] {
        assert!(stderr.contains(needle), "missing {needle:?} in:\n{stderr}");
    }
    assert!(!stderr.contains("panicked"), "no panic trace:\n{stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_mid_delivery_finishes_it_deletes_the_message_and_exits_0() {
    let queue = TestQueue::create("sigterm", 30).await;
    queue.send("in-flight").await;
    let sink = Sink::start(|_, _| Reply::status(200).after(Duration::from_secs(2)));
    let mut carrier = CarrierProcess::start(&CarrierProcess::env_for(&queue, &sink));

    sink.wait_requests(1, T).await;
    carrier.signal("TERM");
    let status = carrier.wait_exit(T).await;
    assert_eq!(status.code(), Some(0));
    assert_eq!(
        sink.answered(),
        ["in-flight"],
        "the delivery ran to completion"
    );
    assert_eq!(
        queue.counts().await,
        (0, 0),
        "its Ack was applied before exit"
    );
    assert_eq!(carrier.logs_with("draining")[0]["in_flight"], 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_sigterm_aborts_the_long_poll_and_exits_at_once() {
    let queue = TestQueue::create("idle", 30).await;
    let sink = Sink::answering(200);
    let mut carrier = CarrierProcess::start(&CarrierProcess::env_for(&queue, &sink));
    carrier.wait_log("carrier has arrived", T).await;

    let signalled = Instant::now();
    carrier.signal("INT");
    let status = carrier.wait_exit(T).await;
    assert_eq!(status.code(), Some(0));
    // A 20 s long poll is open; waiting it out would take far longer than this.
    assert!(
        signalled.elapsed() < Duration::from_secs(5),
        "took {:?}",
        signalled.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_timeout_bounds_the_wait_for_a_stuck_delivery() {
    let queue = TestQueue::create("stuck", 30).await;
    queue.send("stuck").await;
    let sink = Sink::start(|_, _| Reply::status(200).after(Duration::from_secs(60)));
    let mut env = CarrierProcess::env_for(&queue, &sink);
    env.push(("CARRIER_SHUTDOWN_TIMEOUT", "1s".into()));
    let mut carrier = CarrierProcess::start(&env);

    sink.wait_requests(1, T).await;
    carrier.signal("TERM");
    assert_eq!(carrier.wait_exit(T).await.code(), Some(0));
    carrier.wait_log("shutdown timeout reached; unfinished deliveries reappear after their visibility timeout", T).await;
    assert_eq!(
        queue.counts().await,
        (0, 1),
        "not acknowledged, so not deleted"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_check_gates_receiving_until_the_webhook_is_healthy() {
    let queue = TestQueue::create("gate", 30).await;
    queue.send("gated").await;
    let sink = Sink::answering(200);
    sink.set_health(503);
    let carrier = CarrierProcess::start(&health_checked(&queue, &sink, "200ms", "100"));

    sink.wait("3 failed health checks", T, |s| {
        (s.health_checks() >= 3).then_some(())
    })
    .await;
    assert!(
        sink.requests().is_empty(),
        "nothing delivered while unhealthy"
    );
    assert_eq!(
        queue.counts().await,
        (1, 0),
        "nothing even received while unhealthy"
    );
    assert!(carrier.logs_with("carrier has arrived").is_empty());

    sink.set_health(200);
    sink.wait_requests(1, T).await;
    let lines = carrier.log_lines();
    let online = lines
        .iter()
        .position(|l| l.contains("\"webhook online\""))
        .expect("webhook online");
    let arrived = lines
        .iter()
        .position(|l| l.contains("\"carrier has arrived\""))
        .expect("arrived");
    assert!(online < arrived);
    queue.wait_empty(T).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn first_health_check_runs_at_once_not_after_an_interval() {
    let queue = TestQueue::create("first-check", 30).await;
    let sink = Sink::answering(200);
    let carrier = CarrierProcess::start(&health_checked(&queue, &sink, "1h", "5"));
    carrier.wait_log("carrier has arrived", T).await;
    assert_eq!(sink.health_checks(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhook_going_offline_drains_and_exits_nonzero() {
    let queue = TestQueue::create("offline", 30).await;
    let sink = Sink::answering(200);
    let mut carrier = CarrierProcess::start(&health_checked(&queue, &sink, "200ms", "2"));
    carrier.wait_log("carrier has arrived", T).await;

    sink.set_health(500);
    let status = carrier.wait_exit(T).await;
    assert_eq!(status.code(), Some(1));
    assert_eq!(carrier.logs_with("webhook offline").len(), 1);
    assert_eq!(carrier.logs_with("draining")[0]["reason"], "WebhookOffline");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn runs_against_an_emulator_with_no_aws_credentials_anywhere() {
    // The harness clears the environment: no AWS_* variables, HOME without ~/.aws.
    let queue = TestQueue::create("nocreds", 30).await;
    queue.send("anonymous").await;
    let sink = Sink::answering(200);
    let started = Instant::now();
    let _carrier = CarrierProcess::start(&CarrierProcess::env_for(&queue, &sink));
    sink.wait_requests(1, T).await;
    // No metadata-service probing: the first delivery comes quickly.
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "took {:?}",
        started.elapsed()
    );
    queue.wait_empty(T).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreachable_sqs_backs_off_instead_of_spinning() {
    let closed = free_port();
    let sink = Sink::answering(200);
    let mut carrier = CarrierProcess::start(&[
        (
            "CARRIER_SQS_QUEUE_URL",
            format!("http://127.0.0.1:{closed}/000000000000/nowhere"),
        ),
        ("CARRIER_WEBHOOK_ENDPOINT", sink.url.clone()),
    ]);
    let failures = carrier
        .wait_log_count("failed to receive messages", 5, T)
        .await;
    let delays: Vec<u64> = failures
        .iter()
        .map(|f| f["retry_in_ms"].as_u64().unwrap())
        .collect();
    assert!(
        delays.windows(2).all(|w| w[0] <= w[1]),
        "delays grow: {delays:?}"
    );
    assert!(delays[4] >= 1_000, "exponential: {delays:?}");
    carrier.signal("TERM");
    assert_eq!(carrier.wait_exit(T).await.code(), Some(0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queue_resolution_retries_instead_of_panicking() {
    let sink = Sink::answering(200);
    let mut carrier = CarrierProcess::start(&[
        ("CARRIER_SQS_ENDPOINT", moto().endpoint.clone()),
        ("CARRIER_SQS_QUEUE_NAME", "does-not-exist-yet".into()),
        ("CARRIER_WEBHOOK_ENDPOINT", sink.url.clone()),
    ]);
    let retries = carrier
        .wait_log_count("failed to resolve queue URL, retrying", 2, T)
        .await;
    assert_eq!(retries[0]["queue_name"], "does-not-exist-yet");
    carrier.signal("TERM");
    assert_eq!(carrier.wait_exit(T).await.code(), Some(0));
    assert!(!carrier.stderr().contains("panicked"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stat_log_reports_memory_and_counters() {
    let queue = TestQueue::create("stats", 30).await;
    queue.send("counted").await;
    let sink = Sink::answering(200);
    let mut env = CarrierProcess::env_for(&queue, &sink);
    env.push(("CARRIER_ENABLE_STAT_LOG", "true".into()));
    env.push(("CARRIER_STAT_LOG_TIMER", "200ms".into()));
    let carrier = CarrierProcess::start(&env);
    sink.wait_requests(1, T).await;
    let stats = carrier
        .wait(
            |c| c.logs_with("stats").into_iter().find(|s| s["acked"] == 1),
            T,
        )
        .await;
    assert!(stats["rss_bytes"].as_u64().unwrap() > 1_000_000, "{stats}");
    assert!(stats["threads"].as_u64().unwrap() >= 1, "{stats}");
    assert_eq!(stats["received"], 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn colorized_logging_writes_human_lines() {
    let queue = TestQueue::create("colour", 30).await;
    let sink = Sink::answering(200);
    let mut env = CarrierProcess::env_for(&queue, &sink);
    env.push(("CARRIER_ENABLE_COLORIZED_LOGGING", "true".into()));
    env.push(("TERM", "xterm-256color".into()));
    let carrier = CarrierProcess::start(&env);
    let line = carrier
        .wait(
            |c| {
                c.log_lines()
                    .into_iter()
                    .find(|l| l.contains("carrier has arrived"))
            },
            T,
        )
        .await;
    assert!(line.contains('\u{1b}'), "ANSI colours: {line:?}");
    assert!(!line.starts_with('{'), "not JSON: {line:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_queue_url_replaces_name_and_endpoint_and_unknown_variables_are_named() {
    let queue = TestQueue::create("by-url", 30).await;
    queue.send("via-url").await;
    let sink = Sink::answering(200);
    let carrier = CarrierProcess::start(&[
        ("CARRIER_SQS_QUEUE_URL", queue.url.clone()),
        ("CARRIER_WEBHOOK_ENDPOINT", sink.url.clone()),
        ("CARRIER_SQS_BATCHSIZE", "10".into()),
    ]);
    sink.wait_requests(1, T).await;
    queue.wait_empty(T).await;
    let unknown = carrier.logs_with("unknown configuration variable ignored");
    assert_eq!(unknown.len(), 1);
    assert_eq!(unknown[0]["variable"], "CARRIER_SQS_BATCHSIZE");
    assert!(
        !unknown[0].to_string().contains("\"10\""),
        "values are not logged"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_booting_worker_is_waited_for_without_counting_failures() {
    let queue = TestQueue::create("slow-boot", 30).await;
    queue.send("after-boot").await;
    let sink = Sink::answering(200);
    sink.set_health(503);
    // Threshold 2 at 100 ms: Go would give up within a second.
    let carrier = CarrierProcess::start(&health_checked(&queue, &sink, "100ms", "2"));
    sink.wait("10 failed health checks", T, |s| {
        (s.health_checks() >= 10).then_some(())
    })
    .await;
    assert!(carrier.logs_with("webhook offline").is_empty());
    assert!(sink.requests().is_empty());
    let waiting = carrier.logs_with("waiting for the webhook to come online");
    assert!(
        !waiting.is_empty() && waiting.len() <= 2,
        "logged at a bounded rate: {waiting:?}"
    );
    sink.set_health(200);
    sink.wait_requests(1, T).await;
    queue.wait_empty(T).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_startup_timeout_bounds_the_wait_for_a_worker_that_never_comes_up() {
    let queue = TestQueue::create("never-up", 30).await;
    queue.send("undelivered").await;
    let sink = Sink::answering(200);
    sink.set_health(503);
    let mut env = health_checked(&queue, &sink, "100ms", "2");
    env.push(("CARRIER_WEBHOOK_STARTUP_TIMEOUT", "1s".into()));
    let started = Instant::now();
    let mut carrier = CarrierProcess::start(&env);
    assert_eq!(carrier.wait_exit(T).await.code(), Some(1));
    assert!(started.elapsed() >= Duration::from_secs(1));
    carrier
        .wait_log("webhook did not come online within the startup timeout", T)
        .await;
    assert_eq!(queue.counts().await, (1, 0), "nothing was received");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn offline_action_pause_stops_receiving_and_resumes_when_the_webhook_is_healthy() {
    let queue = TestQueue::create("pause", 30).await;
    let sink = Sink::answering(200);
    let mut env = health_checked(&queue, &sink, "100ms", "2");
    env.push(("CARRIER_WEBHOOK_OFFLINE_ACTION", "pause".into()));
    let mut carrier = CarrierProcess::start(&env);
    carrier.wait_log("carrier has arrived", T).await;

    sink.set_health(500);
    carrier
        .wait_log("receiving paused until the webhook is healthy again", T)
        .await;
    queue.send("while-paused").await;
    let checks = sink.health_checks();
    sink.wait("10 more health checks", T, |s| {
        (s.health_checks() >= checks + 10).then_some(())
    })
    .await;
    assert!(sink.requests().is_empty(), "nothing delivered while paused");
    // The poll open at the pause brought it in: held invisible, not released and received again.
    assert_eq!(queue.counts().await, (0, 1));

    sink.set_health(200);
    carrier.wait_log("receiving resumed", T).await;
    let r = sink.wait_requests(1, T).await.remove(0);
    assert_eq!(
        r.header("x-carrier-receive-count"),
        Some("1"),
        "no receive count burned while the webhook was down"
    );
    queue.wait_empty(T).await;
    carrier.signal("TERM");
    assert_eq!(
        carrier.wait_exit(T).await.code(),
        Some(0),
        "paused, never exited"
    );
}

/// A carrier health-checking the sink at Go's cadence (every minute, offline after 5) with 3
/// workers, whose failed messages come back after 1 s; started, and arrived.
async fn health_checked_at_go_cadence(
    queue: &TestQueue,
    sink: &Sink,
    extra: &[(&'static str, &str)],
) -> CarrierProcess {
    let mut env = health_checked(queue, sink, "60s", "5");
    env.extend([
        ("CARRIER_SQS_RECEIVER_WORKERS", "3".to_string()),
        ("CARRIER_WEBHOOK_ERROR_VISIBILITY_TIMEOUT", "1s".to_string()),
    ]);
    env.extend(extra.iter().map(|(k, v)| (*k, v.to_string())));
    let carrier = CarrierProcess::start(&env);
    carrier.wait_log("carrier has arrived", T).await;
    carrier
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deliveries_failing_as_if_the_webhook_were_down_hold_receiving_until_a_check_passes() {
    // Go's check cadence: one a minute, offline after 5. Until the checks notice, every message
    // received would fail and burn a receive count; the failed deliveries bring a check forward
    // and hold receiving instead.
    let queue = TestQueue::create("doubt", 30).await;
    let down = Arc::new(AtomicBool::new(false));
    let is_down = down.clone();
    let sink = Sink::start(move |_, _| {
        Reply::status(if is_down.load(Ordering::SeqCst) {
            503
        } else {
            200
        })
    });
    // Failed messages come back after 1 s, so they are there to be received while held.
    let mut carrier =
        health_checked_at_go_cadence(&queue, &sink, &[("CARRIER_SQS_BATCH_SIZE", "3")]).await;

    down.store(true, Ordering::SeqCst);
    sink.set_health(503);
    let bodies = queue.send_many("doubt", 30).await;
    carrier
        .wait_log(
            "deliveries failing as if the webhook were down; receiving held until a health check passes",
            T,
        )
        .await;
    // Probes at once, then about 1 s later: both fail, and nothing is delivered between them (by the
    // first, the hold has reached the receiver).
    carrier.wait_log("health check failed", T).await;
    let failed = sink.request_count();
    let probes = carrier.wait_log_count("health check failed", 2, T).await;
    assert!(probes.iter().all(|p| p["probe"] == true), "{probes:?}");
    assert_eq!(sink.request_count(), failed, "delivered while held");
    // Three failures in a row put it in doubt; what was already in flight, or was handed to a
    // worker before the hold arrived, fails too: a few rounds of 3 workers at most, of 30.
    assert!(
        (3..=9).contains(&failed),
        "{failed} deliveries failed first"
    );

    down.store(false, Ordering::SeqCst);
    sink.set_health(200);
    carrier.wait_log("receiving resumed", T).await;
    sink.wait_answered_all(&bodies, T).await;
    queue.wait_empty(T).await;
    // Only the messages that failed before the hold were received more than once.
    let burned = sink
        .requests()
        .iter()
        .filter(|r| r.header("x-carrier-receive-count") != Some("1"))
        .map(|r| r.body.clone())
        .collect::<std::collections::HashSet<_>>()
        .len();
    println!("held after {failed} failed deliveries; {burned} of 30 messages received again");
    assert!(
        burned <= failed,
        "{burned} messages received again, {failed} failed"
    );
    carrier.signal("TERM");
    assert_eq!(carrier.wait_exit(T).await.code(), Some(0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failing_deliveries_from_a_healthy_webhook_cost_one_check_not_a_stall() {
    // The worker is up (its health check passes) but times out on some messages: the probe
    // passes at once and receiving goes on; no interval is waited.
    let queue = TestQueue::create("false-alarm", 30).await;
    let sink = Sink::start(|r, seen| {
        if r.body.starts_with("slow") && seen == 0 {
            Reply::status(200).after(Duration::from_secs(2))
        } else {
            Reply::status(200)
        }
    });
    let mut carrier = health_checked_at_go_cadence(
        &queue,
        &sink,
        &[("CARRIER_WEBHOOK_REQUEST_TIMEOUT", "500ms")],
    )
    .await;
    let mut bodies = queue.send_many("slow", 3).await;
    carrier
        .wait_log(
            "webhook healthy; the failed deliveries were not an outage",
            T,
        )
        .await;
    carrier.wait_log("receiving resumed", T).await;
    bodies.extend(queue.send_many("fine", 10).await);
    sink.wait_answered_all(&bodies, T).await;
    queue.wait_empty(T).await;
    assert!(
        carrier.logs_with("health check failed").is_empty(),
        "no check failed"
    );
    carrier.signal("TERM");
    assert_eq!(carrier.wait_exit(T).await.code(), Some(0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_false_alarm_failing_deliveries_do_not_hold_again_at_once() {
    // Health passes, but a gateway answers 502 to a dozen messages in a row (their first time):
    // one hold and one passing probe, then a quiet second in which the other failures are let
    // be, instead of hold, probe, resume four times over.
    let queue = TestQueue::create("flap", 30).await;
    let sink = Sink::start(|r, seen| {
        Reply::status(if r.body.starts_with("bad") && seen == 0 {
            502
        } else {
            200
        })
    });
    let mut carrier =
        health_checked_at_go_cadence(&queue, &sink, &[("CARRIER_SQS_BATCH_SIZE", "3")]).await;
    let bodies = queue.send_many("bad", 12).await;
    sink.wait_answered_all(&bodies, T).await;
    queue.wait_empty(T).await;
    let alarms = carrier.logs_with("webhook healthy; the failed deliveries were not an outage");
    assert_eq!(alarms.len(), 1, "{alarms:?}");
    // The first quiet time: the first step of the backoff, 1 s jittered into its upper half.
    let quiet = alarms[0]["quiet_ms"].as_u64().unwrap();
    assert!((500..=1000).contains(&quiet), "quiet {quiet} ms");
    carrier.signal("TERM");
    assert_eq!(carrier.wait_exit(T).await.code(), Some(0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_poll_open_during_the_drain_is_let_finish_and_what_it_returns_is_released() {
    let queue = TestQueue::create("drain-poll", 30).await;
    queue.send("slow").await;
    let sink = Sink::start(|r, _| match r.body.as_str() {
        "slow" => Reply::status(200).after(Duration::from_secs(3)),
        _ => Reply::status(200),
    });
    let mut env = CarrierProcess::env_for(&queue, &sink);
    // A second slot keeps a long poll open while "slow" is delivered.
    env.push(("CARRIER_SQS_RECEIVER_WORKERS", "2".into()));
    let mut carrier = CarrierProcess::start(&env);
    sink.wait_requests(1, T).await;
    carrier.signal("TERM");
    carrier
        .wait_log("waiting for in-flight deliveries", T)
        .await;
    queue.send("late").await;
    assert_eq!(carrier.wait_exit(T).await.code(), Some(0));
    let released = carrier.wait_log("releasing messages unsent", T).await;
    assert_eq!(released["count"], 1);
    assert_eq!(
        sink.answered(),
        ["slow"],
        "the late one was never delivered"
    );
    // Released with visibility 0, not stranded for the 30 s visibility timeout.
    assert_eq!(queue.counts().await, (1, 0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exit_when_idle_drains_and_exits_0_once_the_queue_stays_empty() {
    let queue = TestQueue::create("idle-exit", 30).await;
    let bodies = queue.send_many("batch-job", 5).await;
    let sink = Sink::start(|_, _| Reply::status(200).after(Duration::from_millis(200)));
    let mut env = CarrierProcess::env_for(&queue, &sink);
    env.push(("CARRIER_EXIT_WHEN_IDLE", "2s".into()));
    let started = Instant::now();
    let mut carrier = CarrierProcess::start(&env);
    assert_eq!(carrier.wait_exit(T).await.code(), Some(0));
    // Every message was done first (1 s of work), then 2 s of nothing.
    assert!(
        started.elapsed() >= Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
    sink.wait_answered_all(&bodies, T).await;
    assert_eq!(queue.counts().await, (0, 0));
    let idle = carrier
        .wait_log("queue idle; draining and exiting", T)
        .await;
    assert_eq!(idle["idle_ms"], 2000);
    assert_eq!(carrier.logs_with("carrier stopped")[0]["reason"], "Idle");
}

/// An address where nothing listens (SQS and webhook both): carrier starts, and retries.
fn unreachable(closed: u16) -> Vec<(&'static str, String)> {
    vec![
        (
            "CARRIER_SQS_QUEUE_URL",
            format!("http://127.0.0.1:{closed}/000000000000/nowhere"),
        ),
        (
            "CARRIER_WEBHOOK_ENDPOINT",
            format!("http://127.0.0.1:{closed}/"),
        ),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backoff_maximum_over_a_zero_error_timeout_exits_2_naming_both() {
    let mut env = unreachable(free_port());
    env.push(("CARRIER_WEBHOOK_ERROR_VISIBILITY_TIMEOUT", "0s".into()));
    env.push(("CARRIER_WEBHOOK_ERROR_BACKOFF_MAX", "10m".into()));
    let mut carrier = CarrierProcess::start(&env);
    assert_eq!(carrier.wait_exit(T).await.code(), Some(2));
    let stderr = carrier.stderr();
    for needle in [
        "CARRIER_WEBHOOK_ERROR_BACKOFF_MAX (600s) is set with CARRIER_WEBHOOK_ERROR_VISIBILITY_TIMEOUT 0s",
        "a backoff from zero is no backoff",
    ] {
        assert!(stderr.contains(needle), "missing {needle:?} in:\n{stderr}");
    }
    assert!(!stderr.contains("panicked"), "no panic trace:\n{stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_admin_port_in_use_exits_2_saying_so_without_a_panic() {
    // Something else already listens where the admin endpoints should.
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap();
    let mut env = unreachable(free_port());
    env.push(("CARRIER_ADMIN_ADDR", addr.to_string()));
    let mut carrier = CarrierProcess::start(&env);
    assert_eq!(carrier.wait_exit(T).await.code(), Some(2));
    let stderr = carrier.stderr();
    let needle = format!("cannot serve the admin endpoints on {addr}");
    assert!(stderr.contains(&needle), "missing {needle:?} in:\n{stderr}");
    assert!(!stderr.contains("panicked"), "no panic trace:\n{stderr}");
    drop(taken);
}

/// With no thread to spare for the admin endpoints (a process limit reached), carrier says so
/// and exits 2: no actor is left to panic on the way out, and the log flush does not panic either.
/// Needs root (to run as `nobody` under `prlimit --nproc=2`, which root itself would ignore) and
/// util-linux's `setpriv` and `prlimit`; CI has both. Elsewhere it says why it did not run.
#[test]
fn no_thread_for_the_admin_endpoints_exits_2_without_a_panic() {
    use std::process::Command;
    let root = Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| o.stdout.starts_with(b"0\n"));
    let tools = ["setpriv", "prlimit"].iter().all(|tool| {
        Command::new(tool)
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success())
    });
    if !(root && tools) {
        eprintln!("not run: needs root, setpriv and prlimit (root: {root}, tools: {tools})");
        return;
    }
    let binary = std::env::var("CARRIER_TEST_BINARY")
        .unwrap_or_else(|_| env!("CARGO_BIN_EXE_carrier").to_string());
    let nobody_can_run_it = Command::new("setpriv")
        .args([
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            "test",
            "-x",
            &binary,
        ])
        .status()
        .is_ok_and(|s| s.success());
    if !nobody_can_run_it {
        eprintln!("not run: user nobody cannot execute {binary}");
        return;
    }
    // The limit counts every process and thread of the user: nobody must run nothing else.
    let nobody_busy = Command::new("pgrep")
        .args(["-u", "65534"])
        .status()
        .is_ok_and(|s| s.success());
    if nobody_busy {
        eprintln!("not run: user nobody already runs processes");
        return;
    }
    let out = Command::new("timeout")
        .args(["20", "prlimit", "--nproc=2", "setpriv"])
        .args(["--reuid=65534", "--regid=65534", "--clear-groups", &binary])
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .envs(unreachable(free_port()))
        .env("CARRIER_ADMIN_ADDR", "127.0.0.1:0")
        .env("AWS_ACCESS_KEY_ID", "test")
        .env("AWS_SECRET_ACCESS_KEY", "test")
        .env("AWS_REGION", "us-east-1")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "stderr:\n{stderr}");
    assert!(
        stderr.contains("cannot serve the admin endpoints on 127.0.0.1:0"),
        "stderr:\n{stderr}"
    );
    assert!(!stderr.contains("panicked"), "no panic trace:\n{stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_invalid_configuration_names_the_unknown_variables_with_a_hint() {
    let mut carrier = CarrierProcess::start(&[
        ("CARRIER_SQS_QUEUE_NMAE", "jobs".into()),
        ("CARRIER_WEBHOOK_ENDPOINT", "http://127.0.0.1:9/".into()),
        ("CARRIER_FOO_PORT", "9000".into()),
        // What Kubernetes injects for a Service named `carrier`: not ours, not named.
        ("CARRIER_PORT", "tcp://10.0.0.11:9464".into()),
        ("CARRIER_SERVICE_HOST", "10.0.0.11".into()),
        ("CARRIER_SERVICE_PORT", "9464".into()),
    ]);
    assert_eq!(carrier.wait_exit(T).await.code(), Some(2));
    let stderr = carrier.stderr();
    for needle in [
        "CARRIER_SQS_QUEUE_NAME is required",
        "unknown variable CARRIER_SQS_QUEUE_NMAE (did you mean CARRIER_SQS_QUEUE_NAME?)",
        "unknown variable CARRIER_FOO_PORT",
    ] {
        assert!(stderr.contains(needle), "missing {needle:?} in:\n{stderr}");
    }
    for quiet in [
        "CARRIER_PORT",
        "CARRIER_SERVICE_HOST",
        "CARRIER_SERVICE_PORT",
        "jobs",
    ] {
        assert!(!stderr.contains(quiet), "{quiet} named:\n{stderr}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_url_in_the_queue_name_exits_2_with_a_hint_to_use_the_queue_url() {
    let mut carrier = CarrierProcess::start(&[
        (
            "CARRIER_SQS_QUEUE_NAME",
            "https://sqs.us-east-1.amazonaws.com/000000000000/jobs".into(),
        ),
        ("CARRIER_WEBHOOK_ENDPOINT", "http://127.0.0.1:9/".into()),
    ]);
    assert_eq!(carrier.wait_exit(T).await.code(), Some(2));
    let stderr = carrier.stderr();
    assert!(
        stderr.contains(
            "CARRIER_SQS_QUEUE_NAME=\"https://sqs.us-east-1.amazonaws.com/000000000000/jobs\""
        ) && stderr.contains("set CARRIER_SQS_QUEUE_URL"),
        "{stderr}"
    );
    assert!(
        !stderr.contains("is required"),
        "one problem, not two:\n{stderr}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn settings_that_do_nothing_or_contradict_each_other_are_warned_about_once_at_start() {
    let mut env = unreachable(free_port());
    env.push(("CARRIER_WEBHOOK_STARTUP_TIMEOUT", "1m".into()));
    env.push(("CARRIER_WEBHOOK_OFFLINE_ACTION", "pause".into()));
    env.push(("CARRIER_SQS_BATCH_SIZE", "10".into()));
    env.push(("CARRIER_SQS_RECEIVER_WORKERS", "2".into()));
    let mut carrier = CarrierProcess::start(&env);
    let warned = |c: &CarrierProcess, variable: &str| {
        c.log_lines()
            .iter()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .filter(|v| v["level"] == "WARN" && v["variable"] == variable)
            .filter(|v| v["msg"] != "unknown configuration variable ignored")
            .count()
    };
    let variables = [
        "CARRIER_WEBHOOK_STARTUP_TIMEOUT",
        "CARRIER_WEBHOOK_OFFLINE_ACTION",
        "CARRIER_SQS_BATCH_SIZE",
    ];
    carrier
        .wait(
            |c| variables.iter().all(|v| warned(c, v) > 0).then_some(()),
            T,
        )
        .await;
    // Running on (a warning, not a refusal) until stopped.
    carrier.wait_log("failed to receive messages", T).await;
    carrier.signal("TERM");
    assert_eq!(carrier.wait_exit(T).await.code(), Some(0));
    for variable in variables {
        assert_eq!(warned(&carrier, variable), 1, "{variable}: once");
    }
    let capped = carrier
        .log_lines()
        .into_iter()
        .find(|l| l.contains("CARRIER_SQS_BATCH_SIZE (10)"));
    assert!(
        capped.is_some_and(|l| l.contains("capped at 2")),
        "{:?}",
        carrier.log_lines()
    );
}

/// A SIGTERM as early as anyone can see carrier running (its first log line, written while it
/// reads its configuration, before it starts) is a clean exit 0, not death by the default action
/// (143). Sooner than that, the process is still being loaded: no program can catch a signal then.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_in_the_first_milliseconds_exits_0() {
    let mut env = unreachable(free_port());
    env.push(("CARRIER_SQS_BATCHSIZE", "10".into()));
    for attempt in 0..20 {
        let mut carrier = CarrierProcess::start(&env);
        carrier.wait(|c| (c.log_count() > 0).then_some(()), T).await;
        carrier.signal("TERM");
        let status = carrier.wait_exit(T).await;
        assert_eq!(
            status.code(),
            Some(0),
            "attempt {attempt}: {status:?}\n{}",
            carrier.stderr()
        );
        // Handled (and said so), not merely survived.
        carrier
            .wait(
                |c| {
                    (!c.logs_with("signal received before start; exiting")
                        .is_empty()
                        || !c.logs_with("shutting down").is_empty())
                    .then_some(())
                },
                T,
            )
            .await;
    }
}
