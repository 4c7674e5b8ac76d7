//! Test harness: a real SQS emulator (moto server from the project's `.venv`, one per test binary,
//! on a free 127.0.0.1 port), a real HTTP webhook sink on 127.0.0.1, and the real `carrier`
//! binary with its JSON log lines captured. Waits are on events (a watch channel bumped on every
//! request or log line); only SQS queue counts, which have no event, are polled.
#![allow(dead_code)] // each test binary uses a different part of the harness

pub mod fake_sqs;
pub mod fanout;
pub mod powertools;

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::process::{Child, ChildStdin, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU16, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use actix_web::{web, App, HttpRequest, HttpResponse, HttpServer};
use aws_sdk_sqs::types::{MessageAttributeValue, QueueAttributeName};
use tokio::sync::watch;

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port on 127.0.0.1")
        .port()
}

/// Serves `routes` (with `state` as app data) on a free 127.0.0.1 port from a thread of its own
/// with its own actix system, so any test runtime can use it. Returns the port.
/// Each accepted connection bumps `connections`.
fn serve<T: Send + Sync + 'static>(
    state: Arc<T>,
    routes: fn(&mut web::ServiceConfig),
    connections: Arc<AtomicUsize>,
) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind a test server");
    let port = listener.local_addr().unwrap().port();
    std::thread::Builder::new()
        .name("test-sink".into())
        .spawn(move || {
            actix_rt::System::new().block_on(async move {
                let data = web::Data::from(state);
                HttpServer::new(move || App::new().app_data(data.clone()).configure(routes))
                    .on_connect(move |_, _| {
                        connections.fetch_add(1, Ordering::Relaxed);
                    })
                    .workers(1)
                    .listen(listener)
                    .expect("listen")
                    .run()
                    .await
                    .expect("test server");
            })
        })
        .expect("spawn the test server's thread");
    port
}

/// Waits on a watch channel until `check` yields, or panics naming `what`.
async fn wait_on<T>(
    rx: &mut watch::Receiver<u64>,
    what: &str,
    timeout: Duration,
    mut check: impl FnMut() -> Option<T>,
) -> T {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        rx.borrow_and_update();
        if let Some(v) = check() {
            return v;
        }
        if tokio::time::timeout_at(deadline, rx.changed())
            .await
            .is_err()
        {
            panic!("timed out after {timeout:?} waiting for {what}");
        }
    }
}

// ---------------------------------------------------------------------------------------------
// moto

/// The moto server of this test binary. It dies with the test process: its shell wrapper kills
/// it when our end of its stdin pipe closes.
pub struct Moto {
    pub endpoint: String,
    _child: Child,
    _stdin: ChildStdin,
}

pub fn moto() -> &'static Moto {
    static MOTO: OnceLock<Moto> = OnceLock::new();
    MOTO.get_or_init(|| {
        let root = env!("CARGO_MANIFEST_DIR");
        let server = std::env::var("CARRIER_TEST_MOTO_SERVER")
            .unwrap_or_else(|_| format!("{root}/.venv/bin/moto_server"));
        assert!(
            std::path::Path::new(&server).exists(),
            "{server} is missing: run scripts/setup-test-env (scripts/test does)"
        );
        let port = free_port();
        let mut child = Command::new("sh")
            .arg("-c")
            .arg(r#""$0" -H 127.0.0.1 -p "$1" </dev/null 2>&1 & m=$!; read _; kill $m"#)
            .arg(&server)
            .arg(port.to_string())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("start moto_server");
        let stdin = child.stdin.take().expect("piped stdin");
        let stdout = child.stdout.take().expect("piped stdout");
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            // Keep draining moto's request log so it never blocks on a full pipe.
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if line.contains("Running on") {
                    let _ = ready_tx.send(());
                }
            }
        });
        ready_rx
            .recv_timeout(Duration::from_secs(60))
            .expect("moto_server did not report 'Running on' within 60 s");
        Moto {
            endpoint: format!("http://127.0.0.1:{port}"),
            _child: child,
            _stdin: stdin,
        }
    })
}

/// A queue of its own on the shared moto server, and an SQS client for the test's side.
pub struct TestQueue {
    pub name: String,
    pub url: String,
    pub client: aws_sdk_sqs::Client,
}

static QUEUE_SEQ: AtomicUsize = AtomicUsize::new(0);

impl TestQueue {
    /// A fresh queue; `visibility_timeout` in seconds.
    pub async fn create(prefix: &str, visibility_timeout: u32) -> TestQueue {
        TestQueue::create_with(prefix, visibility_timeout, &[]).await
    }

    /// A fresh FIFO queue (its name ends in `.fifo`), with content-based deduplication.
    pub async fn create_fifo(prefix: &str, visibility_timeout: u32) -> TestQueue {
        let attrs = [
            (QueueAttributeName::FifoQueue, "true".to_string()),
            (
                QueueAttributeName::ContentBasedDeduplication,
                "true".to_string(),
            ),
        ];
        TestQueue::create_with(prefix, visibility_timeout, &attrs).await
    }

    /// A fresh queue with more attributes (e.g. a `RedrivePolicy`). A `FifoQueue` attribute
    /// gives the name its `.fifo` suffix.
    pub async fn create_with(
        prefix: &str,
        visibility_timeout: u32,
        attributes: &[(QueueAttributeName, String)],
    ) -> TestQueue {
        let endpoint = moto().endpoint.clone();
        let client = carrier_actors::sqs::client(&carrier_actors::QueueAddress {
            endpoint: Some(endpoint),
            ..Default::default()
        })
        .await;
        let fifo = attributes
            .iter()
            .any(|(k, _)| *k == QueueAttributeName::FifoQueue);
        let name = format!(
            "{prefix}-{}-{}{}",
            std::process::id(),
            QUEUE_SEQ.fetch_add(1, Ordering::Relaxed),
            if fifo { ".fifo" } else { "" }
        );
        let mut create = client.create_queue().queue_name(&name).attributes(
            QueueAttributeName::VisibilityTimeout,
            visibility_timeout.to_string(),
        );
        for (k, v) in attributes {
            create = create.attributes(k.clone(), v);
        }
        let url = create
            .send()
            .await
            .expect("create queue")
            .queue_url
            .expect("queue url");
        TestQueue { name, url, client }
    }

    /// The queue's ARN.
    pub async fn arn(&self) -> String {
        let out = self
            .client
            .get_queue_attributes()
            .queue_url(&self.url)
            .attribute_names(QueueAttributeName::QueueArn)
            .send()
            .await
            .expect("queue attributes");
        out.attributes
            .unwrap_or_default()
            .remove(&QueueAttributeName::QueueArn)
            .expect("QueueArn")
    }

    /// Sends one message with message attributes `(name, data type, value)`; Binary values are
    /// sent as their bytes.
    pub async fn send_with_attributes(&self, body: &str, attributes: &[(&str, &str, &str)]) {
        let mut send = self
            .client
            .send_message()
            .queue_url(&self.url)
            .message_body(body);
        for (name, data_type, value) in attributes {
            let attr = MessageAttributeValue::builder().data_type(*data_type);
            let attr = if data_type.starts_with("Binary") {
                attr.binary_value(aws_sdk_sqs::primitives::Blob::new(
                    value.as_bytes().to_vec(),
                ))
            } else {
                attr.string_value(*value)
            };
            send = send.message_attributes(*name, attr.build().unwrap());
        }
        send.send().await.expect("send message");
    }

    /// Sends `bodies` to a FIFO queue, in order, all in message group `group`.
    pub async fn send_fifo(&self, group: &str, bodies: &[String]) {
        for chunk in bodies.chunks(10) {
            let entries = chunk
                .iter()
                .enumerate()
                .map(|(i, b)| {
                    aws_sdk_sqs::types::SendMessageBatchRequestEntry::builder()
                        .id(i.to_string())
                        .message_body(b)
                        .message_group_id(group)
                        .build()
                        .unwrap()
                })
                .collect();
            let out = self
                .client
                .send_message_batch()
                .queue_url(&self.url)
                .set_entries(Some(entries))
                .send()
                .await
                .expect("send batch");
            assert!(out.failed.is_empty(), "send batch failed: {:?}", out.failed);
        }
    }

    /// Receives (and deletes) every message now visible, with all attributes. For inspecting a
    /// dead-letter queue at the end of a test.
    pub async fn take_all(&self) -> Vec<aws_sdk_sqs::types::Message> {
        let mut all = Vec::new();
        for _ in 0..100 {
            let out = self
                .client
                .receive_message()
                .queue_url(&self.url)
                .max_number_of_messages(10)
                .message_attribute_names("All")
                .message_system_attribute_names(aws_sdk_sqs::types::MessageSystemAttributeName::All)
                .send()
                .await
                .expect("receive");
            let messages = out.messages.unwrap_or_default();
            if messages.is_empty() {
                break;
            }
            for m in &messages {
                self.client
                    .delete_message()
                    .queue_url(&self.url)
                    .receipt_handle(m.receipt_handle().unwrap())
                    .send()
                    .await
                    .expect("delete");
            }
            all.extend(messages);
        }
        all
    }

    pub async fn send(&self, body: &str) {
        self.client
            .send_message()
            .queue_url(&self.url)
            .message_body(body)
            .send()
            .await
            .expect("send message");
    }

    pub async fn send_with_content_type(&self, body: &str, content_type: &str) {
        let attr = MessageAttributeValue::builder()
            .data_type("String")
            .string_value(content_type)
            .build()
            .unwrap();
        self.client
            .send_message()
            .queue_url(&self.url)
            .message_body(body)
            .message_attributes("Body.ContentType", attr)
            .send()
            .await
            .expect("send message");
    }

    /// Sends `n` messages with bodies `{prefix}-0` … in batches of 10.
    pub async fn send_many(&self, prefix: &str, n: usize) -> Vec<String> {
        let bodies: Vec<String> = (0..n).map(|i| format!("{prefix}-{i}")).collect();
        for chunk in bodies.chunks(10) {
            let entries = chunk
                .iter()
                .enumerate()
                .map(|(i, b)| {
                    aws_sdk_sqs::types::SendMessageBatchRequestEntry::builder()
                        .id(i.to_string())
                        .message_body(b)
                        .build()
                        .unwrap()
                })
                .collect();
            let out = self
                .client
                .send_message_batch()
                .queue_url(&self.url)
                .set_entries(Some(entries))
                .send()
                .await
                .expect("send batch");
            assert!(out.failed.is_empty(), "send batch failed: {:?}", out.failed);
        }
        bodies
    }

    /// (visible, in flight) message counts.
    pub async fn counts(&self) -> (u64, u64) {
        let out = self
            .client
            .get_queue_attributes()
            .queue_url(&self.url)
            .attribute_names(QueueAttributeName::All)
            .send()
            .await
            .expect("queue attributes");
        let attrs = out.attributes.unwrap_or_default();
        let get = |k: QueueAttributeName| attrs.get(&k).and_then(|v| v.parse().ok()).unwrap_or(0);
        (
            get(QueueAttributeName::ApproximateNumberOfMessages),
            get(QueueAttributeName::ApproximateNumberOfMessagesNotVisible),
        )
    }

    /// Polls (SQS has no event for it) until no message is left, visible or in flight.
    pub async fn wait_empty(&self, timeout: Duration) {
        self.wait_counts((0, 0), timeout).await
    }

    /// Polls until the (visible, in flight) counts are `expected`.
    pub async fn wait_counts(&self, expected: (u64, u64), timeout: Duration) {
        let deadline = Instant::now() + timeout;
        loop {
            let counts = self.counts().await;
            if counts == expected {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "queue {}: (visible, in flight) = {counts:?} after {timeout:?}, expected {expected:?}",
                self.name
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

// ---------------------------------------------------------------------------------------------
// webhook sink

/// One request the sink received.
#[derive(Debug, Clone)]
pub struct Request {
    pub path: String,
    /// Lower-case header names; a header sent more than once has its values joined by ", ".
    pub headers: HashMap<String, String>,
    pub body: String,
    pub at: Instant,
}

impl Request {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).map(String::as_str)
    }
}

/// How the sink answers a request.
#[derive(Debug, Clone)]
pub struct Reply {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    /// How long the "worker" takes before answering.
    pub delay: Duration,
    /// Response body size in bytes (filled with `x`), unless `text` is set.
    pub body_len: usize,
    /// The response body.
    pub text: Option<String>,
}

impl Reply {
    pub fn status(status: u16) -> Reply {
        Reply {
            status,
            headers: Vec::new(),
            delay: Duration::ZERO,
            body_len: 0,
            text: None,
        }
    }

    /// This body (e.g. a Lambda function's answer).
    pub fn text(mut self, text: &str) -> Reply {
        self.text = Some(text.into());
        self
    }

    pub fn body_of(mut self, len: usize) -> Reply {
        self.body_len = len;
        self
    }

    pub fn header(mut self, name: &str, value: &str) -> Reply {
        self.headers.push((name.into(), value.into()));
        self
    }

    pub fn after(mut self, delay: Duration) -> Reply {
        self.delay = delay;
        self
    }
}

/// Decides a reply from the request and how many times this body was seen before (0 = first).
type Behaviour = dyn Fn(&Request, usize) -> Reply + Send + Sync;

struct SinkState {
    requests: Mutex<Vec<Request>>,
    /// How many times each body has arrived, so a reply can depend on it in constant time.
    seen: Mutex<HashMap<String, usize>>,
    /// Bodies whose response has been sent, in order.
    answered: Mutex<Vec<String>>,
    health_status: AtomicU16,
    health_checks: AtomicUsize,
    /// TCP connections accepted (carrier's keep-alive pool reuses them).
    connections: Arc<AtomicUsize>,
    behaviour: Box<Behaviour>,
    events: watch::Sender<u64>,
}

impl SinkState {
    fn bump(&self) {
        self.events.send_modify(|n| *n += 1);
    }
}

/// A webhook on 127.0.0.1: POST anywhere records and answers per the behaviour; GET /health
/// answers with the current health status (200 unless set).
pub struct Sink {
    pub url: String,
    pub health_url: String,
    state: Arc<SinkState>,
}

impl Sink {
    pub fn start(behaviour: impl Fn(&Request, usize) -> Reply + Send + Sync + 'static) -> Sink {
        let (events, _) = watch::channel(0);
        let state = Arc::new(SinkState {
            requests: Mutex::new(Vec::new()),
            seen: Mutex::new(HashMap::new()),
            answered: Mutex::new(Vec::new()),
            health_status: AtomicU16::new(200),
            health_checks: AtomicUsize::new(0),
            connections: Arc::new(AtomicUsize::new(0)),
            behaviour: Box::new(behaviour),
            events,
        });
        let connections = state.connections.clone();
        let port = serve(
            state.clone(),
            |app| {
                app.app_data(web::PayloadConfig::new(16 * 1024 * 1024))
                    .route("/health", web::get().to(health))
                    .default_service(web::to(hook));
            },
            connections,
        );
        Sink {
            url: format!("http://127.0.0.1:{port}/events"),
            health_url: format!("http://127.0.0.1:{port}/health"),
            state,
        }
    }

    /// A sink that answers every POST with `status`.
    pub fn answering(status: u16) -> Sink {
        Sink::start(move |_, _| Reply::status(status))
    }

    pub fn set_health(&self, status: u16) {
        self.state.health_status.store(status, Ordering::SeqCst);
    }

    /// TCP connections the sink accepted so far.
    pub fn connections(&self) -> usize {
        self.state.connections.load(Ordering::Relaxed)
    }

    /// POSTs received so far (constant time).
    pub fn request_count(&self) -> usize {
        self.state.requests.lock().unwrap().len()
    }

    pub fn health_checks(&self) -> usize {
        self.state.health_checks.load(Ordering::SeqCst)
    }

    pub fn requests(&self) -> Vec<Request> {
        self.state.requests.lock().unwrap().clone()
    }

    pub fn answered(&self) -> Vec<String> {
        self.state.answered.lock().unwrap().clone()
    }

    /// Waits until `check` over the sink yields a value.
    pub async fn wait<T>(
        &self,
        what: &str,
        timeout: Duration,
        check: impl Fn(&Sink) -> Option<T>,
    ) -> T {
        let mut rx = self.state.events.subscribe();
        wait_on(&mut rx, what, timeout, || check(self)).await
    }

    /// Waits until `n` POSTs have arrived; returns them all.
    pub async fn wait_requests(&self, n: usize, timeout: Duration) -> Vec<Request> {
        self.wait(&format!("{n} webhook requests"), timeout, |s| {
            let r = s.requests();
            (r.len() >= n).then_some(r)
        })
        .await
    }

    /// Waits until every body in `bodies` has been answered at least once.
    pub async fn wait_answered_all(&self, bodies: &[String], timeout: Duration) {
        self.wait(
            &format!("{} distinct bodies answered", bodies.len()),
            timeout,
            |s| {
                let answered: std::collections::HashSet<String> =
                    s.answered().into_iter().collect();
                bodies.iter().all(|b| answered.contains(b)).then_some(())
            },
        )
        .await
    }
}

async fn health(state: web::Data<SinkState>) -> HttpResponse {
    state.health_checks.fetch_add(1, Ordering::SeqCst);
    state.bump();
    let status = state.health_status.load(Ordering::SeqCst);
    HttpResponse::build(actix_web::http::StatusCode::from_u16(status).unwrap()).finish()
}

async fn hook(req: HttpRequest, body: web::Bytes, state: web::Data<SinkState>) -> HttpResponse {
    let mut headers: HashMap<String, String> = HashMap::new();
    for (k, v) in req.headers() {
        let v = v.to_str().unwrap_or("<binary>");
        headers
            .entry(k.as_str().to_string())
            .and_modify(|e| {
                e.push_str(", ");
                e.push_str(v);
            })
            .or_insert_with(|| v.to_string());
    }
    let request = Request {
        path: req.path().to_string(),
        headers,
        body: String::from_utf8_lossy(&body).into_owned(),
        at: Instant::now(),
    };
    let seen = {
        let mut seen = state.seen.lock().unwrap();
        let count = seen.entry(request.body.clone()).or_insert(0);
        *count += 1;
        *count - 1
    };
    state.requests.lock().unwrap().push(request.clone());
    state.bump();
    let reply = (state.behaviour)(&request, seen);
    if !reply.delay.is_zero() {
        actix_rt::time::sleep(reply.delay).await;
    }
    let mut response =
        HttpResponse::build(actix_web::http::StatusCode::from_u16(reply.status).unwrap());
    for (k, v) in &reply.headers {
        response.insert_header((k.as_str(), v.as_str()));
    }
    state.answered.lock().unwrap().push(request.body);
    state.bump();
    match reply.text {
        Some(text) => response.body(text),
        None => response.body(vec![b'x'; reply.body_len]),
    }
}

// ---------------------------------------------------------------------------------------------
// the carrier binary

/// The real `carrier` binary, with a clean environment (no AWS credentials, no home) plus `env`.
pub struct CarrierProcess {
    pid: u32,
    lines: Arc<Mutex<Vec<String>>>,
    events: watch::Sender<u64>,
    exit: Option<tokio::sync::oneshot::Receiver<ExitStatus>>,
    stderr: Arc<Mutex<String>>,
}

impl CarrierProcess {
    pub fn start(env: &[(&str, String)]) -> CarrierProcess {
        Self::spawn(env, None)
    }

    /// Like [`CarrierProcess::start`], but nothing reads carrier's stdout until the returned
    /// sender is used (or dropped): a log shipper that stalls. The pipe fills after ~64 KiB.
    pub fn start_with_stalled_stdout(
        env: &[(&str, String)],
    ) -> (CarrierProcess, std::sync::mpsc::Sender<()>) {
        let (release, stalled) = std::sync::mpsc::channel();
        (Self::spawn(env, Some(stalled)), release)
    }

    fn spawn(
        env: &[(&str, String)],
        stalled: Option<std::sync::mpsc::Receiver<()>>,
    ) -> CarrierProcess {
        // `CARRIER_TEST_BINARY` runs another build (or a profiler wrapping one) instead.
        let binary = std::env::var("CARRIER_TEST_BINARY")
            .unwrap_or_else(|_| env!("CARGO_BIN_EXE_carrier").to_string());
        let mut cmd = Command::new(binary);
        cmd.env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("HOME", "/nonexistent")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().expect("start carrier");
        let pid = child.id();
        let (events, _) = watch::channel(0);
        let lines = Arc::new(Mutex::new(Vec::new()));
        let stdout = child.stdout.take().unwrap();
        let (l, e) = (lines.clone(), events.clone());
        std::thread::spawn(move || {
            if let Some(stalled) = stalled {
                let _ = stalled.recv();
            }
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                l.lock().unwrap().push(line);
                e.send_modify(|n| *n += 1);
            }
        });
        let stderr = Arc::new(Mutex::new(String::new()));
        let mut err_pipe = child.stderr.take().unwrap();
        let err = stderr.clone();
        let (exit_tx, exit) = tokio::sync::oneshot::channel();
        let e = events.clone();
        std::thread::spawn(move || {
            let mut buf = String::new();
            let _ = std::io::Read::read_to_string(&mut err_pipe, &mut buf);
            *err.lock().unwrap() = buf;
            let status = child.wait().expect("wait for carrier");
            let _ = exit_tx.send(status);
            e.send_modify(|n| *n += 1);
        });
        CarrierProcess {
            pid,
            lines,
            events,
            exit: Some(exit),
            stderr,
        }
    }

    /// The usual environment for a queue and a sink.
    pub fn env_for(queue: &TestQueue, sink: &Sink) -> Vec<(&'static str, String)> {
        vec![
            ("CARRIER_SQS_ENDPOINT", moto().endpoint.clone()),
            ("CARRIER_SQS_QUEUE_NAME", queue.name.clone()),
            ("CARRIER_WEBHOOK_ENDPOINT", sink.url.clone()),
        ]
    }

    /// [`CarrierProcess::start`] with owned names (route variables are built at run time).
    pub fn start_owned(env: &[(String, String)]) -> CarrierProcess {
        let env: Vec<(&str, String)> = env.iter().map(|(k, v)| (k.as_str(), v.clone())).collect();
        Self::start(&env)
    }

    /// A carrier of these routes, in order, on moto: `CARRIER_ROUTES`, the shared SQS endpoint,
    /// and each route's [`CarrierProcess::route_env`].
    pub fn routes_env(routes: &[(&str, &TestQueue)], sink: &Sink) -> Vec<(String, String)> {
        let names: Vec<&str> = routes.iter().map(|(name, _)| *name).collect();
        let mut env = vec![
            ("CARRIER_SQS_ENDPOINT".to_string(), moto().endpoint.clone()),
            ("CARRIER_ROUTES".to_string(), names.join(",")),
        ];
        for (name, queue) in routes {
            env.extend(Self::route_env(name, queue, sink));
        }
        env
    }

    /// `CARRIER_ROUTE_<NAME>_…` for a route reading `queue` and POSTing to the sink's path
    /// `/{name}` (so the sink tells the routes apart).
    pub fn route_env(name: &str, queue: &TestQueue, sink: &Sink) -> Vec<(String, String)> {
        let upper = name.to_ascii_uppercase();
        let base = sink.url.trim_end_matches("/events");
        vec![
            (
                format!("CARRIER_ROUTE_{upper}_SQS_QUEUE_NAME"),
                queue.name.clone(),
            ),
            (
                format!("CARRIER_ROUTE_{upper}_WEBHOOK_ENDPOINT"),
                format!("{base}/{name}"),
            ),
        ]
    }

    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// Sends a signal by name (`TERM`, `INT`, `KILL`) with the shell's builtin `kill`.
    pub fn signal(&self, name: &str) {
        assert!(
            send_signal(self.pid, name),
            "kill -{name} {} failed",
            self.pid
        );
    }

    /// Log lines written so far (constant time).
    pub fn log_count(&self) -> usize {
        self.lines.lock().unwrap().len()
    }

    pub fn log_lines(&self) -> Vec<String> {
        self.lines.lock().unwrap().clone()
    }

    /// Parsed JSON log records whose `msg` is `msg`.
    pub fn logs_with(&self, msg: &str) -> Vec<serde_json::Value> {
        self.log_lines()
            .iter()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .filter(|v| v["msg"] == msg)
            .collect()
    }

    /// Waits until `check` over this process yields a value (re-checked on every log line).
    pub async fn wait<T>(&self, check: impl Fn(&Self) -> Option<T>, timeout: Duration) -> T {
        let mut rx = self.events.subscribe();
        wait_on(&mut rx, "a log condition", timeout, || check(self)).await
    }

    /// Waits until `n` log records with this `msg` were written; returns them.
    pub async fn wait_log_count(
        &self,
        msg: &str,
        n: usize,
        timeout: Duration,
    ) -> Vec<serde_json::Value> {
        let mut rx = self.events.subscribe();
        wait_on(&mut rx, &format!("{n}× log {msg:?}"), timeout, || {
            let found = self.logs_with(msg);
            (found.len() >= n).then_some(found)
        })
        .await
    }

    pub async fn wait_log(&self, msg: &str, timeout: Duration) -> serde_json::Value {
        self.wait_log_count(msg, 1, timeout).await.remove(0)
    }

    /// Waits for the process to exit; returns its status.
    pub async fn wait_exit(&mut self, timeout: Duration) -> ExitStatus {
        let exit = self.exit.take().expect("wait_exit called once");
        tokio::time::timeout(timeout, exit)
            .await
            .unwrap_or_else(|_| panic!("carrier did not exit within {timeout:?}"))
            .expect("exit status")
    }

    pub fn stderr(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }
}

impl Drop for CarrierProcess {
    fn drop(&mut self) {
        if self.exit.is_some() {
            send_signal(self.pid, "KILL");
        }
    }
}

// ---------------------------------------------------------------------------------------------
// process figures from /proc

/// A number from `/proc/<pid>/status` (`VmRSS:` and `VmHWM:` are in KiB); 0 if unreadable.
pub fn proc_status(pid: u32, key: &str) -> u64 {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    text.lines()
        .find_map(|l| l.strip_prefix(key))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// User + system CPU seconds in a `/proc/.../stat` file (a process or one thread).
pub fn stat_cpu_seconds(path: &str) -> f64 {
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

/// CPU seconds a process has used so far.
pub fn cpu_seconds(pid: u32) -> f64 {
    stat_cpu_seconds(&format!("/proc/{pid}/stat"))
}

/// File descriptors a process has open.
pub fn open_fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd")).map_or(0, |d| d.count())
}

/// A plain HTTP/1.0 GET on 127.0.0.1: (status, body). For carrier's admin endpoints.
pub fn http_get(port: u16, path: &str) -> std::io::Result<(u16, String)> {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port))?;
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    write!(stream, "GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")?;
    let mut response = String::new();
    stream.read_to_string(&mut response)?;
    let status = response
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    Ok((status, body))
}

/// Samples of a Prometheus/OpenMetrics text, parsed by the independent `prometheus_client` Python
/// package: `name{label="v",...}` (labels sorted) → value.
/// GET an admin endpoint from async code (it binds before the queue is resolved, so this is
/// quick): status and body.
pub async fn admin_get(port: u16, path: &str) -> (u16, String) {
    let path = path.to_string();
    tokio::task::spawn_blocking(move || http_get(port, &path))
        .await
        .unwrap()
        .expect("admin endpoint answers")
}

pub fn parse_metrics(text: &str) -> HashMap<String, f64> {
    let out = python_checker("parse_metrics.py", text.as_bytes());
    serde_json::from_slice(&out).expect("JSON from parse_metrics.py")
}

/// Runs one of the independent Python checkers in tests/support (from the venv that
/// scripts/setup-test-env makes) with `input` on its stdin; its stdout, once it succeeded.
fn python_checker(script: &str, input: &[u8]) -> Vec<u8> {
    use std::io::Write;
    let mut child = venv_python(script)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("python from .venv (run scripts/setup-test-env)");
    child.stdin.take().unwrap().write_all(input).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{script} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

/// `tests/support/<script>` run by the project's venv Python (made by scripts/setup-test-env).
pub fn venv_python(script: &str) -> Command {
    let root = env!("CARGO_MANIFEST_DIR");
    let python = format!("{root}/.venv/bin/python");
    assert!(
        std::path::Path::new(&python).exists(),
        "{python} is missing: run scripts/setup-test-env (scripts/test does)"
    );
    let mut command = Command::new(python);
    command.arg(format!("{root}/tests/support/{script}"));
    command
}

fn send_signal(pid: u32, name: &str) -> bool {
    Command::new("sh")
        .arg("-c")
        .arg(format!("kill -{name} {pid} 2>/dev/null"))
        .status()
        .is_ok_and(|s| s.success())
}

/// A logger that discards everything, for in-process actor systems.
pub fn quiet_logger() -> slog::Logger {
    slog::Logger::root(slog::Discard, slog::o!())
}

/// Verifies the Standard Webhooks signatures of `requests` with the independent `standardwebhooks`
/// Python package (tests/support/verify_webhooks.py): one line per secret and request, `... ok`
/// or `... fail <reason>`.
pub fn verify_standard_webhooks(secrets: &[&str], requests: &[Request]) -> Vec<String> {
    let job = serde_json::json!({
        "secrets": secrets,
        "requests": requests.iter().map(|r| serde_json::json!({
            "body": r.body, "headers": r.headers,
        })).collect::<Vec<_>>(),
    });
    let out = python_checker("verify_webhooks.py", job.to_string().as_bytes());
    String::from_utf8(out)
        .unwrap()
        .lines()
        .map(str::to_string)
        .collect()
}
