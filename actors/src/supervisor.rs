//! The `Supervisor` actor: runs startup (client, queue resolution, the queue's attributes and
//! dead-letter queue), starts the children under actix supervision, gates receiving on the health
//! check (pausing or draining when the webhook goes offline), ends an idle run when asked to, and
//! runs the drain on shutdown. It knows lifecycles, not messages.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use actix::prelude::*;
use slog::{error, info, o, warn, Logger};
use tokio::sync::oneshot;

use crate::events::Events;
use crate::health::{HealthCheckActor, OfflineAction};
use crate::lease::{Holders, Ledger, LedgerSettings, Posts};
use crate::messages::{
    Crash, Drain, Fault, HealthReport, Inject, Pause, Peers, Ping, QueueKnown, Resume, Shutdown,
};
use crate::present::{lambda, Format};
use crate::receiver::{ReceiverParts, SqsReceiverActor};
use crate::sqs::{self, Backoff, DeadLetterQueue, QueueArn, QueueAttributes, SqsQueue};
use crate::stats::{process_usage, Stats, THROTTLE_WINDOW};
use crate::transmitter::WebhookTransmitterActor;
use crate::{ExitReason, Settings};

/// After the shutdown timeout, how long flushing the last deletes may take before we exit anyway.
/// With the default shutdown timeout (20 s) the whole drain stays inside Kubernetes' default
/// 30 s termination grace period, with 5 s to spare.
pub(crate) const FLUSH_GRACE: Duration = Duration::from_secs(5);
/// The visibility timeout assumed when the queue does not say (SQS's own default). Receives then
/// ask for it explicitly, so SQS keeps what the heartbeat assumes.
const DEFAULT_VISIBILITY: Duration = Duration::from_secs(30);
/// Reading the queue's attributes after a failure at start: retried from this...
const ATTRIBUTES_RETRY_BASE: Duration = Duration::from_secs(1);
/// ...up to this (denied rights may be granted later; a quiet retry costs one call per 5 min).
const ATTRIBUTES_RETRY_MAX: Duration = Duration::from_secs(300);
/// A delivery is extended at most this long past its request timeout (the bounded body read,
/// then settling).
const DELIVERY_MARGIN: Duration = Duration::from_secs(10);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Building the SQS client and resolving the queue.
    Starting,
    /// Children started (receiving, or waiting for the first healthy check).
    Running,
    Draining,
}

/// What `/readyz` reports: ready while the queue is resolved, the webhook online (or not
/// health-checked), receiving, and not draining.
#[derive(Debug, Default)]
pub struct Readiness {
    /// The queue's "SQS has answered for it" flag, once the queue is known.
    resolved: OnceLock<Arc<AtomicBool>>,
    online: AtomicBool,
    draining: AtomicBool,
}

impl Readiness {
    /// SQS has answered for the queue.
    fn resolved(&self) -> bool {
        self.resolved
            .get()
            .is_some_and(|r| r.load(Ordering::Relaxed))
    }

    pub fn ready(&self) -> bool {
        self.resolved()
            && self.online.load(Ordering::Relaxed)
            && !self.draining.load(Ordering::Relaxed)
    }
}

pub(crate) struct Supervisor {
    settings: Arc<Settings>,
    events: Events,
    tls: Arc<rustls::ClientConfig>,
    readiness: Arc<Readiness>,
    /// The root logger children derive theirs from (each with its own `source`).
    root_log: Logger,
    phase: Phase,
    /// The startup future, cancelled if shutdown comes first.
    startup: Option<SpawnHandle>,
    receivers: Vec<Addr<SqsReceiverActor>>,
    transmitters: Vec<Addr<WebhookTransmitterActor>>,
    health: Option<Addr<HealthCheckActor>>,
    /// Extra event-loop threads (`CARRIER_THREADS` − 1), stopped when the system ends.
    arbiters: Vec<actix_rt::Arbiter>,
    /// "carrier has arrived" was logged and receiving began.
    arrived: bool,
    /// Receiving is paused (the webhook is offline, offline action `pause`).
    paused: bool,
    /// Receiving is held: deliveries put the webhook in doubt and no check has passed since.
    held: bool,
    /// `CARRIER_EXIT_WHEN_IDLE`: since when nothing was received and no receive failed.
    idle: Idle,
    /// Fired once with how the system ended.
    exit: Option<oneshot::Sender<ExitReason>>,
}

/// What startup found out about the queue.
struct Started {
    queue: SqsQueue,
    visibility: Duration,
    dead_letter: Option<Arc<DeadLetterQueue>>,
    /// The attributes could not be read: receives ask for [`DEFAULT_VISIBILITY`], and reading
    /// them is retried in the background.
    attributes_unknown: bool,
    /// Neither configured nor said by the queue: receives ask for [`DEFAULT_VISIBILITY`].
    visibility_assumed: bool,
    /// The queue's `QueueArn`, when its attributes could be read.
    arn: Option<String>,
}

/// `CARRIER_EXIT_WHEN_IDLE`'s clock: the counts last seen, and since when neither has moved.
struct Idle {
    received: u64,
    receive_errors: u64,
    since: Instant,
}

impl Supervisor {
    pub(crate) fn new(
        settings: Arc<Settings>,
        stats: Arc<Stats>,
        tls: Arc<rustls::ClientConfig>,
        readiness: Arc<Readiness>,
        root_log: Logger,
        exit: oneshot::Sender<ExitReason>,
    ) -> Self {
        Supervisor {
            settings,
            events: Events::new(stats, root_log.new(o!("source" => "supervisor"))),
            tls,
            readiness,
            root_log,
            phase: Phase::Starting,
            startup: None,
            receivers: Vec::new(),
            transmitters: Vec::new(),
            health: None,
            arbiters: Vec::new(),
            arrived: false,
            paused: false,
            held: false,
            idle: Idle {
                received: 0,
                receive_errors: 0,
                since: Instant::now(),
            },
            exit: Some(exit),
        }
    }

    fn log(&self) -> &Logger {
        self.events.log()
    }

    /// Resolves the queue, reads its visibility timeout and dead-letter queue.
    async fn startup(settings: Arc<Settings>, events: Events) -> Started {
        let client = sqs::client(&settings.queue).await;
        let queue = SqsQueue::resolve(client, &settings.queue, events.clone()).await;
        let log = events.log();
        let (attributes, attributes_unknown) = match queue.attributes().await {
            Ok(a) => (a, false),
            Err(e) => {
                warn!(log, "could not read the queue's attributes; asking for a 30 s visibility timeout on every receive and no dead-letter queue known until they can be read (retried in the background)";
                    "error" => %e);
                (QueueAttributes::default(), true)
            }
        };
        let visibility = match (settings.visibility_timeout, attributes.visibility_timeout) {
            (Some(v), _) => v,
            (None, Some(v)) => v,
            (None, None) => {
                if !attributes_unknown {
                    warn!(log, "the queue did not say its visibility timeout; assuming 30 s and asking for it on every receive";
                        "visibility_timeout_s" => DEFAULT_VISIBILITY.as_secs());
                }
                DEFAULT_VISIBILITY
            }
        };
        let dead_letter = Self::dead_letter_queue(&queue, attributes.dead_letter_target, log).await;
        Started {
            arn: attributes.arn,
            queue,
            visibility,
            dead_letter,
            attributes_unknown,
            visibility_assumed: settings.visibility_timeout.is_none()
                && attributes.visibility_timeout.is_none(),
        }
    }

    /// The dead-letter queue a RedrivePolicy names, if it is an SQS ARN.
    async fn dead_letter_queue(
        queue: &SqsQueue,
        target: Option<String>,
        log: &Logger,
    ) -> Option<Arc<DeadLetterQueue>> {
        match target {
            None => None,
            Some(target) => match QueueArn::parse(&target) {
                Some(arn) => {
                    let dlq = Arc::new(DeadLetterQueue::new(arn));
                    if let Err(e) = dlq.url(queue).await {
                        error!(log, "cannot resolve the dead-letter queue yet; will try again when a message is dead-lettered";
                            "dead_letter_queue" => &dlq.arn.name, "error" => %e);
                    }
                    Some(dlq)
                }
                None => {
                    error!(log, "the queue's RedrivePolicy names a dead-letter queue that is not an SQS ARN; dead-lettering is off";
                        "dead_letter_target" => target);
                    None
                }
            },
        }
    }

    /// Reads the queue's attributes until it works, then tells the receivers the real
    /// visibility timeout and dead-letter queue.
    fn learn_attributes(&mut self, queue: SqsQueue, ctx: &mut Context<Self>) {
        let log = self.log().clone();
        let learn = async move {
            let mut backoff = Backoff::new(ATTRIBUTES_RETRY_BASE, ATTRIBUTES_RETRY_MAX);
            loop {
                actix_rt::time::sleep(backoff.next_delay()).await;
                if let Ok(attributes) = queue.attributes().await {
                    let dead_letter =
                        Self::dead_letter_queue(&queue, attributes.dead_letter_target, &log).await;
                    return (attributes.visibility_timeout, dead_letter);
                }
            }
        };
        ctx.spawn(
            learn
                .into_actor(self)
                .map(|(visibility, dead_letter), act, _| {
                    // A configured timeout stays what receives ask for.
                    let visibility =
                        visibility.filter(|_| act.settings.visibility_timeout.is_none());
                    info!(act.log(), "read the queue's attributes";
                        "visibility_timeout_s" => visibility.map(|v| v.as_secs()),
                        "dead_letter_queue" => dead_letter.as_ref().map(|d| d.arn.name.clone()));
                    for r in &act.receivers {
                        r.do_send(QueueKnown {
                            visibility,
                            dead_letter: dead_letter.clone(),
                        });
                    }
                }),
        );
    }

    fn start_children(&mut self, started: Started, ctx: &mut Context<Self>) {
        let settings = self.settings.clone();
        let s = &*settings;
        let queue = started.queue;
        let queue_url = crate::http::redact(queue.url());
        if queue.is_confirmed() {
            info!(self.log(), "queue resolved"; "queue_url" => queue_url, "fifo" => queue.is_fifo(),
                "visibility_timeout_s" => started.visibility.as_secs(),
                "dead_letter_queue" => started.dead_letter.as_ref().map(|d| d.arn.name.clone()));
        } else {
            info!(self.log(), "queue URL not yet confirmed by SQS; resolved at the first successful receive";
                "queue_url" => queue_url, "fifo" => queue.is_fifo());
        }
        let _ = self.readiness.resolved.set(queue.confirmed_flag());
        let webhook = Arc::new(s.webhook.clone());
        let queue_name = s.queue.display_name();
        let workers = s.workers_per_receiver.max(1);
        let source = matches!(s.webhook.format, Format::Lambda { .. }).then(|| {
            lambda::EventSource::from_arn(
                &started.arn.clone().unwrap_or_else(|| queue.arn_from_url()),
            )
        });
        let (posts, receive_size) = match s.webhook.format {
            Format::Message => (Posts::single(workers), s.batch_size),
            // Receives of 10 until a batch is full (SPEC 5.1).
            Format::Lambda { batch_size, window } => (
                Posts {
                    size: batch_size.max(1),
                    window,
                    concurrency: workers,
                    max_bytes: lambda::MAX_PAYLOAD - lambda::EVENT_OVERHEAD,
                    record_bytes: lambda::record_bytes,
                    record_overhead: source.as_ref().map_or(0, |s| s.bytes()),
                },
                sqs::MAX_BATCH_SIZE,
            ),
        };
        let ledger = LedgerSettings {
            // A receiver holds at most workers × batch size messages, the batch being gathered
            // included.
            slots: workers * posts.size,
            posts,
            fifo: queue.is_fifo(),
            visibility: started.visibility,
            heartbeat: started.visibility >= Duration::from_secs(1),
            delivery_bound: s.webhook.request_timeout + DELIVERY_MARGIN,
            nack: s.nack,
            min_retry_delay: s.min_retry_delay,
        };
        // Unknown attributes: ask for the timeout the heartbeat assumes, so SQS keeps it.
        let receive_visibility = match (s.visibility_timeout, started.visibility_assumed) {
            (Some(v), _) => Some(v.as_secs() as u32),
            (None, true) => Some(DEFAULT_VISIBILITY.as_secs() as u32),
            (None, false) => None,
        };
        if started.attributes_unknown {
            self.learn_attributes(queue.clone(), ctx);
        }
        // Receiver i (with its transmitter) runs on thread i mod CARRIER_THREADS; thread 0 is
        // this one, so the default of 1 adds none.
        let mut threads = vec![actix_rt::Arbiter::current()];
        for _ in 1..s.threads.max(1) {
            let arbiter = actix_rt::Arbiter::new();
            threads.push(arbiter.handle());
            self.arbiters.push(arbiter);
        }
        // The health checker first: receivers tell it when deliveries fail as if it were down.
        // (Its reports reach this actor after this handler, so every receiver exists by then.)
        if let Some(health) = s.health_check.clone() {
            let endpoint = s.webhook.endpoint.redacted.clone();
            let (tls, report_to) = (self.tls.clone(), ctx.address().recipient());
            let log = self.root_log.new(o!("source" => "health"));
            self.health = Some(actix::Supervisor::start(move |_| {
                HealthCheckActor::new(health, endpoint, tls, report_to, log)
            }));
        }
        let suspect = self.health.as_ref().map(|h| h.clone().recipient());
        let holders = Holders::default();
        let peers = Peers::default();
        for id in 0..s.receivers {
            let thread = &threads[id % threads.len()];
            let (webhook, tls, source) = (webhook.clone(), self.tls.clone(), source.clone());
            let events = self
                .events
                .with_log(self.root_log.new(o!("source" => "transmitter")));
            let max_connections = s.workers_per_receiver;
            let queue_name = queue_name.clone();
            let transmitter = actix::Supervisor::start_in_arbiter(thread, move |_| {
                WebhookTransmitterActor::new(
                    webhook,
                    tls,
                    max_connections,
                    &queue_name,
                    source,
                    events,
                )
            });
            let parts = ReceiverParts {
                id,
                queue: queue.clone(),
                transmitter: transmitter.clone(),
                batch_size: receive_size,
                receive_visibility,
                ledger: Ledger::new(ledger.clone()).shared(id, holders.clone()),
                dead_letter: started.dead_letter.clone(),
                suspect: suspect.clone(),
                peers: peers.clone(),
                events: self
                    .events
                    .with_log(self.root_log.new(o!("source" => "receiver"))),
            };
            let receiver =
                actix::Supervisor::start_in_arbiter(thread, move |_| SqsReceiverActor::new(parts));
            self.transmitters.push(transmitter);
            self.receivers.push(receiver);
        }
        let _ = peers.set(
            self.receivers
                .iter()
                .map(|r| r.clone().recipient())
                .collect(),
        );
        if self.health.is_none() {
            self.arrive();
        }
        if let Some(interval) = s.stat_log_interval {
            ctx.run_interval(interval, |act, _| act.log_stats());
        }
        if let Some(idle) = s.exit_when_idle {
            let tick = (idle / 4).clamp(Duration::from_millis(100), Duration::from_secs(1));
            ctx.run_interval(tick, move |act, ctx| act.check_idle(idle, ctx));
        }
    }

    /// Begin receiving: the webhook is ready (or not health-checked).
    fn arrive(&mut self) {
        self.readiness.online.store(true, Ordering::Relaxed);
        self.reset_idle();
        if self.arrived {
            if self.paused || self.held {
                self.paused = false;
                self.held = false;
                info!(self.log(), "receiving resumed");
                for r in &self.receivers {
                    r.do_send(Resume);
                }
            }
            return;
        }
        self.arrived = true;
        info!(self.log(), "carrier has arrived"; "receivers" => self.receivers.len(),
            "workers_per_receiver" => self.settings.workers_per_receiver,
            "batch_size" => self.settings.batch_size);
        for r in &self.receivers {
            r.do_send(Resume);
        }
    }

    fn pause(&mut self) {
        self.readiness.online.store(false, Ordering::Relaxed);
        if !self.paused {
            self.paused = true;
            info!(self.log(), "receiving paused until the webhook is healthy again";
                "in_flight" => self.events.stats().snapshot().in_flight);
            for r in &self.receivers {
                r.do_send(Pause);
            }
        }
    }

    /// The webhook is in doubt: receive nothing until a health check passes.
    fn hold(&mut self) {
        if !self.paused && !self.held {
            self.held = true;
            for r in &self.receivers {
                r.do_send(Pause);
            }
        }
    }

    fn reset_idle(&mut self) {
        let stats = self.events.stats();
        self.idle = Idle {
            received: stats.snapshot().received,
            receive_errors: stats.receive_errors(),
            since: Instant::now(),
        };
    }

    /// `CARRIER_EXIT_WHEN_IDLE`: receives succeeded and came back empty for `idle` while
    /// receiving, nothing held. A receive error restarts the clock: a run that cannot reach its
    /// queue never exits 0 as idle.
    fn check_idle(&mut self, idle: Duration, ctx: &mut Context<Self>) {
        let stats = self.events.stats();
        let snap = stats.snapshot();
        let busy = !self.arrived
            || !self.readiness.resolved()
            || self.paused
            || self.held
            || snap.in_flight > 0
            || snap.received != self.idle.received
            || stats.receive_errors() != self.idle.receive_errors;
        if busy {
            self.reset_idle();
            return;
        }
        if self.idle.since.elapsed() >= idle {
            info!(self.log(), "queue idle; draining and exiting";
                "idle_ms" => idle.as_millis() as u64);
            self.begin_drain(ExitReason::Idle, ctx);
        }
    }

    fn begin_drain(&mut self, reason: ExitReason, ctx: &mut Context<Self>) {
        self.readiness.draining.store(true, Ordering::Relaxed);
        match self.phase {
            Phase::Draining => return,
            Phase::Starting => {
                if let Some(startup) = self.startup.take() {
                    ctx.cancel_future(startup);
                }
                return self.finish(reason);
            }
            Phase::Running => self.phase = Phase::Draining,
        }
        let timeout = self.settings.shutdown_timeout;
        info!(self.log(), "draining"; "reason" => ?reason,
            "in_flight" => self.events.stats().snapshot().in_flight,
            "shutdown_timeout_ms" => timeout.as_millis() as u64);
        let deadline = Instant::now() + timeout;
        let waits: Vec<_> = self
            .receivers
            .iter()
            .map(|r| {
                let (done, wait) = oneshot::channel();
                r.do_send(Drain { deadline, done });
                wait
            })
            .collect();
        let all_drained = async move {
            for wait in waits {
                let _ = wait.await;
            }
        };
        let limit = timeout + FLUSH_GRACE;
        ctx.spawn(
            async move { tokio::time::timeout(limit, all_drained).await.is_ok() }
                .into_actor(self)
                .map(move |drained, act, _| {
                    if !drained {
                        warn!(act.log(), "drain did not finish in time; exiting anyway: the messages still held (deliveries, deletes and visibility changes not confirmed) reappear after their visibility timeout";
                            "in_flight" => act.events.stats().snapshot().in_flight);
                    }
                    act.finish(reason)
                }),
        );
    }

    fn finish(&mut self, reason: ExitReason) {
        let snap = self.events.stats().snapshot();
        self.events.log_suppressed();
        info!(self.log(), "carrier stopped"; "reason" => ?reason, "received" => snap.received,
            "acked" => snap.acked, "retried" => snap.retried, "nacked" => snap.nacked,
            "released" => snap.released, "dead_lettered" => snap.dead_lettered,
            "extensions" => snap.extensions);
        for arbiter in self.arbiters.drain(..) {
            arbiter.stop();
        }
        if let Some(exit) = self.exit.take() {
            let _ = exit.send(reason);
        }
    }

    fn log_stats(&self) {
        let s = self.events.stats().snapshot();
        let (rss, threads) = process_usage().unwrap_or_default();
        info!(self.log(), "stats"; "rss_bytes" => rss, "threads" => threads,
            "received" => s.received, "acked" => s.acked, "retried" => s.retried,
            "nacked" => s.nacked, "released" => s.released, "dead_lettered" => s.dead_lettered,
            "in_flight" => s.in_flight, "sqs_errors" => s.sqs_errors,
            "extensions" => s.extensions, "restarts" => s.restarts,
            "log_lines_dropped" => self.events.stats().log_lines_dropped.get());
    }
}

impl Actor for Supervisor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        let events = self
            .events
            .with_log(self.root_log.new(o!("source" => "sqs")));
        let startup = Self::startup(self.settings.clone(), events);
        self.startup = Some(ctx.spawn(startup.into_actor(self).map(|started, act, ctx| {
            act.startup = None;
            act.phase = Phase::Running;
            act.start_children(started, ctx);
        })));
        ctx.run_interval(THROTTLE_WINDOW, |act, _| act.events.log_suppressed());
    }
}

impl Handler<HealthReport> for Supervisor {
    type Result = ();

    fn handle(&mut self, report: HealthReport, ctx: &mut Self::Context) {
        if self.phase != Phase::Running {
            return;
        }
        let action = self
            .settings
            .health_check
            .as_ref()
            .map(|h| h.offline_action)
            .unwrap_or_default();
        match (report, action) {
            (HealthReport::Online, _) => self.arrive(),
            (HealthReport::Doubtful, _) => self.hold(),
            (HealthReport::Offline, OfflineAction::Pause) => self.pause(),
            (HealthReport::Offline, OfflineAction::Exit) => {
                self.readiness.online.store(false, Ordering::Relaxed);
                self.begin_drain(ExitReason::WebhookOffline, ctx)
            }
            (HealthReport::StartupTimedOut, _) => {
                self.begin_drain(ExitReason::WebhookNeverOnline, ctx)
            }
        }
    }
}

impl Handler<Shutdown> for Supervisor {
    type Result = ();

    fn handle(&mut self, _: Shutdown, ctx: &mut Self::Context) {
        self.begin_drain(ExitReason::Shutdown, ctx);
    }
}

impl Handler<Ping> for Supervisor {
    type Result = ();

    fn handle(&mut self, _: Ping, _ctx: &mut Self::Context) {}
}

impl Handler<Inject> for Supervisor {
    type Result = ();

    fn handle(&mut self, Inject(fault): Inject, _ctx: &mut Self::Context) {
        warn!(self.log(), "injecting fault"; "fault" => ?fault);
        match fault {
            Fault::StopReceiver(n) if !self.receivers.is_empty() => {
                self.receivers[n % self.receivers.len()].do_send(Crash)
            }
            Fault::StopTransmitter(n) if !self.transmitters.is_empty() => {
                self.transmitters[n % self.transmitters.len()].do_send(Crash)
            }
            _ => {}
        }
    }
}
