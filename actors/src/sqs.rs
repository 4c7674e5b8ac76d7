//! A thin wrapper over aws-sdk-sqs: building the client, resolving the queue, reading its
//! attributes, receiving, the two settling actions (delete, change visibility) with batching,
//! per-entry results, retries with capped backoff and a fallback to single calls for emulators
//! without batch APIs, and the copy to a dead-letter queue.
//!
//! It knows SQS and nothing of webhooks or actors; every call is a plain future the actors spawn,
//! and every call and error is recorded through [`Events`].

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use aws_config::ecs::EcsCredentialsProvider;
use aws_config::environment::{
    EnvironmentVariableCredentialsProvider, EnvironmentVariableRegionProvider,
};
use aws_config::meta::credentials::CredentialsProviderChain;
use aws_config::meta::region::ProvideRegion;
use aws_config::profile::{ProfileFileCredentialsProvider, ProfileFileRegionProvider};
use aws_config::provider_config::ProviderConfig;
use aws_config::timeout::TimeoutConfig;
use aws_config::web_identity_token::WebIdentityTokenCredentialsProvider;
use aws_config::{BehaviorVersion, Region};
use aws_sdk_sqs::config::http::HttpResponse;
use aws_sdk_sqs::config::Credentials;
use aws_sdk_sqs::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_sdk_sqs::primitives::Blob;
use aws_sdk_sqs::types::{
    ChangeMessageVisibilityBatchRequestEntry, DeleteMessageBatchRequestEntry,
    MessageAttributeValue, MessageSystemAttributeName, MessageSystemAttributeNameForSends,
    MessageSystemAttributeValue, QueueAttributeName,
};
use slog::warn;

use crate::events::Events;
use crate::messages::{Attribute, AttributeValue, Delivery, Incoming};

pub use crate::limits::{
    CONTENT_TYPE_ATTRIBUTE, MAX_BATCH_SIZE, MAX_VISIBILITY_TIMEOUT_SECS, MAX_WAIT_TIME_SECS,
};
pub use crate::messages::SqsError;
/// How often one settling action (delete / visibility change) is tried before it is given up on.
/// Giving up loses nothing: the message reappears when its visibility timeout ends.
const ACTION_ATTEMPTS: u32 = 4;

/// Where the queue is: a URL, or a name resolved with GetQueueUrl, optionally at a custom endpoint.
#[derive(Debug, Clone, Default)]
pub struct QueueAddress {
    /// Base endpoint, e.g. `http://127.0.0.1:9324`; `None` uses the region's AWS endpoint.
    pub endpoint: Option<String>,
    /// Queue name, resolved with GetQueueUrl.
    pub name: Option<String>,
    /// Full queue URL; when set, no GetQueueUrl call is made.
    pub url: Option<String>,
}

impl QueueAddress {
    /// The endpoint to talk to: the configured one, else the origin of the queue URL.
    pub fn effective_endpoint(&self) -> Option<String> {
        if let Some(e) = &self.endpoint {
            return Some(e.trim_end_matches('/').to_string());
        }
        let url: awc::http::Uri = self.url.as_deref()?.parse().ok()?;
        Some(format!("{}://{}", url.scheme_str()?, url.authority()?))
    }

    /// A short name for logs and the `X-Carrier-Queue-Name` header.
    pub fn display_name(&self) -> String {
        match (&self.name, &self.url) {
            (Some(n), _) => n.clone(),
            (None, Some(u)) => u.rsplit('/').next().unwrap_or(u).to_string(),
            (None, None) => String::new(),
        }
    }
}

/// A FIFO queue's URL: its path (not its query or fragment) ends in `.fifo`.
pub fn is_fifo_url(url: &str) -> bool {
    match url::Url::parse(url) {
        Ok(u) => u.path().trim_end_matches('/').ends_with(".fifo"),
        Err(_) => url
            .split(['?', '#'])
            .next()
            .is_some_and(|p| p.trim_end_matches('/').ends_with(".fifo")),
    }
}

/// True for hosts served by AWS itself (where the full AWS credential chain applies).
fn is_aws_host(host: &str) -> bool {
    host.ends_with(".amazonaws.com")
        || host.ends_with(".amazonaws.com.cn")
        || host.ends_with(".api.aws")
}

/// The region named in an AWS SQS host: `sqs.us-west-2.amazonaws.com`, `us-west-2.queue.amazonaws.com`.
fn region_from_host(host: &str) -> Option<String> {
    if !is_aws_host(host) {
        return None;
    }
    let parts: Vec<&str> = host.split('.').collect();
    match parts.as_slice() {
        [svc, region, ..] if svc.starts_with("sqs") => Some((*region).to_string()),
        [region, "queue", ..] => Some((*region).to_string()),
        _ => None,
    }
}

/// Builds the SQS client.
///
/// Against AWS the standard credential chain applies (env, profile, web identity / IRSA, ECS, IMDS).
/// Against anything else (an emulator, a proxy) the same minus the instance-metadata probe, then
/// harmless placeholders: carrier starts at once without credentials where Go waits and panics.
pub async fn client(address: &QueueAddress) -> aws_sdk_sqs::Client {
    let endpoint = address.effective_endpoint();
    let host = endpoint
        .as_deref()
        .and_then(|e| e.parse::<awc::http::Uri>().ok())
        .and_then(|u| u.host().map(str::to_string));
    let on_aws = host.as_deref().map(is_aws_host).unwrap_or(true);

    let http = aws_smithy_http_client::Builder::new()
        .tls_provider(aws_smithy_http_client::tls::Provider::Rustls(
            aws_smithy_http_client::tls::rustls_provider::CryptoMode::Ring,
        ))
        .build_https();
    let timeouts = TimeoutConfig::builder()
        .connect_timeout(Duration::from_secs(3))
        // A long poll holds the request for up to 20 s; anything past that is a hung connection.
        .operation_attempt_timeout(Duration::from_secs(MAX_WAIT_TIME_SECS as u64 + 10))
        .build();
    let mut loader = aws_config::defaults(BehaviorVersion::latest())
        .http_client(http.clone())
        .timeout_config(timeouts);
    let region = resolve_region(host.as_deref(), on_aws).await;
    if let Some(region) = region.clone() {
        loader = loader.region(region);
    }
    if !on_aws {
        // Everything the standard chain has that is configured by env or files (so IRSA and ECS
        // still work behind a proxy or custom DNS name), but no instance-metadata probe.
        let conf = ProviderConfig::default()
            .with_http_client(http)
            .with_region(region);
        loader = loader.credentials_provider(
            CredentialsProviderChain::first_try(
                "Environment",
                EnvironmentVariableCredentialsProvider::new(),
            )
            .or_else(
                "Profile",
                ProfileFileCredentialsProvider::builder()
                    .configure(&conf)
                    .build(),
            )
            .or_else(
                "WebIdentityToken",
                WebIdentityTokenCredentialsProvider::builder()
                    .configure(&conf)
                    .build(),
            )
            .or_else(
                "EcsContainer",
                EcsCredentialsProvider::builder().configure(&conf).build(),
            )
            .or_else(
                "Placeholder",
                Credentials::new("carrier", "carrier", None, None, "carrier-placeholder"),
            ),
        );
    }
    if let Some(endpoint) = endpoint {
        loader = loader.endpoint_url(endpoint);
    }
    aws_sdk_sqs::Client::new(&loader.load().await)
}

/// The region from `AWS_REGION` / `AWS_DEFAULT_REGION`, else the endpoint's host. Against AWS,
/// `None` lets aws-config's own chain (profile, IMDS) decide; an emulator takes any region.
async fn resolve_region(host: Option<&str>, on_aws: bool) -> Option<Region> {
    if let Some(region) = EnvironmentVariableRegionProvider::new().region().await {
        return Some(region);
    }
    if let Some(region) = host.and_then(region_from_host) {
        return Some(Region::new(region));
    }
    if on_aws {
        return None;
    }
    Some(
        ProfileFileRegionProvider::new()
            .region()
            .await
            .unwrap_or(Region::from_static("us-east-1")),
    )
}

/// Capped exponential backoff with jitter (each delay drawn from the upper half of its step).
#[derive(Debug, Clone)]
pub struct Backoff {
    base: Duration,
    max: Duration,
    attempt: u32,
}

impl Backoff {
    pub const fn new(base: Duration, max: Duration) -> Self {
        Backoff {
            base,
            max,
            attempt: 0,
        }
    }

    /// The next delay; grows ×2 each call up to `max`.
    pub fn next_delay(&mut self) -> Duration {
        let step = self
            .base
            .saturating_mul(1u32 << self.attempt.min(16))
            .min(self.max);
        self.attempt = self.attempt.saturating_add(1);
        step.mul_f64(0.5 + fastrand::f64() * 0.5)
    }

    /// How many delays were handed out since the last success.
    pub fn failures(&self) -> u32 {
        self.attempt
    }

    pub fn reset(&mut self) {
        self.attempt = 0;
    }
}

impl SqsError {
    fn from_sdk<E>(operation: &'static str, err: SdkError<E, HttpResponse>) -> Self
    where
        E: ProvideErrorMetadata + std::error::Error + 'static,
    {
        let code = err.code().map(str::to_string);
        let client_error = matches!(err, SdkError::ServiceError(_))
            && err
                .raw_response()
                .is_some_and(|r| (400..500).contains(&r.status().as_u16()));
        SqsError {
            operation,
            sender_fault: client_error && !code.as_deref().is_some_and(is_throttling),
            code,
            detail: DisplayErrorContext(&err).to_string(),
        }
    }

    fn local(operation: &'static str, detail: impl Into<String>) -> Self {
        SqsError {
            operation,
            code: None,
            detail: detail.into(),
            sender_fault: false,
        }
    }

    /// The endpoint does not implement this call (some emulators lack the batch APIs).
    fn is_unsupported_operation(&self) -> bool {
        matches!(
            self.code.as_deref(),
            Some(
                "InvalidAction"
                    | "UnsupportedOperation"
                    | "AWS.SimpleQueueService.UnsupportedOperation"
                    | "UnknownOperationException"
                    | "NotImplemented"
            )
        )
    }
}

/// SQS's throttling answers (retried like its own faults, never taken as the sender's).
fn is_throttling(code: &str) -> bool {
    code.contains("Throttl") || code == "OverLimit" || code == "RequestLimitExceeded"
}

/// The messages of one ReceiveMessage call.
pub struct Received {
    /// When the call was sent: SQS started each message's visibility timeout no earlier.
    pub sent_at: Instant,
    pub messages: Vec<Incoming>,
}

/// One settling entry: which lease (the caller's key), its receipt handle, and for visibility
/// changes the timeout in seconds.
#[derive(Debug, Clone)]
pub struct Entry {
    pub key: u64,
    pub receipt: Arc<str>,
    pub message_id: Arc<str>,
    pub secs: u32,
}

/// How one entry ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EntryResult {
    Done,
    /// SQS refused it for good (the sender's fault), with SQS's code.
    Refused(String),
    /// Still failing after every attempt.
    GaveUp,
}

/// What carrier reads of the queue's attributes at start.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct QueueAttributes {
    /// `VisibilityTimeout`; `None` when the endpoint did not say.
    pub visibility_timeout: Option<Duration>,
    /// `RedrivePolicy`'s `deadLetterTargetArn`, if there is a policy.
    pub dead_letter_target: Option<String>,
    /// `QueueArn` (the Lambda event's `eventSourceARN`).
    pub arn: Option<String>,
}

/// A queue named by an SQS ARN: `arn:aws:sqs:us-east-1:123456789012:name`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueArn {
    pub region: String,
    pub account: String,
    pub name: String,
}

impl QueueArn {
    pub fn parse(arn: &str) -> Option<QueueArn> {
        let mut parts = arn.split(':');
        let (Some("arn"), Some(_partition), Some("sqs"), Some(region), Some(account), Some(name)) = (
            parts.next(),
            parts.next(),
            parts.next(),
            parts.next(),
            parts.next(),
            parts.next(),
        ) else {
            return None;
        };
        (parts.next().is_none() && !name.is_empty() && !account.is_empty()).then(|| QueueArn {
            region: region.to_string(),
            account: account.to_string(),
            name: name.to_string(),
        })
    }
}

/// The queue's dead-letter queue (from its `RedrivePolicy`), its URL resolved once and cached.
/// Shared by every receiver.
#[derive(Debug)]
pub struct DeadLetterQueue {
    pub arn: QueueArn,
    url: std::sync::Mutex<Option<String>>,
}

impl DeadLetterQueue {
    pub fn new(arn: QueueArn) -> DeadLetterQueue {
        DeadLetterQueue {
            arn,
            url: std::sync::Mutex::new(None),
        }
    }

    /// The URL, resolved with GetQueueUrl the first time it is asked for (and again only if that
    /// failed).
    pub async fn url(&self, queue: &SqsQueue) -> Result<String, SqsError> {
        if let Some(url) = self.url.lock().unwrap_or_else(|e| e.into_inner()).clone() {
            return Ok(url);
        }
        let url = queue.url_of(&self.arn).await?;
        *self.url.lock().unwrap_or_else(|e| e.into_inner()) = Some(url.clone());
        Ok(url)
    }
}

/// The `deadLetterTargetArn` of a `RedrivePolicy` JSON document.
fn dead_letter_target(policy: &str) -> Option<String> {
    let policy: serde_json::Value = serde_json::from_str(policy).ok()?;
    policy["deadLetterTargetArn"].as_str().map(str::to_string)
}

/// One resolved queue and the shared client. Cheap to clone; every receiver holds one.
#[derive(Clone)]
pub struct SqsQueue {
    client: aws_sdk_sqs::Client,
    url: Arc<str>,
    fifo: bool,
    /// Set once the endpoint has refused a batch call: from then on, single calls.
    batch_unsupported: Arc<AtomicBool>,
    /// SQS has answered for this queue (GetQueueUrl, its attributes, or a receive): a configured
    /// `CARRIER_SQS_QUEUE_URL` is not taken on trust.
    confirmed: Arc<AtomicBool>,
    events: Events,
}

/// Where [`SqsQueue::settle`] hands the results known before a retry.
pub(crate) type EarlyResults<'a> = dyn Fn(Vec<(u64, EntryResult)>) + 'a;

impl SqsQueue {
    /// Resolve the queue URL, retrying with capped backoff until it works. A missing queue or
    /// unreachable endpoint is logged (at a bounded rate), never a panic.
    /// Resolves the queue URL, retrying until it works; `on_retry` is told of each failure.
    pub(crate) async fn resolve(
        client: aws_sdk_sqs::Client,
        address: &QueueAddress,
        events: Events,
        on_retry: impl Fn(),
    ) -> SqsQueue {
        let url = match (&address.url, &address.name) {
            (Some(url), _) => url.clone(),
            (None, Some(name)) => {
                let mut backoff = Backoff::new(Duration::from_millis(250), Duration::from_secs(30));
                loop {
                    let started = Instant::now();
                    let result = client.get_queue_url().queue_name(name).send().await;
                    events.sqs_call("GetQueueUrl", started.elapsed());
                    let err = match result {
                        Ok(out) => match out.queue_url {
                            Some(url) if !url.is_empty() => break url,
                            _ => SqsError::local("GetQueueUrl", "the answer had no queue URL"),
                        },
                        Err(e) => SqsError::from_sdk("GetQueueUrl", e),
                    };
                    let delay = backoff.next_delay();
                    events.resolve_failed(name, &err, delay);
                    on_retry();
                    actix_rt::time::sleep(delay).await;
                }
            }
            (None, None) => unreachable!("settings validation requires a queue name or URL"),
        };
        let fifo = is_fifo_url(&url);
        SqsQueue {
            client,
            url: url.into(),
            fifo,
            confirmed: Arc::new(AtomicBool::new(address.url.is_none())),
            batch_unsupported: Arc::new(AtomicBool::new(false)),
            events,
        }
    }

    pub fn url(&self) -> &str {
        &self.url
    }

    /// A FIFO queue (its name ends in `.fifo`).
    pub fn is_fifo(&self) -> bool {
        self.fifo
    }

    /// The queue's ARN as its URL (`…/<account>/<name>`) and the client's region spell it, for
    /// when its `QueueArn` attribute cannot be read (partition `aws`).
    pub fn arn_from_url(&self) -> String {
        let mut path = self.url.rsplit('/').filter(|p| !p.is_empty());
        let name = path.next().unwrap_or_default();
        let account = path.next().unwrap_or_default();
        let region = self
            .client
            .config()
            .region()
            .map(|r| r.to_string())
            .unwrap_or_default();
        format!("arn:aws:sqs:{region}:{account}:{name}")
    }

    /// SQS has answered for this queue at least once.
    pub fn is_confirmed(&self) -> bool {
        self.confirmed.load(Ordering::Relaxed)
    }

    /// The flag behind [`SqsQueue::is_confirmed`], for readiness.
    pub fn confirmed_flag(&self) -> Arc<AtomicBool> {
        self.confirmed.clone()
    }

    /// Records that SQS answered for the queue; true the first time.
    fn confirm(&self) -> bool {
        !self.confirmed.swap(true, Ordering::Relaxed)
    }

    /// `VisibilityTimeout` and `RedrivePolicy`, read once at start. A few attempts; then what is
    /// known (nothing) is returned and the caller falls back to defaults.
    pub async fn attributes(&self) -> Result<QueueAttributes, SqsError> {
        let mut backoff = Backoff::new(Duration::from_millis(200), Duration::from_secs(2));
        let mut attempt = 1;
        loop {
            let started = Instant::now();
            let result = self
                .client
                .get_queue_attributes()
                .queue_url(self.url.as_ref())
                .attribute_names(QueueAttributeName::VisibilityTimeout)
                .attribute_names(QueueAttributeName::RedrivePolicy)
                .attribute_names(QueueAttributeName::QueueArn)
                .send()
                .await;
            self.events
                .sqs_call("GetQueueAttributes", started.elapsed());
            match result {
                Ok(out) => {
                    self.confirm();
                    let attrs = out.attributes.unwrap_or_default();
                    return Ok(QueueAttributes {
                        visibility_timeout: attrs
                            .get(&QueueAttributeName::VisibilityTimeout)
                            .and_then(|v| v.trim().parse::<u64>().ok())
                            .map(Duration::from_secs),
                        dead_letter_target: attrs
                            .get(&QueueAttributeName::RedrivePolicy)
                            .and_then(|p| dead_letter_target(p)),
                        arn: attrs
                            .get(&QueueAttributeName::QueueArn)
                            .filter(|a| QueueArn::parse(a).is_some())
                            .cloned(),
                    });
                }
                Err(e) => {
                    let err = SqsError::from_sdk("GetQueueAttributes", e);
                    self.events.attributes_failed(&err, attempt);
                    if err.sender_fault || attempt >= 3 {
                        return Err(err);
                    }
                    attempt += 1;
                    actix_rt::time::sleep(backoff.next_delay()).await;
                }
            }
        }
    }

    /// The URL of the queue an ARN names (the dead-letter queue), with GetQueueUrl.
    pub async fn url_of(&self, arn: &QueueArn) -> Result<String, SqsError> {
        let started = Instant::now();
        let result = self
            .client
            .get_queue_url()
            .queue_name(&arn.name)
            .queue_owner_aws_account_id(&arn.account)
            .send()
            .await;
        self.events.sqs_call("GetQueueUrl", started.elapsed());
        match result {
            Ok(out) => out
                .queue_url
                .filter(|u| !u.is_empty())
                .ok_or_else(|| SqsError::local("GetQueueUrl", "the answer had no queue URL")),
            Err(e) => Err(SqsError::from_sdk("GetQueueUrl", e)),
        }
    }

    /// Long-poll for up to `max` messages (1–10), each made invisible for `visibility` seconds
    /// (`None`: the queue's own timeout). Messages without an id or receipt handle (which SQS never
    /// sends) are skipped with a warning rather than crashing anything.
    /// One ReceiveMessage of at most `max` messages: a long poll, or with `short` one that
    /// answers at once.
    pub async fn receive(
        &self,
        max: usize,
        visibility: Option<u32>,
        short: bool,
    ) -> Result<Received, SqsError> {
        let max = max.clamp(1, MAX_BATCH_SIZE) as i32;
        let mut system = vec![
            MessageSystemAttributeName::ApproximateReceiveCount,
            MessageSystemAttributeName::ApproximateFirstReceiveTimestamp,
            MessageSystemAttributeName::SentTimestamp,
            MessageSystemAttributeName::SenderId,
            MessageSystemAttributeName::AwsTraceHeader,
        ];
        if self.fifo {
            system.push(MessageSystemAttributeName::MessageGroupId);
            system.push(MessageSystemAttributeName::SequenceNumber);
            system.push(MessageSystemAttributeName::MessageDeduplicationId);
        }
        // Older emulators only know the deprecated AttributeNames field: name them there too.
        let legacy = system
            .iter()
            .map(|a| QueueAttributeName::from(a.as_str()))
            .collect();
        let sent_at = Instant::now();
        #[allow(deprecated)]
        let result = self
            .client
            .receive_message()
            .queue_url(self.url.as_ref())
            .max_number_of_messages(max)
            .wait_time_seconds(if short { 0 } else { MAX_WAIT_TIME_SECS })
            .set_visibility_timeout(visibility.map(|v| v as i32))
            .set_message_system_attribute_names(Some(system))
            .set_attribute_names(Some(legacy))
            .message_attribute_names("All")
            .send()
            .await;
        self.events.sqs_call("ReceiveMessage", sent_at.elapsed());
        let out = result.map_err(|e| SqsError::from_sdk("ReceiveMessage", e))?;
        if self.confirm() {
            slog::info!(self.events.log(), "queue resolved"; "queue_url" => crate::http::redact(&self.url),
                "confirmed_by" => "ReceiveMessage");
        }
        let mut messages = Vec::with_capacity(out.messages().len());
        for message in out.messages.unwrap_or_default() {
            let (Some(message_id), Some(receipt)) = (message.message_id, message.receipt_handle)
            else {
                warn!(
                    self.events.log(),
                    "skipping a message without id or receipt handle"
                );
                continue;
            };
            let mut system = message.attributes.unwrap_or_default();
            let mut take = |name: MessageSystemAttributeName| system.remove(&name);
            let mut attributes: Vec<Attribute> = message
                .message_attributes
                .unwrap_or_default()
                .into_iter()
                .map(|(name, v)| {
                    let value = if v.data_type.starts_with("Binary") {
                        AttributeValue::Binary(
                            v.binary_value
                                .map(|b| b.into_inner())
                                .unwrap_or_default()
                                .into(),
                        )
                    } else {
                        AttributeValue::Text(v.string_value.unwrap_or_default())
                    };
                    Attribute {
                        name,
                        data_type: v.data_type,
                        value,
                    }
                })
                .collect();
            attributes.sort_unstable_by(|a, b| a.name.cmp(&b.name));
            let delivery = Delivery {
                message_id: message_id.into(),
                body: message.body.unwrap_or_default().into_bytes().into(),
                receive_count: take(MessageSystemAttributeName::ApproximateReceiveCount),
                first_receive_time: take(
                    MessageSystemAttributeName::ApproximateFirstReceiveTimestamp,
                ),
                sent_time: take(MessageSystemAttributeName::SentTimestamp),
                sender_id: take(MessageSystemAttributeName::SenderId),
                group_id: take(MessageSystemAttributeName::MessageGroupId).map(Into::into),
                sequence_number: take(MessageSystemAttributeName::SequenceNumber),
                trace_header: take(MessageSystemAttributeName::AwsTraceHeader),
                dedup_id: take(MessageSystemAttributeName::MessageDeduplicationId),
                md5_of_body: message.md5_of_body,
                md5_of_attributes: message.md5_of_message_attributes,
                attributes,
            };
            messages.push(Incoming {
                receipt: receipt.into(),
                delivery: Arc::new(delivery),
            });
        }
        Ok(Received { sent_at, messages })
    }

    /// Sends a message, body and attributes unchanged, to another queue (the dead-letter queue).
    /// Retried like the settling actions; a sender fault is not retried.
    pub async fn send_copy(&self, to_url: &str, delivery: &Delivery) -> Result<(), SqsError> {
        let body = String::from_utf8_lossy(&delivery.body).into_owned();
        let attributes: HashMap<String, MessageAttributeValue> = delivery
            .attributes
            .iter()
            .filter_map(|a| {
                let builder = MessageAttributeValue::builder().data_type(&a.data_type);
                let builder = match &a.value {
                    AttributeValue::Text(t) => builder.string_value(t),
                    AttributeValue::Binary(b) => builder.binary_value(Blob::new(b.to_vec())),
                };
                builder.build().ok().map(|v| (a.name.clone(), v))
            })
            .collect();
        let mut backoff = Backoff::new(Duration::from_millis(100), Duration::from_secs(2));
        let mut attempt = 1;
        loop {
            let mut request = self
                .client
                .send_message()
                .queue_url(to_url)
                .message_body(body.clone())
                .set_message_attributes((!attributes.is_empty()).then(|| attributes.clone()));
            if let Some(trace) = &delivery.trace_header {
                if let Ok(value) = MessageSystemAttributeValue::builder()
                    .data_type("String")
                    .string_value(trace)
                    .build()
                {
                    request = request.message_system_attributes(
                        MessageSystemAttributeNameForSends::AwsTraceHeader,
                        value,
                    );
                }
            }
            if is_fifo_url(to_url) {
                request = request
                    .message_group_id(delivery.group_id.as_deref().unwrap_or("carrier"))
                    .message_deduplication_id(delivery.message_id.as_ref());
            }
            let started = Instant::now();
            let result = request.send().await;
            self.events.sqs_call("SendMessage", started.elapsed());
            match result {
                Ok(_) => return Ok(()),
                Err(e) => {
                    let err = SqsError::from_sdk("SendMessage", e);
                    if err.sender_fault || attempt >= ACTION_ATTEMPTS {
                        return Err(err);
                    }
                    self.events.settle_call_failed(&err, attempt, 1);
                    attempt += 1;
                    actix_rt::time::sleep(backoff.next_delay()).await;
                }
            }
        }
    }

    /// Delete messages (any number; sent in batches of 10). Every entry gets its result.
    pub async fn delete(&self, entries: Vec<Entry>) -> Vec<(u64, EntryResult)> {
        self.settle(Action::Delete, entries, None).await
    }

    /// Heartbeat extensions: visibility changes whose refusals the caller reports.
    pub async fn extend(&self, entries: Vec<Entry>) -> Vec<(u64, EntryResult)> {
        self.settle(Action::Extend, entries, None).await
    }

    /// Runs one kind of action over entries: batches of 10, retrying failed calls and failed
    /// entries that were not the sender's fault, up to [`ACTION_ATTEMPTS`] times. With `early`,
    /// the results already known are handed to it before each retry wait, so that the entries
    /// which succeeded need not wait for those being retried; the rest are returned.
    pub(crate) async fn settle(
        &self,
        action: Action,
        mut pending: Vec<Entry>,
        early: Option<&EarlyResults<'_>>,
    ) -> Vec<(u64, EntryResult)> {
        let mut results = Vec::with_capacity(pending.len());
        let mut backoff = Backoff::new(Duration::from_millis(100), Duration::from_secs(2));
        for attempt in 1..=ACTION_ATTEMPTS {
            let mut retry = Vec::new();
            for chunk in pending.chunks(MAX_BATCH_SIZE) {
                let outcome = if self.batch_unsupported.load(Ordering::Relaxed) {
                    Ok(self.settle_singly(action, chunk).await)
                } else {
                    match self.settle_batch(action, chunk).await {
                        Err(e) if e.is_unsupported_operation() => {
                            self.events.no_batch_api(e.operation);
                            self.batch_unsupported.store(true, Ordering::Relaxed);
                            Ok(self.settle_singly(action, chunk).await)
                        }
                        other => other,
                    }
                };
                match outcome {
                    Ok(per_entry) => {
                        for (entry, result) in chunk.iter().zip(per_entry) {
                            match result {
                                Some(result) => results.push((entry.key, result)),
                                None => retry.push(entry.clone()),
                            }
                        }
                    }
                    Err(e) if e.sender_fault => {
                        // The whole request was refused (e.g. the queue is gone): retrying the
                        // same request cannot help.
                        self.events.settle_call_failed(&e, attempt, chunk.len());
                        let code = e.code.clone().unwrap_or_default();
                        results.extend(
                            chunk
                                .iter()
                                .map(|en| (en.key, EntryResult::Refused(code.clone()))),
                        );
                    }
                    Err(e) => {
                        self.events.settle_call_failed(&e, attempt, chunk.len());
                        retry.extend(chunk.iter().cloned());
                    }
                }
            }
            if retry.is_empty() {
                return results;
            }
            pending = retry;
            if attempt < ACTION_ATTEMPTS {
                if let Some(early) = early.filter(|_| !results.is_empty()) {
                    early(std::mem::take(&mut results));
                }
                actix_rt::time::sleep(backoff.next_delay()).await;
            }
        }
        for entry in pending {
            self.events.gave_up(action.name(), &entry.message_id);
            results.push((entry.key, EntryResult::GaveUp));
        }
        results
    }

    /// One batch call. Per entry of `chunk`: its result, or `None` to retry it (SQS's fault, or
    /// an entry the answer did not mention).
    async fn settle_batch(
        &self,
        action: Action,
        chunk: &[Entry],
    ) -> Result<Vec<Option<EntryResult>>, SqsError> {
        let operation = action.batch_operation();
        // Entry ids are our indexes: unique within the call whatever the message ids are.
        let started = Instant::now();
        let (successful, failed) = match action {
            Action::Delete => {
                let entries = chunk
                    .iter()
                    .enumerate()
                    .map(|(i, e)| {
                        DeleteMessageBatchRequestEntry::builder()
                            .id(i.to_string())
                            .receipt_handle(e.receipt.as_ref())
                            .build()
                            .expect("id and receipt handle are set")
                    })
                    .collect();
                let result = self
                    .client
                    .delete_message_batch()
                    .queue_url(self.url.as_ref())
                    .set_entries(Some(entries))
                    .send()
                    .await;
                self.events.sqs_call(operation, started.elapsed());
                let out = result.map_err(|e| SqsError::from_sdk(operation, e))?;
                let ok: Vec<String> = out.successful.into_iter().map(|s| s.id).collect();
                (ok, out.failed)
            }
            Action::ChangeVisibility | Action::Extend => {
                let entries = chunk
                    .iter()
                    .enumerate()
                    .map(|(i, e)| {
                        ChangeMessageVisibilityBatchRequestEntry::builder()
                            .id(i.to_string())
                            .receipt_handle(e.receipt.as_ref())
                            .visibility_timeout(e.secs as i32)
                            .build()
                            .expect("id and receipt handle are set")
                    })
                    .collect();
                let result = self
                    .client
                    .change_message_visibility_batch()
                    .queue_url(self.url.as_ref())
                    .set_entries(Some(entries))
                    .send()
                    .await;
                self.events.sqs_call(operation, started.elapsed());
                let out = result.map_err(|e| SqsError::from_sdk(operation, e))?;
                let ok: Vec<String> = out.successful.into_iter().map(|s| s.id).collect();
                (ok, out.failed)
            }
        };
        let index = |id: &str| id.parse::<usize>().ok().filter(|i| *i < chunk.len());
        let mut results: Vec<Option<EntryResult>> = vec![None; chunk.len()];
        for id in &successful {
            match index(id) {
                Some(i) => results[i] = Some(EntryResult::Done),
                None => self.events.unknown_entry(operation, id),
            }
        }
        for entry in failed {
            let Some(i) = index(&entry.id) else {
                self.events.unknown_entry(operation, &entry.id);
                continue;
            };
            let message_id = &chunk[i].message_id;
            if entry.sender_fault {
                if action.reports_rejections() {
                    self.events.entry_rejected(
                        operation,
                        action.name(),
                        message_id,
                        &entry.code,
                        entry.message.as_deref().unwrap_or(""),
                    );
                }
                results[i] = Some(EntryResult::Refused(entry.code));
            } else {
                self.events
                    .entry_failed(operation, action.name(), message_id, &entry.code);
            }
        }
        Ok(results)
    }

    /// The fallback: one call per entry. Per entry: its result, or `None` to retry it.
    async fn settle_singly(&self, action: Action, chunk: &[Entry]) -> Vec<Option<EntryResult>> {
        let mut results = Vec::with_capacity(chunk.len());
        let operation = action.single_operation();
        for e in chunk {
            let started = Instant::now();
            let result = match action {
                Action::Delete => self
                    .client
                    .delete_message()
                    .queue_url(self.url.as_ref())
                    .receipt_handle(e.receipt.as_ref())
                    .send()
                    .await
                    .map(|_| ())
                    .map_err(|err| SqsError::from_sdk(operation, err)),
                Action::ChangeVisibility | Action::Extend => self
                    .client
                    .change_message_visibility()
                    .queue_url(self.url.as_ref())
                    .receipt_handle(e.receipt.as_ref())
                    .visibility_timeout(e.secs as i32)
                    .send()
                    .await
                    .map(|_| ())
                    .map_err(|err| SqsError::from_sdk(operation, err)),
            };
            self.events.sqs_call(operation, started.elapsed());
            results.push(match result {
                Ok(()) => Some(EntryResult::Done),
                Err(err) if err.sender_fault => {
                    let code = err.code.clone().unwrap_or_default();
                    if action.reports_rejections() {
                        self.events.entry_rejected(
                            operation,
                            action.name(),
                            &e.message_id,
                            &code,
                            &err.detail,
                        );
                    }
                    Some(EntryResult::Refused(code))
                }
                Err(err) => {
                    self.events.settle_call_failed(&err, 1, 1);
                    None
                }
            });
        }
        results
    }
}

/// What a batch settles: deletes, or visibility changes.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Action {
    Delete,
    ChangeVisibility,
    /// A heartbeat's visibility change: the same call, but a refused entry is the caller's to
    /// report (one error and one log line, not two).
    Extend,
}

impl Action {
    /// Whether a refused entry is logged and counted here (an extension's refusal is reported by
    /// the receiver, which knows what it means for the delivery).
    fn reports_rejections(self) -> bool {
        !matches!(self, Action::Extend)
    }

    fn name(self) -> &'static str {
        match self {
            Action::Delete => "delete",
            Action::ChangeVisibility => "change_visibility",
            Action::Extend => "extend",
        }
    }

    fn batch_operation(self) -> &'static str {
        match self {
            Action::Delete => "DeleteMessageBatch",
            Action::ChangeVisibility | Action::Extend => "ChangeMessageVisibilityBatch",
        }
    }

    fn single_operation(self) -> &'static str {
        match self {
            Action::Delete => "DeleteMessage",
            Action::ChangeVisibility | Action::Extend => "ChangeMessageVisibility",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn region_comes_from_aws_hosts_only() {
        assert_eq!(
            region_from_host("sqs.us-west-2.amazonaws.com").as_deref(),
            Some("us-west-2")
        );
        assert_eq!(
            region_from_host("eu-west-1.queue.amazonaws.com").as_deref(),
            Some("eu-west-1")
        );
        assert_eq!(region_from_host("localhost"), None);
        assert_eq!(region_from_host("sqs.internal.example"), None);
    }

    #[test]
    fn endpoint_is_derived_from_queue_url() {
        let a = QueueAddress {
            url: Some("http://127.0.0.1:9324/000000000000/jobs".into()),
            ..Default::default()
        };
        assert_eq!(
            a.effective_endpoint().as_deref(),
            Some("http://127.0.0.1:9324")
        );
        assert_eq!(a.display_name(), "jobs");
    }

    #[test]
    fn fifo_is_told_by_the_url_path_not_its_tail() {
        for (url, fifo) in [
            ("http://127.0.0.1:9324/000000000000/jobs.fifo", true),
            ("http://127.0.0.1:9324/000000000000/jobs.fifo?x=y", true),
            ("http://127.0.0.1:9324/000000000000/jobs.fifo/", true),
            ("http://127.0.0.1:9324/000000000000/jobs.fifo#f", true),
            ("http://127.0.0.1:9324/000000000000/jobs", false),
            ("http://127.0.0.1:9324/000000000000/jobs?name=x.fifo", false),
            ("jobs.fifo", true),
        ] {
            assert_eq!(is_fifo_url(url), fifo, "{url}");
        }
    }

    #[test]
    fn queue_arns_parse_and_odd_ones_do_not() {
        assert_eq!(
            QueueArn::parse("arn:aws:sqs:us-east-1:123456789012:jobs-dlq"),
            Some(QueueArn {
                region: "us-east-1".into(),
                account: "123456789012".into(),
                name: "jobs-dlq".into()
            })
        );
        for bad in [
            "",
            "jobs-dlq",
            "arn:aws:sns:us-east-1:1:x",
            "arn:aws:sqs:us-east-1:1:",
            "arn:aws:sqs::1:x:y",
        ] {
            assert_eq!(QueueArn::parse(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn redrive_policy_names_its_target() {
        let p = r#"{"deadLetterTargetArn":"arn:aws:sqs:us-east-1:123456789012:dlq","maxReceiveCount":"3"}"#;
        assert_eq!(
            dead_letter_target(p).as_deref(),
            Some("arn:aws:sqs:us-east-1:123456789012:dlq")
        );
        assert_eq!(dead_letter_target("not json"), None);
        assert_eq!(dead_letter_target("{}"), None);
    }

    #[test]
    fn backoff_grows_and_caps() {
        let mut b = Backoff::new(Duration::from_millis(100), Duration::from_secs(1));
        let delays: Vec<_> = (0..8).map(|_| b.next_delay()).collect();
        assert!(delays[0] <= Duration::from_millis(100) && delays[0] >= Duration::from_millis(50));
        assert!(delays[3] >= Duration::from_millis(400));
        assert!(delays.iter().all(|d| *d <= Duration::from_secs(1)));
        b.reset();
        assert_eq!(b.failures(), 0);
    }
}
