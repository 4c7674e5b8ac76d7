//! The `Supervisor` actor: runs startup (client, queue resolution), starts the children under
//! actix supervision, gates receiving on the health check, and runs the drain on shutdown or when
//! the webhook goes offline. It knows lifecycles, not messages.

use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::prelude::*;
use slog::{info, o, warn, Logger};
use tokio::sync::oneshot;

use crate::health::HealthCheckActor;
use crate::messages::{Crash, Drain, Fault, HealthReport, Inject, Resume, Shutdown};
use crate::receiver::SqsReceiverActor;
use crate::sqs::{self, SqsQueue};
use crate::stats::{process_usage, Stats};
use crate::transmitter::WebhookTransmitterActor;
use crate::{ExitReason, Settings};

/// After the shutdown timeout, how long flushing the last deletes may take before we exit anyway.
const FLUSH_GRACE: Duration = Duration::from_secs(5);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Building the SQS client and resolving the queue.
    Starting,
    /// Children started (receiving, or waiting for the first healthy check).
    Running,
    Draining,
}

pub(crate) struct Supervisor {
    settings: Arc<Settings>,
    stats: Arc<Stats>,
    /// The root logger children derive theirs from (each with its own `source`).
    root_log: Logger,
    log: Logger,
    phase: Phase,
    /// The startup future, cancelled if shutdown comes first.
    startup: Option<SpawnHandle>,
    receivers: Vec<Addr<SqsReceiverActor>>,
    transmitters: Vec<Addr<WebhookTransmitterActor>>,
    health: Option<Addr<HealthCheckActor>>,
    /// "carrier has arrived" was logged and receiving began.
    arrived: bool,
    /// Fired once with how the system ended.
    exit: Option<oneshot::Sender<ExitReason>>,
}

impl Supervisor {
    pub(crate) fn new(
        settings: Arc<Settings>,
        stats: Arc<Stats>,
        root_log: Logger,
        exit: oneshot::Sender<ExitReason>,
    ) -> Self {
        Supervisor {
            settings,
            stats,
            log: root_log.new(o!("source" => "supervisor")),
            root_log,
            phase: Phase::Starting,
            startup: None,
            receivers: Vec::new(),
            transmitters: Vec::new(),
            health: None,
            arrived: false,
            exit: Some(exit),
        }
    }

    fn start_children(&mut self, queue: SqsQueue, ctx: &mut Context<Self>) {
        let settings = self.settings.clone();
        let s = &*settings;
        info!(self.log, "queue resolved"; "queue_url" => queue.url());
        let https = s.webhook.endpoint.starts_with("https:")
            || s.health_check
                .as_ref()
                .is_some_and(|h| h.endpoint.starts_with("https:"));
        let tls = crate::http::tls_config(https, s.webhook.tls_insecure_skip_verify);
        let webhook = Arc::new(s.webhook.clone());
        let queue_name = s.queue.display_name();
        for id in 0..s.receivers {
            let (webhook, tls, stats) = (webhook.clone(), tls.clone(), self.stats.clone());
            let log = self.root_log.new(o!("source" => "transmitter"));
            let max_connections = s.workers_per_receiver;
            let queue_name = queue_name.clone();
            let transmitter = actix::Supervisor::start(move |_| {
                WebhookTransmitterActor::new(webhook, tls, max_connections, &queue_name, stats, log)
            });
            let (queue, stats) = (queue.clone(), self.stats.clone());
            let log = self.root_log.new(o!("source" => "receiver"));
            let (batch, workers, to) = (s.batch_size, s.workers_per_receiver, transmitter.clone());
            let receiver = actix::Supervisor::start(move |_| {
                SqsReceiverActor::new(id, queue, to, batch, workers, stats, log)
            });
            self.transmitters.push(transmitter);
            self.receivers.push(receiver);
        }
        match s.health_check.clone() {
            Some(health) => {
                let (endpoint, report_to) = (s.webhook.endpoint.clone(), ctx.address().recipient());
                let log = self.root_log.new(o!("source" => "health"));
                self.health = Some(actix::Supervisor::start(move |_| {
                    HealthCheckActor::new(health, endpoint, tls, report_to, log)
                }));
            }
            None => self.arrive(),
        }
        if let Some(interval) = s.stat_log_interval {
            ctx.run_interval(interval, |act, _| act.log_stats());
        }
    }

    /// Begin receiving: the webhook is ready (or not health-checked).
    fn arrive(&mut self) {
        if self.arrived {
            return;
        }
        self.arrived = true;
        info!(self.log, "carrier has arrived"; "receivers" => self.receivers.len(),
            "workers_per_receiver" => self.settings.workers_per_receiver,
            "batch_size" => self.settings.batch_size);
        for r in &self.receivers {
            r.do_send(Resume);
        }
    }

    fn begin_drain(&mut self, reason: ExitReason, ctx: &mut Context<Self>) {
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
        info!(self.log, "draining"; "reason" => ?reason, "in_flight" => self.stats.snapshot().in_flight,
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
                        warn!(act.log, "drain did not finish in time; exiting anyway");
                    }
                    act.finish(reason)
                }),
        );
    }

    fn finish(&mut self, reason: ExitReason) {
        let snap = self.stats.snapshot();
        info!(self.log, "carrier stopped"; "reason" => ?reason, "received" => snap.received,
            "acked" => snap.acked, "retried" => snap.retried, "nacked" => snap.nacked);
        if let Some(exit) = self.exit.take() {
            let _ = exit.send(reason);
        }
    }

    fn log_stats(&self) {
        let s = self.stats.snapshot();
        let (rss, threads) = process_usage().unwrap_or_default();
        info!(self.log, "stats"; "rss_bytes" => rss, "threads" => threads,
            "received" => s.received, "acked" => s.acked, "retried" => s.retried,
            "nacked" => s.nacked, "released" => s.released, "in_flight" => s.in_flight,
            "sqs_errors" => s.sqs_errors, "restarts" => s.restarts);
    }
}

impl Actor for Supervisor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        let settings = self.settings.clone();
        let (stats, log) = (self.stats.clone(), self.root_log.new(o!("source" => "sqs")));
        let startup = async move {
            let client = sqs::client(&settings.queue).await;
            SqsQueue::resolve(client, &settings.queue, stats, log).await
        };
        self.startup = Some(ctx.spawn(startup.into_actor(self).map(|queue, act, ctx| {
            act.startup = None;
            act.phase = Phase::Running;
            act.start_children(queue, ctx);
        })));
    }
}

impl Handler<HealthReport> for Supervisor {
    type Result = ();

    fn handle(&mut self, report: HealthReport, ctx: &mut Self::Context) {
        if self.phase != Phase::Running {
            return;
        }
        match report {
            HealthReport::Online => self.arrive(),
            HealthReport::Offline => self.begin_drain(ExitReason::WebhookOffline, ctx),
        }
    }
}

impl Handler<Shutdown> for Supervisor {
    type Result = ();

    fn handle(&mut self, _: Shutdown, ctx: &mut Self::Context) {
        self.begin_drain(ExitReason::Shutdown, ctx);
    }
}

impl Handler<Inject> for Supervisor {
    type Result = ();

    fn handle(&mut self, Inject(fault): Inject, _ctx: &mut Self::Context) {
        warn!(self.log, "injecting fault"; "fault" => ?fault);
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
