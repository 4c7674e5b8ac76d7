//! `HealthCheckActor`: GETs the webhook's health endpoint and tells the supervisor when the webhook
//! comes online, when it goes offline, and when it never came up in time. Only `200` is healthy
//! (Go parity).
//!
//! The first check runs at once, then every interval; checks never overlap. Before the webhook has
//! first been healthy, failures do not count (a slow-booting worker must not crash-loop the pod):
//! carrier keeps checking, logging at a bounded rate, until it answers 200 or the optional startup
//! timeout passes. Once it has been online, `offline_threshold` consecutive failures report it
//! offline; with the `pause` action checking goes on and a later success reports it online again.
//!
//! Between checks, deliveries are the first to see a webhook go down. When a receiver reports
//! several down-looking failures in a row ([`Suspect`]), the webhook is in doubt: receiving is held
//! ([`HealthReport::Doubtful`]) and probes run at once, then after about 1 s, 2 s, 4 s, ... (the
//! jittered [`Backoff`] of SQS calls) up to the interval. The first passing check sent after the
//! doubt began, probe or regular, releases the hold; after such a false alarm, doubts are ignored
//! for a quiet time (about 1 s, doubling with each false alarm in a row, up to the interval). Probes do not count towards the offline threshold,
//! so the time to go offline (and, with `exit`, to exit) stays threshold × interval, as in Go;
//! they only stop carrier from receiving, and so burning receive counts, while the regular checks
//! make up their minds.
//! It gates; it never touches messages.

use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::prelude::*;
use slog::{info, warn, Logger};

use crate::http::{self, Endpoint};
use crate::messages::{HealthReport, Suspect};
use crate::sqs::Backoff;

/// While waiting for the webhook's first healthy answer, at most one log line this often.
const WAITING_LOG_EVERY: Duration = Duration::from_secs(10);

/// While in doubt, the second probe runs about this long after the first, and each later one
/// about twice as long after its predecessor, up to the check interval. After a false alarm,
/// doubts are ignored for as long, doubling the same way with each false alarm in a row.
const PROBE_RETRY: Duration = Duration::from_secs(1);

/// The check running, if any.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Running {
    /// The interval's; it counts towards the offline threshold.
    Regular,
    /// An early check while in doubt; it counts only if a regular one fell due meanwhile and it
    /// stands in for that one.
    Probe { stands_in: bool },
}

/// What carrier does when the webhook goes offline (`CARRIER_WEBHOOK_OFFLINE_ACTION`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum OfflineAction {
    /// Drain and exit 1 so the orchestrator restarts the pod (Go behaviour).
    #[default]
    Exit,
    /// Stop receiving until the webhook is healthy again; in-flight deliveries carry on.
    Pause,
}

/// `CARRIER_WEBHOOK_HEALTH_CHECK_*`, `_OFFLINE_ACTION`, `_STARTUP_TIMEOUT`.
#[derive(Debug, Clone)]
pub struct HealthCheckSettings {
    /// URL to GET.
    pub endpoint: Endpoint,
    /// Time between checks.
    pub interval: Duration,
    /// Limit for one check.
    pub timeout: Duration,
    /// Consecutive failures, once online, before the webhook counts as offline.
    pub offline_threshold: u32,
    /// How long to wait for the first healthy answer; `None`: for ever.
    pub startup_timeout: Option<Duration>,
    pub offline_action: OfflineAction,
    /// Accept any TLS certificate (`CARRIER_WEBHOOK_TLS_INSECURE_SKIP_VERIFY`, top level).
    pub tls_insecure_skip_verify: bool,
}

pub struct HealthCheckActor {
    settings: HealthCheckSettings,
    /// The webhook URL (redacted), named in the online/offline log lines as Go does.
    webhook_endpoint: String,
    tls: Arc<rustls::ClientConfig>,
    client: Option<awc::Client>,
    report_to: Recipient<HealthReport>,
    /// It has answered 200 at least once.
    ever_online: bool,
    online: bool,
    failures: u32,
    running: Option<Running>,
    /// Deliveries suggested the webhook is down; receiving is held until a check passes.
    doubtful: bool,
    /// The next probe, and the waits between probes.
    probe_timer: Option<SpawnHandle>,
    probe_waits: Backoff,
    /// When the current doubt began: only a check started after it can end it.
    doubt_since: Instant,
    /// Quiet times after false alarms in a row (a check passed while in doubt).
    quiet_times: Backoff,
    /// Until then, [`Suspect`] is ignored: the last doubt was a false alarm.
    quiet_until: Option<Instant>,
    started: Instant,
    last_waiting_log: Option<Instant>,
    log: Logger,
}

impl HealthCheckActor {
    pub fn new(
        settings: HealthCheckSettings,
        webhook_endpoint: String,
        tls: Arc<rustls::ClientConfig>,
        report_to: Recipient<HealthReport>,
        log: Logger,
    ) -> Self {
        let doubling = Backoff::new(PROBE_RETRY, settings.interval.max(PROBE_RETRY));
        HealthCheckActor {
            settings,
            webhook_endpoint,
            tls,
            client: None,
            report_to,
            ever_online: false,
            online: false,
            failures: 0,
            running: None,
            doubtful: false,
            probe_timer: None,
            probe_waits: doubling.clone(),
            doubt_since: Instant::now(),
            quiet_times: doubling,
            quiet_until: None,
            started: Instant::now(),
            last_waiting_log: None,
            log,
        }
    }

    /// A regular check: the interval's.
    fn tick(&mut self, ctx: &mut Context<Self>) {
        match self.running {
            None => self.check(Running::Regular, ctx),
            Some(Running::Probe { .. }) => self.running = Some(Running::Probe { stands_in: true }),
            Some(Running::Regular) => {}
        }
    }

    /// While in doubt: a probe now (unless a check is running), and the next one later.
    fn probe(&mut self, ctx: &mut Context<Self>) {
        self.probe_timer = None;
        if !self.doubtful {
            return;
        }
        if self.running.is_none() {
            self.check(Running::Probe { stands_in: false }, ctx);
        }
        let wait = self.probe_waits.next_delay();
        self.probe_timer = Some(ctx.run_later(wait, |act, ctx| act.probe(ctx)));
    }

    /// The doubt is over (a check passed, or the webhook is offline now): stop probing.
    fn end_doubt(&mut self, ctx: &mut Context<Self>) {
        self.doubtful = false;
        if let Some(timer) = self.probe_timer.take() {
            ctx.cancel_future(timer);
        }
    }

    fn check(&mut self, kind: Running, ctx: &mut Context<Self>) {
        self.running = Some(kind);
        let client = self.client.get_or_insert_with(|| {
            http::client(
                self.tls.clone(),
                self.settings.timeout,
                1,
                http::Purpose::HealthCheck,
            )
        });
        let mut request = client.get(&self.settings.endpoint.url);
        if let Some(auth) = &self.settings.endpoint.authorization {
            request = request.insert_header((awc::http::header::AUTHORIZATION, auth.as_str()));
        }
        let request = request.send();
        let timeout = self.settings.timeout;
        let check = async move {
            match request.await {
                Ok(mut response) => {
                    // The verdict is the status; read a little of the body, briefly, for reuse.
                    let body = response.body().limit(16 * 1024);
                    let _ = actix_rt::time::timeout(timeout, body).await;
                    if response.status().as_u16() == 200 {
                        Ok(())
                    } else {
                        Err(format!("status {}", response.status().as_u16()))
                    }
                }
                Err(e) => Err(e.to_string()),
            }
        };
        let sent_at = Instant::now();
        ctx.spawn(check.into_actor(self).map(move |result, act, ctx| {
            let counted = matches!(
                act.running.take(),
                Some(Running::Regular | Running::Probe { stands_in: true })
            );
            act.record(result, counted, sent_at, ctx);
        }));
    }

    fn record(
        &mut self,
        result: Result<(), String>,
        counted: bool,
        sent_at: Instant,
        ctx: &mut Context<Self>,
    ) {
        let endpoint = &self.settings.endpoint.redacted;
        match result {
            Ok(()) => {
                self.failures = 0;
                if !self.online {
                    self.online = true;
                    self.ever_online = true;
                    self.end_doubt(ctx);
                    info!(self.log, "webhook online"; "endpoint" => &self.webhook_endpoint);
                    self.report_to.do_send(HealthReport::Online);
                } else if self.doubtful && sent_at < self.doubt_since {
                    // Sent before the deliveries failed: it says nothing about now. Probe.
                    self.check(Running::Probe { stands_in: false }, ctx);
                } else if self.doubtful {
                    self.end_doubt(ctx);
                    // A false alarm: the next doubt within a quiet time is ignored, so a webhook
                    // that passes its checks but fails deliveries cannot hold and resume in a loop.
                    let quiet = self.quiet_times.next_delay();
                    self.quiet_until = Some(Instant::now() + quiet);
                    info!(self.log, "webhook healthy; the failed deliveries were not an outage";
                        "endpoint" => &self.webhook_endpoint,
                        "false_alarms" => self.quiet_times.failures(),
                        "quiet_ms" => quiet.as_millis() as u64);
                    self.report_to.do_send(HealthReport::Online);
                }
            }
            Err(error) if !counted => {
                warn!(self.log, "health check failed"; "endpoint" => endpoint, "error" => error,
                    "probe" => true, "consecutive_failures" => self.failures);
            }
            Err(error) if !self.ever_online => {
                // Not counted: the worker may still be booting.
                self.failures += 1;
                let due = self
                    .last_waiting_log
                    .is_none_or(|at| at.elapsed() >= WAITING_LOG_EVERY);
                if due {
                    self.last_waiting_log = Some(Instant::now());
                    info!(self.log, "waiting for the webhook to come online"; "endpoint" => endpoint,
                        "error" => error, "failed_checks" => self.failures,
                        "waited_s" => self.started.elapsed().as_secs());
                }
            }
            Err(error) => {
                self.failures += 1;
                warn!(self.log, "health check failed"; "endpoint" => endpoint,
                    "error" => error, "consecutive_failures" => self.failures);
                if self.online && self.failures >= self.settings.offline_threshold {
                    self.online = false;
                    self.end_doubt(ctx);
                    warn!(self.log, "webhook offline"; "endpoint" => &self.webhook_endpoint,
                        "action" => ?self.settings.offline_action);
                    self.report_to.do_send(HealthReport::Offline);
                }
            }
        }
    }
}

impl Actor for HealthCheckActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        self.tick(ctx);
        ctx.run_interval(self.settings.interval, |act, ctx| act.tick(ctx));
        if self.doubtful {
            // Restarted while in doubt: the probe timer died with the old context.
            self.probe_waits.reset();
            self.probe(ctx);
        }
        if let Some(limit) = self.settings.startup_timeout {
            let left = limit.saturating_sub(self.started.elapsed());
            ctx.run_later(left, |act, _| {
                if !act.ever_online {
                    warn!(act.log, "webhook did not come online within the startup timeout";
                        "endpoint" => &act.settings.endpoint.redacted,
                        "startup_timeout_ms" => act.settings.startup_timeout.unwrap_or_default().as_millis() as u64,
                        "failed_checks" => act.failures);
                    act.report_to.do_send(HealthReport::StartupTimedOut);
                }
            });
        }
    }
}

impl Supervised for HealthCheckActor {
    fn restarting(&mut self, _ctx: &mut Self::Context) {
        self.running = None;
        self.probe_timer = None;
        self.client = None;
    }
}

impl Handler<Suspect> for HealthCheckActor {
    type Result = ();

    /// Deliveries are failing as if the webhook were down. Ignored unless it is online and not
    /// already in doubt (before it is first online nothing is received; once offline, the regular
    /// checks decide).
    fn handle(&mut self, _: Suspect, ctx: &mut Self::Context) {
        if !self.online || self.doubtful {
            return;
        }
        let now = Instant::now();
        if let Some(until) = self.quiet_until {
            if now < until {
                return;
            }
            if now > until + self.settings.interval {
                // The last false alarm was long ago: start the quiet times afresh.
                self.quiet_times.reset();
            }
        }
        self.doubtful = true;
        self.doubt_since = now;
        self.probe_waits.reset();
        warn!(self.log, "deliveries failing as if the webhook were down; receiving held until a health check passes";
            "endpoint" => &self.webhook_endpoint);
        self.report_to.do_send(HealthReport::Doubtful);
        self.probe(ctx);
    }
}
