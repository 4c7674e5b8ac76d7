//! A webhook endpoint built on AWS Lambda Powertools for Python, for carrier's Lambda-format
//! batches: tests/support/powertools_worker.py (run from the project's `.venv`) validates each POST
//! strictly as the SQS event AWS Lambda hands a function (Powertools' `SqsModel`), processes it
//! with Powertools' `BatchProcessor` (a record fails when its body contains `fail`) and answers
//! with Powertools' partial batch response, `{"batchItemFailures": [...]}`. An independent check
//! that carrier's batches are what Lambda sends and that it reads the answers as Lambda does.
//!
//! The worker prints one JSON line per event (see the script's docstring): `{"invalid": ...}`,
//! `{"messageId", "body", "ok"}` per record, then `{"batch", "failures"}` per batch. They are
//! collected here; waits are on events (a watch channel bumped on every line).

use std::io::{BufRead, BufReader};
use std::process::{Child, ChildStdin, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::Value;
use tokio::sync::watch;

/// A running Powertools worker on a free 127.0.0.1 port; killed on drop.
pub struct PowertoolsWorker {
    port: u16,
    child: Child,
    /// Its lifeline: the worker exits when this closes, even if this process dies unclean.
    _stdin: ChildStdin,
    lines: Arc<Mutex<Vec<Value>>>,
    changed: watch::Receiver<u64>,
}

impl PowertoolsWorker {
    /// Starts the worker and waits for it to report its port.
    pub fn start() -> PowertoolsWorker {
        let mut child = super::venv_python("powertools_worker.py")
            .arg("--stdin-lifeline")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start powertools_worker.py");
        let stdin = child.stdin.take().expect("piped stdin");
        let mut stdout = BufReader::new(child.stdout.take().expect("piped stdout"));
        let mut first = String::new();
        stdout
            .read_line(&mut first)
            .expect("read the worker's stdout");
        let port = first
            .trim()
            .strip_prefix("PORT ")
            .and_then(|p| p.parse().ok())
            .unwrap_or_else(|| {
                panic!("powertools_worker.py did not start (first line {first:?}; see its stderr)")
            });
        let lines = Arc::new(Mutex::new(Vec::new()));
        let (tx, changed) = watch::channel(0u64);
        let collected = Arc::clone(&lines);
        std::thread::Builder::new()
            .name("powertools-worker".into())
            .spawn(move || {
                for line in stdout.lines().map_while(Result::ok) {
                    let doc = serde_json::from_str(&line).unwrap_or(Value::String(line));
                    collected.lock().unwrap().push(doc);
                    tx.send_modify(|n| *n += 1);
                }
            })
            .expect("spawn the worker's reader thread");
        PowertoolsWorker {
            port,
            child,
            _stdin: stdin,
            lines,
            changed,
        }
    }

    /// The URL to point carrier's Lambda-format webhook at (the path Lambda's runtime interface
    /// emulator serves; the worker accepts any).
    pub fn url(&self) -> String {
        format!(
            "http://127.0.0.1:{}/2015-03-31/functions/function/invocations",
            self.port
        )
    }

    /// Every line the worker printed after its port, in order, each parsed as JSON.
    pub fn lines(&self) -> Vec<Value> {
        self.lines.lock().unwrap().clone()
    }

    /// Waits until `check` holds for the lines so far, re-checking on every new line; panics
    /// naming `what` on timeout or if the worker exits first.
    pub async fn wait_for(
        &self,
        what: &str,
        timeout: Duration,
        mut check: impl FnMut(&[Value]) -> bool,
    ) {
        let mut rx = self.changed.clone();
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            rx.borrow_and_update();
            if check(&self.lines.lock().unwrap()) {
                return;
            }
            match tokio::time::timeout_at(deadline, rx.changed()).await {
                Ok(Ok(())) => {}
                Ok(Err(_)) => panic!(
                    "the Powertools worker exited while waiting for {what}; its lines: {:?}",
                    self.lines()
                ),
                Err(_) => panic!(
                    "timed out after {timeout:?} waiting for {what}; the Powertools worker's lines: {:?}",
                    self.lines()
                ),
            }
        }
    }
}

impl Drop for PowertoolsWorker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
