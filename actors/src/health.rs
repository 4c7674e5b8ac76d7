//! `HealthCheckActor`: GETs the webhook's health endpoint and tells the supervisor when the webhook
//! comes online and when it goes offline. Only `200` is healthy (Go parity).
//!
//! The first check runs at once, then every interval; checks never overlap. After
//! `offline_threshold` consecutive failures (counted from start, so a webhook that never comes up
//! also ends in "offline") it reports Offline once. It gates; it never touches messages.

use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;
use slog::{info, warn, Logger};

use crate::http;
use crate::messages::HealthReport;

/// `CARRIER_WEBHOOK_HEALTH_CHECK_*`.
#[derive(Debug, Clone)]
pub struct HealthCheckSettings {
    /// URL to GET.
    pub endpoint: String,
    /// Time between checks.
    pub interval: Duration,
    /// Limit for one check.
    pub timeout: Duration,
    /// Consecutive failures before the webhook counts as offline.
    pub offline_threshold: u32,
}

pub struct HealthCheckActor {
    settings: HealthCheckSettings,
    /// The webhook URL, named in the online/offline log lines as Go does.
    webhook_endpoint: String,
    tls: Arc<rustls::ClientConfig>,
    client: Option<awc::Client>,
    report_to: Recipient<HealthReport>,
    online: bool,
    offline_reported: bool,
    failures: u32,
    checking: bool,
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
        HealthCheckActor {
            settings,
            webhook_endpoint,
            tls,
            client: None,
            report_to,
            online: false,
            offline_reported: false,
            failures: 0,
            checking: false,
            log,
        }
    }

    fn check(&mut self, ctx: &mut Context<Self>) {
        if self.checking {
            return;
        }
        self.checking = true;
        let client = self
            .client
            .get_or_insert_with(|| http::client(self.tls.clone(), self.settings.timeout, 1, true));
        let request = client.get(&self.settings.endpoint).send();
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
        ctx.spawn(check.into_actor(self).map(|result, act, _ctx| {
            act.checking = false;
            act.record(result);
        }));
    }

    fn record(&mut self, result: Result<(), String>) {
        match result {
            Ok(()) => {
                self.failures = 0;
                if !self.online {
                    self.online = true;
                    self.offline_reported = false;
                    info!(self.log, "webhook online"; "endpoint" => &self.webhook_endpoint);
                    self.report_to.do_send(HealthReport::Online);
                }
            }
            Err(error) => {
                self.failures += 1;
                warn!(self.log, "health check failed"; "endpoint" => &self.settings.endpoint,
                    "error" => error, "consecutive_failures" => self.failures);
                if self.failures >= self.settings.offline_threshold && !self.offline_reported {
                    self.online = false;
                    self.offline_reported = true;
                    warn!(self.log, "webhook offline"; "endpoint" => &self.webhook_endpoint);
                    self.report_to.do_send(HealthReport::Offline);
                }
            }
        }
    }
}

impl Actor for HealthCheckActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        self.check(ctx);
        ctx.run_interval(self.settings.interval, |act, ctx| act.check(ctx));
    }
}

impl Supervised for HealthCheckActor {
    fn restarting(&mut self, _ctx: &mut Self::Context) {
        self.checking = false;
        self.client = None;
    }
}
