//! A thin wrapper over aws-sdk-sqs: building the client, resolving the queue, receiving, and the
//! two settling actions (delete, change visibility) with batching, per-entry partial failures,
//! retries with capped backoff, and a fallback to single calls for emulators without batch APIs.
//!
//! It knows SQS and nothing of webhooks or actors; every call is a plain future the actors spawn.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

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
use aws_sdk_sqs::config::Credentials;
use aws_sdk_sqs::error::{DisplayErrorContext, ProvideErrorMetadata};
use aws_sdk_sqs::types::{
    ChangeMessageVisibilityBatchRequestEntry, DeleteMessageBatchRequestEntry,
    MessageSystemAttributeName,
};
use slog::{debug, warn, Logger};

use crate::messages::Delivery;
use crate::stats::Stats;

/// SQS accepts at most 10 messages per ReceiveMessage and 10 entries per batch call.
pub const MAX_BATCH_SIZE: usize = 10;
/// SQS's longest visibility timeout, and the 12-hour bound on a message's total invisibility.
pub const MAX_VISIBILITY_TIMEOUT_SECS: u64 = 43_200;
/// SQS's longest long-poll wait.
pub const MAX_WAIT_TIME_SECS: i32 = 20;
/// The message attribute that carries the webhook Content-Type (Go carrier parity).
pub const CONTENT_TYPE_ATTRIBUTE: &str = "Body.ContentType";
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
    fn effective_endpoint(&self) -> Option<String> {
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

/// An error from SQS, already rendered for a log line.
#[derive(Debug, thiserror::Error)]
#[error("{operation} failed: {detail}")]
pub struct SqsError {
    pub operation: &'static str,
    pub code: Option<String>,
    pub detail: String,
}

impl SqsError {
    fn from_sdk<E, R>(operation: &'static str, err: aws_sdk_sqs::error::SdkError<E, R>) -> Self
    where
        E: ProvideErrorMetadata + std::error::Error + 'static,
        R: std::fmt::Debug,
    {
        SqsError {
            operation,
            code: err.code().map(str::to_string),
            detail: DisplayErrorContext(&err).to_string(),
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

/// A message's handle for settling it: what delete and visibility changes need.
#[derive(Debug, Clone)]
pub struct Settlement {
    pub message_id: String,
    pub receipt_handle: String,
    /// When we received it: SQS's 12-hour visibility limit counts from here.
    pub received_at: std::time::Instant,
}

impl Settlement {
    /// The longest visibility timeout SQS still accepts for this message now (its 12 hours run
    /// from receipt), less a few seconds for clock and transit.
    pub fn max_visibility_secs(&self) -> u64 {
        MAX_VISIBILITY_TIMEOUT_SECS
            .saturating_sub(self.received_at.elapsed().as_secs())
            .saturating_sub(5)
    }
}

/// One resolved queue and the shared client. Cheap to clone; every receiver holds one.
#[derive(Clone)]
pub struct SqsQueue {
    client: aws_sdk_sqs::Client,
    url: Arc<str>,
    /// Set once the endpoint has refused a batch call: from then on, single calls.
    batch_unsupported: Arc<AtomicBool>,
    stats: Arc<Stats>,
    log: Logger,
}

impl SqsQueue {
    /// Resolve the queue URL, retrying with capped backoff until it works or `give_up` fires.
    /// A missing queue or unreachable endpoint is logged (at a bounded rate), never a panic.
    pub async fn resolve(
        client: aws_sdk_sqs::Client,
        address: &QueueAddress,
        stats: Arc<Stats>,
        log: Logger,
    ) -> SqsQueue {
        let url = match (&address.url, &address.name) {
            (Some(url), _) => url.clone(),
            (None, Some(name)) => {
                let mut backoff = Backoff::new(Duration::from_millis(250), Duration::from_secs(30));
                loop {
                    match client.get_queue_url().queue_name(name).send().await {
                        Ok(out) if out.queue_url().is_some() => {
                            break out.queue_url().unwrap_or_default().to_string();
                        }
                        result => {
                            let err = match result {
                                Err(e) => SqsError::from_sdk("GetQueueUrl", e),
                                Ok(_) => SqsError {
                                    operation: "GetQueueUrl",
                                    code: None,
                                    detail: "the answer had no queue URL".into(),
                                },
                            };
                            stats.sqs_error();
                            let delay = backoff.next_delay();
                            warn!(log, "failed to resolve queue URL, retrying";
                                "queue_name" => name, "error" => %err,
                                "retry_in_ms" => delay.as_millis() as u64);
                            actix_rt::time::sleep(delay).await;
                        }
                    }
                }
            }
            (None, None) => unreachable!("settings validation requires a queue name or URL"),
        };
        SqsQueue {
            client,
            url: url.into(),
            batch_unsupported: Arc::new(AtomicBool::new(false)),
            stats,
            log,
        }
    }

    pub fn url(&self) -> &str {
        &self.url
    }

    /// Long-poll for up to `max` messages (1–10). Messages without an id or receipt handle (which
    /// SQS never sends) are skipped with a warning rather than crashing anything.
    pub async fn receive(&self, max: usize) -> Result<Vec<(Settlement, Delivery)>, SqsError> {
        let max = max.clamp(1, MAX_BATCH_SIZE) as i32;
        #[allow(deprecated)] // older emulators only know the deprecated AttributeNames field
        let out = self
            .client
            .receive_message()
            .queue_url(self.url.as_ref())
            .max_number_of_messages(max)
            .wait_time_seconds(MAX_WAIT_TIME_SECS)
            .message_system_attribute_names(MessageSystemAttributeName::All)
            .attribute_names(aws_sdk_sqs::types::QueueAttributeName::All)
            .message_attribute_names("All")
            .send()
            .await
            .map_err(|e| SqsError::from_sdk("ReceiveMessage", e))?;
        let received_at = std::time::Instant::now();
        let mut received = Vec::with_capacity(out.messages().len());
        for message in out.messages.unwrap_or_default() {
            let (Some(message_id), Some(receipt_handle)) =
                (message.message_id, message.receipt_handle)
            else {
                warn!(self.log, "skipping a message without id or receipt handle");
                continue;
            };
            let mut attrs = message.attributes.unwrap_or_default();
            let mut take = |name: MessageSystemAttributeName| attrs.remove(&name);
            let delivery = Delivery {
                message_id: message_id.clone(),
                body: message.body.unwrap_or_default(),
                content_type: message
                    .message_attributes
                    .as_ref()
                    .and_then(|a| a.get(CONTENT_TYPE_ATTRIBUTE))
                    .and_then(|v| v.string_value().map(str::to_string)),
                receive_count: take(MessageSystemAttributeName::ApproximateReceiveCount),
                first_receive_time: take(
                    MessageSystemAttributeName::ApproximateFirstReceiveTimestamp,
                ),
                sent_time: take(MessageSystemAttributeName::SentTimestamp),
            };
            received.push((
                Settlement {
                    message_id,
                    receipt_handle,
                    received_at,
                },
                delivery,
            ));
        }
        Ok(received)
    }

    /// Delete acknowledged messages (any number; sent in batches of 10).
    pub async fn delete(&self, entries: Vec<Settlement>) {
        let entries = entries.into_iter().map(|s| (s, 0)).collect();
        self.settle(Action::Delete, entries).await
    }

    /// Change visibility timeouts, each entry with its own timeout in seconds (clamped to what SQS
    /// still accepts for that message).
    pub async fn change_visibility(&self, entries: Vec<(Settlement, u64)>) {
        let entries = entries
            .into_iter()
            .map(|(s, secs)| {
                let secs = secs.min(s.max_visibility_secs()) as i32;
                (s, secs)
            })
            .collect();
        self.settle(Action::ChangeVisibility, entries).await
    }

    /// Runs one kind of action over entries: batches of 10, retrying failed calls and failed
    /// entries that were not the sender's fault, up to [`ACTION_ATTEMPTS`] times.
    async fn settle(&self, action: Action, mut pending: Vec<(Settlement, i32)>) {
        let mut backoff = Backoff::new(Duration::from_millis(100), Duration::from_secs(2));
        for attempt in 1..=ACTION_ATTEMPTS {
            let mut retry = Vec::new();
            for chunk in pending.chunks(MAX_BATCH_SIZE) {
                let result = if self.batch_unsupported.load(Ordering::Relaxed) {
                    self.settle_singly(action, chunk).await
                } else {
                    match self.settle_batch(action, chunk).await {
                        Err(e) if e.is_unsupported_operation() => {
                            warn!(self.log, "endpoint has no batch API; using single calls";
                                "operation" => e.operation);
                            self.batch_unsupported.store(true, Ordering::Relaxed);
                            self.settle_singly(action, chunk).await
                        }
                        other => other,
                    }
                };
                match result {
                    Ok(failed) => retry.extend(failed.into_iter().map(|i| chunk[i].clone())),
                    Err(e) => {
                        self.stats.sqs_error();
                        warn!(self.log, "SQS call failed"; "error" => %e, "attempt" => attempt,
                            "entries" => chunk.len());
                        retry.extend(chunk.iter().cloned());
                    }
                }
            }
            if retry.is_empty() {
                return;
            }
            pending = retry;
            if attempt < ACTION_ATTEMPTS {
                actix_rt::time::sleep(backoff.next_delay()).await;
            }
        }
        for (s, _) in &pending {
            slog::error!(self.log, "giving up on SQS action; the message reappears after its visibility timeout";
                "action" => action.name(), "message_id" => &s.message_id);
        }
    }

    /// One batch call. Returns the indexes (into `chunk`) of entries worth retrying; entries that
    /// failed through the sender's fault (e.g. an expired receipt handle) are logged and dropped.
    async fn settle_batch(
        &self,
        action: Action,
        chunk: &[(Settlement, i32)],
    ) -> Result<Vec<usize>, SqsError> {
        // Entry ids are our indexes: unique within the call whatever the message ids are.
        let failed = match action {
            Action::Delete => {
                let entries = chunk
                    .iter()
                    .enumerate()
                    .map(|(i, (s, _))| {
                        DeleteMessageBatchRequestEntry::builder()
                            .id(i.to_string())
                            .receipt_handle(&s.receipt_handle)
                            .build()
                            .expect("id and receipt handle are set")
                    })
                    .collect();
                let out = self
                    .client
                    .delete_message_batch()
                    .queue_url(self.url.as_ref())
                    .set_entries(Some(entries))
                    .send()
                    .await
                    .map_err(|e| SqsError::from_sdk("DeleteMessageBatch", e))?;
                out.failed
            }
            Action::ChangeVisibility => {
                let entries = chunk
                    .iter()
                    .enumerate()
                    .map(|(i, (s, secs))| {
                        ChangeMessageVisibilityBatchRequestEntry::builder()
                            .id(i.to_string())
                            .receipt_handle(&s.receipt_handle)
                            .visibility_timeout(*secs)
                            .build()
                            .expect("id and receipt handle are set")
                    })
                    .collect();
                let out = self
                    .client
                    .change_message_visibility_batch()
                    .queue_url(self.url.as_ref())
                    .set_entries(Some(entries))
                    .send()
                    .await
                    .map_err(|e| SqsError::from_sdk("ChangeMessageVisibilityBatch", e))?;
                out.failed
            }
        };
        let mut retry = Vec::new();
        for entry in failed {
            let Some(index) = entry.id.parse::<usize>().ok().filter(|i| *i < chunk.len()) else {
                continue;
            };
            let message_id = &chunk[index].0.message_id;
            self.stats.sqs_error();
            if entry.sender_fault {
                warn!(self.log, "SQS rejected an entry; the message reappears after its visibility timeout";
                    "action" => action.name(), "message_id" => message_id, "code" => &entry.code,
                    "detail" => entry.message.as_deref().unwrap_or(""));
            } else {
                debug!(self.log, "SQS failed an entry, retrying";
                    "action" => action.name(), "message_id" => message_id, "code" => &entry.code);
                retry.push(index);
            }
        }
        Ok(retry)
    }

    /// The fallback: one call per entry. Returns the indexes worth retrying.
    async fn settle_singly(
        &self,
        action: Action,
        chunk: &[(Settlement, i32)],
    ) -> Result<Vec<usize>, SqsError> {
        let mut retry = Vec::new();
        for (i, (s, secs)) in chunk.iter().enumerate() {
            let result = match action {
                Action::Delete => self
                    .client
                    .delete_message()
                    .queue_url(self.url.as_ref())
                    .receipt_handle(&s.receipt_handle)
                    .send()
                    .await
                    .map(|_| ())
                    .map_err(|e| SqsError::from_sdk("DeleteMessage", e)),
                Action::ChangeVisibility => self
                    .client
                    .change_message_visibility()
                    .queue_url(self.url.as_ref())
                    .receipt_handle(&s.receipt_handle)
                    .visibility_timeout(*secs)
                    .send()
                    .await
                    .map(|_| ())
                    .map_err(|e| SqsError::from_sdk("ChangeMessageVisibility", e)),
            };
            if let Err(e) = result {
                self.stats.sqs_error();
                warn!(self.log, "SQS call failed"; "error" => %e, "message_id" => &s.message_id);
                retry.push(i);
            }
        }
        Ok(retry)
    }
}

#[derive(Debug, Clone, Copy)]
enum Action {
    Delete,
    ChangeVisibility,
}

impl Action {
    fn name(self) -> &'static str {
        match self {
            Action::Delete => "delete",
            Action::ChangeVisibility => "change_visibility",
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
    fn visibility_is_capped_by_the_time_left_since_receipt() {
        let s = Settlement {
            message_id: "m".into(),
            receipt_handle: "r".into(),
            received_at: std::time::Instant::now() - Duration::from_secs(60),
        };
        assert_eq!(s.max_visibility_secs(), 43_200 - 60 - 5);
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
