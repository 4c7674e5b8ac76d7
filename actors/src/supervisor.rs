//! The `Supervisor` actor: starts every route (its queue resolved, its attributes read, then its
//! receivers and transmitters: `route.rs`) under actix supervision, owns what the routes share
//! (the health check, the delivery slots, the threads), gates receiving on the health check
//! (pausing or draining when the webhook goes offline), ends an idle run when asked to, and runs
//! the drain on shutdown. It knows lifecycles, not messages.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use actix::prelude::*;
use slog::{info, o, warn, Logger};
use tokio::sync::oneshot;

use crate::events::Events;
use crate::health::{HealthCheckActor, OfflineAction};
use crate::http::TlsConfigs;
use crate::messages::{Crash, Drain, Fault, HealthReport, Inject, Pause, Ping, Resume, Shutdown};
use crate::receiver::{QueueKnown, SqsReceiverActor};
use crate::route::{self, Route, Started};
use crate::slots::Slots;
use crate::sqs::{Backoff, SqsQueue};
use crate::stats::{process_usage, Stats, THROTTLE_WINDOW};
use crate::transmitter::WebhookTransmitterActor;
use crate::{ExitReason, Settings};

/// After the shutdown timeout, how long flushing the last deletes may take before we exit anyway.
/// With the default shutdown timeout (20 s) the whole drain stays inside Kubernetes' default
/// 30 s termination grace period, with 5 s to spare.
pub(crate) const FLUSH_GRACE: Duration = Duration::from_secs(5);
/// Reading the queue's attributes after a failure at start: retried from this...
const ATTRIBUTES_RETRY_BASE: Duration = Duration::from_secs(1);
/// ...up to this (denied rights may be granted later; a quiet retry costs one call per 5 min).
const ATTRIBUTES_RETRY_MAX: Duration = Duration::from_secs(300);

/// A route's name as a `&'static str`, for metric labels and log fields: at most 16 per carrier,
/// made once (a process that starts carrier again reuses them).
fn route_name(name: &str) -> &'static str {
    static NAMES: Mutex<Vec<&'static str>> = Mutex::new(Vec::new());
    let mut names = NAMES.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(known) = names.iter().find(|n| **n == name) {
        return known;
    }
    let leaked: &'static str = Box::leak(name.to_owned().into_boxed_str());
    names.push(leaked);
    leaked
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Building the SQS clients and resolving the queues.
    Starting,
    /// Some route's children started (receiving, or waiting for the first healthy check).
    Running,
    Draining,
}

/// What `/readyz` reports: ready while every route's queue is resolved, the webhook online (or
/// not health-checked), receiving, and not draining.
#[derive(Debug, Default)]
pub struct Readiness {
    /// How many routes there are.
    routes: AtomicUsize,
    /// Each started route's "SQS has answered for its queue" flag.
    resolved: Mutex<Vec<Arc<AtomicBool>>>,
    online: AtomicBool,
    draining: AtomicBool,
}

impl Readiness {
    fn expect_routes(&self, routes: usize) {
        self.routes.store(routes, Ordering::Relaxed);
    }

    fn route_resolved(&self, flag: Arc<AtomicBool>) {
        self.resolved
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(flag);
    }

    /// SQS has answered for every route's queue.
    fn resolved(&self) -> bool {
        let resolved = self.resolved.lock().unwrap_or_else(|e| e.into_inner());
        resolved.len() == self.routes.load(Ordering::Relaxed)
            && resolved.iter().all(|r| r.load(Ordering::Relaxed))
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
    tls: TlsConfigs,
    readiness: Arc<Readiness>,
    /// The root logger children derive theirs from (each with its own `source`).
    root_log: Logger,
    phase: Phase,
    /// Each route's startup future, cancelled if shutdown comes first.
    startups: Vec<SpawnHandle>,
    /// The routes started so far, by index in `settings.routes`.
    routes: Vec<Option<Route>>,
    /// The delivery slots all routes share.
    slots: Slots,
    health: Option<Addr<HealthCheckActor>>,
    /// Event-loop threads receivers are spread over: this one, then `CARRIER_THREADS` − 1 more
    /// (stopped when the system ends).
    threads: Vec<actix_rt::ArbiterHandle>,
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
        tls: TlsConfigs,
        readiness: Arc<Readiness>,
        root_log: Logger,
        exit: oneshot::Sender<ExitReason>,
    ) -> Self {
        let shares: Vec<_> = settings.routes.iter().map(Route::share).collect();
        let slots = Slots::new(settings.policy, settings.slots(), &shares);
        readiness.expect_routes(settings.routes.len());
        Supervisor {
            routes: settings.routes.iter().map(|_| None).collect(),
            settings,
            events: Events::new(stats, root_log.new(o!("source" => "supervisor"))),
            tls,
            readiness,
            root_log,
            phase: Phase::Starting,
            startups: Vec::new(),
            slots,
            health: None,
            threads: Vec::new(),
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

    /// Every receiver of every route started so far.
    fn receivers(&self) -> impl Iterator<Item = &Addr<SqsReceiverActor>> {
        self.routes
            .iter()
            .flatten()
            .flat_map(|r| r.receivers.iter())
    }

    /// The route's root logger: its log lines carry `route`.
    fn route_log(&self, index: usize) -> Logger {
        let name: &'static str = self.route_name(index);
        self.root_log.new(o!("route" => name))
    }

    fn route_name(&self, index: usize) -> &'static str {
        route_name(&self.settings.routes[index].name)
    }

    /// Reads a route's queue attributes until it works, then tells its receivers the real
    /// visibility timeout and dead-letter queue.
    fn learn_attributes(
        &mut self,
        index: usize,
        queue: SqsQueue,
        events: Events,
        ctx: &mut Context<Self>,
    ) {
        let log = events.log().clone();
        let learn = async move {
            let mut backoff = Backoff::new(ATTRIBUTES_RETRY_BASE, ATTRIBUTES_RETRY_MAX);
            loop {
                actix_rt::time::sleep(backoff.next_delay()).await;
                if let Ok(attributes) = queue.attributes().await {
                    let dead_letter =
                        route::dead_letter_queue(&queue, attributes.dead_letter_target, &log).await;
                    return (attributes.visibility_timeout, dead_letter);
                }
            }
        };
        ctx.spawn(
            learn
                .into_actor(self)
                .map(move |(visibility, dead_letter), act, _| {
                    let Some(route) = &act.routes[index] else {
                        return;
                    };
                    // A configured timeout stays what receives ask for.
                    let visibility =
                        visibility.filter(|_| route.settings.visibility_timeout.is_none());
                    info!(route.events.log(), "read the queue's attributes";
                        "visibility_timeout_s" => visibility.map(|v| v.as_secs()),
                        "dead_letter_queue" => dead_letter.as_ref().map(|d| d.arn.name.clone()));
                    for r in &route.receivers {
                        r.do_send(QueueKnown {
                            visibility,
                            dead_letter: dead_letter.clone(),
                        });
                    }
                }),
        );
    }

    /// Starts what all routes share, once: the threads, the health checker, the stat line and
    /// the idle clock.
    fn start_shared(&mut self, ctx: &mut Context<Self>) {
        let s = self.settings.clone();
        // Receiver i (with its transmitter) runs on thread i mod CARRIER_THREADS; thread 0 is
        // this one, so the default of 1 adds none.
        self.threads = vec![actix_rt::Arbiter::current()];
        for _ in 1..s.threads.max(1) {
            let arbiter = actix_rt::Arbiter::new();
            self.threads.push(arbiter.handle());
            self.arbiters.push(arbiter);
        }
        // The health checker first: receivers tell it when deliveries fail as if it were down.
        // (Its reports reach this actor after this handler, so every receiver exists by then.)
        if let Some(health) = s.health_check.clone() {
            let endpoint = s.routes[0].webhook.endpoint.redacted.clone();
            let tls = self.tls.get(health.tls_insecure_skip_verify);
            let report_to = ctx.address().recipient();
            let log = self.root_log.new(o!("source" => "health"));
            self.health = Some(actix::Supervisor::start(move |_| {
                HealthCheckActor::new(health, endpoint, tls, report_to, log)
            }));
        }
        if let Some(interval) = s.stat_log_interval {
            ctx.run_interval(interval, |act, _| act.log_stats());
        }
        if let Some(idle) = s.exit_when_idle {
            let tick = (idle / 4).clamp(Duration::from_millis(100), Duration::from_secs(1));
            ctx.run_interval(tick, move |act, ctx| act.check_idle(idle, ctx));
        }
    }

    /// A route's queue is resolved: its actors start, receiving at once if carrier has arrived.
    fn start_route(&mut self, index: usize, started: Started, ctx: &mut Context<Self>) {
        let first = self.phase == Phase::Starting;
        if first {
            self.phase = Phase::Running;
            self.start_shared(ctx);
        }
        let settings = Arc::new(self.settings.routes[index].clone());
        let events = self.events.for_route(self.route_name(index));
        self.readiness
            .route_resolved(started.queue.confirmed_flag());
        let root_log = self.route_log(index);
        let shared = route::Shared {
            tls: &self.tls,
            threads: &self.threads,
            suspect: self.health.as_ref().map(|h| h.clone().recipient()),
            receivers: self.settings.receivers,
            workers: self.settings.workers_per_receiver,
        };
        let route = Route::start(
            settings,
            &started,
            shared,
            self.slots.route(index),
            events.clone(),
            &root_log,
        );
        if started.attributes_unknown {
            self.learn_attributes(index, started.queue.clone(), events, ctx);
        }
        if self.arrived && !self.paused && !self.held {
            for r in &route.receivers {
                r.do_send(Resume);
            }
        }
        self.routes[index] = Some(route);
        if first && self.health.is_none() {
            self.arrive();
        }
    }

    fn arrive(&mut self) {
        self.readiness.online.store(true, Ordering::Relaxed);
        self.reset_idle();
        if self.arrived {
            if self.paused || self.held {
                self.paused = false;
                self.held = false;
                info!(self.log(), "receiving resumed");
                for r in self.receivers() {
                    r.do_send(Resume);
                }
            }
            return;
        }
        self.arrived = true;
        info!(self.log(), "carrier has arrived"; "receivers" => self.settings.receivers,
            "workers_per_receiver" => self.settings.workers_per_receiver,
            "batch_size" => self.settings.routes[0].batch_size,
            "routes" => self.settings.routes.len());
        for r in self.receivers() {
            r.do_send(Resume);
        }
    }

    fn pause(&mut self) {
        self.readiness.online.store(false, Ordering::Relaxed);
        if !self.paused {
            self.paused = true;
            info!(self.log(), "receiving paused until the webhook is healthy again";
                "in_flight" => self.events.stats().snapshot().in_flight);
            for r in self.receivers() {
                r.do_send(Pause);
            }
        }
    }

    /// The webhook is in doubt: receive nothing until a health check passes.
    fn hold(&mut self) {
        if !self.paused && !self.held {
            self.held = true;
            for r in self.receivers() {
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
            || stats.receive_errors() != self.idle.receive_errors
            // Routes: every one came back empty, none waits for a slot.
            || !self.slots.all_idle();
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
                for startup in self.startups.drain(..) {
                    ctx.cancel_future(startup);
                }
                return self.finish(reason);
            }
            Phase::Running => self.phase = Phase::Draining,
        }
        // Routes still resolving their queue hold nothing: they never start.
        for startup in self.startups.drain(..) {
            ctx.cancel_future(startup);
        }
        let timeout = self.settings.shutdown_timeout;
        info!(self.log(), "draining"; "reason" => ?reason,
            "in_flight" => self.events.stats().snapshot().in_flight,
            "shutdown_timeout_ms" => timeout.as_millis() as u64);
        let deadline = Instant::now() + timeout;
        let waits: Vec<_> = self
            .receivers()
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
        // Each route starts on its own: one whose queue cannot be resolved yet holds none back.
        for index in 0..self.settings.routes.len() {
            let settings = Arc::new(self.settings.routes[index].clone());
            let events = self
                .events
                .for_route(self.route_name(index))
                .with_log(self.route_log(index).new(o!("source" => "sqs")));
            let startup = Route::startup(settings, events, self.slots.route(index));
            let handle = ctx.spawn(startup.into_actor(self).map(move |started, act, ctx| {
                if act.phase != Phase::Draining {
                    act.start_route(index, started, ctx);
                }
            }));
            self.startups.push(handle);
        }
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
            Fault::StopReceiver(n) => {
                let receivers: Vec<_> = self.receivers().collect();
                if !receivers.is_empty() {
                    receivers[n % receivers.len()].do_send(Crash)
                }
            }
            Fault::StopTransmitter(n) => {
                let transmitters: Vec<&Addr<WebhookTransmitterActor>> = self
                    .routes
                    .iter()
                    .flatten()
                    .flat_map(|r| r.transmitters.iter())
                    .collect();
                if !transmitters.is_empty() {
                    transmitters[n % transmitters.len()].do_send(Crash)
                }
            }
        }
    }
}
