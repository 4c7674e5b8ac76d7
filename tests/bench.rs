//! The benchmark (not part of the default test run): the real `carrier` binary of this build moves
//! N messages from the fast fake SQS to the webhook sink, both in this process on 127.0.0.1, and
//! the figures are printed as a table. moto is far too slow to load carrier, so the SQS protocol
//! here is the fake's; correctness against a real emulator is the other test files' job.
//!
//! Run with `scripts/bench` (release build). Bounded: at most 50 000 messages and 120 s per run.

mod support;

use std::time::{Duration, Instant};

use support::fake_sqs::{FakeSqs, Mode};
use support::{CarrierProcess, Sink};

fn proc_field(pid: u32, file: &str, key: &str) -> u64 {
    let text = std::fs::read_to_string(format!("/proc/{pid}/{file}")).unwrap_or_default();
    text.lines()
        .find_map(|l| l.strip_prefix(key))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// User + system CPU seconds of a process.
fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
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

struct Run {
    label: String,
    msgs_per_sec: f64,
    cpu_us_per_msg: f64,
    peak_rss_mb: f64,
}

async fn run(label: &str, n: usize, env_extra: &[(&'static str, &str)]) -> Run {
    let receipts: Vec<String> = (0..n).map(|i| format!("m{i}")).collect();
    let refs: Vec<&str> = receipts.iter().map(String::as_str).collect();
    let sqs = FakeSqs::start(Mode::BatchApi, &refs);
    let sink = Sink::answering(200);
    let mut env = vec![
        ("CARRIER_SQS_ENDPOINT", sqs.endpoint.clone()),
        ("CARRIER_SQS_QUEUE_NAME", "bench".to_string()),
        ("CARRIER_WEBHOOK_ENDPOINT", sink.url.clone()),
        ("CARRIER_LOG_LEVEL", "warn".to_string()),
    ];
    env.extend(env_extra.iter().map(|(k, v)| (*k, v.to_string())));
    let started = Instant::now();
    let mut carrier = CarrierProcess::start(&env);
    let pid = carrier.pid();
    sqs.wait("every message deleted", Duration::from_secs(120), |s| {
        let deleted: usize = s
            .calls_of("DeleteMessageBatch")
            .iter()
            .map(|c| c.receipts.len())
            .sum();
        (deleted >= n).then_some(())
    })
    .await;
    let elapsed = started.elapsed().as_secs_f64();
    let cpu = cpu_seconds(pid);
    let peak_rss_mb = proc_field(pid, "status", "VmHWM:") as f64 / 1024.0;
    carrier.signal("TERM");
    assert!(carrier.wait_exit(Duration::from_secs(30)).await.success());
    assert!(sink.requests().len() >= n);
    Run {
        label: label.to_string(),
        msgs_per_sec: n as f64 / elapsed,
        cpu_us_per_msg: cpu / n as f64 * 1e6,
        peak_rss_mb,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "benchmark: run with scripts/bench"]
async fn bench() {
    let n: usize = std::env::var("CARRIER_BENCH_MESSAGES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20_000)
        .min(50_000);
    let binary = env!("CARGO_BIN_EXE_carrier");
    let size_mb = std::fs::metadata(binary).map(|m| m.len()).unwrap_or(0) as f64 / 1e6;

    // Idle: queue resolved, long polls open, nothing to do.
    let sqs = FakeSqs::start(Mode::BatchApi, &[]);
    let sink = Sink::answering(200);
    let carrier = CarrierProcess::start(&[
        ("CARRIER_SQS_ENDPOINT", sqs.endpoint.clone()),
        ("CARRIER_SQS_QUEUE_NAME", "idle".into()),
        ("CARRIER_WEBHOOK_ENDPOINT", sink.url.clone()),
    ]);
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
    println!("\n| run ({n} messages; Go defaults: {}) | msg/s | CPU µs/msg | peak RSS |\n|---|---|---|---|", n / 10);
    for r in runs {
        println!(
            "| {} | {:.0} | {:.0} | {:.1} MB |",
            r.label, r.msgs_per_sec, r.cpu_us_per_msg, r.peak_rss_mb
        );
    }
}
