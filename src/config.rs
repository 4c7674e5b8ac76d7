//! `CARRIER_*` environment variables → one validated [`Config`].
//!
//! Each variable is declared once, in the [`variables!`] table below: its name, its default (the
//! Go carrier's, unless marked carrier-only), how it is parsed, and what it means. From that one
//! table come the name constants, the list of known variables, the envconfig struct that reads
//! the raw text (an empty value counts as unset), and the typed values; a unit test checks the
//! README documents every one. All variables are parsed before any error is returned, so every
//! problem is reported at once, each naming the variable, its value (redacted where it could hold
//! a secret) and what is accepted. This module reads nothing but the environment.

use std::net::SocketAddr;
use std::time::Duration;

use carrier_actors::http::redact;
use carrier_actors::present::{Format, Unwrap};
use carrier_actors::{
    Endpoint, HeaderStyle, HealthCheckSettings, NackPolicy, OfflineAction, QueueAddress, Settings,
    SigningKeys, SuccessCodes, WebhookSettings,
};
use envconfig::Envconfig;

/// One variable of the table, for the README check and anyone who wants the list.
#[derive(Debug, Clone, Copy)]
pub struct Variable {
    pub name: &'static str,
    /// The default as written in the README's table, `None` for variables without one.
    pub default: Option<&'static str>,
    pub doc: &'static str,
}

/// Declares every variable once: `CONST = "NAME" => field: Type = default | optional, parser;`
macro_rules! variables {
    ($(
        $(#[doc = $doc:literal])+
        $konst:ident = $name:literal => $field:ident: $ty:ty = $kind:tt, $parse:expr;
    )+) => {
        $( pub const $konst: &str = $name; )+

        /// Every variable carrier reads.
        pub const VARIABLES: &[Variable] = &[$(Variable {
            name: $name,
            default: variables!(@default $kind),
            doc: concat!($($doc),+),
        }),+];

        /// The raw variables, exactly as the environment has them.
        #[derive(Envconfig, Debug, Default)]
        struct Raw {
            $( #[envconfig(from = $name)] $field: Option<String>, )+
        }

        /// Every variable, parsed (defaults where unset, or where the value was bad: the problem
        /// is then recorded and the values are never used).
        struct Values {
            $( $field: $ty, )+
        }

        impl Values {
            fn parse(raw: Raw, p: &mut Problems) -> Values {
                Values { $( $field: variables!(@parse p, $name, raw.$field, $kind, $parse), )+ }
            }
        }
    };
    (@default optional) => { None };
    (@default $default:literal) => { Some($default) };
    (@parse $p:ident, $name:literal, $raw:expr, optional, $parse:expr) => {
        $p.optional($name, $raw, $parse)
    };
    (@parse $p:ident, $name:literal, $raw:expr, $default:literal, $parse:expr) => {
        $p.value($name, $raw, $default, $parse)
    };
}

variables! {
    /// SQS endpoint URL, e.g. `https://sqs.us-west-2.amazonaws.com`; unset: the region's.
    SQS_ENDPOINT = "CARRIER_SQS_ENDPOINT" => sqs_endpoint: Option<String> = optional, url;
    /// Queue name, resolved with GetQueueUrl (required unless CARRIER_SQS_QUEUE_URL).
    SQS_QUEUE_NAME = "CARRIER_SQS_QUEUE_NAME" => sqs_queue_name: Option<String> = optional,
        queue_name;
    /// Carrier only: the queue's full URL, instead of name (+ endpoint).
    SQS_QUEUE_URL = "CARRIER_SQS_QUEUE_URL" => sqs_queue_url: Option<String> = optional, url;
    /// Most messages per ReceiveMessage, 1–10 (Go parity: 0 means 1).
    SQS_BATCH_SIZE = "CARRIER_SQS_BATCH_SIZE" => sqs_batch_size: usize = "1",
        |v| count(v, 0, 10).map(|n| n.max(1));
    /// Concurrent receivers.
    SQS_RECEIVERS = "CARRIER_SQS_RECEIVERS" => sqs_receivers: usize = "1", |v| count(v, 1, 1024);
    /// Concurrent deliveries per receiver (Go parity: 0 means one per message of a batch).
    SQS_RECEIVER_WORKERS = "CARRIER_SQS_RECEIVER_WORKERS" => sqs_receiver_workers: usize = "1",
        |v| count(v, 0, 10_000);
    /// Carrier only: event-loop threads the receivers are spread over (1–64; 1 adds no thread).
    THREADS = "CARRIER_THREADS" => threads: usize = "1", |v| count(v, 1, 64);
    /// Carrier only: visibility timeout asked for on receive and kept up by the heartbeat
    /// (whole seconds, 1s–12h); unset: the queue's own.
    SQS_VISIBILITY_TIMEOUT = "CARRIER_SQS_VISIBILITY_TIMEOUT"
        => sqs_visibility_timeout: Option<Duration> = optional, visibility_timeout;
    /// URL messages are POSTed to; `user:pass@` in it sends HTTP Basic auth.
    WEBHOOK_ENDPOINT = "CARRIER_WEBHOOK_ENDPOINT" => webhook_endpoint: Endpoint =
        "http://localhost:9000", endpoint;
    /// Accept any TLS certificate (webhook and health check).
    WEBHOOK_TLS_INSECURE_SKIP_VERIFY = "CARRIER_WEBHOOK_TLS_INSECURE_SKIP_VERIFY"
        => webhook_tls_insecure_skip_verify: bool = "false", boolean;
    /// Content-Type when the message has no `Body.ContentType` attribute.
    WEBHOOK_DEFAULT_CONTENT_TYPE = "CARRIER_WEBHOOK_DEFAULT_CONTENT_TYPE"
        => webhook_default_content_type: String = "application/json", header_value;
    /// Limit for one webhook delivery, redirects included.
    WEBHOOK_REQUEST_TIMEOUT = "CARRIER_WEBHOOK_REQUEST_TIMEOUT"
        => webhook_request_timeout: Duration = "60s", positive_duration;
    /// Carrier only: statuses that Ack, e.g. `200` (Go's rule) or `200,202-204`.
    WEBHOOK_SUCCESS_CODES = "CARRIER_WEBHOOK_SUCCESS_CODES"
        => webhook_success_codes: SuccessCodes = "200-299", |v| SuccessCodes::parse(&v);
    /// Carrier only: `carrier` (X-Carrier-* headers) or `sqsd` (Elastic Beanstalk's X-Aws-Sqsd-*).
    WEBHOOK_HEADER_STYLE = "CARRIER_WEBHOOK_HEADER_STYLE"
        => webhook_header_style: HeaderStyle = "carrier", header_style;
    /// Carrier only: `message` (one message per POST) or `lambda` (batches as Lambda's SQS
    /// event, answered with `batchItemFailures`).
    WEBHOOK_FORMAT = "CARRIER_WEBHOOK_FORMAT" => webhook_format: FormatName = "message", format;
    /// Carrier only, `lambda` format: most records per POST (1–10000).
    WEBHOOK_BATCH_SIZE = "CARRIER_WEBHOOK_BATCH_SIZE" => webhook_batch_size: usize = "10",
        |v| count(v, 1, 10_000);
    /// Carrier only, `lambda` format: how long to gather a batch that is not full (0s–300s);
    /// 0s sends what is in hand.
    WEBHOOK_BATCH_WINDOW = "CARRIER_WEBHOOK_BATCH_WINDOW"
        => webhook_batch_window: Duration = "0s", batch_window;
    /// Carrier only: `none`, `sns`, `eventbridge` or `auto`: deliver what an SNS or EventBridge
    /// envelope holds, its fields as headers (one-message format).
    WEBHOOK_UNWRAP = "CARRIER_WEBHOOK_UNWRAP" => webhook_unwrap: Unwrap = "none", unwrap;
    /// Carrier only: `whsec_…` secret(s), space-separated: sign requests (Standard Webhooks).
    WEBHOOK_SIGNING_SECRET = "CARRIER_WEBHOOK_SIGNING_SECRET"
        => webhook_signing_secret: Option<SigningKeys> = optional, |v| SigningKeys::parse(&v);
    /// Carrier only: a failed delivery's visibility timeout (0–12h); unset: left as it is.
    WEBHOOK_ERROR_VISIBILITY_TIMEOUT = "CARRIER_WEBHOOK_ERROR_VISIBILITY_TIMEOUT"
        => webhook_error_visibility_timeout: Option<Duration> = optional, sqs_duration;
    /// Carrier only: the error timeout doubles with each receive up to this (1s–12h).
    WEBHOOK_ERROR_BACKOFF_MAX = "CARRIER_WEBHOOK_ERROR_BACKOFF_MAX"
        => webhook_error_backoff_max: Option<Duration> = optional, visibility_timeout;
    /// Carrier only: a Retry-After below this is raised to it (0–12h).
    WEBHOOK_MIN_RETRY_DELAY = "CARRIER_WEBHOOK_MIN_RETRY_DELAY"
        => webhook_min_retry_delay: Duration = "1s", sqs_duration;
    /// Enables health checking: the URL to GET.
    WEBHOOK_HEALTH_CHECK_ENDPOINT = "CARRIER_WEBHOOK_HEALTH_CHECK_ENDPOINT"
        => webhook_health_check_endpoint: Option<Endpoint> = optional, endpoint;
    /// Time between health checks (at least 100ms).
    WEBHOOK_HEALTH_CHECK_INTERVAL = "CARRIER_WEBHOOK_HEALTH_CHECK_INTERVAL"
        => webhook_health_check_interval: Duration = "60s", interval;
    /// Limit for one health check.
    WEBHOOK_HEALTH_CHECK_TIMEOUT = "CARRIER_WEBHOOK_HEALTH_CHECK_TIMEOUT"
        => webhook_health_check_timeout: Duration = "10s", positive_duration;
    /// Consecutive failed checks, once online, before the webhook is offline (Go parity: 0 means 1).
    WEBHOOK_OFFLINE_THRESHOLD_COUNT = "CARRIER_WEBHOOK_OFFLINE_THRESHOLD_COUNT"
        => webhook_offline_threshold_count: u32 = "5",
        |v| count(v, 0, 1_000_000).map(|n| n.max(1) as u32);
    /// Carrier only: `exit` (drain, exit 1) or `pause` (stop receiving until healthy).
    WEBHOOK_OFFLINE_ACTION = "CARRIER_WEBHOOK_OFFLINE_ACTION"
        => webhook_offline_action: OfflineAction = "exit", offline_action;
    /// Carrier only: how long to wait for the first healthy check (exit 1 after); unset: for ever.
    WEBHOOK_STARTUP_TIMEOUT = "CARRIER_WEBHOOK_STARTUP_TIMEOUT"
        => webhook_startup_timeout: Option<Duration> = optional, positive_duration;
    /// Human log lines instead of JSON.
    ENABLE_COLORIZED_LOGGING = "CARRIER_ENABLE_COLORIZED_LOGGING"
        => enable_colorized_logging: bool = "false", boolean;
    /// Periodic `stats` log line.
    ENABLE_STAT_LOG = "CARRIER_ENABLE_STAT_LOG" => enable_stat_log: bool = "false", boolean;
    /// Interval of the `stats` line (at least 100ms).
    STAT_LOG_TIMER = "CARRIER_STAT_LOG_TIMER" => stat_log_timer: Duration = "120s", interval;
    /// Carrier only: how long in-flight deliveries may finish after SIGTERM. 20 s plus at most
    /// 5 s of final flushing fits Kubernetes' default 30 s grace period with room to spare.
    SHUTDOWN_TIMEOUT = "CARRIER_SHUTDOWN_TIMEOUT" => shutdown_timeout: Duration = "20s", duration;
    /// Carrier only: once nothing was received for this long and nothing is in flight, drain and
    /// exit 0 (KEDA ScaledJob, batch and CI runs).
    EXIT_WHEN_IDLE = "CARRIER_EXIT_WHEN_IDLE" => exit_when_idle: Option<Duration> = optional,
        interval;
    /// Carrier only: serve `/healthz`, `/readyz`, `/metrics` here, e.g. `0.0.0.0:9464`.
    ADMIN_ADDR = "CARRIER_ADMIN_ADDR" => admin_addr: Option<SocketAddr> = optional, socket_addr;
    /// Carrier only: `trace`, `debug`, `info`, `warn`, `error`.
    LOG_LEVEL = "CARRIER_LOG_LEVEL" => log_level: slog::Level = "info", log_level;
}

/// Whether a `CARRIER_`-prefixed variable is one Kubernetes injects for a Service named
/// `carrier…` (`CARRIER_SERVICE_HOST`, `CARRIER_PORT=tcp://…`, `CARRIER_PORT_9464_TCP_ADDR`,
/// `CARRIER_ADMIN_SERVICE_PORT_HTTP`, …). A bare `…_PORT` is one only with a service link as its
/// value (`tcp://10.0.0.11:9464`): `CARRIER_ADMIN_PORT=9464` is somebody's typo.
fn is_kubernetes_service_variable(name: &str, value: &str) -> bool {
    if name.ends_with("_SERVICE_HOST") || name.ends_with("_SERVICE_PORT") {
        return true;
    }
    if name.contains("_SERVICE_PORT_") {
        return true;
    }
    if name.ends_with("_PORT") && is_service_link(value) {
        return true;
    }
    // `_PORT_<number>_<TCP|UDP|SCTP>` with an optional `_PROTO`, `_PORT` or `_ADDR`.
    let Some((_, rest)) = name.split_once("_PORT_") else {
        return false;
    };
    let mut parts = rest.split('_');
    let number = parts
        .next()
        .is_some_and(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()));
    let proto = parts
        .next()
        .is_some_and(|p| matches!(p, "TCP" | "UDP" | "SCTP"));
    let suffix = match parts.next() {
        None => true,
        Some(s) => matches!(s, "PROTO" | "PORT" | "ADDR") && parts.next().is_none(),
    };
    number && proto && suffix
}

/// A Kubernetes service link: `tcp://10.0.0.11:9464` (or `udp://`, `sctp://`).
fn is_service_link(value: &str) -> bool {
    ["tcp://", "udp://", "sctp://"]
        .iter()
        .any(|scheme| value.starts_with(scheme))
}

/// The `CARRIER_*` names among the `(name, value)` pairs that carrier does not read: typos, or
/// options of another version. Worth a warning, not a refusal (a rollback must not fail on a newer
/// option), but named when the configuration is refused (a typo is the usual cause). Variables
/// Kubernetes injects for a Service called `carrier` are not ours and not worth a word.
pub fn unknown_variables<'a>(vars: impl IntoIterator<Item = (&'a str, &'a str)>) -> Vec<&'a str> {
    let mut unknown: Vec<&str> = vars
        .into_iter()
        .filter(|(n, _)| n.starts_with("CARRIER_"))
        .filter(|(n, _)| !VARIABLES.iter().any(|v| v.name == *n))
        .filter(|(n, v)| !is_kubernetes_service_variable(n, v))
        .map(|(n, _)| n)
        .collect();
    unknown.sort_unstable();
    unknown.dedup();
    unknown
}

/// [`unknown_variables`], owned.
fn unknown_names<'a>(vars: impl IntoIterator<Item = (&'a str, &'a str)>) -> Vec<String> {
    unknown_variables(vars)
        .into_iter()
        .map(String::from)
        .collect()
}

/// The known variable an unknown name was most likely meant to be: the closest by edit distance
/// (case aside), if it is close (a third of the name after `CARRIER_`, at most 3 edits).
pub fn did_you_mean(unknown: &str) -> Option<&'static str> {
    let wanted = unknown.strip_prefix("CARRIER_")?.to_ascii_uppercase();
    let limit = (wanted.len() / 3).min(3);
    VARIABLES
        .iter()
        .map(|v| (edit_distance(&wanted, &v.name["CARRIER_".len()..]), v.name))
        .filter(|(d, _)| *d <= limit)
        .min_by_key(|(d, _)| *d)
        .map(|(_, name)| name)
}

/// Levenshtein distance, bytewise (variable names are ASCII).
fn edit_distance(a: &str, b: &str) -> usize {
    let mut previous: Vec<usize> = (0..=b.len()).collect();
    for (i, x) in a.bytes().enumerate() {
        let mut current = vec![i + 1];
        for (j, y) in b.bytes().enumerate() {
            let substitute = previous[j] + usize::from(x != y);
            current.push(substitute.min(previous[j + 1] + 1).min(current[j] + 1));
        }
        previous = current;
    }
    previous[b.len()]
}

/// How an unknown variable is named: `unknown variable CARRIER_X (did you mean CARRIER_Y?)`.
fn describe_unknown(name: &str) -> String {
    match did_you_mean(name) {
        Some(known) => format!("unknown variable {name} (did you mean {known}?)"),
        None => format!("unknown variable {name}"),
    }
}

/// A setting that does nothing, or contradicts another: one log line at start, not a refusal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Warning {
    /// The variable the warning is about.
    pub variable: &'static str,
    /// What is wrong, and what carrier does instead.
    pub message: String,
}

/// Log output chosen by configuration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LogSettings {
    pub colorized: bool,
    pub level: slog::Level,
}

/// The validated configuration: engine settings plus what the binary itself uses.
#[derive(Debug, Clone)]
pub struct Config {
    pub settings: Settings,
    pub log: LogSettings,
    /// `CARRIER_*` variables present that carrier does not read (see [`unknown_variables`]).
    pub unknown_variables: Vec<String>,
    /// Settings that do nothing or contradict each other: worth a log line each at start.
    pub warnings: Vec<Warning>,
}

/// Every problem found (`.0`, each line starting with the variable it is about), then the unknown
/// `CARRIER_*` variables present (`.1`, the likely cause of a missing one); one per line when
/// displayed.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("invalid configuration:\n{}", .0.iter().cloned().chain(.1.iter().map(|n| describe_unknown(n))).map(|p| format!("  - {p}")).collect::<Vec<_>>().join("\n"))]
pub struct ConfigErrors(pub Vec<String>, pub Vec<String>);

impl Config {
    pub fn from_env() -> Result<Config, ConfigErrors> {
        // Names and values of ours only (a value is looked at only to tell a Kubernetes link).
        let present: Vec<(String, String)> = std::env::vars_os()
            .filter_map(|(k, v)| Some((k.into_string().ok()?, v.to_string_lossy().into_owned())))
            .filter(|(k, _)| k.starts_with("CARRIER_"))
            .collect();
        let unknown = unknown_names(present.iter().map(|(k, v)| (k.as_str(), v.as_str())));
        Self::from_raw(Raw::init_from_env(), unknown)
    }

    /// The same, from a map instead of the process environment (tests, fuzzing).
    pub fn from_map(
        vars: &std::collections::HashMap<String, String>,
    ) -> Result<Config, ConfigErrors> {
        let unknown = unknown_names(vars.iter().map(|(k, v)| (k.as_str(), v.as_str())));
        Self::from_raw(Raw::init_from_hashmap(vars), unknown)
    }

    fn from_raw(
        raw: Result<Raw, envconfig::Error>,
        unknown_variables: Vec<String>,
    ) -> Result<Config, ConfigErrors> {
        let raw = raw.map_err(|e| {
            let problem = format!("reading the environment: {e}");
            ConfigErrors(vec![problem], unknown_variables.clone())
        })?;
        let mut p = Problems::default();
        let set = Explicit::of(&raw);
        let v = Values::parse(raw, &mut p);
        if v.sqs_queue_name.is_none()
            && v.sqs_queue_url.is_none()
            && !p.failed(SQS_QUEUE_URL)
            && !p.failed(SQS_QUEUE_NAME)
        {
            p.problems.push(format!(
                "{SQS_QUEUE_NAME} is required (or set {SQS_QUEUE_URL} to the queue's full URL)"
            ));
        }
        if let (Some(base), Some(max)) = (
            v.webhook_error_visibility_timeout,
            v.webhook_error_backoff_max,
        ) {
            if base.is_zero() {
                p.problems.push(format!(
                    "{WEBHOOK_ERROR_BACKOFF_MAX} ({max:?}) is set with \
                     {WEBHOOK_ERROR_VISIBILITY_TIMEOUT} 0s: the backoff doubles the error \
                     timeout, and a backoff from zero is no backoff; set \
                     {WEBHOOK_ERROR_VISIBILITY_TIMEOUT} above zero (the first retry's delay), or \
                     unset it to start from the queue's visibility timeout"
                ));
            } else if max < base {
                p.problems.push(format!(
                    "{WEBHOOK_ERROR_BACKOFF_MAX} ({max:?}) is below {WEBHOOK_ERROR_VISIBILITY_TIMEOUT} ({base:?}), the backoff's base"
                ));
            }
        }
        if !p.problems.is_empty() {
            return Err(ConfigErrors(p.problems, unknown_variables));
        }
        let warnings = warnings(&v, &set);
        let mut settings = Settings::new(QueueAddress {
            endpoint: v.sqs_endpoint,
            name: v.sqs_queue_name,
            url: v.sqs_queue_url,
        });
        settings.batch_size = v.sqs_batch_size;
        settings.receivers = v.sqs_receivers;
        settings.workers_per_receiver = match v.sqs_receiver_workers {
            0 => v.sqs_batch_size,
            n => n,
        };
        settings.threads = v.threads;
        settings.visibility_timeout = v.sqs_visibility_timeout;
        settings.webhook = WebhookSettings {
            endpoint: v.webhook_endpoint,
            tls_insecure_skip_verify: v.webhook_tls_insecure_skip_verify,
            default_content_type: v.webhook_default_content_type,
            request_timeout: v.webhook_request_timeout,
            success_codes: v.webhook_success_codes,
            header_style: v.webhook_header_style,
            signing: v.webhook_signing_secret,
            unwrap: v.webhook_unwrap,
            format: match v.webhook_format {
                FormatName::Message => Format::Message,
                FormatName::Lambda => Format::Lambda {
                    batch_size: v.webhook_batch_size,
                    window: v.webhook_batch_window,
                },
            },
        };
        settings.nack = NackPolicy {
            error_visibility: v.webhook_error_visibility_timeout,
            backoff_max: v.webhook_error_backoff_max,
        };
        settings.min_retry_delay = v.webhook_min_retry_delay;
        settings.health_check =
            v.webhook_health_check_endpoint
                .map(|endpoint| HealthCheckSettings {
                    endpoint,
                    interval: v.webhook_health_check_interval,
                    timeout: v.webhook_health_check_timeout,
                    offline_threshold: v.webhook_offline_threshold_count,
                    startup_timeout: v.webhook_startup_timeout,
                    offline_action: v.webhook_offline_action,
                });
        settings.shutdown_timeout = v.shutdown_timeout;
        settings.stat_log_interval = v.enable_stat_log.then_some(v.stat_log_timer);
        settings.exit_when_idle = v.exit_when_idle;
        settings.admin_addr = v.admin_addr;
        Ok(Config {
            settings,
            log: LogSettings {
                colorized: v.enable_colorized_logging,
                level: v.log_level,
            },
            unknown_variables,
            warnings,
        })
    }
}

/// Which variables with a default were set explicitly (a default is not a choice to warn about).
struct Explicit {
    offline_action: bool,
    batch_size: bool,
    batch_window: bool,
    sqs_batch_size: bool,
}

impl Explicit {
    fn of(raw: &Raw) -> Explicit {
        let set = |v: &Option<String>| v.as_deref().is_some_and(|v| !v.trim().is_empty());
        Explicit {
            offline_action: set(&raw.webhook_offline_action),
            batch_size: set(&raw.webhook_batch_size),
            batch_window: set(&raw.webhook_batch_window),
            sqs_batch_size: set(&raw.sqs_batch_size),
        }
    }
}

/// The settings of a valid configuration that do nothing, or contradict each other.
fn warnings(v: &Values, set: &Explicit) -> Vec<Warning> {
    let mut warnings = Vec::new();
    let health = WEBHOOK_HEALTH_CHECK_ENDPOINT;
    if v.webhook_health_check_endpoint.is_none() {
        if v.webhook_startup_timeout.is_some() {
            let message = format!(
                "{WEBHOOK_STARTUP_TIMEOUT} does nothing without {health}: with no health check, \
                 carrier never waits for the webhook"
            );
            warnings.push((WEBHOOK_STARTUP_TIMEOUT, message));
        }
        if set.offline_action {
            let message = format!(
                "{WEBHOOK_OFFLINE_ACTION} does nothing without {health}: with no health check, \
                 the webhook is never taken for offline"
            );
            warnings.push((WEBHOOK_OFFLINE_ACTION, message));
        }
    } else if v.webhook_health_check_timeout > v.webhook_health_check_interval {
        let timeout = v.webhook_health_check_timeout;
        let interval = v.webhook_health_check_interval;
        let message = format!(
            "{WEBHOOK_HEALTH_CHECK_TIMEOUT} ({timeout:?}) is longer than \
             {WEBHOOK_HEALTH_CHECK_INTERVAL} ({interval:?}): checks never overlap, so a slow check \
             delays the next one and going offline takes longer than threshold × interval"
        );
        warnings.push((WEBHOOK_HEALTH_CHECK_TIMEOUT, message));
    }
    let lambda = v.webhook_format == FormatName::Lambda;
    for (variable, set) in [
        (WEBHOOK_BATCH_SIZE, set.batch_size),
        (WEBHOOK_BATCH_WINDOW, set.batch_window),
    ] {
        if set && !lambda {
            let message = format!(
                "{variable} does nothing unless {WEBHOOK_FORMAT}=lambda: each POST carries one \
                 message"
            );
            warnings.push((variable, message));
        }
    }
    if lambda && v.webhook_unwrap != Unwrap::None {
        let message = format!(
            "{WEBHOOK_UNWRAP} does nothing with {WEBHOOK_FORMAT}=lambda: Lambda gives each record \
             as SQS holds it, envelope and all"
        );
        warnings.push((WEBHOOK_UNWRAP, message));
    }
    if lambda && set.sqs_batch_size {
        let message = format!(
            "{SQS_BATCH_SIZE} does nothing with {WEBHOOK_FORMAT}=lambda: receives ask for 10 \
             messages until a batch of {WEBHOOK_BATCH_SIZE} is gathered"
        );
        warnings.push((SQS_BATCH_SIZE, message));
    }
    let batch = v.sqs_batch_size;
    let workers = match v.sqs_receiver_workers {
        0 => batch,
        n => n,
    };
    if batch > workers && !lambda {
        let message = format!(
            "{SQS_BATCH_SIZE} ({batch}) is above {SQS_RECEIVER_WORKERS} ({workers}): a receiver \
             never asks for more messages than it has free workers, so receives are capped at \
             {workers}"
        );
        warnings.push((SQS_BATCH_SIZE, message));
    }
    warnings
        .into_iter()
        .map(|(variable, message)| Warning { variable, message })
        .collect()
}

/// Collects problems while parsing each variable.
#[derive(Default)]
struct Problems {
    problems: Vec<String>,
    failed: Vec<&'static str>,
}

/// How a value is shown in an error: URLs without passwords or query strings, secrets not at all.
fn shown(name: &str, value: &str) -> String {
    if name == WEBHOOK_SIGNING_SECRET {
        "<redacted>".into()
    } else {
        format!("{:?}", redact(value))
    }
}

impl Problems {
    /// A variable with a default. A bad value records a problem and yields the default.
    fn value<T>(
        &mut self,
        name: &'static str,
        raw: Option<String>,
        default: &str,
        parse: impl Fn(String) -> Result<T, String>,
    ) -> T {
        if let Some(value) = raw.filter(|v| !v.trim().is_empty()) {
            match parse(value.trim().to_string()) {
                Ok(v) => return v,
                Err(why) => self.record(name, &value, why),
            }
        }
        parse(default.to_string()).unwrap_or_else(|why| panic!("default of {name} invalid: {why}"))
    }

    /// A variable without a default: unset (or empty) is `None`.
    fn optional<T>(
        &mut self,
        name: &'static str,
        raw: Option<String>,
        parse: impl Fn(String) -> Result<T, String>,
    ) -> Option<T> {
        let raw = raw.filter(|v| !v.trim().is_empty())?;
        match parse(raw.trim().to_string()) {
            Ok(v) => Some(v),
            Err(why) => {
                self.record(name, &raw, why);
                None
            }
        }
    }

    fn record(&mut self, name: &'static str, value: &str, why: String) {
        self.problems
            .push(format!("{name}={}: {why}", shown(name, value)));
        self.failed.push(name);
    }

    fn failed(&self, name: &str) -> bool {
        self.failed.contains(&name)
    }
}

/// A queue name, not a URL: `https://…` or anything with a `/` belongs in `CARRIER_SQS_QUEUE_URL`.
fn queue_name(v: String) -> Result<String, String> {
    let lower = v.to_ascii_lowercase();
    if lower.starts_with("http://") || lower.starts_with("https://") {
        return Err(format!(
            "is a URL, not a queue name; set {SQS_QUEUE_URL} to it instead"
        ));
    }
    if v.contains('/') {
        return Err(format!(
            "a queue name has no '/'; for the queue's full URL set {SQS_QUEUE_URL} instead"
        ));
    }
    Ok(v)
}

fn count(v: String, min: usize, max: usize) -> Result<usize, String> {
    v.parse::<usize>()
        .ok()
        .filter(|n| (min..=max).contains(n))
        .ok_or_else(|| format!("must be a whole number from {min} to {max}"))
}

fn url(v: String) -> Result<String, String> {
    carrier_actors::parse_http_url(&v)
        .map(|_| v)
        .map_err(|why| format!("{why}; expected a URL such as http://localhost:9000/path"))
}

fn endpoint(v: String) -> Result<Endpoint, String> {
    Endpoint::parse(&v)
        .map_err(|why| format!("{why}; expected a URL such as http://localhost:9000/path"))
}

/// Go's `strconv.ParseBool` set, in any case.
fn boolean(v: String) -> Result<bool, String> {
    match v.to_ascii_lowercase().as_str() {
        "true" | "t" | "1" => Ok(true),
        "false" | "f" | "0" => Ok(false),
        _ => Err("must be true or false (or 1 / 0)".into()),
    }
}

fn header_value(v: String) -> Result<String, String> {
    if v.bytes().all(|b| b == b'\t' || (0x20..0x7f).contains(&b)) {
        Ok(v)
    } else {
        Err("must be a valid HTTP header value (visible ASCII)".into())
    }
}

fn header_style(v: String) -> Result<HeaderStyle, String> {
    match v.to_ascii_lowercase().as_str() {
        "carrier" => Ok(HeaderStyle::Carrier),
        "sqsd" => Ok(HeaderStyle::Sqsd),
        _ => Err("must be carrier or sqsd".into()),
    }
}

/// `CARRIER_WEBHOOK_FORMAT`'s values.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
enum FormatName {
    #[default]
    Message,
    Lambda,
}

fn format(v: String) -> Result<FormatName, String> {
    match v.to_ascii_lowercase().as_str() {
        "message" => Ok(FormatName::Message),
        "lambda" => Ok(FormatName::Lambda),
        _ => Err("must be message or lambda".into()),
    }
}

fn unwrap(v: String) -> Result<Unwrap, String> {
    match v.to_ascii_lowercase().as_str() {
        "none" => Ok(Unwrap::None),
        "sns" => Ok(Unwrap::Sns),
        "eventbridge" => Ok(Unwrap::EventBridge),
        "auto" => Ok(Unwrap::Auto),
        _ => Err("must be none, sns, eventbridge or auto".into()),
    }
}

/// A batch window: 0s to 300s (Lambda's MaximumBatchingWindowInSeconds range).
fn batch_window(v: String) -> Result<Duration, String> {
    let d = duration(v)?;
    if d > Duration::from_secs(300) {
        return Err(format!("must be from 0s to 300s; {DURATION_HELP}"));
    }
    Ok(d)
}

fn offline_action(v: String) -> Result<OfflineAction, String> {
    match v.to_ascii_lowercase().as_str() {
        "exit" => Ok(OfflineAction::Exit),
        "pause" => Ok(OfflineAction::Pause),
        _ => Err("must be exit or pause".into()),
    }
}

fn socket_addr(v: String) -> Result<SocketAddr, String> {
    v.parse()
        .map_err(|_| "must be an address and port, such as 0.0.0.0:9464 or 127.0.0.1:9464".into())
}

fn log_level(v: String) -> Result<slog::Level, String> {
    match v.to_ascii_lowercase().as_str() {
        "trace" => Ok(slog::Level::Trace),
        "debug" => Ok(slog::Level::Debug),
        "info" => Ok(slog::Level::Info),
        "warn" | "warning" => Ok(slog::Level::Warning),
        "error" => Ok(slog::Level::Error),
        _ => Err("must be one of trace, debug, info, warn, error".into()),
    }
}

const DURATION_HELP: &str = "expected a duration such as 300ms, 30s, 2m, 1h30m or 1.5h";
/// SQS's longest visibility timeout.
const TWELVE_HOURS: Duration = Duration::from_secs(43_200);

fn positive_duration(v: String) -> Result<Duration, String> {
    match duration(v)? {
        d if d.is_zero() => Err(format!("must be more than zero; {DURATION_HELP}")),
        d => Ok(d),
    }
}

/// A period for something repeated (health checks, the stat line): at least 100 ms, so a typo
/// such as `1ns` cannot turn it into a busy loop.
fn interval(v: String) -> Result<Duration, String> {
    match duration(v)? {
        d if d < Duration::from_millis(100) => {
            Err(format!("must be at least 100ms; {DURATION_HELP}"))
        }
        d => Ok(d),
    }
}

/// A visibility-like value SQS accepts: 0 to 12 hours, whole seconds (fractions round up).
fn sqs_duration(v: String) -> Result<Duration, String> {
    let d = duration(v)?;
    let secs = d.as_secs() + u64::from(d.subsec_nanos() > 0);
    if d > TWELVE_HOURS {
        return Err(format!(
            "must be at most 12h (SQS's limit); {DURATION_HELP}"
        ));
    }
    Ok(Duration::from_secs(secs))
}

/// A visibility timeout: 1 second to 12 hours.
fn visibility_timeout(v: String) -> Result<Duration, String> {
    match sqs_duration(v)? {
        d if d.is_zero() => Err(format!("must be from 1s to 12h; {DURATION_HELP}")),
        d => Ok(d),
    }
}

fn duration(v: String) -> Result<Duration, String> {
    parse_go_duration(&v).ok_or_else(|| DURATION_HELP.to_string())
}

/// Go's `time.ParseDuration` for non-negative values: a sequence of decimal numbers, each with an
/// optional fraction and a unit (`ns`, `us`/`µs`, `ms`, `s`, `m`, `h`), e.g. `1h30m`, `1.5h`; `0`.
pub fn parse_go_duration(s: &str) -> Option<Duration> {
    let s = s.strip_prefix('+').unwrap_or(s);
    if s == "0" {
        return Some(Duration::ZERO);
    }
    if s.is_empty() {
        return None;
    }
    let mut rest = s;
    let mut total_nanos: f64 = 0.0;
    while !rest.is_empty() {
        let number_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        let (number, tail) = rest.split_at(number_len);
        if number.is_empty() || number == "." || number.matches('.').count() > 1 {
            return None;
        }
        let value: f64 = number.parse().ok()?;
        let unit_len = tail
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(tail.len());
        let (unit, tail) = tail.split_at(unit_len);
        let scale = match unit {
            "ns" => 1.0,
            "us" | "µs" | "μs" => 1e3,
            "ms" => 1e6,
            "s" => 1e9,
            "m" => 60e9,
            "h" => 3600e9,
            _ => return None,
        };
        total_nanos += value * scale;
        rest = tail;
    }
    // Go's limit is ~292 years; anything near it is a typo here.
    (total_nanos < 1e18).then(|| Duration::from_nanos(total_nanos.round() as u64))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars(pairs: &[(&str, &str)]) -> std::collections::HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn go_durations_parse() {
        let d = |s| parse_go_duration(s);
        assert_eq!(d("300ms"), Some(Duration::from_millis(300)));
        assert_eq!(d("30s"), Some(Duration::from_secs(30)));
        assert_eq!(d("2m"), Some(Duration::from_secs(120)));
        assert_eq!(d("1h30m"), Some(Duration::from_secs(5400)));
        assert_eq!(d("1.5h"), Some(Duration::from_secs(5400)));
        assert_eq!(d("2h45m10s"), Some(Duration::from_secs(9910)));
        assert_eq!(d("1500us"), Some(Duration::from_micros(1500)));
        assert_eq!(d("0"), Some(Duration::ZERO));
        for bad in ["", "30", "1d", "-5s", "1..5s", "s", "5 s", ".s", "1h-30m"] {
            assert_eq!(d(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn every_default_parses() {
        // Values::parse panics on an invalid default; an empty environment exercises them all.
        let err = Config::from_map(&vars(&[])).unwrap_err();
        assert_eq!(err.0.len(), 1, "only the missing queue: {err}");
    }

    #[test]
    fn go_defaults_apply() {
        let c = Config::from_map(&vars(&[(SQS_QUEUE_NAME, "jobs")])).unwrap();
        let s = &c.settings;
        assert_eq!(
            (s.batch_size, s.receivers, s.workers_per_receiver),
            (1, 1, 1)
        );
        assert_eq!(s.webhook.endpoint.url, "http://localhost:9000/");
        assert_eq!(s.webhook.default_content_type, "application/json");
        assert_eq!(s.webhook.request_timeout, Duration::from_secs(60));
        assert!(!s.webhook.tls_insecure_skip_verify);
        assert!(s.webhook.success_codes.contains(204));
        assert_eq!(s.webhook.header_style, HeaderStyle::Carrier);
        assert!(s.webhook.signing.is_none());
        assert!(s.health_check.is_none() && s.stat_log_interval.is_none());
        assert_eq!(s.shutdown_timeout, Duration::from_secs(20));
        assert_eq!(
            s.nack,
            NackPolicy::default(),
            "Go: a Nack makes no SQS call"
        );
        assert_eq!(s.min_retry_delay, Duration::from_secs(1));
        assert_eq!(
            (s.visibility_timeout, s.exit_when_idle, s.admin_addr),
            (None, None, None)
        );
        assert_eq!(
            c.log,
            LogSettings {
                colorized: false,
                level: slog::Level::Info
            }
        );
    }

    #[test]
    fn health_check_and_stat_log_take_their_settings() {
        let c = Config::from_map(&vars(&[
            (SQS_QUEUE_URL, "http://127.0.0.1:4566/000000000000/jobs"),
            (
                WEBHOOK_HEALTH_CHECK_ENDPOINT,
                "http://localhost:9000/health",
            ),
            (WEBHOOK_HEALTH_CHECK_INTERVAL, "5s"),
            (WEBHOOK_OFFLINE_THRESHOLD_COUNT, "3"),
            (WEBHOOK_OFFLINE_ACTION, "pause"),
            (WEBHOOK_STARTUP_TIMEOUT, "2m"),
            (ENABLE_STAT_LOG, "TRUE"),
            (STAT_LOG_TIMER, "1m"),
            (ENABLE_COLORIZED_LOGGING, "1"),
        ]))
        .unwrap();
        let h = c.settings.health_check.unwrap();
        assert_eq!(
            (h.interval, h.timeout, h.offline_threshold),
            (Duration::from_secs(5), Duration::from_secs(10), 3)
        );
        assert_eq!(h.offline_action, OfflineAction::Pause);
        assert_eq!(h.startup_timeout, Some(Duration::from_secs(120)));
        assert_eq!(c.settings.stat_log_interval, Some(Duration::from_secs(60)));
        assert!(c.log.colorized);
    }

    #[test]
    fn delivery_semantics_take_their_settings() {
        let c = Config::from_map(&vars(&[
            (SQS_QUEUE_NAME, "q"),
            (SQS_VISIBILITY_TIMEOUT, "1.5s"),
            (WEBHOOK_ERROR_VISIBILITY_TIMEOUT, "5s"),
            (WEBHOOK_ERROR_BACKOFF_MAX, "10m"),
            (WEBHOOK_MIN_RETRY_DELAY, "5s"),
            (WEBHOOK_HEADER_STYLE, "SQSD"),
            (
                WEBHOOK_SIGNING_SECRET,
                "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
            ),
            (EXIT_WHEN_IDLE, "30s"),
            (ADMIN_ADDR, "0.0.0.0:9464"),
        ]))
        .unwrap();
        let s = c.settings;
        assert_eq!(
            s.visibility_timeout,
            Some(Duration::from_secs(2)),
            "rounded up"
        );
        assert_eq!(
            s.nack,
            NackPolicy {
                error_visibility: Some(Duration::from_secs(5)),
                backoff_max: Some(Duration::from_secs(600))
            }
        );
        assert_eq!(s.min_retry_delay, Duration::from_secs(5));
        assert_eq!(s.webhook.header_style, HeaderStyle::Sqsd);
        assert!(s.webhook.signing.is_some());
        assert_eq!(s.exit_when_idle, Some(Duration::from_secs(30)));
        assert_eq!(s.admin_addr, Some("0.0.0.0:9464".parse().unwrap()));
    }

    #[test]
    fn unknown_carrier_variables_are_found_but_not_kubernetes_service_ones() {
        // What Kubernetes injects for Services named `carrier` and `carrier-admin`, and others.
        let vars = [
            ("CARRIER_SQS_BATCHSIZE", "10"),
            ("CARRIER_SQS_BATCH_SIZE", "10"),
            ("HOME", "/root"),
            ("CARRIER_X", ""),
            ("CARRIER_SERVICE_HOST", "10.0.0.11"),
            ("CARRIER_SERVICE_PORT", "9464"),
            ("CARRIER_SERVICE_PORT_ADMIN", "9464"),
            ("CARRIER_PORT", "tcp://10.0.0.11:9464"),
            ("CARRIER_PORT_9464_TCP", "tcp://10.0.0.11:9464"),
            ("CARRIER_PORT_9464_TCP_PROTO", "tcp"),
            ("CARRIER_PORT_9464_TCP_PORT", "9464"),
            ("CARRIER_PORT_9464_TCP_ADDR", "10.0.0.11"),
            ("CARRIER_ADMIN_SERVICE_HOST", "10.0.0.12"),
            ("CARRIER_ADMIN_PORT", "udp://10.0.0.12:80"),
            ("CARRIER_ADMIN_PORT_80_UDP_ADDR", "10.0.0.12"),
            ("CARRIER_PORT_9464_TCP_OTHER", "x"),
        ];
        assert_eq!(
            unknown_variables(vars),
            [
                "CARRIER_PORT_9464_TCP_OTHER",
                "CARRIER_SQS_BATCHSIZE",
                "CARRIER_X"
            ]
        );
    }

    #[test]
    fn a_port_variable_is_quiet_only_with_a_service_link_for_its_value() {
        let vars = [
            ("CARRIER_FOO_PORT", "9000"),
            ("CARRIER_PORT", "9464"),
            ("CARRIER_ADMIN_PORT", ""),
            ("CARRIER_BAR_PORT", "tcp://10.0.0.13:9000"),
            ("CARRIER_BAZ_PORT", "sctp://10.0.0.14:9000"),
        ];
        assert_eq!(
            unknown_variables(vars),
            ["CARRIER_ADMIN_PORT", "CARRIER_FOO_PORT", "CARRIER_PORT"]
        );
    }

    #[test]
    fn a_close_known_name_is_suggested_for_an_unknown_one() {
        assert_eq!(did_you_mean("CARRIER_SQS_QUEUE_NMAE"), Some(SQS_QUEUE_NAME));
        assert_eq!(did_you_mean("CARRIER_SQS_BATCHSIZE"), Some(SQS_BATCH_SIZE));
        assert_eq!(did_you_mean("CARRIER_LOGLEVEL"), Some(LOG_LEVEL));
        assert_eq!(did_you_mean("CARRIER_sqs_queue_url"), Some(SQS_QUEUE_URL));
        for far in [
            "CARRIER_X",
            "CARRIER_FOO_PORT",
            "CARRIER_ADMIN_PORT",
            "CARRIER_",
        ] {
            assert_eq!(did_you_mean(far), None, "{far}");
        }
        assert_eq!(edit_distance("kitten", "sitting"), 3);
        assert_eq!(edit_distance("", "abc"), 3);
    }

    #[test]
    fn an_invalid_configuration_names_the_unknown_variables_present() {
        let err = Config::from_map(&vars(&[
            ("CARRIER_SQS_QUEUE_NMAE", "jobs"),
            ("CARRIER_FOO_PORT", "9000"),
            ("CARRIER_PORT", "tcp://10.0.0.11:9464"),
            ("CARRIER_SERVICE_HOST", "10.0.0.11"),
            ("CARRIER_SERVICE_PORT", "9464"),
            ("HOME", "/root"),
        ]))
        .unwrap_err();
        let text = err.to_string();
        assert!(
            text.contains("CARRIER_SQS_QUEUE_NAME is required"),
            "{text}"
        );
        assert!(
            text.contains(
                "  - unknown variable CARRIER_SQS_QUEUE_NMAE (did you mean CARRIER_SQS_QUEUE_NAME?)"
            ),
            "{text}"
        );
        assert!(
            text.contains("  - unknown variable CARRIER_FOO_PORT\n")
                || text.ends_with("CARRIER_FOO_PORT"),
            "{text}"
        );
        for quiet in ["CARRIER_PORT", "CARRIER_SERVICE", "HOME", "jobs", "9000"] {
            assert!(!text.contains(quiet), "{quiet} in:\n{text}");
        }
        assert_eq!(
            err.0.len(),
            1,
            "problems are problems; unknown names come after"
        );
    }

    #[test]
    fn a_valid_configuration_keeps_unknown_variables_for_a_warning() {
        let c = Config::from_map(&vars(&[
            (SQS_QUEUE_NAME, "jobs"),
            ("CARRIER_SQS_BATCHSIZE", "10"),
            ("CARRIER_PORT", "tcp://10.0.0.11:9464"),
        ]))
        .unwrap();
        assert_eq!(c.unknown_variables, ["CARRIER_SQS_BATCHSIZE"]);
    }

    #[test]
    fn a_backoff_maximum_over_a_zero_error_timeout_is_refused() {
        for zero in ["0", "0s", "0ms", "0.0h"] {
            let err = Config::from_map(&vars(&[
                (SQS_QUEUE_NAME, "q"),
                (WEBHOOK_ERROR_VISIBILITY_TIMEOUT, zero),
                (WEBHOOK_ERROR_BACKOFF_MAX, "10m"),
            ]))
            .unwrap_err();
            assert_eq!(err.0.len(), 1, "{err}");
            let line = &err.0[0];
            assert!(line.starts_with(WEBHOOK_ERROR_BACKOFF_MAX), "{line}");
            assert!(line.contains(WEBHOOK_ERROR_VISIBILITY_TIMEOUT), "{line}");
            assert!(line.contains("a backoff from zero is no backoff"), "{line}");
        }
        // Either alone, or the maximum over a base above zero, or over the queue's own timeout.
        for ok in [
            &[(WEBHOOK_ERROR_VISIBILITY_TIMEOUT, "0")][..],
            &[(WEBHOOK_ERROR_BACKOFF_MAX, "10m")][..],
            &[
                (WEBHOOK_ERROR_VISIBILITY_TIMEOUT, "1s"),
                (WEBHOOK_ERROR_BACKOFF_MAX, "10m"),
            ][..],
        ] {
            let mut env = vars(ok);
            env.insert(SQS_QUEUE_NAME.into(), "q".into());
            assert!(Config::from_map(&env).is_ok(), "{ok:?}");
        }
    }

    #[test]
    fn a_url_in_the_queue_name_is_refused_with_a_hint_to_use_the_queue_url() {
        for (name, shown) in [
            (
                "https://sqs.us-east-1.amazonaws.com/000000000000/jobs",
                "\"https://sqs.us-east-1.amazonaws.com/000000000000/jobs\"",
            ),
            (
                "HTTP://user:hunter2@127.0.0.1:4566/000000000000/jobs?token=s3cret",
                "\"http://user:***@127.0.0.1:4566/000000000000/jobs?***\"",
            ),
            ("000000000000/jobs", "\"000000000000/jobs\""),
        ] {
            let err = Config::from_map(&vars(&[(SQS_QUEUE_NAME, name)])).unwrap_err();
            assert_eq!(err.0.len(), 1, "one problem, not also 'required': {err}");
            let line = &err.0[0];
            assert!(
                line.starts_with(&format!("{SQS_QUEUE_NAME}={shown}: ")),
                "{line}"
            );
            assert!(line.contains(&format!("set {SQS_QUEUE_URL}")), "{line}");
            for secret in ["hunter2", "s3cret"] {
                assert!(!line.contains(secret), "{secret} leaked: {line}");
            }
        }
        for fine in ["jobs", "jobs.fifo", "my-queue_2", "http"] {
            assert!(
                Config::from_map(&vars(&[(SQS_QUEUE_NAME, fine)])).is_ok(),
                "{fine}"
            );
        }
    }

    #[test]
    fn settings_that_do_nothing_or_contradict_each_other_are_warned_about() {
        let warned = |pairs: &[(&str, &str)]| -> Vec<&'static str> {
            let mut env = vars(pairs);
            env.insert(SQS_QUEUE_NAME.into(), "q".into());
            let c = Config::from_map(&env).unwrap();
            c.warnings.iter().map(|w| w.variable).collect()
        };
        let health = (
            WEBHOOK_HEALTH_CHECK_ENDPOINT,
            "http://localhost:9000/health",
        );
        assert!(warned(&[]).is_empty(), "the defaults are quiet");
        assert_eq!(
            warned(&[
                (WEBHOOK_STARTUP_TIMEOUT, "1m"),
                (WEBHOOK_OFFLINE_ACTION, "exit")
            ]),
            [WEBHOOK_STARTUP_TIMEOUT, WEBHOOK_OFFLINE_ACTION]
        );
        assert!(warned(&[
            health,
            (WEBHOOK_STARTUP_TIMEOUT, "1m"),
            (WEBHOOK_OFFLINE_ACTION, "pause")
        ])
        .is_empty());
        assert_eq!(
            warned(&[
                health,
                (WEBHOOK_HEALTH_CHECK_INTERVAL, "5s"),
                (WEBHOOK_HEALTH_CHECK_TIMEOUT, "6s")
            ]),
            [WEBHOOK_HEALTH_CHECK_TIMEOUT]
        );
        assert!(
            warned(&[
                health,
                (WEBHOOK_HEALTH_CHECK_INTERVAL, "5s"),
                (WEBHOOK_HEALTH_CHECK_TIMEOUT, "5s")
            ])
            .is_empty(),
            "equal is fine"
        );
        assert_eq!(warned(&[(SQS_BATCH_SIZE, "10")]), [SQS_BATCH_SIZE]);
        assert_eq!(
            warned(&[(SQS_BATCH_SIZE, "10"), (SQS_RECEIVER_WORKERS, "4")]),
            [SQS_BATCH_SIZE]
        );
        for fine in [
            &[(SQS_BATCH_SIZE, "10"), (SQS_RECEIVER_WORKERS, "10")][..],
            &[(SQS_BATCH_SIZE, "10"), (SQS_RECEIVER_WORKERS, "0")][..],
            &[(SQS_BATCH_SIZE, "4"), (SQS_RECEIVER_WORKERS, "16")][..],
        ] {
            assert!(warned(fine).is_empty(), "{fine:?}");
        }
        let c = Config::from_map(&vars(&[
            (SQS_QUEUE_NAME, "q"),
            (SQS_BATCH_SIZE, "10"),
            (SQS_RECEIVER_WORKERS, "2"),
        ]))
        .unwrap();
        let message = &c.warnings[0].message;
        assert!(
            message.starts_with(
                "CARRIER_SQS_BATCH_SIZE (10) is above CARRIER_SQS_RECEIVER_WORKERS (2)"
            ),
            "{message}"
        );
        assert!(message.contains("capped at 2"), "{message}");
    }

    #[test]
    fn zero_batch_size_and_workers_mean_what_they_meant_in_go() {
        let c = Config::from_map(&vars(&[
            (SQS_QUEUE_NAME, "q"),
            (SQS_BATCH_SIZE, "7"),
            (SQS_RECEIVER_WORKERS, "0"),
        ]))
        .unwrap();
        assert_eq!(
            (c.settings.batch_size, c.settings.workers_per_receiver),
            (7, 7)
        );
        let c = Config::from_map(&vars(&[(SQS_QUEUE_NAME, "q"), (SQS_BATCH_SIZE, "0")])).unwrap();
        assert_eq!(c.settings.batch_size, 1);
    }

    #[test]
    fn empty_values_count_as_unset() {
        let c = Config::from_map(&vars(&[(SQS_QUEUE_NAME, "q"), (SQS_BATCH_SIZE, "")])).unwrap();
        assert_eq!(c.settings.batch_size, 1);
    }

    #[test]
    fn every_problem_is_reported_at_once() {
        let err = Config::from_map(&vars(&[
            (SQS_BATCH_SIZE, "11"),
            (SQS_RECEIVERS, "0"),
            (WEBHOOK_ENDPOINT, "localhost:9000"),
            (WEBHOOK_REQUEST_TIMEOUT, "60"),
            (WEBHOOK_TLS_INSECURE_SKIP_VERIFY, "yes"),
            (LOG_LEVEL, "loud"),
            (STAT_LOG_TIMER, "1ns"),
            (SQS_VISIBILITY_TIMEOUT, "13h"),
            (WEBHOOK_HEADER_STYLE, "eb"),
            (WEBHOOK_OFFLINE_ACTION, "ignore"),
            (ADMIN_ADDR, "9464"),
        ]))
        .unwrap_err();
        let text = err.to_string();
        for needle in [
            "CARRIER_SQS_QUEUE_NAME is required",
            "CARRIER_SQS_BATCH_SIZE=\"11\": must be a whole number from 0 to 10",
            "CARRIER_SQS_RECEIVERS=\"0\"",
            "CARRIER_WEBHOOK_ENDPOINT=\"localhost:9000\"",
            "CARRIER_WEBHOOK_REQUEST_TIMEOUT=\"60\": expected a duration",
            "CARRIER_WEBHOOK_TLS_INSECURE_SKIP_VERIFY=\"yes\"",
            "CARRIER_LOG_LEVEL=\"loud\"",
            "CARRIER_STAT_LOG_TIMER=\"1ns\": must be at least 100ms",
            "CARRIER_SQS_VISIBILITY_TIMEOUT=\"13h\": must be at most 12h",
            "CARRIER_WEBHOOK_HEADER_STYLE=\"eb\": must be carrier or sqsd",
            "CARRIER_WEBHOOK_OFFLINE_ACTION=\"ignore\": must be exit or pause",
            "CARRIER_ADMIN_ADDR=\"9464\": must be an address and port",
        ] {
            assert!(text.contains(needle), "missing {needle:?} in:\n{text}");
        }
        assert_eq!(err.0.len(), 12);
    }

    #[test]
    fn errors_never_show_passwords_query_strings_or_secrets() {
        let err = Config::from_map(&vars(&[
            (SQS_QUEUE_NAME, "q"),
            (WEBHOOK_ENDPOINT, "ftp://user:hunter2@host/x?token=s3cret"),
            (WEBHOOK_SIGNING_SECRET, "whsec_tooshort"),
            (WEBHOOK_ERROR_VISIBILITY_TIMEOUT, "10m"),
            (WEBHOOK_ERROR_BACKOFF_MAX, "1m"),
        ]))
        .unwrap_err();
        let text = err.to_string();
        assert!(
            text.contains("CARRIER_WEBHOOK_ENDPOINT=\"ftp://user:***@host/x?***\""),
            "{text}"
        );
        assert!(
            text.contains("CARRIER_WEBHOOK_SIGNING_SECRET=<redacted>"),
            "{text}"
        );
        assert!(
            text.contains("is below CARRIER_WEBHOOK_ERROR_VISIBILITY_TIMEOUT"),
            "{text}"
        );
        for secret in ["hunter2", "s3cret", "tooshort"] {
            assert!(!text.contains(secret), "{secret} leaked:\n{text}");
        }
    }

    #[test]
    fn the_readme_documents_every_variable_with_its_default() {
        let readme = include_str!("../README.md");
        for v in VARIABLES {
            let row = readme
                .lines()
                .find(|l| l.starts_with(&format!("| `{}` |", v.name)))
                .unwrap_or_else(|| panic!("README has no table row for {}", v.name));
            if let Some(default) = v.default {
                assert!(
                    row.contains(&format!("`{default}`")),
                    "README row of {} lacks its default `{default}`: {row}",
                    v.name
                );
            }
        }
    }
}
