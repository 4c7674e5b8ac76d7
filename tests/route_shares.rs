//! Routes' shares of the slots (SPEC 5.3, issue 19): weights 3 : 1 with both queues full give
//! 3 : 1 deliveries. A test binary of its own: its load (2 200 messages through moto) would slow
//! the other route tests, which run beside each other.

mod support;

use std::time::Duration;

use support::{CarrierProcess, Reply, Request, Sink, TestQueue};

/// The share of `path` among requests to `a` and `b`.
fn share(requests: &[Request], a: &str, b: &str) -> (usize, usize) {
    let n = |p: &str| requests.iter().filter(|r| r.path == p).count();
    (n(a), n(b))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn weights_3_to_1_with_both_queues_full_give_3_to_1_deliveries() {
    let high = TestQueue::create("route-w-high", 60).await;
    let low = TestQueue::create("route-w-low", 60).await;
    // Enough for both to stay full through the sample (3 : 1 of 960, with room for a 2 : 1 or a
    // 4 : 1 that the assertion must be able to see). moto slows down with its queues' length
    // (a receive reads them all): more would only stretch the minute.
    high.send_many("h", 900).await;
    low.send_many("l", 450).await;
    // The worker: 8 slots, 40 ms a message.
    let sink = Sink::start(|_, _| Reply::status(200).after(Duration::from_millis(40)));
    let mut env = CarrierProcess::routes_env(&[("high", &high), ("low", &low)], &sink);
    env.extend([
        ("CARRIER_ROUTE_HIGH_WEIGHT".into(), "3".into()),
        // 8 slots as 4 receivers × 2 workers: each route's receives are of at most 2, so
        // moto's cost per message received (it copies each) weighs on both routes alike.
        ("CARRIER_SQS_RECEIVERS".into(), "4".into()),
        ("CARRIER_SQS_RECEIVER_WORKERS".into(), "2".into()),
        ("CARRIER_SQS_BATCH_SIZE".into(), "2".into()),
    ]);
    let _carrier = CarrierProcess::start_owned(&env);
    // A minute-scale sample: 960 deliveries (about a minute against moto), both queues still full.
    let started = std::time::Instant::now();
    let requests = sink.wait_requests(960, Duration::from_secs(240)).await;
    let (h, l) = share(&requests[..960], "/high", "/low");
    eprintln!(
        "route shares: high {h} : low {l} in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    let ratio = h as f64 / l as f64;
    assert!(
        (3.0 * 0.85..=3.0 * 1.15).contains(&ratio),
        "high {h} : low {l} = {ratio:.2}, want 3 within 15 %"
    );
}
