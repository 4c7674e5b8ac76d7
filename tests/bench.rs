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
use support::{CarrierProcess, Sink};

fn proc_field(pid: u32, file: &str, key: &str) -> u64 {
    let text = std::fs::read_to_string(format!("/proc/{pid}/{file}")).unwrap_or_default();
    text.lines()
        .find_map(|l| l.strip_prefix(key))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// User + system CPU seconds in a `/proc/.../stat` file (a process or one thread).
fn stat_cpu_seconds(path: &str) -> f64 {
    let stat = std::fs::read_to_string(path).unwrap_or_default();
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map(|(_, r)| r)
        .unwrap_or("")
        .split_whitespace()
        .collect();
    let ticks: u64 = fields.get(11).and_then(|v| v.parse().ok()).unwrap_or(0)
        + fields.get(12).and_then(|v| v.parse().ok()).unwrap_or(0);
    ticks as f64 / 100.0 // USER_HZ is 100 on Linux
}

fn cpu_seconds(pid: u32) -> f64 {
    stat_cpu_seconds(&format!("/proc/{pid}/stat"))
}

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

/// CPU seconds of the server threads that did not exist in `before`.
fn new_threads_cpu_seconds(before: &std::collections::HashMap<String, f64>) -> f64 {
    threads_cpu_seconds("fake-sqs")
        .into_iter()
        .filter(|(tid, _)| !before.contains_key(tid))
        .map(|(_, cpu)| cpu)
        .sum()
}

struct Run {
    label: String,
    msgs_per_sec: f64,
    cpu_us_per_msg: f64,
    peak_rss_mb: f64,
    sqs_calls_per_msg: f64,
    sqs_cpu_us_per_msg: f64,
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

async fn run(label: &str, n: usize, env_extra: &[(&'static str, &str)]) -> Run {
    let older_servers = threads_cpu_seconds("fake-sqs");
    let sqs = server();
    sqs.create_queue("bench", QueueConfig::standard());
    let bodies: Vec<String> = (0..n).map(|i| format!("m{i}")).collect();
    sqs.send_all("bench", &bodies);
    let sink = Sink::answering(200);
    let mut env = sqs.carrier_env("bench", &sink);
    env.push(("CARRIER_LOG_LEVEL", "warn".to_string()));
    env.extend(env_extra.iter().map(|(k, v)| (*k, v.to_string())));
    let started = Instant::now();
    let mut carrier = CarrierProcess::start(&env);
    let pid = carrier.pid();
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
            "{label}: {} of {n} deleted after 120 s",
            sqs.totals().deleted
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
        events.borrow_and_update();
    }
    let elapsed = started.elapsed().as_secs_f64();
    let cpu = cpu_seconds(pid);
    let peak_rss_mb = proc_field(pid, "status", "VmHWM:") as f64 / 1024.0;
    let calls: u64 = Op::ALL.iter().map(|op| sqs.calls(*op)).sum();
    let sqs_cpu = new_threads_cpu_seconds(&older_servers);
    carrier.signal("TERM");
    assert!(carrier.wait_exit(Duration::from_secs(30)).await.success());
    let counts = sqs.counts("bench");
    assert_eq!(counts.deleted, n as u64);
    assert!(counts.received >= n as u64);
    assert!(sink.requests().len() >= n);
    Run {
        label: label.to_string(),
        msgs_per_sec: n as f64 / elapsed,
        cpu_us_per_msg: cpu / n as f64 * 1e6,
        peak_rss_mb,
        sqs_calls_per_msg: calls as f64 / n as f64,
        sqs_cpu_us_per_msg: sqs_cpu / n as f64 * 1e6,
    }
}

fn messages_wanted(default: usize) -> usize {
    std::env::var("CARRIER_BENCH_MESSAGES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
        .min(50_000)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "benchmark: run with scripts/bench"]
async fn bench() {
    let n = messages_wanted(20_000);
    let binary = env!("CARGO_BIN_EXE_carrier");
    let size_mb = std::fs::metadata(binary).map(|m| m.len()).unwrap_or(0) as f64 / 1e6;

    // Idle: queue resolved, long polls open, nothing to do.
    let sqs = FakeSqs::start();
    sqs.create_queue("idle", QueueConfig::standard());
    let sink = Sink::answering(200);
    let carrier = CarrierProcess::start(&sqs.carrier_env("idle", &sink));
    carrier
        .wait_log("carrier has arrived", Duration::from_secs(30))
        .await;
    tokio::time::sleep(Duration::from_secs(2)).await; // settle: measuring a steady idle state
    let idle_rss_mb = proc_field(carrier.pid(), "status", "VmRSS:") as f64 / 1024.0;
    let threads = proc_field(carrier.pid(), "status", "Threads:");
    drop(carrier);

    let runs = vec![
        run(
            "batch 10, 1 receiver × 10 workers",
            n,
            &[
                ("CARRIER_SQS_BATCH_SIZE", "10"),
                ("CARRIER_SQS_RECEIVER_WORKERS", "10"),
            ],
        )
        .await,
        run(
            "batch 10, 2 receivers × 10 workers",
            n,
            &[
                ("CARRIER_SQS_BATCH_SIZE", "10"),
                ("CARRIER_SQS_RECEIVERS", "2"),
                ("CARRIER_SQS_RECEIVER_WORKERS", "10"),
            ],
        )
        .await,
        run("Go defaults (batch 1, 1 × 1)", n / 10, &[]).await,
    ];

    println!("\n| measure | value |\n|---|---|");
    println!(
        "| binary ({}) | {size_mb:.2} MB |",
        if cfg!(debug_assertions) {
            "debug build!"
        } else {
            "release, stripped"
        }
    );
    println!("| idle RSS | {idle_rss_mb:.1} MB |");
    println!("| threads | {threads} |");
    println!(
        "\n| run ({n} messages; Go defaults: {}) | msg/s | CPU µs/msg | peak RSS | SQS calls/msg | SQS server CPU µs/msg |\n|---|---|---|---|---|---|",
        n / 10
    );
    for r in runs {
        println!(
            "| {} | {:.0} | {:.0} | {:.1} MB | {:.2} | {:.0} |",
            r.label,
            r.msgs_per_sec,
            r.cpu_us_per_msg,
            r.peak_rss_mb,
            r.sqs_calls_per_msg,
            r.sqs_cpu_us_per_msg
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
        (Some(_), _) => new_threads_cpu_seconds(&none),
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
