//! `WebhookTransmitterActor`: one POST per [`Deliver`], answered with an [`Answer`].
//!
//! It knows HTTP, not SQS: it never calls SQS (a receipt handle reaches it only to be written into
//! a Lambda event). In Lambda format (`present::lambda`) it POSTs the batch's event and reads the
//! answer's body, up to 6 MB, into one outcome per record. Otherwise it maps a message's
//! metadata to headers (carrier's `X-Carrier-*` set, or Elastic Beanstalk's `X-Aws-Sqsd-*`; the
//! attribute headers bounded, so no attribute makes a message undeliverable), signs the request
//! when secrets are configured, follows `307`/`308` only within the endpoint's origin, and reads
//! the answer: status, `Retry-After`, `X-Carrier-Dead-Letter`. Each delivery runs as its own future, so one slow webhook call never
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
use crate::http::{self, Endpoint, RedirectRefused};
use crate::messages::Incoming;
use crate::messages::{Answer, Crash, Deliver, Delivery, NackReason, Outcome};
pub use crate::present::HeaderStyle;
use crate::present::{lambda, Format, Presenter, Request, Skip, Unwrap};
use crate::signing::SigningKeys;
use bytes::Bytes;

/// At most this much of a webhook's response body is read (to keep the connection reusable);
/// the answer is the status and headers, the body is ignored.
const MAX_RESPONSE_BODY: usize = 64 * 1024;
/// How long to wait for that body once the answer is known.
const RESPONSE_BODY_TIMEOUT: Duration = Duration::from_secs(2);
/// Most `307`/`308` redirects followed for one delivery (all within the endpoint's origin).
const MAX_REDIRECTS: usize = 3;
/// The User-Agent of Elastic Beanstalk's worker daemon, for `CARRIER_WEBHOOK_HEADER_STYLE=sqsd`.
const SQSD_USER_AGENT: &str = "aws-sqsd/3.0.4";

/// The header names of carrier's HTTP exchange (a message's metadata: `present::message`).
mod names {
    pub const DEAD_LETTER: &str = "x-carrier-dead-letter";
    /// Lambda format: the function failed (the Runtime Interface Emulator's header).
    pub const FUNCTION_ERROR: &str = "x-amz-function-error";
    pub const WEBHOOK_ID: &str = "webhook-id";
    pub const WEBHOOK_TIMESTAMP: &str = "webhook-timestamp";
    pub const WEBHOOK_SIGNATURE: &str = "webhook-signature";
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
    /// What one POST carries: one message, or a batch in Lambda's event format.
    pub format: Format,
    /// Which fan-out envelopes to open (one-message format only).
    pub unwrap: Unwrap,
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
            format: Format::Message,
            unwrap: Unwrap::None,
        }
    }
}

/// What a delivery's future needs of its transmitter, shared (the future outlives a restart).
struct Shape {
    settings: Arc<WebhookSettings>,
    /// The endpoint, parsed once: for requests, and as a URL (redirects are resolved against it
    /// and must stay within its origin).
    uri: Option<awc::http::Uri>,
    url: Option<url::Url>,
    authorization: Option<HeaderValue>,
    /// What each POST carries.
    presenter: Presenter,
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
        source: Option<lambda::EventSource>,
        events: Events,
    ) -> Self {
        WebhookTransmitterActor {
            shape: Arc::new(Shape::new(settings, queue_name, source, events)),
            tls,
            max_connections,
            client: None,
        }
    }
}

impl Shape {
    fn new(
        settings: Arc<WebhookSettings>,
        queue_name: &str,
        source: Option<lambda::EventSource>,
        events: Events,
    ) -> Shape {
        Shape {
            presenter: Presenter::new(
                settings.format,
                settings.header_style,
                settings.unwrap,
                source,
                queue_name,
                &settings.default_content_type,
            ),
            uri: settings.endpoint.url.parse().ok(),
            url: url::Url::parse(&settings.endpoint.url).ok(),
            authorization: settings
                .endpoint
                .authorization
                .as_deref()
                .and_then(|a| HeaderValue::from_str(a).ok()),
            settings,
            events,
        }
    }

    /// One request of a delivery to `uri`: its headers, the User-Agent of the header style,
    /// `Authorization` and, when signing, the signature (each redirect hop builds it afresh, so
    /// no header is ever doubled).
    fn request(
        &self,
        client: &awc::Client,
        uri: &awc::http::Uri,
        p: &Request,
        signature: Option<&(String, String)>,
    ) -> awc::ClientRequest {
        // Header names as Go writes them (`X-Carrier-Receive-Count`), for workers that compare
        // names case-sensitively.
        let mut req = client.post(uri.clone()).camel_case();
        for (name, value) in &p.headers {
            req = req.append_header((name.clone(), value.clone()));
        }
        if self.settings.header_style == HeaderStyle::Sqsd {
            // In place of the client's default (carrier's own).
            req = req.insert_header((
                header::USER_AGENT,
                HeaderValue::from_static(SQSD_USER_AGENT),
            ));
        }
        if let Some(auth) = &self.authorization {
            req = req.insert_header((header::AUTHORIZATION, auth.clone()));
        }
        if let Some((timestamp, signature)) = signature {
            let signed = [
                (names::WEBHOOK_ID, &*p.id),
                (names::WEBHOOK_TIMESTAMP, timestamp),
                (names::WEBHOOK_SIGNATURE, signature),
            ];
            for (name, value) in signed {
                if let Some(v) = self.value(name, value, &p.id) {
                    req = req.insert_header((HeaderName::from_static(name), v));
                }
            }
        }
        req
    }

    fn value(&self, name: &str, value: &str, id: &str) -> Option<HeaderValue> {
        match HeaderValue::from_str(value) {
            Ok(v) => Some(v),
            Err(_) => {
                self.skipped(name, id);
                None
            }
        }
    }

    /// Warns (throttled, per kind) about header values from message data that were left out.
    fn log_skips(&self, request: &Request) {
        for skip in &request.skipped {
            let id = request.id.as_ref();
            match skip {
                Skip::Invalid { header } => self.skipped(header, id),
                Skip::TooLong { header, bytes } => {
                    if self.events.stats().throttle("header too long") {
                        warn!(self.events.log(), "skipping a header whose value is over 1 KiB";
                            "header" => header, "bytes" => bytes, "message_id" => id);
                    }
                }
                Skip::OverBudget { first, count } => {
                    if self.events.stats().throttle("header budget") {
                        warn!(self.events.log(), "skipping attribute headers beyond their 8 KiB budget";
                            "first" => first, "skipped" => count, "message_id" => id);
                    }
                }
            }
        }
    }

    fn skipped(&self, name: &str, id: &str) {
        if self.events.stats().throttle("header skipped") {
            warn!(self.events.log(), "skipping a header whose value is not a valid header value";
                "header" => name, "message_id" => id);
        }
    }

    /// A redirect to another origin: nothing was sent there. `location` is already redacted.
    fn refused(&self, status: u16, location: &str, id: &str) {
        if self.events.stats().throttle("redirect refused") {
            warn!(self.events.log(), "redirect to another origin not followed; nothing sent there";
                "status" => status, "location" => location,
                "endpoint" => &self.settings.endpoint.redacted,
                "message_id" => id);
        }
    }

    /// A Standard Webhooks signature made `at` (epoch seconds), when signing is configured:
    /// (timestamp, signature).
    fn signature(&self, p: &Request, at: u64) -> Option<(String, String)> {
        let keys = self.settings.signing.as_ref()?;
        Some((at.to_string(), keys.sign(&p.id, at, &p.body)))
    }

    /// Lambda format: the answer to a batch, read as Lambda reads a function's answer with
    /// `ReportBatchItemFailures` (the body, up to 6 MB, is read only when it can matter).
    async fn judge_batch(
        &self,
        mut response: awc::ClientResponse,
        records: &[Incoming],
    ) -> Result<Answer, awc::error::PayloadError> {
        let status = response.status().as_u16();
        let headers = response.headers();
        let function_error = headers.contains_key(names::FUNCTION_ERROR);
        let retry_until = headers
            .get(header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| http::retry_after(v, SystemTime::now()));
        let success = self.settings.success_codes.contains(status);
        let declared_length = headers
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<usize>().ok());
        let body = if success && !function_error {
            match response.body().limit(lambda::MAX_PAYLOAD).await {
                Ok(body) => Some(body),
                Err(awc::error::PayloadError::Overflow) => None,
                Err(e) => return Err(e),
            }
        } else {
            Some(Bytes::new())
        };
        let ids: Vec<Arc<str>> = records
            .iter()
            .map(|r| r.delivery.message_id.clone())
            .collect();
        let read = match &body {
            Some(body) => lambda::read_answer(
                lambda::Answer {
                    status,
                    success,
                    function_error,
                    retry_until,
                    body,
                    declared_length,
                },
                &ids,
            ),
            None => lambda::BatchAnswer::Failed(lambda::BatchFailure::TooLarge),
        };
        let status = Some(status);
        Ok(match read {
            lambda::BatchAnswer::Ok => Answer::new(Outcome::Ack, status),
            lambda::BatchAnswer::Partial(failed) => Answer {
                outcome: Outcome::Ack,
                failed: failed.into_iter().collect(),
                status,
            },
            lambda::BatchAnswer::Retry(until) => Answer::new(Outcome::Retry { until }, status),
            lambda::BatchAnswer::Failed(lambda::BatchFailure::Status(code)) => Answer::new(
                Outcome::Nack {
                    reason: NackReason::Status(code),
                },
                status,
            ),
            lambda::BatchAnswer::Failed(why) => Answer::new(
                Outcome::Nack {
                    reason: NackReason::Function(why),
                },
                status,
            ),
        })
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
        Answer::new(outcome, Some(status))
    }

    /// POSTs the body, following up to [`MAX_REDIRECTS`] `307`/`308` redirects (which keep the
    /// method and body) within the endpoint's origin, each hop with `Authorization` and a fresh
    /// signature. A redirect to another origin is a Nack: nothing is sent there. Other redirects
    /// are answers like any other status (a Nack): following a `301`/`302`/`303` turns the POST
    /// into a GET without the body, and acknowledging that would acknowledge a message never
    /// delivered.
    /// The answer, and the final response whose body is still to be read.
    async fn send(&self, client: &awc::Client, p: &Request) -> Result<Sent, SendRequestError> {
        let (Some(endpoint), Some(mut uri)) = (&self.url, self.uri.clone()) else {
            return Err(SendRequestError::Url(awc::error::InvalidUrl::MissingScheme));
        };
        let mut current = endpoint.clone();
        let mut hops = 0;
        loop {
            let signature = self.signature(p, unix_now());
            let request = self.request(client, &uri, p, signature.as_ref());
            let mut response = request.send_body(p.body.clone()).await?;
            match self.next_hop(endpoint, &current, &response, hops, &p.id) {
                Hop::Follow(next_url, next_uri) => {
                    hops += 1;
                    // Within the delivery's deadline: a redirect is not an answer yet.
                    let _ = response.body().limit(MAX_RESPONSE_BODY).await;
                    (current, uri) = (next_url, next_uri);
                }
                Hop::Stop => return Ok(Sent::Answered(response)),
                Hop::Refused(answer) => return Ok(Sent::Refused(answer)),
            }
        }
    }

    /// What a response to a request for `current` leads to: a redirect to follow, or the answer.
    fn next_hop(
        &self,
        endpoint: &url::Url,
        current: &url::Url,
        response: &awc::ClientResponse,
        hops: usize,
        id: &str,
    ) -> Hop {
        let status = response.status().as_u16();
        let location = matches!(status, 307 | 308)
            .then(|| response.headers().get(header::LOCATION))
            .flatten()
            .and_then(|l| l.to_str().ok());
        let Some(location) = location.filter(|_| hops < MAX_REDIRECTS) else {
            return Hop::Stop;
        };
        match http::redirect_target(endpoint, current, location) {
            Ok(next) => match next.as_str().parse() {
                Ok(uri) => Hop::Follow(next, uri),
                Err(_) => Hop::Stop,
            },
            Err(RedirectRefused::OtherOrigin(shown)) => {
                self.refused(status, &shown, id);
                Hop::Refused(Answer::new(
                    Outcome::Nack {
                        reason: NackReason::Status(status),
                    },
                    Some(status),
                ))
            }
            Err(RedirectRefused::Invalid) => Hop::Stop,
        }
    }
}

/// Where a delivery goes after one response.
enum Hop {
    /// A redirect within the endpoint's origin, to this URL.
    Follow(url::Url, awc::http::Uri),
    /// No (further) redirect: this response is the answer.
    Stop,
    /// A redirect to another origin: not followed, this is the answer.
    Refused(Answer),
}

/// How a POST ended: with a response to read, or a redirect refused.
enum Sent {
    Answered(awc::ClientResponse),
    Refused(Answer),
}

/// Seconds since the Unix epoch, for signatures.
fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs()
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
    let shape = Shape::new(Arc::new(settings.clone()), queue_name, None, events);
    let client = awc::Client::default();
    let prepared = shape.presenter.present(&[Incoming {
        receipt: Arc::from(""),
        delivery: Arc::new(delivery.clone()),
    }]);
    let signature = shape.signature(&prepared, 0);
    let uri = shape
        .uri
        .clone()
        .expect("Endpoint::parse yields a valid URI");
    let request = shape.request(&client, &uri, &prepared, signature.as_ref());
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
            let records = &deliver.records;
            let prepared = shape.presenter.present(records);
            shape.log_skips(&prepared);
            if let Some(label) = prepared.opened {
                shape.events.unwrapped(label);
            }
            let deadline = started + shape.settings.request_timeout;
            // The answer, and (one message per POST) the response whose body is still to be
            // read so the connection can be reused; a batch's answer is its body.
            let exchange = async {
                Ok(match shape.send(&client, &prepared).await? {
                    Sent::Refused(answer) => (answer, None),
                    Sent::Answered(response) => match shape.presenter.format() {
                        Format::Message => (shape.judge(&response), Some(response)),
                        Format::Lambda { .. } => match shape.judge_batch(response, records).await {
                            Ok(answer) => (answer, None),
                            Err(e) => (
                                nack(NackReason::Connect(format!("reading the answer: {e}"))),
                                None,
                            ),
                        },
                    },
                })
            };
            let answer = tokio::select! {
                result = tokio::time::timeout_at(deadline.into(), exchange) => match result {
                    Ok(Ok((answer, response))) => {
                        if let Some(response) = response {
                            drain_body(response).await;
                        }
                        answer
                    }
                    Ok(Err(SendRequestError::Timeout)) | Err(_) => nack(NackReason::Timeout),
                    Ok(Err(e)) => nack(NackReason::Connect(e.to_string())),
                },
                () = cancelled(deliver.cancel.clone()) => nack(NackReason::Cancelled),
            };
            shape
                .events
                .delivered(&prepared.id, &answer, started.elapsed());
            if matches!(shape.presenter.format(), Format::Lambda { .. }) {
                shape
                    .events
                    .batch_answered(&prepared.id, records.len(), &answer);
            }
            answer
        })
    }
}

fn nack(reason: NackReason) -> Answer {
    Answer::new(Outcome::Nack { reason }, None)
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
    use crate::messages::AttributeValue;
    use crate::present::message::{names as message_names, ATTRIBUTE_HEADERS_BUDGET};

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

    /// The headers `request_headers` yields for a message with these String attributes.
    fn headers_with(style: HeaderStyle, attributes: &[(&str, &str)]) -> Vec<(String, String)> {
        let settings = WebhookSettings {
            header_style: style,
            ..Default::default()
        };
        let delivery = Delivery {
            message_id: Arc::from("m-1"),
            attributes: attributes
                .iter()
                .map(|(name, value)| crate::messages::Attribute {
                    name: name.to_string(),
                    data_type: "String".into(),
                    value: AttributeValue::Text(value.to_string()),
                })
                .collect(),
            ..Default::default()
        };
        request_headers(&settings, "queue", &delivery)
    }

    fn header<'h>(headers: &'h [(String, String)], name: &str) -> Option<&'h str> {
        headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    #[test]
    fn an_oversized_content_type_or_trace_context_is_skipped_not_sent() {
        let huge = format!("text/plain; x={}", "y".repeat(200 * 1024));
        let long = "z".repeat(1025);
        let headers = headers_with(
            HeaderStyle::Carrier,
            &[
                ("Body.ContentType", &huge),
                ("traceparent", &long),
                ("tracestate", "ok=1"),
            ],
        );
        assert_eq!(
            header(&headers, "content-type"),
            Some("application/json"),
            "the default instead"
        );
        assert_eq!(header(&headers, "traceparent"), None);
        assert_eq!(header(&headers, "tracestate"), Some("ok=1"));
    }

    #[test]
    fn attribute_values_outside_printable_ascii_or_over_1_kib_are_skipped() {
        let kib = "k".repeat(1024);
        let over = "o".repeat(1025);
        let table: [(&str, &str, bool); 9] = [
            ("plain", "a value, with = and ~", true),
            ("spaces", " padded ", true),
            ("empty", "", true),
            ("exactly-1-kib", &kib, true),
            ("over-1-kib", &over, false),
            ("non-ascii", "héllo", false),
            ("tab", "a\tb", false),
            ("delete", "a\u{7f}b", false),
            ("newline", "a\r\nX-Injected: yes", false),
        ];
        for style in [HeaderStyle::Carrier, HeaderStyle::Sqsd] {
            let attributes: Vec<(&str, &str)> = table.iter().map(|(n, v, _)| (*n, *v)).collect();
            let headers = headers_with(style, &attributes);
            let prefix = match style {
                HeaderStyle::Carrier => message_names::ATTRIBUTE_PREFIX,
                HeaderStyle::Sqsd => message_names::SQSD_ATTRIBUTE_PREFIX,
            };
            for (name, value, kept) in table {
                let sent = header(&headers, &format!("{prefix}{name}"));
                assert_eq!(sent, kept.then_some(value), "{style:?} {name}");
            }
            assert_eq!(header(&headers, "x-injected"), None);
            if style == HeaderStyle::Sqsd {
                assert_eq!(header(&headers, "user-agent"), Some(SQSD_USER_AGENT));
            }
        }
    }

    #[test]
    fn attribute_headers_stay_within_their_budget_taken_in_name_order() {
        // Each `a<i>` costs 22 + 1000 bytes: after `Z` (26 bytes, first in name order) seven fit
        // under 8 KiB, the eighth would not.
        let value = "v".repeat(1000);
        let mut attributes: Vec<(String, &str)> = (0..10)
            .rev()
            .map(|i| (format!("a{i}"), value.as_str()))
            .collect();
        // Small, but after the cut in name order: skipped too.
        attributes.push(("b".into(), "small"));
        // Before the cut in name order: kept, and counted.
        attributes.push(("Z".into(), "first"));
        attributes.push((
            "traceparent".into(),
            "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
        ));
        let borrowed: Vec<(&str, &str)> =
            attributes.iter().map(|(n, v)| (n.as_str(), *v)).collect();
        let headers = headers_with(HeaderStyle::Carrier, &borrowed);
        let mut sent: Vec<&str> = headers
            .iter()
            .filter_map(|(k, _)| k.strip_prefix(message_names::ATTRIBUTE_PREFIX))
            .collect();
        sent.sort_unstable();
        assert_eq!(sent, ["a0", "a1", "a2", "a3", "a4", "a5", "a6", "z"]);
        let total: usize = headers
            .iter()
            .filter(|(k, _)| k.starts_with(message_names::ATTRIBUTE_PREFIX))
            .map(|(k, v)| k.len() + v.len())
            .sum();
        assert!(total < ATTRIBUTE_HEADERS_BUDGET, "{total}");
        // Content-Type and trace context are outside the budget.
        assert_eq!(header(&headers, "content-type"), Some("application/json"));
        assert!(header(&headers, "traceparent").is_some());
    }
}
