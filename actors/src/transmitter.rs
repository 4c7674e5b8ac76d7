//! `WebhookTransmitterActor`: one POST per [`Deliver`], answered with an [`Answer`].
//!
//! It knows HTTP, not SQS: it never sees a receipt handle and never calls SQS. It maps a message's
//! metadata to headers (carrier's `X-Carrier-*` set, or Elastic Beanstalk's `X-Aws-Sqsd-*`), signs
//! the request when secrets are configured, and reads the answer: status, `Retry-After`,
//! `X-Carrier-Dead-Letter`. Each delivery runs as its own future, so one slow webhook call never
//! holds up another; the receiver bounds how many run at once and can cancel them all at the
//! shutdown deadline. A delivery that started keeps running if this actor is restarted.

use std::ops::RangeInclusive;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use actix::prelude::*;
use awc::error::SendRequestError;
use awc::http::header::{self, HeaderName, HeaderValue};
use slog::warn;
use tokio::sync::watch;

use crate::events::Events;
use crate::http::{self, Endpoint};
use crate::messages::{Answer, AttributeValue, Crash, Deliver, Delivery, NackReason, Outcome};
use crate::signing::SigningKeys;

/// At most this much of a webhook's response body is read (to keep the connection reusable);
/// the answer is the status and headers, the body is ignored.
const MAX_RESPONSE_BODY: usize = 64 * 1024;
/// How long to wait for that body once the answer is known.
const RESPONSE_BODY_TIMEOUT: Duration = Duration::from_secs(2);
/// Most `307`/`308` redirects followed for one delivery.
const MAX_REDIRECTS: usize = 3;
/// The User-Agent of Elastic Beanstalk's worker daemon, for `CARRIER_WEBHOOK_HEADER_STYLE=sqsd`.
const SQSD_USER_AGENT: &str = "aws-sqsd/3.0.4";

/// The header names carrier sends (written in Go's canonical case on HTTP/1.1).
mod names {
    pub const RECEIVE_COUNT: &str = "x-carrier-receive-count";
    pub const FIRST_RECEIVE_TIME: &str = "x-carrier-first-receive-time";
    pub const MESSAGE_ID: &str = "x-carrier-message-id";
    pub const QUEUE_NAME: &str = "x-carrier-queue-name";
    pub const SENT_TIME: &str = "x-carrier-sent-time";
    pub const GROUP_ID: &str = "x-carrier-message-group-id";
    pub const SEQUENCE_NUMBER: &str = "x-carrier-sequence-number";
    pub const ATTRIBUTE_PREFIX: &str = "x-carrier-attribute-";
    pub const DEAD_LETTER: &str = "x-carrier-dead-letter";
    pub const TRACE_ID: &str = "x-amzn-trace-id";
    pub const TRACEPARENT: &str = "traceparent";
    pub const TRACESTATE: &str = "tracestate";
    pub const WEBHOOK_ID: &str = "webhook-id";
    pub const WEBHOOK_TIMESTAMP: &str = "webhook-timestamp";
    pub const WEBHOOK_SIGNATURE: &str = "webhook-signature";
    // Elastic Beanstalk's sqsd.
    pub const SQSD_MSGID: &str = "x-aws-sqsd-msgid";
    pub const SQSD_QUEUE: &str = "x-aws-sqsd-queue";
    pub const SQSD_FIRST_RECEIVED_AT: &str = "x-aws-sqsd-first-received-at";
    pub const SQSD_RECEIVE_COUNT: &str = "x-aws-sqsd-receive-count";
    pub const SQSD_SENDER_ID: &str = "x-aws-sqsd-sender-id";
    pub const SQSD_ATTRIBUTE_PREFIX: &str = "x-aws-sqsd-attr-";
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

/// Which metadata headers a request carries (`CARRIER_WEBHOOK_HEADER_STYLE`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum HeaderStyle {
    /// `X-Carrier-*`, as the Go carrier (plus more).
    #[default]
    Carrier,
    /// Elastic Beanstalk worker's `X-Aws-Sqsd-*`, so EB worker apps move over unchanged.
    Sqsd,
}

/// Everything about the webhook a transmitter needs.
#[derive(Debug, Clone)]
pub struct WebhookSettings {
    /// Where messages are POSTed (credentials in the URL become Basic auth).
    pub endpoint: Endpoint,
    /// Accept any TLS certificate (webhook and health check).
    pub tls_insecure_skip_verify: bool,
    /// Content-Type when the message carries no `Body.ContentType` attribute.
    pub default_content_type: String,
    /// Limit for one whole delivery, redirects included.
    pub request_timeout: Duration,
    /// Statuses that acknowledge a message.
    pub success_codes: SuccessCodes,
    pub header_style: HeaderStyle,
    /// Sign each request (Standard Webhooks) with these keys.
    pub signing: Option<SigningKeys>,
}

impl Default for WebhookSettings {
    fn default() -> Self {
        WebhookSettings {
            endpoint: Endpoint::parse("http://localhost:9000").expect("a valid default"),
            tls_insecure_skip_verify: false,
            default_content_type: "application/json".into(),
            request_timeout: Duration::from_secs(60),
            success_codes: SuccessCodes::default(),
            header_style: HeaderStyle::Carrier,
            signing: None,
        }
    }
}

/// What a delivery's future needs of its transmitter, shared (the future outlives a restart).
struct Shape {
    settings: Arc<WebhookSettings>,
    /// The endpoint, parsed once.
    uri: Option<awc::http::Uri>,
    /// `X-Carrier-Queue-Name` / `X-Aws-Sqsd-Queue`, computed once.
    queue_name: Option<HeaderValue>,
    authorization: Option<HeaderValue>,
    default_content_type: Option<HeaderValue>,
    events: Events,
}

/// POSTs messages to the webhook. Supervised: a restart builds a fresh HTTP client.
pub struct WebhookTransmitterActor {
    shape: Arc<Shape>,
    tls: Arc<rustls::ClientConfig>,
    /// Connection pool size: the most deliveries that can reach this transmitter at once.
    max_connections: usize,
    /// Built on first use and dropped on restart, so every (re)start gets a fresh pool. awc
    /// clients are not `Send`: each transmitter owns its own.
    client: Option<awc::Client>,
}

impl WebhookTransmitterActor {
    pub(crate) fn new(
        settings: Arc<WebhookSettings>,
        tls: Arc<rustls::ClientConfig>,
        max_connections: usize,
        queue_name: &str,
        events: Events,
    ) -> Self {
        WebhookTransmitterActor {
            shape: Arc::new(Shape::new(settings, queue_name, events)),
            tls,
            max_connections,
            client: None,
        }
    }
}

impl Shape {
    fn new(settings: Arc<WebhookSettings>, queue_name: &str, events: Events) -> Shape {
        Shape {
            uri: settings.endpoint.url.parse().ok(),
            queue_name: HeaderValue::from_str(queue_name).ok(),
            authorization: settings
                .endpoint
                .authorization
                .as_deref()
                .and_then(|a| HeaderValue::from_str(a).ok()),
            default_content_type: HeaderValue::from_str(&settings.default_content_type).ok(),
            settings,
            events,
        }
    }

    /// The request for one delivery to `url` (each redirect hop builds it afresh, so no header is
    /// ever doubled).
    fn request(
        &self,
        client: &awc::Client,
        uri: &awc::http::Uri,
        d: &Delivery,
        signature: Option<&(String, String)>,
    ) -> awc::ClientRequest {
        let style = self.settings.header_style;
        // Header names as Go writes them (`X-Carrier-Receive-Count`), for workers that compare
        // names case-sensitively.
        let mut req = client.post(uri.clone()).camel_case();
        let content_type = d
            .text_attribute(crate::sqs::CONTENT_TYPE_ATTRIBUTE)
            .and_then(|ct| self.value("Content-Type", ct, d))
            .or_else(|| self.default_content_type.clone());
        if let Some(ct) = content_type {
            req = req.insert_header((header::CONTENT_TYPE, ct));
        }
        if let Some(auth) = &self.authorization {
            req = req.insert_header((header::AUTHORIZATION, auth.clone()));
        }
        let put = |req: awc::ClientRequest, name: &'static str, value: Option<&str>| match value
            .and_then(|v| self.value(name, v, d))
        {
            Some(v) => req.insert_header((HeaderName::from_static(name), v)),
            None => req,
        };
        match style {
            HeaderStyle::Carrier => {
                req = put(req, names::RECEIVE_COUNT, d.receive_count.as_deref());
                req = put(
                    req,
                    names::FIRST_RECEIVE_TIME,
                    d.first_receive_time.as_deref(),
                );
                req = put(req, names::MESSAGE_ID, Some(&d.message_id));
                req = put(req, names::SENT_TIME, d.sent_time.as_deref());
                req = put(req, names::GROUP_ID, d.group_id.as_deref());
                req = put(req, names::SEQUENCE_NUMBER, d.sequence_number.as_deref());
                if let Some(q) = &self.queue_name {
                    req =
                        req.insert_header((HeaderName::from_static(names::QUEUE_NAME), q.clone()));
                }
            }
            HeaderStyle::Sqsd => {
                req = req.insert_header((
                    header::USER_AGENT,
                    HeaderValue::from_static(SQSD_USER_AGENT),
                ));
                req = put(req, names::SQSD_MSGID, Some(&d.message_id));
                req = put(req, names::SQSD_RECEIVE_COUNT, d.receive_count.as_deref());
                let first = d
                    .first_receive_time
                    .as_deref()
                    .and_then(iso8601_from_epoch_ms);
                req = put(req, names::SQSD_FIRST_RECEIVED_AT, first.as_deref());
                req = put(req, names::SQSD_SENDER_ID, d.sender_id.as_deref());
                if let Some(q) = &self.queue_name {
                    req =
                        req.insert_header((HeaderName::from_static(names::SQSD_QUEUE), q.clone()));
                }
            }
        }
        // Trace context flows through the queue.
        req = put(req, names::TRACE_ID, d.trace_header.as_deref());
        req = put(req, names::TRACEPARENT, d.text_attribute("traceparent"));
        req = put(req, names::TRACESTATE, d.text_attribute("tracestate"));
        let prefix = match style {
            HeaderStyle::Carrier => names::ATTRIBUTE_PREFIX,
            HeaderStyle::Sqsd => names::SQSD_ATTRIBUTE_PREFIX,
        };
        for attribute in &d.attributes {
            let AttributeValue::Text(text) = &attribute.value else {
                continue; // Binary attributes have no header form.
            };
            let name = format!("{prefix}{}", attribute.name);
            let Ok(name) = HeaderName::from_bytes(name.as_bytes()) else {
                self.skipped(&attribute.name, d);
                continue;
            };
            if let Some(v) = self.value(&attribute.name, text, d) {
                req = req.append_header((name, v));
            }
        }
        if let Some((timestamp, signature)) = signature {
            req = put(req, names::WEBHOOK_ID, Some(&d.message_id));
            req = put(req, names::WEBHOOK_TIMESTAMP, Some(timestamp));
            req = put(req, names::WEBHOOK_SIGNATURE, Some(signature));
        }
        req
    }

    /// A header value from message data, or `None` (with a warning) when it is not a valid one:
    /// odd attributes are skipped, never injected, never fatal.
    fn value(&self, name: &str, value: &str, d: &Delivery) -> Option<HeaderValue> {
        match HeaderValue::from_str(value) {
            Ok(v) => Some(v),
            Err(_) => {
                self.skipped(name, d);
                None
            }
        }
    }

    fn skipped(&self, name: &str, d: &Delivery) {
        if self.events.stats().throttle("header skipped") {
            warn!(self.events.log(), "skipping a header whose value is not a valid header value";
                "header" => name, "message_id" => d.message_id.as_ref());
        }
    }

    /// The answer a response stands for.
    fn judge(&self, response: &awc::ClientResponse) -> Answer {
        let status = response.status().as_u16();
        let headers = response.headers();
        let dead_letter = headers
            .get(names::DEAD_LETTER)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.trim().eq_ignore_ascii_case("true") || v.trim() == "1");
        let outcome = if dead_letter {
            Outcome::DeadLetter
        } else if self.settings.success_codes.contains(status) {
            Outcome::Ack
        } else {
            let retry_after = headers
                .get(header::RETRY_AFTER)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| http::retry_after(v, SystemTime::now()));
            match (status, retry_after) {
                (429 | 503, Some(until)) => Outcome::Retry { until },
                _ => Outcome::Nack {
                    reason: NackReason::Status(status),
                },
            }
        };
        Answer {
            outcome,
            status: Some(status),
        }
    }

    /// POSTs the body, following up to [`MAX_REDIRECTS`] `307`/`308` redirects (which keep the
    /// method and body) to absolute or root-relative locations of the same scheme. Other redirects
    /// are answers like any other status (a Nack): following a `301`/`302`/`303` turns the POST
    /// into a GET without the body, and acknowledging that would acknowledge a message never
    /// delivered.
    /// The answer, and the final response whose body is still to be read.
    async fn send(
        &self,
        client: &awc::Client,
        d: &Delivery,
    ) -> Result<(Answer, awc::ClientResponse), SendRequestError> {
        let signature = self.settings.signing.as_ref().map(|keys| {
            let now = SystemTime::now()
                .duration_since(SystemTime::UNIX_EPOCH)
                .unwrap_or_default()
                .as_secs();
            (now.to_string(), keys.sign(&d.message_id, now, &d.body))
        });
        let Some(mut uri) = self.uri.clone() else {
            return Err(SendRequestError::Url(awc::error::InvalidUrl::MissingScheme));
        };
        let mut hops = 0;
        loop {
            let request = self.request(client, &uri, d, signature.as_ref());
            let mut response = request.send_body(d.body.clone()).await?;
            let status = response.status().as_u16();
            let next = matches!(status, 307 | 308)
                .then(|| response.headers().get(header::LOCATION))
                .flatten()
                .and_then(|l| l.to_str().ok())
                .and_then(|l| http::redirect_target(&uri, l))
                .and_then(|next| next.parse::<awc::http::Uri>().ok());
            match next {
                Some(next) if hops < MAX_REDIRECTS => {
                    hops += 1;
                    // Within the delivery's deadline: a redirect is not an answer yet.
                    let _ = response.body().limit(MAX_RESPONSE_BODY).await;
                    uri = next;
                }
                _ => return Ok((self.judge(&response), response)),
            }
        }
    }
}

/// The headers a delivery is sent with, as the transmitter builds them (names lower-case), for
/// property tests and fuzzing: whatever the message holds, this never panics and yields only
/// valid header values.
pub fn request_headers(
    settings: &WebhookSettings,
    queue_name: &str,
    delivery: &Delivery,
) -> Vec<(String, String)> {
    let events = Events::new(
        Arc::new(crate::stats::Stats::new()),
        slog::Logger::root(slog::Discard, slog::o!()),
    );
    let shape = Shape::new(Arc::new(settings.clone()), queue_name, events);
    let client = awc::Client::default();
    let signature = settings.signing.as_ref().map(|k| {
        (
            "0".to_string(),
            k.sign(&delivery.message_id, 0, &delivery.body),
        )
    });
    let uri = shape
        .uri
        .clone()
        .expect("Endpoint::parse yields a valid URI");
    let request = shape.request(&client, &uri, delivery, signature.as_ref());
    request
        .headers()
        .iter()
        .map(|(k, v)| {
            (
                k.as_str().to_string(),
                String::from_utf8_lossy(v.as_bytes()).into_owned(),
            )
        })
        .collect()
}

/// Reads (a bounded part of) the body of an answer so the connection can be reused, for at most
/// [`RESPONSE_BODY_TIMEOUT`]: the answer is already known, a slow body must not turn it into a
/// timeout. (The timer is only registered when the body is not already in hand.)
async fn drain_body(mut response: awc::ClientResponse) {
    let body = response.body().limit(MAX_RESPONSE_BODY);
    let _ = actix_rt::time::timeout(RESPONSE_BODY_TIMEOUT, body).await;
}

/// `ApproximateFirstReceiveTimestamp` (epoch ms) as ISO 8601 UTC, as Elastic Beanstalk's sqsd sends it.
fn iso8601_from_epoch_ms(ms: &str) -> Option<String> {
    let ms: i64 = ms.parse().ok()?;
    let at = time::OffsetDateTime::from_unix_timestamp(ms / 1000).ok()?;
    let format =
        time::macros::format_description!("[year]-[month]-[day]T[hour]:[minute]:[second]Z");
    at.format(&format).ok()
}

/// Resolves when `cancel` turns true (or its sender is gone without ever cancelling: never).
async fn cancelled(mut cancel: watch::Receiver<bool>) {
    loop {
        if *cancel.borrow_and_update() {
            return;
        }
        if cancel.changed().await.is_err() {
            std::future::pending::<()>().await;
        }
    }
}

impl Actor for WebhookTransmitterActor {
    type Context = Context<Self>;
}

impl Supervised for WebhookTransmitterActor {
    fn restarting(&mut self, _ctx: &mut Self::Context) {
        self.shape.events.restarted("transmitter");
        warn!(self.shape.events.log(), "transmitter restarting");
        self.client = None;
    }
}

impl Handler<Deliver> for WebhookTransmitterActor {
    type Result = ResponseFuture<Answer>;

    fn handle(&mut self, deliver: Deliver, _ctx: &mut Self::Context) -> Self::Result {
        let settings = &self.shape.settings;
        let client = self
            .client
            .get_or_insert_with(|| {
                http::client(
                    self.tls.clone(),
                    settings.request_timeout,
                    self.max_connections,
                    http::Purpose::Webhook,
                )
            })
            .clone();
        let shape = self.shape.clone();
        Box::pin(async move {
            let started = Instant::now();
            let d = &deliver.delivery;
            let deadline = started + shape.settings.request_timeout;
            let send = tokio::time::timeout_at(deadline.into(), shape.send(&client, d));
            let answer = tokio::select! {
                result = send => match result {
                    Ok(Ok((answer, response))) => {
                        drain_body(response).await;
                        answer
                    }
                    Ok(Err(SendRequestError::Timeout)) | Err(_) => nack(NackReason::Timeout),
                    Ok(Err(e)) => nack(NackReason::Connect(e.to_string())),
                },
                () = cancelled(deliver.cancel.clone()) => nack(NackReason::Cancelled),
            };
            shape
                .events
                .delivered(&d.message_id, &answer, started.elapsed());
            answer
        })
    }
}

fn nack(reason: NackReason) -> Answer {
    Answer {
        outcome: Outcome::Nack { reason },
        status: None,
    }
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

    #[test]
    fn sqsd_first_received_at_is_iso_8601_utc() {
        assert_eq!(
            iso8601_from_epoch_ms("1700000000123").as_deref(),
            Some("2023-11-14T22:13:20Z")
        );
        assert_eq!(iso8601_from_epoch_ms("soon"), None);
    }
}
