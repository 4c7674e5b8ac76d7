//! The webhook over TLS: a self-signed HTTPS webhook on 127.0.0.1 is refused by default and
//! accepted with `CARRIER_WEBHOOK_TLS_INSECURE_SKIP_VERIFY`.

mod support;

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use support::{moto, CarrierProcess, TestQueue};

const T: Duration = Duration::from_secs(30);

/// The Python HTTPS sink; lines after READY arrive on the channel.
struct TlsSink {
    url: String,
    lines: mpsc::Receiver<String>,
    _child: Child,
}

fn tls_sink() -> TlsSink {
    let root = env!("CARGO_MANIFEST_DIR");
    let mut child = Command::new(format!("{root}/.venv/bin/python"))
        .arg(format!("{root}/tests/support/tls_sink.py"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("start tls sink (run scripts/setup-test-env)");
    let (tx, lines) = mpsc::channel();
    let stdout = child.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let ready = lines.recv_timeout(T).expect("tls sink READY");
    let port = ready.strip_prefix("READY ").expect("READY line");
    TlsSink {
        url: format!("https://127.0.0.1:{port}/events"),
        lines,
        _child: child,
    }
}

fn env(queue: &TestQueue, sink: &TlsSink) -> Vec<(&'static str, String)> {
    vec![
        ("CARRIER_SQS_ENDPOINT", moto().endpoint.clone()),
        ("CARRIER_SQS_QUEUE_NAME", queue.name.clone()),
        ("CARRIER_WEBHOOK_ENDPOINT", sink.url.clone()),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_skip_verify_accepts_a_self_signed_webhook() {
    let queue = TestQueue::create("tls-skip", 30).await;
    queue.send("over-tls").await;
    let sink = tls_sink();
    let mut env = env(&queue, &sink);
    env.push(("CARRIER_WEBHOOK_TLS_INSECURE_SKIP_VERIFY", "true".into()));
    let _carrier = CarrierProcess::start(&env);
    assert_eq!(sink.lines.recv_timeout(T).unwrap(), "POST over-tls");
    queue.wait_empty(T).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_untrusted_certificate_is_a_nack_by_default() {
    let queue = TestQueue::create("tls-verify", 30).await;
    queue.send("refused").await;
    let sink = tls_sink();
    let carrier = CarrierProcess::start(&env(&queue, &sink));
    let nack = carrier
        .wait_log(
            "delivery failed; the message reappears after its visibility timeout",
            T,
        )
        .await;
    assert!(
        nack["reason"]
            .as_str()
            .unwrap()
            .starts_with("request failed"),
        "{nack}"
    );
    assert!(sink.lines.try_recv().is_err(), "nothing was delivered");
    assert_eq!(queue.counts().await, (0, 1));
}
