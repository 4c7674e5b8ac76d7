//! `WebhookTransmitterActor`: one POST per [`Deliver`], answered with an [`Outcome`].
//!
//! It knows HTTP, not SQS: it never sees a receipt handle and never calls SQS. Each delivery runs
//! as its own future, so one slow webhook call never holds up another; the receiver bounds how many
//! run at once. A delivery that started keeps running if this actor is restarted.

use std::ops::RangeInclusive;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use actix::prelude::*;
use awc::error::SendRequestError;
use awc::http::header::{self, HeaderName, HeaderValue};
use bytes::Bytes;
use slog::{debug, warn, Logger};

use crate::http;
use crate::messages::{Crash, Deliver, Delivery, NackReason, Outcome};
use crate::stats::Stats;

/// At most this much of a webhook's response body is read (to keep the connection reusable);
/// the answer is the status and headers, the body is ignored.
const MAX_RESPONSE_BODY: usize = 64 * 1024;
/// How long to wait for that body once the status is known.
const RESPONSE_BODY_TIMEOUT: Duration = Duration::from_secs(2);
/// Most `307`/`308` redirects followed for one delivery.
const MAX_REDIRECTS: usize = 3;

/// The header names carrier sends (written in Go's canonical case on HTTP/1.1).
mod headers {
    pub const RECEIVE_COUNT: &str = "x-carrier-receive-count";
    pub const FIRST_RECEIVE_TIME: &str = "x-carrier-first-receive-time";
    pub const MESSAGE_ID: &str = "x-carrier-message-id";
    pub const QUEUE_NAME: &str = "x-carrier-queue-name";
    pub const SENT_TIME: &str = "x-carrier-sent-time";
}

/// Which statuses are an Ack (`CARRIER_WEBHOOK_SUCCESS_CODES`): a list of codes and ranges.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SuccessCodes(Vec<RangeInclusive<u16>>);

impl SuccessCodes {
    /// Parses `200`, `200-299`, `200,202,204-206`.
    pub fn parse(value: &str) -> Result<Self, String> {
        let mut ranges = Vec::new();
        for part in value.split(',').map(str::trim) {
            let (lo, hi) = part.split_once('-').unwrap_or((part, part));
            let code = |s: &str| {
                s.trim()
                    .parse::<u16>()
                    .ok()
                    .filter(|c| (100..=599).contains(c))
                    .ok_or_else(|| format!("{part:?} is not a status code or range (100-599)"))
            };
            let (lo, hi) = (code(lo)?, code(hi)?);
            if lo > hi {
                return Err(format!("range {part:?} is reversed"));
            }
            ranges.push(lo..=hi);
        }
        Ok(SuccessCodes(ranges))
    }

    pub fn contains(&self, status: u16) -> bool {
        self.0.iter().any(|r| r.contains(&status))
    }
}

impl Default for SuccessCodes {
    /// Any 2xx (Go accepted only 200; `200` restores that).
    fn default() -> Self {
        SuccessCodes(vec![200..=299])
    }
}

/// Everything about the webhook a transmitter needs.
#[derive(Debug, Clone)]
pub struct WebhookSettings {
    /// Full URL messages are POSTed to.
    pub endpoint: String,
    /// Accept any TLS certificate (webhook and health check).
    pub tls_insecure_skip_verify: bool,
    /// Content-Type when the message carries no `Body.ContentType` attribute.
    pub default_content_type: String,
    /// Limit for one whole request, connect to response head.
    pub request_timeout: Duration,
    /// Statuses that acknowledge a message.
    pub success_codes: SuccessCodes,
}

impl Default for WebhookSettings {
    fn default() -> Self {
        WebhookSettings {
            endpoint: "http://localhost:9000".into(),
            tls_insecure_skip_verify: false,
            default_content_type: "application/json".into(),
            request_timeout: Duration::from_secs(60),
            success_codes: SuccessCodes::default(),
        }
    }
}

/// POSTs messages to the webhook. Supervised: a restart builds a fresh HTTP client.
pub struct WebhookTransmitterActor {
    settings: Arc<WebhookSettings>,
    tls: Arc<rustls::ClientConfig>,
    /// Connection pool size: the most deliveries that can reach this transmitter at once.
    max_connections: usize,
    /// `X-Carrier-Queue-Name`, computed once.
    queue_name: Option<HeaderValue>,
    /// Built on first use and dropped on restart, so every (re)start gets a fresh pool. awc
    /// clients are not `Send`: each transmitter owns its own.
    client: Option<awc::Client>,
    stats: Arc<Stats>,
    log: Logger,
}

impl WebhookTransmitterActor {
    pub fn new(
        settings: Arc<WebhookSettings>,
        tls: Arc<rustls::ClientConfig>,
        max_connections: usize,
        queue_name: &str,
        stats: Arc<Stats>,
        log: Logger,
    ) -> Self {
        WebhookTransmitterActor {
            settings,
            tls,
            max_connections,
            queue_name: HeaderValue::from_str(queue_name).ok(),
            client: None,
            stats,
            log,
        }
    }

    fn build_request(&self, client: &awc::Client, d: &Delivery) -> awc::ClientRequest {
        let content_type = d
            .content_type
            .as_deref()
            .and_then(|ct| self.header_value("Content-Type", ct, &d.message_id))
            .or_else(|| HeaderValue::from_str(&self.settings.default_content_type).ok());
        // Header names as Go writes them (`X-Carrier-Receive-Count`), for workers that compare
        // names case-sensitively.
        let mut req = client.post(&self.settings.endpoint).camel_case();
        if let Some(ct) = content_type {
            req = req.insert_header((header::CONTENT_TYPE, ct));
        }
        let carrier_headers = [
            (headers::RECEIVE_COUNT, d.receive_count.as_deref()),
            (headers::FIRST_RECEIVE_TIME, d.first_receive_time.as_deref()),
            (headers::MESSAGE_ID, Some(d.message_id.as_str())),
            (headers::SENT_TIME, d.sent_time.as_deref()),
        ];
        for (name, value) in carrier_headers {
            if let Some(v) = value.and_then(|v| self.header_value(name, v, &d.message_id)) {
                req = req.insert_header((HeaderName::from_static(name), v));
            }
        }
        if let Some(q) = &self.queue_name {
            req = req.insert_header((HeaderName::from_static(headers::QUEUE_NAME), q.clone()));
        }
        req
    }

    /// A header value from message data, or `None` (with a warning) when it is not a valid one:
    /// odd attributes are skipped, never injected, never fatal.
    fn header_value(&self, name: &str, value: &str, message_id: &str) -> Option<HeaderValue> {
        match HeaderValue::from_str(value) {
            Ok(v) => Some(v),
            Err(_) => {
                warn!(self.log, "skipping a header whose value is not a valid header value";
                    "header" => name, "message_id" => message_id);
                None
            }
        }
    }
}

impl Actor for WebhookTransmitterActor {
    type Context = Context<Self>;
}

impl Supervised for WebhookTransmitterActor {
    fn restarting(&mut self, _ctx: &mut Self::Context) {
        self.stats.restarted();
        warn!(self.log, "transmitter restarting");
        self.client = None;
    }
}

impl Handler<Deliver> for WebhookTransmitterActor {
    type Result = ResponseFuture<Outcome>;

    fn handle(&mut self, Deliver(delivery): Deliver, _ctx: &mut Self::Context) -> Self::Result {
        let client = self
            .client
            .get_or_insert_with(|| {
                http::client(
                    self.tls.clone(),
                    self.settings.request_timeout,
                    self.max_connections,
                    false,
                )
            })
            .clone();
        let request = self.build_request(&client, &delivery);
        let settings = self.settings.clone();
        let log = self.log.clone();
        Box::pin(async move {
            let started = Instant::now();
            let request = match request.freeze() {
                Ok(request) => request,
                Err(e) => {
                    let reason = NackReason::Connect(e.to_string());
                    return Outcome::Nack { reason };
                }
            };
            let result = send_following_307(&client, request, delivery.body.into()).await;
            let outcome = match result {
                Ok(mut response) => {
                    let status = response.status().as_u16();
                    let retry_after = response
                        .headers()
                        .get(header::RETRY_AFTER)
                        .and_then(|v| v.to_str().ok())
                        .and_then(|v| http::retry_after(v, SystemTime::now()));
                    let outcome = if settings.success_codes.contains(status) {
                        Outcome::Ack
                    } else if let (429 | 503, Some(until)) = (status, retry_after) {
                        Outcome::Retry { until }
                    } else {
                        Outcome::Nack {
                            reason: NackReason::Status(status),
                        }
                    };
                    // Read (a bounded part of) the body so the connection can be reused.
                    let body = response.body().limit(MAX_RESPONSE_BODY);
                    let _ = actix_rt::time::timeout(RESPONSE_BODY_TIMEOUT, body).await;
                    outcome
                }
                Err(SendRequestError::Timeout) => Outcome::Nack {
                    reason: NackReason::Timeout,
                },
                Err(e) => Outcome::Nack {
                    reason: NackReason::Connect(e.to_string()),
                },
            };
            debug!(log, "delivered"; "message_id" => &delivery.message_id,
                "outcome" => ?outcome, "elapsed_ms" => started.elapsed().as_millis() as u64);
            outcome
        })
    }
}

/// POSTs the body, following up to [`MAX_REDIRECTS`] `307`/`308` redirects (which keep the
/// method and body) to absolute or root-relative locations of the same scheme. Other redirects
/// are answers like any other status (a Nack): following a `301`/`302`/`303` turns the POST into a
/// GET without the body, and acknowledging that would acknowledge a message never delivered.
async fn send_following_307(
    client: &awc::Client,
    mut request: awc::FrozenClientRequest,
    body: Bytes,
) -> Result<awc::ClientResponse, SendRequestError> {
    for _ in 0..MAX_REDIRECTS {
        let response = request.send_body(body.clone()).await?;
        if !matches!(response.status().as_u16(), 307 | 308) {
            return Ok(response);
        }
        let next = response
            .headers()
            .get(header::LOCATION)
            .and_then(|l| l.to_str().ok())
            .and_then(|l| http::redirect_target(request.get_uri(), l));
        let Some(next) = next else {
            return Ok(response);
        };
        let mut follow = client.post(next).camel_case();
        for (name, value) in request.headers() {
            follow = follow.append_header((name.clone(), value.clone()));
        }
        match follow.freeze() {
            Ok(r) => request = r,
            Err(_) => return Ok(response),
        }
    }
    request.send_body(body).await
}

impl Handler<Crash> for WebhookTransmitterActor {
    type Result = ();

    fn handle(&mut self, _: Crash, ctx: &mut Self::Context) {
        ctx.stop();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn success_codes_parse_lists_and_ranges() {
        let c = SuccessCodes::parse("200, 202-204").unwrap();
        assert!(c.contains(200) && c.contains(203) && !c.contains(201) && !c.contains(205));
        assert!(SuccessCodes::default().contains(299) && !SuccessCodes::default().contains(300));
        assert!(SuccessCodes::parse("").is_err());
        assert!(SuccessCodes::parse("299-200").is_err());
        assert!(SuccessCodes::parse("2xx").is_err());
        assert!(SuccessCodes::parse("700").is_err());
    }
}
