//! The benchmark (not part of the default test run): the real `carrier` binary of this build moves
//! N messages from the in-memory SQS server (tests/support/fake_sqs, real SQS semantics, proven
//! against moto by tests/conformance.rs) to the webhook sink, both in this process on 127.0.0.1,
//! and the figures are printed as a table. moto is far too slow to load carrier.
//!
//! Run with `scripts/bench` (release build). Bounded: at most 50 000 messages and 120 s per run.
//! `sqs_server_alone` measures the SQS endpoint by itself with an aws-sdk-sqs client: the
//! in-memory server, or any endpoint named by `CARRIER_BENCH_SQS_ENDPOINT` (its process id in
//! `CARRIER_BENCH_SQS_PID` adds its CPU use), which is how other emulators were compared.

mod support;

use std::time::{Duration, Instant};

use aws_sdk_sqs::types::{DeleteMessageBatchRequestEntry, SendMessageBatchRequestEntry};
use support::fake_sqs::{FakeSqs, Op, Options, QueueConfig};
use support::{cpu_seconds, proc_status, stat_cpu_seconds, CarrierProcess, Sink};

/// This process's threads whose name starts with `prefix` (the in-memory server's threads are
/// `fake-sqs…`), with their CPU seconds so far, by thread id.
fn threads_cpu_seconds(prefix: &str) -> std::collections::HashMap<String, f64> {
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
        return Default::default();
    };
    tasks
        .filter_map(Result::ok)
        .filter(|t| {
            std::fs::read_to_string(t.path().join("comm"))
                .is_ok_and(|name| name.starts_with(prefix))
        })
        .map(|t| {
            let cpu = stat_cpu_seconds(&t.path().join("stat").to_string_lossy());
            (t.file_name().to_string_lossy().into_owned(), cpu)
        })
        .collect()
}

/// CPU seconds of this process's `prefix` threads that did not exist in `before`.
fn new_threads_cpu_seconds(prefix: &str, before: &std::collections::HashMap<String, f64>) -> f64 {
    threads_cpu_seconds(prefix)
        .into_iter()
        .filter(|(tid, _)| !before.contains_key(tid))
        .map(|(_, cpu)| cpu)
        .sum()
}

/// One carrier run's figures.
#[derive(Debug, Clone, Copy, Default)]
struct Run {
    msgs_per_sec: f64,
    cpu_us_per_msg: f64,
    peak_rss_mb: f64,
    /// TCP connections the sink accepted (carrier's keep-alive pool should reuse them).
    connections: f64,
    sqs_calls_per_msg: f64,
    sqs_cpu_us_per_msg: f64,
    sink_cpu_us_per_msg: f64,
    /// Process start to the first webhook POST, with the queue full.
    first_post_ms: f64,
    /// Two routes: messages the `high` route had deleted per message of the `low` route when
    /// the run ended (NaN for one route).
    share: f64,
}

/// The in-memory server, with `CARRIER_BENCH_SQS_THREADS` runtime threads (default 1).
fn server() -> FakeSqs {
    let threads = std::env::var("CARRIER_BENCH_SQS_THREADS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1);
    FakeSqs::start_with(Options {
        worker_threads: threads,
        ..Options::default()
    })
}

/// What the benchmark's messages hold.
#[derive(Debug, Clone, Copy)]
enum Bodies {
    /// `m<i>` padded to at least this many bytes.
    Plain(usize),
    /// An SNS notification (as a topic without raw delivery writes it) around `m<i>`.
    Sns,
}

impl Bodies {
    fn body(self, i: usize) -> String {
        match self {
            Bodies::Plain(bytes) => format!("m{i}{}", "p".repeat(bytes.saturating_sub(1))),
            Bodies::Sns => sns_envelope(&format!("{{\"order\":{i}}}")),
        }
    }
}

/// Which queues a run reads, and when its clock stops.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Queues {
    /// One queue holding the N messages; the clock stops when the last is deleted.
    One,
    /// One queue holding N + N/4; the clock stops at the N-th delete, the queue still full (the
    /// baseline of [`Queues::TwoRoutes`]: the same method, no tail).
    OneKeptFull,
    /// Two routes sharing the slots: `high` (weight 3) reading a queue of N messages, `low`
    /// (weight 1) one of N/2 (3/4 and 1/4 of N, plus N/4 each); the clock stops at the N-th
    /// delete of the two, and both queues must still hold messages then (full all along).
    TwoRoutes,
}

/// An SNS notification as a topic writes it into a queue (attributes, subject, signature fields).
fn sns_envelope(message: &str) -> String {
    serde_json::json!({
        "Type": "Notification",
        "MessageId": "22b80b92-fdea-4c2c-8f9d-bdfb0c7bf324",
        "TopicArn": "arn:aws:sns:us-west-2:123456789012:orders",
        "Subject": "Order placed",
        "Message": message,
        "Timestamp": "2026-12-03T05:00:00.000Z",
        "SignatureVersion": "1",
        "Signature": "EXAMPLEpH+DcEwjAPg8O9mY8dReBSwksfg2S7WKQcikcNKWLQjwu6A4VbeS0QHVCkhRS7fUQvi2egU3N858fiTDN6bkkOxYDVrY0Ad8L10Hs3zH81mtnPk5uvvolIC1CXGu43obcgFxeL3khZl8IKvO61GWB6jI9b5+gLPoBc1Q=",
        "SigningCertURL": "https://sns.us-west-2.amazonaws.com/SimpleNotificationService-f3ecfb7224c7233fe7bb5f59f96de52f.pem",
        "UnsubscribeURL": "https://sns.us-west-2.amazonaws.com/?Action=Unsubscribe&SubscriptionArn=arn:aws:sns:us-west-2:123456789012:orders:c9135db0-26c4-47ec-8998-413945fb5a96",
        "MessageAttributes": {
            "tenant": {"Type": "String", "Value": "acme"},
            "priority": {"Type": "Number", "Value": "3"},
            "Body.ContentType": {"Type": "String", "Value": "application/json"}
        }
    })
    .to_string()
}

/// Moves `n` messages through a fresh carrier. With `scrape`, GETs `/metrics` 20 times a second
/// meanwhile (does a scraper slow delivery?).
async fn run(
    n: usize,
    env_extra: &[(&'static str, &str)],
    scrape: bool,
    bodies: Bodies,
    queues: Queues,
) -> Run {
    let older_servers = threads_cpu_seconds("fake-sqs");
    // The sink: its system thread ("test-sink") and actix-web's acceptor and worker threads.
    let older_sinks = threads_cpu_seconds("test-sink")
        .into_iter()
        .chain(threads_cpu_seconds("actix"))
        .collect();
    let sqs = server();
    let sink = Sink::answering(200);
    let load = |queue: &str, messages: usize| {
        sqs.create_queue(queue, QueueConfig::standard());
        let bodies: Vec<String> = (0..messages).map(|i| bodies.body(i)).collect();
        sqs.send_all(queue, &bodies);
    };
    let mut env = match queues {
        Queues::One | Queues::OneKeptFull => {
            load("bench", if queues == Queues::One { n } else { n + n / 4 });
            sqs.carrier_env("bench", &sink)
        }
        Queues::TwoRoutes => {
            load("high", n);
            load("low", n / 2);
            // The endpoints are said once, at the top level, and inherited by both routes.
            vec![
                ("CARRIER_SQS_ENDPOINT", sqs.endpoint.clone()),
                ("CARRIER_WEBHOOK_ENDPOINT", sink.url.clone()),
                ("CARRIER_ROUTES", "high,low".to_string()),
                ("CARRIER_ROUTE_HIGH_SQS_QUEUE_NAME", "high".to_string()),
                ("CARRIER_ROUTE_HIGH_WEIGHT", "3".to_string()),
                ("CARRIER_ROUTE_LOW_SQS_QUEUE_NAME", "low".to_string()),
            ]
        }
    };
    env.push(("CARRIER_LOG_LEVEL", "warn".to_string()));
    let admin = support::free_port();
    if scrape {
        env.push(("CARRIER_ADMIN_ADDR", format!("127.0.0.1:{admin}")));
    }
    env.extend(env_extra.iter().map(|(k, v)| (*k, v.to_string())));
    let started = Instant::now();
    let mut carrier = CarrierProcess::start(&env);
    let pid = carrier.pid();
    let scraping = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(scrape));
    let scraper = {
        let scraping = scraping.clone();
        tokio::task::spawn_blocking(move || {
            let mut scrapes = 0u32;
            while scraping.load(std::sync::atomic::Ordering::Relaxed) && scrapes < 10_000 {
                if let Ok((200, _)) = support::http_get(admin, "/metrics") {
                    scrapes += 1;
                }
                std::thread::sleep(Duration::from_millis(50)); // the scraper's own pace
            }
            scrapes
        })
    };
    // Constant time per wake-up (an atomic counter, not a scan of what happened), and at most
    // one wake-up per 5 ms: waking on each of thousands of SQS calls a second would take CPU
    // from the processes being measured.
    let mut events = sqs.events();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
    while sqs.totals().deleted < n as u64 {
        assert!(
            tokio::time::timeout_at(deadline, events.changed())
                .await
                .is_ok(),
            "{} of {n} deleted after 120 s",
            sqs.totals().deleted
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
        events.borrow_and_update();
    }
    let elapsed = started.elapsed().as_secs_f64();
    // Read at once: carrier goes on deleting while the figures below are taken.
    let share = match queues {
        Queues::TwoRoutes => {
            let (high, low) = (sqs.counts("high"), sqs.counts("low"));
            // Each still holds at least a full receive batch: full all along (nothing failed,
            // so a queue only ever shrinks).
            assert!(
                high.visible >= 10 && low.visible >= 10,
                "a queue ran dry before the N-th delete: high {high:?}, low {low:?}"
            );
            high.deleted as f64 / low.deleted as f64
        }
        Queues::One | Queues::OneKeptFull => f64::NAN,
    };
    let cpu = cpu_seconds(pid);
    let peak_rss_mb = proc_status(pid, "VmHWM:") as f64 / 1024.0;
    let calls: u64 = Op::ALL.iter().map(|op| sqs.calls(*op)).sum();
    let sqs_cpu = new_threads_cpu_seconds("fake-sqs", &older_servers);
    let sink_cpu = new_threads_cpu_seconds("test-sink", &older_sinks)
        + new_threads_cpu_seconds("actix", &older_sinks);
    scraping.store(false, std::sync::atomic::Ordering::Relaxed);
    let scrapes = scraper.await.unwrap();
    assert!(!scrape || scrapes > 0, "the scraper got answers");
    carrier.signal("TERM");
    assert!(carrier.wait_exit(Duration::from_secs(30)).await.success());
    match queues {
        Queues::One => {
            let counts = sqs.counts("bench");
            assert_eq!(counts.deleted, n as u64);
            assert!(counts.received >= n as u64);
        }
        Queues::OneKeptFull | Queues::TwoRoutes => assert!(sqs.totals().deleted >= n as u64),
    }
    let requests = sink.requests();
    assert!(!requests.is_empty());
    let first_post = requests.iter().map(|r| r.at).min().unwrap() - started;
    let per_msg = |seconds: f64| seconds / n as f64 * 1e6;
    Run {
        msgs_per_sec: n as f64 / elapsed,
        cpu_us_per_msg: per_msg(cpu),
        peak_rss_mb,
        connections: sink.connections() as f64,
        sqs_calls_per_msg: calls as f64 / n as f64,
        sqs_cpu_us_per_msg: per_msg(sqs_cpu),
        sink_cpu_us_per_msg: per_msg(sink_cpu),
        first_post_ms: first_post.as_secs_f64() * 1e3,
        share,
    }
}

/// A benchmark configuration: label, messages, extra environment, scrape /metrics meanwhile,
/// the messages' bodies, the queues.
type Config<'a> = (
    &'a str,
    usize,
    Vec<(&'static str, &'a str)>,
    bool,
    Bodies,
    Queues,
);

fn messages_wanted(default: usize) -> usize {
    std::env::var("CARRIER_BENCH_MESSAGES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
        .min(50_000)
}

fn runs_wanted() -> usize {
    std::env::var("CARRIER_BENCH_RUNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(5)
        .clamp(1, 20)
}

/// min / median / max of one figure over runs.
fn spread(values: impl IntoIterator<Item = f64>, decimals: usize) -> String {
    let mut v: Vec<f64> = values.into_iter().collect();
    v.sort_by(f64::total_cmp);
    let median = v[v.len() / 2];
    format!(
        "{:.d$} / {:.d$} / {:.d$}",
        v[0],
        median,
        v[v.len() - 1],
        d = decimals
    )
}

fn median(values: impl IntoIterator<Item = f64>) -> f64 {
    let mut v: Vec<f64> = values.into_iter().collect();
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "benchmark: run with scripts/bench"]
async fn bench() {
    let n = messages_wanted(20_000);
    let k = runs_wanted();
    let binary = env!("CARGO_BIN_EXE_carrier");
    let size_mb = std::fs::metadata(binary).map(|m| m.len()).unwrap_or(0) as f64 / 1e6;
    let static_mb = std::fs::metadata(concat!(env!("CARGO_MANIFEST_DIR"), "/dist/carrier"))
        .map(|m| m.len() as f64 / 1e6)
        .ok();

    // Idle: queue resolved, long polls open, nothing to do; a fresh process each time.
    let mut idle = Vec::new();
    let mut threads = 0;
    for _ in 0..k {
        let sqs = FakeSqs::start();
        sqs.create_queue("idle", QueueConfig::standard());
        let sink = Sink::answering(200);
        let carrier = CarrierProcess::start(&sqs.carrier_env("idle", &sink));
        carrier
            .wait_log("carrier has arrived", Duration::from_secs(30))
            .await;
        tokio::time::sleep(Duration::from_secs(2)).await; // settle: measuring a steady idle state
        idle.push(proc_status(carrier.pid(), "VmRSS:") as f64 / 1024.0);
        threads = proc_status(carrier.pid(), "Threads:");
    }

    let batch = [
        ("CARRIER_SQS_BATCH_SIZE", "10"),
        ("CARRIER_SQS_RECEIVER_WORKERS", "10"),
    ];
    let two = [batch[0], batch[1], ("CARRIER_SQS_RECEIVERS", "2")];
    // 80 slots: a weight-1 route of two at 3 : 1 has 20, two full receives.
    let two_by_40 = [
        batch[0],
        ("CARRIER_SQS_RECEIVER_WORKERS", "40"),
        ("CARRIER_SQS_RECEIVERS", "2"),
    ];
    let two_threads = [two[0], two[1], two[2], ("CARRIER_THREADS", "2")];
    let lambda = |size: &'static str, window: &'static str, workers: &'static str| {
        vec![
            ("CARRIER_WEBHOOK_FORMAT", "lambda"),
            ("CARRIER_WEBHOOK_BATCH_SIZE", size),
            ("CARRIER_WEBHOOK_BATCH_WINDOW", window),
            ("CARRIER_SQS_RECEIVER_WORKERS", workers),
        ]
    };
    let mut unwrap_sns = two.to_vec();
    unwrap_sns.push(("CARRIER_WEBHOOK_UNWRAP", "sns"));
    let configs: Vec<Config> = vec![
        (
            "batch 10, 2 receivers × 10 workers",
            n,
            two.to_vec(),
            false,
            Bodies::Plain(0),
            Queues::One,
        ),
        (
            "the same, CARRIER_THREADS=2",
            n,
            two_threads.to_vec(),
            false,
            Bodies::Plain(0),
            Queues::One,
        ),
        (
            "the same (1 thread), /metrics scraped at 20 Hz",
            n,
            two.to_vec(),
            true,
            Bodies::Plain(0),
            Queues::One,
        ),
        (
            "batch 10, 1 receiver × 10 workers",
            n,
            batch.to_vec(),
            false,
            Bodies::Plain(0),
            Queues::One,
        ),
        (
            "Go defaults (batch 1, 1 × 1)",
            n / 10,
            Vec::new(),
            false,
            Bodies::Plain(0),
            Queues::One,
        ),
        (
            "Lambda format, batch 10, 1 × 2 workers",
            n,
            lambda("10", "0s", "2"),
            false,
            Bodies::Plain(0),
            Queues::One,
        ),
        (
            "Lambda format, batch 100, window 1s, 1 × 2",
            n,
            lambda("100", "1s", "2"),
            false,
            Bodies::Plain(0),
            Queues::One,
        ),
        (
            "Lambda format, batch 1000, window 1s, 1 × 1, 1 KB bodies",
            n,
            lambda("1000", "1s", "1"),
            false,
            Bodies::Plain(1024),
            Queues::One,
        ),
        (
            "SNS envelopes delivered as they are (batch 10, 2 × 10)",
            n,
            two.to_vec(),
            false,
            Bodies::Sns,
            Queues::One,
        ),
        (
            "the same, CARRIER_WEBHOOK_UNWRAP=sns",
            n,
            unwrap_sns.clone(),
            false,
            Bodies::Sns,
            Queues::One,
        ),
        // Issue 19: two routes against one at the same slots, measured alike (queues kept full,
        // the clock stopped at the N-th delete).
        (
            "one route, queue kept full (N + N/4 in it, clock stopped at N), 2 × 10",
            n,
            two.to_vec(),
            false,
            Bodies::Plain(0),
            Queues::OneKeptFull,
        ),
        (
            "two routes 3:1, both kept full (N and N/2 in them, clock stopped at N), 2 × 10 slots shared",
            n,
            two.to_vec(),
            false,
            Bodies::Plain(0),
            Queues::TwoRoutes,
        ),
        // The same two rows at 80 slots: the weight-1 route's share is two full receives, not
        // half of one.
        (
            "one route, queue kept full, 2 × 40",
            n,
            two_by_40.to_vec(),
            false,
            Bodies::Plain(0),
            Queues::OneKeptFull,
        ),
        (
            "two routes 3:1, both kept full, 2 × 40 slots shared",
            n,
            two_by_40.to_vec(),
            false,
            Bodies::Plain(0),
            Queues::TwoRoutes,
        ),
    ];
    // `CARRIER_BENCH_ONLY=i` (or `i,j,...`): only those rows of the table (scripts/flamegraph
    // profiles the first).
    let only: Option<Vec<usize>> = std::env::var("CARRIER_BENCH_ONLY").ok().map(|v| {
        v.split(',')
            .map(|i| i.trim().parse().expect("CARRIER_BENCH_ONLY: row numbers"))
            .collect()
    });
    let chosen: Vec<usize> = (0..configs.len())
        .filter(|i| only.as_ref().is_none_or(|only| only.contains(&(i + 1))))
        .collect();
    // Round by round (one run of each row, then the next round), so this machine's slow spells
    // fall on every row alike, and rows compared with each other were run side by side.
    let mut results: Vec<(&str, usize, Queues, Vec<Run>)> = chosen
        .iter()
        .map(|&i| (configs[i].0, configs[i].1, configs[i].5, Vec::new()))
        .collect();
    for _ in 0..k {
        for (slot, &i) in chosen.iter().enumerate() {
            let (_, messages, env, scrape, bodies, queues) = &configs[i];
            let figures = run(*messages, env, *scrape, *bodies, *queues).await;
            results[slot].3.push(figures);
        }
    }

    println!("\n{k} runs each; figures are min / median / max.\n");
    println!("| measure | value |\n|---|---|");
    println!(
        "| binary ({}) | {size_mb:.2} MB |",
        if cfg!(debug_assertions) {
            "debug build!"
        } else {
            "release, stripped"
        }
    );
    if let Some(mb) = static_mb {
        println!("| static binary (dist/carrier, the image's) | {mb:.2} MB |");
    }
    println!("| idle RSS | {} MB |", spread(idle.iter().copied(), 2));
    println!("| threads (idle) | {threads} |");
    println!(
        "\n| run | messages | msg/s | CPU µs/msg | peak RSS MB | webhook connections | exec → first POST ms | SQS calls/msg | fake SQS CPU µs/msg | sink CPU µs/msg |\n|---|---|---|---|---|---|---|---|---|---|"
    );
    for (label, messages, _, runs) in &results {
        let f = |get: fn(&Run) -> f64, d| spread(runs.iter().map(get), d);
        println!(
            "| {label} | {messages} | {} | {} | {} | {} | {} | {} | {} | {} |",
            f(|r| r.msgs_per_sec, 0),
            f(|r| r.cpu_us_per_msg, 0),
            f(|r| r.peak_rss_mb, 1),
            f(|r| r.connections, 0),
            f(|r| r.first_post_ms, 0),
            f(|r| r.sqs_calls_per_msg, 2),
            f(|r| r.sqs_cpu_us_per_msg, 0),
            f(|r| r.sink_cpu_us_per_msg, 0),
        );
        let m = median(runs.iter().map(|r| r.msgs_per_sec));
        let slow = runs.iter().filter(|r| r.msgs_per_sec < m / 2.0).count();
        if slow > 0 {
            println!("|   ⚠ {slow} run(s) below half the median throughput | | | | | | | | | |");
        }
    }
    // Each two-route row against a one-route row chosen with it that has the same settings
    // (the same slots); a two-route row chosen without one is not compared.
    let env = |k: usize| &configs[chosen[k]].2;
    let pairs = results.iter().enumerate().filter_map(|(j, r)| {
        let i = results
            .iter()
            .enumerate()
            .position(|(i, one)| one.2 == Queues::OneKeptFull && env(i) == env(j))?;
        (r.2 == Queues::TwoRoutes).then_some((i, j))
    });
    for (i, j) in pairs {
        let (one, two) = (&results[i].3, &results[j].3);
        // Run i of each row ran one after the other: their ratio cancels most of the drift.
        let ratio =
            |get: fn(&Run) -> f64| spread(one.iter().zip(two).map(|(o, t)| get(t) / get(o)), 3);
        println!(
            "\n| two routes 3:1 against one route, same slots: rows {} and {} ({k} pairs of runs side by side) | min / median / max |\n|---|---|",
            chosen[i] + 1,
            chosen[j] + 1
        );
        println!("| msg/s, two ÷ one | {} |", ratio(|r| r.msgs_per_sec));
        println!(
            "| CPU µs/msg, two ÷ one | {} |",
            ratio(|r| r.cpu_us_per_msg)
        );
        println!("| peak RSS, two ÷ one | {} |", ratio(|r| r.peak_rss_mb));
        println!(
            "| share high : low when the clock stopped (weights 3 : 1) | {} : 1 |",
            spread(two.iter().map(|r| r.share), 3)
        );
    }
}

/// Sends `n` messages in batches of 10 from `workers` concurrent loops, then receives and deletes
/// them (batches of 10) from `workers` loops. Returns (send msg/s, receive+delete msg/s).
async fn send_receive_delete(
    client: &aws_sdk_sqs::Client,
    url: &str,
    n: usize,
    workers: usize,
) -> (f64, f64) {
    let started = Instant::now();
    let per_worker = n.div_ceil(workers);
    let sends = (0..workers).map(|w| async move {
        for chunk in (w * per_worker..((w + 1) * per_worker).min(n))
            .collect::<Vec<_>>()
            .chunks(10)
        {
            let entries = chunk
                .iter()
                .map(|i| {
                    SendMessageBatchRequestEntry::builder()
                        .id(format!("e{i}"))
                        .message_body(format!("message {i}"))
                        .build()
                        .unwrap()
                })
                .collect();
            let out = client
                .send_message_batch()
                .queue_url(url)
                .set_entries(Some(entries))
                .send()
                .await
                .expect("send batch");
            assert!(out.failed.is_empty());
        }
    });
    futures_join_all(sends).await;
    let send_rate = n as f64 / started.elapsed().as_secs_f64();

    let started = Instant::now();
    let done = std::sync::atomic::AtomicUsize::new(0);
    let deadline = Instant::now() + Duration::from_secs(120);
    let receivers = (0..workers).map(|_| async {
        while done.load(std::sync::atomic::Ordering::Relaxed) < n && Instant::now() < deadline {
            let messages = client
                .receive_message()
                .queue_url(url)
                .max_number_of_messages(10)
                // Short polls: a long poll left open by one loop when another takes the last
                // messages would add its whole wait to the measured time.
                .wait_time_seconds(0)
                .send()
                .await
                .expect("receive")
                .messages
                .unwrap_or_default();
            if messages.is_empty() {
                continue;
            }
            let entries = messages
                .iter()
                .enumerate()
                .map(|(i, m)| {
                    DeleteMessageBatchRequestEntry::builder()
                        .id(i.to_string())
                        .receipt_handle(m.receipt_handle().unwrap())
                        .build()
                        .unwrap()
                })
                .collect();
            let out = client
                .delete_message_batch()
                .queue_url(url)
                .set_entries(Some(entries))
                .send()
                .await
                .expect("delete batch");
            assert!(out.failed.is_empty());
            done.fetch_add(messages.len(), std::sync::atomic::Ordering::Relaxed);
        }
    });
    futures_join_all(receivers).await;
    let moved = done.load(std::sync::atomic::Ordering::Relaxed);
    assert_eq!(moved, n, "every message received and deleted within 120 s");
    (send_rate, n as f64 / started.elapsed().as_secs_f64())
}

/// Runs the futures concurrently on this task (no spawning: they borrow).
async fn futures_join_all<F: std::future::Future<Output = ()>>(futures: impl Iterator<Item = F>) {
    let mut set: Vec<std::pin::Pin<Box<F>>> = futures.map(Box::pin).collect();
    std::future::poll_fn(|cx| {
        set.retain_mut(|f| f.as_mut().poll(cx).is_pending());
        if set.is_empty() {
            std::task::Poll::Ready(())
        } else {
            std::task::Poll::Pending
        }
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "benchmark of the SQS endpoint alone"]
async fn sqs_server_alone() {
    let n = messages_wanted(10_000);
    let external = std::env::var("CARRIER_BENCH_SQS_ENDPOINT").ok();
    let server_pid: Option<u32> = std::env::var("CARRIER_BENCH_SQS_PID")
        .ok()
        .and_then(|p| p.parse().ok());
    let fake = external.is_none().then(server);
    let endpoint = external
        .clone()
        .unwrap_or_else(|| fake.as_ref().unwrap().endpoint.clone());
    let client = carrier_actors::sqs::client(&carrier_actors::QueueAddress {
        endpoint: Some(endpoint.clone()),
        ..Default::default()
    })
    .await;
    let none = Default::default();
    let server_cpu = || match (&fake, server_pid) {
        (Some(_), _) => new_threads_cpu_seconds("fake-sqs", &none),
        (None, Some(pid)) => cpu_seconds(pid),
        (None, None) => f64::NAN,
    };
    println!("\nendpoint {endpoint}, {n} messages\n");
    println!("| loops | send msg/s | receive+delete msg/s | server CPU µs/msg | whole process CPU µs/msg |\n|---|---|---|---|---|");
    for workers in [1, 4] {
        let url = client
            .create_queue()
            .queue_name(format!("bench-{}-{workers}", std::process::id()))
            .send()
            .await
            .expect("create queue")
            .queue_url
            .unwrap();
        let (cpu0, all0) = (server_cpu(), cpu_seconds(std::process::id()));
        let (send, receive) = send_receive_delete(&client, &url, n, workers).await;
        let server = (server_cpu() - cpu0) / n as f64 * 1e6;
        let all = (cpu_seconds(std::process::id()) - all0) / n as f64 * 1e6;
        println!("| {workers} | {send:.0} | {receive:.0} | {server:.0} | {all:.0} |");
    }
}

/// What presenting one message costs, in this process (no I/O): the request for an SNS
/// notification as it is and opened (`CARRIER_WEBHOOK_UNWRAP=sns`), 100 000 times each; the
/// difference is the unwrap's cost per message.
#[test]
#[ignore = "benchmark: run with scripts/bench"]
fn unwrap_cost() {
    use carrier_actors::present::{Format, HeaderStyle, Presenter, Unwrap};
    let n = 100_000;
    let deliveries: Vec<carrier_actors::Delivery> = (0..100)
        .map(|i| carrier_actors::Delivery {
            message_id: std::sync::Arc::from(format!("m-{i}")),
            body: bytes::Bytes::from(sns_envelope(&format!("{{\"order\":{i}}}"))),
            receive_count: Some("1".into()),
            ..Default::default()
        })
        .collect();
    let mut per_message = Vec::new();
    for unwrap in [Unwrap::None, Unwrap::Sns] {
        let p = Presenter::new(
            Format::Message,
            HeaderStyle::Carrier,
            unwrap,
            None,
            "q",
            "application/json",
        );
        let mut best = f64::MAX;
        for _ in 0..runs_wanted() {
            let started = Instant::now();
            let mut bytes = 0;
            for i in 0..n {
                bytes += p.message(&deliveries[i % deliveries.len()]).body.len();
            }
            assert!(bytes > 0);
            best = best.min(started.elapsed().as_secs_f64() / n as f64 * 1e6);
        }
        per_message.push(best);
    }
    println!("\n| presentation of an SNS notification ({n} messages, best of {}) | µs/message |\n|---|---|", runs_wanted());
    println!("| as it is (`none`) | {:.2} |", per_message[0]);
    println!("| opened (`sns`) | {:.2} |", per_message[1]);
    println!(
        "| the unwrap's cost | {:.2} |",
        per_message[1] - per_message[0]
    );
}
