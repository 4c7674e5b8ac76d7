//! Routes (SPEC 5.3, issue 19): one carrier, several queues, weighted or strict priority. The real
//! binary against moto and webhooks on 127.0.0.1; each route's POSTs go to their own path of one
//! sink, so the sink tells the routes apart.

mod support;

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use support::{
    admin_get, free_port, moto, parse_metrics, CarrierProcess, Reply, Request, Sink, TestQueue,
};

const T: Duration = Duration::from_secs(30);

fn shared(routes: &str) -> Vec<(String, String)> {
    vec![
        ("CARRIER_SQS_ENDPOINT".into(), moto().endpoint.clone()),
        ("CARRIER_ROUTES".into(), routes.into()),
    ]
}

/// When each request to `path` arrived.
fn arrivals<'a>(requests: &'a [Request], path: &'a str) -> impl Iterator<Item = Instant> + 'a {
    requests
        .iter()
        .filter(move |r| r.path == path)
        .map(|r| r.at)
}

/// Routes `high` (weight 1000) and `low` (weight 1) sharing 4 slots, receives of at most 4.
fn high_over_low(high: &TestQueue, low: &TestQueue, sink: &Sink) -> Vec<(String, String)> {
    let mut env = CarrierProcess::routes_env(&[("high", high), ("low", low)], sink);
    env.extend([
        ("CARRIER_ROUTE_HIGH_WEIGHT".into(), "1000".into()),
        ("CARRIER_SQS_RECEIVER_WORKERS".into(), "4".into()),
        ("CARRIER_SQS_BATCH_SIZE".into(), "4".into()),
    ]);
    env
}

fn on(requests: &[Request], path: &str) -> Vec<Request> {
    requests
        .iter()
        .filter(|r| r.path == path)
        .cloned()
        .collect()
}

/// An SNS notification as SNS writes it to a subscribed queue without raw delivery.
fn sns_envelope(message: &str) -> String {
    serde_json::json!({
        "Type": "Notification",
        "MessageId": "5b3f2c1e-0000-4000-8000-000000000001",
        "TopicArn": "arn:aws:sns:us-east-1:123456789012:orders",
        "Message": message,
        "Timestamp": "2026-12-03T07:00:00.000Z",
        "SignatureVersion": "1",
        "Signature": "x",
        "SigningCertURL": "https://sns.us-east-1.amazonaws.com/x.pem",
        "UnsubscribeURL": "https://sns.us-east-1.amazonaws.com/?Action=Unsubscribe"
    })
    .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_queue_reaches_only_its_route_s_endpoint_with_its_route_s_settings() {
    let orders = TestQueue::create("route-orders", 30).await;
    let events = TestQueue::create("route-events", 30).await;
    let batch = TestQueue::create("route-batch", 30).await;
    let order_bodies = orders.send_many("order", 5).await;
    for i in 0..5 {
        events.send(&sns_envelope(&format!("event-{i}"))).await;
    }
    let batch_bodies = batch.send_many("record", 5).await;
    let sink = Sink::answering(200);
    let port = free_port();
    let mut env = CarrierProcess::routes_env(
        &[("orders", &orders), ("events", &events), ("batch", &batch)],
        &sink,
    );
    env.extend([
        ("CARRIER_ADMIN_ADDR".into(), format!("127.0.0.1:{port}")),
        // Said once, inherited by orders and batch; events sets its own.
        ("CARRIER_WEBHOOK_HEADER_STYLE".into(), "sqsd".into()),
        (
            "CARRIER_ROUTE_EVENTS_WEBHOOK_HEADER_STYLE".into(),
            "carrier".into(),
        ),
        ("CARRIER_ROUTE_EVENTS_WEBHOOK_UNWRAP".into(), "sns".into()),
        ("CARRIER_ROUTE_BATCH_WEBHOOK_FORMAT".into(), "lambda".into()),
        (
            "CARRIER_ROUTE_BATCH_WEBHOOK_BATCH_WINDOW".into(),
            "1s".into(),
        ),
        ("CARRIER_SQS_RECEIVER_WORKERS".into(), "4".into()),
    ]);
    let carrier = CarrierProcess::start_owned(&env);
    for q in [&orders, &events, &batch] {
        q.wait_empty(T).await;
    }
    let requests = sink.requests();
    let got_orders = on(&requests, "/orders");
    let got: HashSet<&str> = got_orders.iter().map(|r| r.body.as_str()).collect();
    assert_eq!(got, order_bodies.iter().map(String::as_str).collect());
    for r in &got_orders {
        assert!(
            r.header("x-aws-sqsd-msgid").is_some(),
            "sqsd style: {:?}",
            r.headers
        );
        assert!(r.header("x-carrier-message-id").is_none());
    }
    let got_events = on(&requests, "/events");
    let got: HashSet<&str> = got_events.iter().map(|r| r.body.as_str()).collect();
    assert_eq!(
        got,
        (0..5)
            .map(|i| format!("event-{i}"))
            .collect::<HashSet<_>>()
            .iter()
            .map(String::as_str)
            .collect()
    );
    for r in &got_events {
        assert_eq!(
            r.header("x-carrier-sns-topic-arn"),
            Some("arn:aws:sns:us-east-1:123456789012:orders")
        );
        assert!(r.header("x-carrier-message-id").is_some(), "carrier style");
    }
    let got_batch = on(&requests, "/batch");
    let records: Vec<String> = got_batch
        .iter()
        .flat_map(|r| {
            let event: serde_json::Value = serde_json::from_str(&r.body).expect("a Lambda event");
            event["Records"]
                .as_array()
                .expect("Records")
                .iter()
                .map(|rec| {
                    assert!(rec["eventSourceARN"]
                        .as_str()
                        .unwrap()
                        .ends_with(&batch.name));
                    rec["body"].as_str().unwrap().to_string()
                })
                .collect::<Vec<_>>()
        })
        .collect();
    assert_eq!(
        records.iter().collect::<HashSet<_>>(),
        batch_bodies.iter().collect::<HashSet<_>>()
    );
    assert_eq!(
        requests.len(),
        got_orders.len() + got_events.len() + got_batch.len()
    );
    // Ready: every route's queue is resolved.
    assert_eq!(admin_get(port, "/readyz").await.0, 200);
    // Every route's metrics carry its label.
    let m = parse_metrics(&admin_get(port, "/metrics").await.1);
    assert_eq!(m["carrier_messages_received_total{route=\"orders\"}"], 5.0);
    assert_eq!(m["carrier_messages_received_total{route=\"events\"}"], 5.0);
    assert_eq!(m["carrier_messages_received_total{route=\"batch\"}"], 5.0);
    assert_eq!(
        m["carrier_messages_unwrapped_total{envelope=\"sns\",route=\"events\"}"],
        5.0
    );
    assert!(m["carrier_batches_total{result=\"ok\",route=\"batch\"}"] >= 1.0);
    // Every log line of a route carries it.
    let resolved = carrier.logs_with("queue resolved");
    let mut routes: Vec<&str> = resolved
        .iter()
        .map(|l| l["route"].as_str().unwrap())
        .collect();
    routes.sort_unstable();
    assert_eq!(routes, ["batch", "events", "orders"]);
    assert!(carrier
        .log_lines()
        .iter()
        .filter(
            |l| l.contains("\"source\":\"receiver\"") || l.contains("\"source\":\"transmitter\"")
        )
        .all(|l| l.contains("\"route\":")));
}

/// The most requests in flight at once, from arrival times and a fixed answer delay.
fn max_in_flight(requests: &[Request], answer: Duration) -> usize {
    requests
        .iter()
        .map(|r| {
            requests
                .iter()
                .filter(|o| o.at <= r.at && o.at + answer > r.at)
                .count()
        })
        .max()
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_empty_high_weight_queue_leaves_no_slot_idle() {
    let high = TestQueue::create("route-e-high", 30).await;
    let low = TestQueue::create("route-e-low", 30).await;
    let bodies = low.send_many("l", 40).await;
    let answer = Duration::from_millis(400);
    let sink = Sink::start(move |_, _| Reply::status(200).after(answer));
    let _carrier = CarrierProcess::start_owned(&high_over_low(&high, &low, &sink));
    sink.wait_answered_all(&bodies, T).await;
    let requests = sink.requests();
    assert_eq!(requests.len(), 40);
    // Every one of the 4 slots worked for the low route, and never more than 4.
    assert_eq!(max_in_flight(&requests, answer), 4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn strict_order_delivers_nothing_from_a_later_route_while_an_earlier_one_has_messages() {
    let first = TestQueue::create("route-s-first", 30).await;
    let second = TestQueue::create("route-s-second", 30).await;
    first.send_many("f", 30).await;
    let late = second.send_many("s", 40).await;
    let sink = Sink::start(|r, _| {
        let delay = if r.path == "/second" { 150 } else { 20 };
        Reply::status(200).after(Duration::from_millis(delay))
    });
    let mut env = CarrierProcess::routes_env(&[("first", &first), ("second", &second)], &sink);
    env.extend([
        ("CARRIER_ROUTES_POLICY".into(), "strict".into()),
        ("CARRIER_SQS_RECEIVER_WORKERS".into(), "2".into()),
        ("CARRIER_SQS_BATCH_SIZE".into(), "2".into()),
    ]);
    let _carrier = CarrierProcess::start_owned(&env);
    // The second route starts once the first came back empty...
    sink.wait("a delivery of the second route", T, |s| {
        s.requests()
            .iter()
            .any(|r| r.path == "/second")
            .then_some(())
    })
    .await;
    let requests = sink.requests();
    let last_first = arrivals(&requests, "/first").max().unwrap();
    let first_second = arrivals(&requests, "/second").min().unwrap();
    assert_eq!(requests.iter().filter(|r| r.path == "/first").count(), 30);
    assert!(
        last_first < first_second,
        "nothing of the second route before the first was done"
    );
    // ...and yields again as soon as the first has messages: beyond what was in flight (2 slots,
    // and one receive of 2 already granted), nothing more of it.
    first.send_many("again", 10).await;
    let seen = sink
        .wait("the first route's new messages", T, |s| {
            let r = s.requests();
            (r.iter().filter(|r| r.path == "/first").count() == 40).then_some(r)
        })
        .await;
    let back = seen
        .iter()
        .filter(|r| r.path == "/first" && r.body.starts_with("again"))
        .map(|r| r.at)
        .min()
        .unwrap();
    let during = seen
        .iter()
        .filter(|r| r.path == "/second" && r.at > back)
        .count();
    let last_again = seen
        .iter()
        .filter(|r| r.body.starts_with("again"))
        .map(|r| r.at)
        .max()
        .unwrap();
    let between = seen
        .iter()
        .filter(|r| r.path == "/second" && r.at > back && r.at < last_again)
        .count();
    assert!(between <= 4, "{between} deliveries of the second route while the first had messages (of {during} after it came back)");
    sink.wait_answered_all(&late, T).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifo_and_standard_routes_work_side_by_side() {
    let fifo = TestQueue::create_fifo("route-fifo", 30).await;
    let plain = TestQueue::create("route-plain", 30).await;
    let mut groups: HashMap<String, Vec<String>> = HashMap::new();
    for g in ["a", "b", "c"] {
        let bodies: Vec<String> = (0..5).map(|i| format!("{g}-{i}")).collect();
        fifo.send_fifo(g, &bodies).await;
        groups.insert(g.into(), bodies);
    }
    let plain_bodies = plain.send_many("p", 20).await;
    let sink = Sink::start(|_, _| Reply::status(200).after(Duration::from_millis(30)));
    let mut env = CarrierProcess::routes_env(&[("fifo", &fifo), ("plain", &plain)], &sink);
    // One slot: the FIFO route receives only once its last message is deleted. (moto's FIFO long
    // poll never sees a group freed while it waits, so a receive made while a group is in flight
    // would sit out its 20 s; SQS has no such gap.)
    env.push(("CARRIER_SQS_RECEIVER_WORKERS".into(), "1".into()));
    let _carrier = CarrierProcess::start_owned(&env);
    fifo.wait_empty(T).await;
    plain.wait_empty(T).await;
    let requests = sink.requests();
    let fifo_seen: Vec<String> = on(&requests, "/fifo").into_iter().map(|r| r.body).collect();
    for (g, bodies) in &groups {
        let order: Vec<&str> = fifo_seen
            .iter()
            .map(String::as_str)
            .filter(|b| b.starts_with(&format!("{g}-")))
            .collect();
        assert_eq!(
            order,
            bodies.iter().map(String::as_str).collect::<Vec<_>>(),
            "group {g} in order, once each"
        );
    }
    let plain_seen: Vec<String> = on(&requests, "/plain")
        .into_iter()
        .map(|r| r.body)
        .collect();
    assert_eq!(plain_seen.len(), 20, "each once");
    assert_eq!(
        plain_seen.iter().collect::<HashSet<_>>(),
        plain_bodies.iter().collect::<HashSet<_>>()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pause_holds_every_route_and_a_resume_frees_them_all() {
    let a = TestQueue::create("route-p-a", 30).await;
    let b = TestQueue::create("route-p-b", 30).await;
    let sink = Sink::answering(200);
    let mut env = CarrierProcess::routes_env(&[("a", &a), ("b", &b)], &sink);
    env.extend([
        (
            "CARRIER_WEBHOOK_HEALTH_CHECK_ENDPOINT".into(),
            sink.health_url.clone(),
        ),
        (
            "CARRIER_WEBHOOK_HEALTH_CHECK_INTERVAL".into(),
            "200ms".into(),
        ),
        ("CARRIER_WEBHOOK_OFFLINE_THRESHOLD_COUNT".into(), "1".into()),
        ("CARRIER_WEBHOOK_OFFLINE_ACTION".into(), "pause".into()),
    ]);
    let carrier = CarrierProcess::start_owned(&env);
    carrier.wait_log("carrier has arrived", T).await;
    sink.set_health(503);
    carrier
        .wait_log("receiving paused until the webhook is healthy again", T)
        .await;
    let before = sink.request_count();
    let during_a = a.send_many("a", 3).await;
    let during_b = b.send_many("b", 3).await;
    // Three more failed checks (600 ms) while paused: a poll open at the pause may take messages
    // of either route, but what it brings is held, not delivered.
    let checks = sink.health_checks();
    sink.wait("three health checks while paused", T, |s| {
        (s.health_checks() >= checks + 3).then_some(())
    })
    .await;
    assert_eq!(
        sink.request_count(),
        before,
        "nothing delivered while paused"
    );
    sink.set_health(200);
    carrier.wait_log("receiving resumed", T).await;
    sink.wait_answered_all(&[during_a, during_b].concat(), T)
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_drains_every_route_and_exit_when_idle_waits_for_all() {
    let a = TestQueue::create("route-d-a", 30).await;
    let b = TestQueue::create("route-d-b", 30).await;
    let (bodies_a, bodies_b) = (a.send_many("a", 2).await, b.send_many("b", 2).await);
    let sink = Sink::start(|_, _| Reply::status(200).after(Duration::from_secs(1)));
    let mut env = CarrierProcess::routes_env(&[("a", &a), ("b", &b)], &sink);
    env.push(("CARRIER_SQS_RECEIVER_WORKERS".into(), "4".into()));
    let mut carrier = CarrierProcess::start_owned(&env.clone());
    // Both routes have deliveries running...
    sink.wait("a delivery on each route", T, |s| {
        let r = s.requests();
        (r.iter().any(|r| r.path == "/a") && r.iter().any(|r| r.path == "/b")).then_some(())
    })
    .await;
    carrier.signal("TERM");
    let status = carrier.wait_exit(T).await;
    assert_eq!(status.code(), Some(0));
    // ...and each finished: answered and deleted, on both queues.
    let answered: HashSet<String> = sink.answered().into_iter().collect();
    let started: Vec<String> = sink.requests().into_iter().map(|r| r.body).collect();
    assert!(started.iter().all(|b| answered.contains(b)));
    assert_eq!(
        carrier.logs_with("receiver drained").len(),
        2,
        "one receiver per route"
    );
    let left = a.counts().await.0 + b.counts().await.0;
    assert_eq!(
        left as usize,
        4 - started.len(),
        "what was POSTed was deleted"
    );
    // Exit when idle: what is left and more on both queues, then exit 0 once every route is idle.
    let more = [
        a.send_many("a-more", 3).await,
        b.send_many("b-more", 3).await,
    ]
    .concat();
    env.push(("CARRIER_EXIT_WHEN_IDLE".into(), "2s".into()));
    let mut carrier = CarrierProcess::start_owned(&env);
    let status = carrier.wait_exit(T).await;
    assert_eq!(status.code(), Some(0));
    for q in [&a, &b] {
        q.wait_empty(T).await;
    }
    sink.wait_answered_all(&[bodies_a, bodies_b, more].concat(), T)
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_route_whose_queue_is_deleted_backs_off_without_slowing_the_others() {
    let gone = TestQueue::create("route-gone", 30).await;
    let kept = TestQueue::create("route-kept", 30).await;
    let sink = Sink::answering(200);
    let port = free_port();
    let mut env = CarrierProcess::routes_env(&[("gone", &gone), ("kept", &kept)], &sink);
    env.push(("CARRIER_ADMIN_ADDR".into(), format!("127.0.0.1:{port}")));
    let carrier = CarrierProcess::start_owned(&env);
    carrier.wait_log_count("queue resolved", 2, T).await;
    gone.client
        .delete_queue()
        .queue_url(&gone.url)
        .send()
        .await
        .expect("delete queue");
    let failures = carrier
        .wait(
            |c| {
                let f: Vec<_> = c
                    .logs_with("failed to receive messages")
                    .into_iter()
                    .filter(|l| l["route"] == "gone")
                    .collect();
                (f.len() >= 3).then_some(f)
            },
            T,
        )
        .await;
    // It backs off: each wait longer than the one before.
    let waits: Vec<u64> = failures
        .iter()
        .map(|l| l["retry_in_ms"].as_u64().unwrap())
        .collect();
    assert!(waits.last() > waits.first(), "{waits:?}");
    // The other route goes on at its own pace meanwhile.
    let started = Instant::now();
    let bodies = kept.send_many("kept", 30).await;
    sink.wait_answered_all(&bodies, T).await;
    kept.wait_empty(T).await;
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "{:?}",
        started.elapsed()
    );
    assert!(carrier
        .logs_with("failed to receive messages")
        .iter()
        .all(|l| l["route"] == "gone"));
    let m = parse_metrics(&admin_get(port, "/metrics").await.1);
    assert!(m["carrier_sqs_errors_total{operation=\"ReceiveMessage\",route=\"gone\"}"] >= 3.0);
    assert!(m
        .get("carrier_sqs_errors_total{operation=\"ReceiveMessage\",route=\"kept\"}")
        .is_none_or(|v| *v == 0.0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readyz_waits_for_every_route_s_queue_and_the_others_work_meanwhile() {
    let kept = TestQueue::create("route-r-kept", 30).await;
    let sink = Sink::answering(200);
    let port = free_port();
    let mut env = shared("missing,kept");
    env.push((
        "CARRIER_ROUTE_MISSING_SQS_QUEUE_NAME".into(),
        format!("route-never-created-{}", std::process::id()),
    ));
    env.extend(CarrierProcess::route_env("kept", &kept, &sink));
    env.push(("CARRIER_ADMIN_ADDR".into(), format!("127.0.0.1:{port}")));
    let carrier = CarrierProcess::start_owned(&env);
    let bodies = kept.send_many("r", 5).await;
    sink.wait_answered_all(&bodies, T).await;
    carrier
        .wait(
            |c| {
                c.logs_with("failed to resolve queue URL, retrying")
                    .iter()
                    .any(|l| l["route"] == "missing")
                    .then_some(())
            },
            T,
        )
        .await;
    assert_eq!(
        admin_get(port, "/readyz").await.0,
        503,
        "one route's queue is not resolved"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hold_for_one_route_s_failing_deliveries_holds_every_route() {
    let a = TestQueue::create("route-h-a", 30).await;
    let b = TestQueue::create("route-h-b", 30).await;
    let sink = Sink::answering(200);
    let mut env = shared("a,b");
    // Route a's worker refuses connections: its deliveries fail as if the webhook were down.
    env.extend([
        ("CARRIER_ROUTE_A_SQS_QUEUE_NAME".into(), a.name.clone()),
        (
            "CARRIER_ROUTE_A_WEBHOOK_ENDPOINT".into(),
            format!("http://127.0.0.1:{}/a", free_port()),
        ),
    ]);
    env.extend(CarrierProcess::route_env("b", &b, &sink));
    env.extend([
        (
            "CARRIER_WEBHOOK_HEALTH_CHECK_ENDPOINT".into(),
            sink.health_url.clone(),
        ),
        ("CARRIER_WEBHOOK_HEALTH_CHECK_INTERVAL".into(), "60s".into()),
        (
            "CARRIER_WEBHOOK_OFFLINE_THRESHOLD_COUNT".into(),
            "100".into(),
        ),
        (
            "CARRIER_WEBHOOK_ERROR_VISIBILITY_TIMEOUT".into(),
            "0s".into(),
        ),
        ("CARRIER_SQS_RECEIVER_WORKERS".into(), "3".into()),
    ]);
    let carrier = CarrierProcess::start_owned(&env);
    carrier.wait_log("carrier has arrived", T).await;
    sink.set_health(503);
    a.send_many("a", 3).await;
    carrier
        .wait_log(
            "deliveries failing as if the webhook were down; receiving held until a health check passes",
            T,
        )
        .await;
    let held = b.send_many("b", 3).await;
    // Two probes fail while held: route b, whose worker is fine, delivers nothing meanwhile.
    let checks = sink.health_checks();
    sink.wait("two failed probes while held", T, |s| {
        (s.health_checks() >= checks + 2).then_some(())
    })
    .await;
    assert_eq!(sink.request_count(), 0, "route b held too");
    sink.set_health(200);
    sink.wait_answered_all(&held, T).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_high_weight_queue_running_dry_hands_its_slots_over_at_once() {
    let high = TestQueue::create("route-dry-high", 30).await;
    let low = TestQueue::create("route-dry-low", 30).await;
    high.send_many("h", 24).await;
    let bodies = low.send_many("l", 24).await;
    let sink = Sink::start(|_, _| Reply::status(200).after(Duration::from_millis(100)));
    let _carrier = CarrierProcess::start_owned(&high_over_low(&high, &low, &sink));
    sink.wait_answered_all(&bodies, T).await;
    let requests = sink.requests();
    let last_high = arrivals(&requests, "/high").max().unwrap();
    let low_after: Vec<Instant> = requests
        .iter()
        .filter(|r| r.path == "/low" && r.at > last_high)
        .map(|r| r.at)
        .collect();
    // The high route's receive that finds its queue dry answers at once (a short poll), so the
    // low route takes the freed slots without waiting out a 20 s long poll.
    if let Some(first) = low_after.iter().min() {
        let gap = first.duration_since(last_high);
        assert!(
            gap < Duration::from_secs(5),
            "slots idle for {gap:?} after the high queue ran dry"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn strict_order_moves_past_a_route_whose_queue_cannot_be_resolved() {
    let later = TestQueue::create("route-s-later", 30).await;
    let bodies = later.send_many("l", 10).await;
    let sink = Sink::answering(200);
    let mut env = shared("missing,later");
    env.push((
        "CARRIER_ROUTE_MISSING_SQS_QUEUE_NAME".into(),
        format!("route-s-never-created-{}", std::process::id()),
    ));
    env.extend(CarrierProcess::route_env("later", &later, &sink));
    env.push(("CARRIER_ROUTES_POLICY".into(), "strict".into()));
    let _carrier = CarrierProcess::start_owned(&env);
    // A route that cannot receive is no route to wait for.
    sink.wait_answered_all(&bodies, T).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exit_when_idle_waits_for_a_route_that_waits_for_slots() {
    let first = TestQueue::create("route-i-first", 30).await;
    let second = TestQueue::create("route-i-second", 30).await;
    let bodies = second.send_many("s", 10).await;
    let sink = Sink::answering(200);
    let mut env = CarrierProcess::routes_env(&[("first", &first), ("second", &second)], &sink);
    env.extend([
        // The second route waits for the first one's first receive, a 20 s long poll on an
        // empty queue: nothing is received meanwhile, but the run is not idle.
        ("CARRIER_ROUTES_POLICY".into(), "strict".into()),
        ("CARRIER_EXIT_WHEN_IDLE".into(), "3s".into()),
    ]);
    let mut carrier = CarrierProcess::start_owned(&env);
    let status = carrier.wait_exit(Duration::from_secs(60)).await;
    assert_eq!(status.code(), Some(0));
    sink.wait_answered_all(&bodies, T).await;
    second.wait_empty(T).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trickling_route_does_not_hold_a_backlogged_one_to_its_pace() {
    let trickle = TestQueue::create("route-t-trickle", 30).await;
    let backlog = TestQueue::create("route-t-backlog", 30).await;
    let bodies = backlog.send_many("b", 40).await;
    let sink = Sink::start(|_, _| Reply::status(200).after(Duration::from_millis(50)));
    let mut env =
        CarrierProcess::routes_env(&[("trickle", &trickle), ("backlog", &backlog)], &sink);
    // Go's defaults but for workers: receives of one message.
    env.push(("CARRIER_SQS_RECEIVER_WORKERS".into(), "4".into()));
    let _carrier = CarrierProcess::start_owned(&env);
    // One message every second on the trickling route, for at most 20 s: the backlog must not
    // move at one message per trickled one (40 s), nor wait out long polls.
    let feed = tokio::spawn(async move {
        for i in 0..20 {
            trickle.send(&format!("t-{i}")).await;
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    });
    sink.wait_answered_all(&bodies, Duration::from_secs(15))
        .await;
    feed.abort();
}
