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
    Endpoint, HeaderStyle, HealthCheckSettings, NackPolicy, OfflineAction, Policy, QueueAddress,
    RouteSettings, Settings, SigningKeys, SuccessCodes, WebhookSettings, DEFAULT_ROUTE,
};
use envconfig::Envconfig;

/// One variable of the table, for the README check and anyone who wants the list.
#[derive(Debug, Clone, Copy)]
pub struct Variable {
    /// The top-level name; a route's is [`route_variable`] of it.
    pub name: &'static str,
    /// Whether each route may set it (SPEC 5.3).
    pub scope: Scope,
    /// The default as written in the README's table, `None` for variables without one.
    pub default: Option<&'static str>,
    pub doc: &'static str,
}

/// Where a variable may be set.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// Top level only: what all routes share (receivers, health check, logging, ...).
    Global,
    /// Top level and per route (`CARRIER_ROUTE_<NAME>_<SUFFIX>`), a route inheriting the top
    /// level's value: the queue and how its messages are delivered.
    Route,
    /// Per route only (`CARRIER_ROUTE_<NAME>_WEIGHT`).
    RouteOnly,
}

/// Declares every variable once:
/// `CONST = "NAME" => field: Type = default | optional, parser [, route | route_only];`
macro_rules! variables {
    ($(
        $(#[doc = $doc:literal])+
        $konst:ident = $name:literal => $field:ident: $ty:ty = $kind:tt, $parse:expr
            $(, $scope:ident)?;
    )+) => {
        $( pub const $konst: &str = $name; )+

        /// Every variable carrier reads.
        pub const VARIABLES: &[Variable] = &[$(Variable {
            name: $name,
            default: variables!(@default $kind),
            scope: variables!(@scope $($scope)?),
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
    (@scope) => { Scope::Global };
    (@scope route) => { Scope::Route };
    (@scope route_only) => { Scope::RouteOnly };
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
    SQS_ENDPOINT = "CARRIER_SQS_ENDPOINT" => sqs_endpoint: Option<String> = optional, url, route;
    /// Queue name, resolved with GetQueueUrl (required unless CARRIER_SQS_QUEUE_URL).
    SQS_QUEUE_NAME = "CARRIER_SQS_QUEUE_NAME" => sqs_queue_name: Option<String> = optional,
        queue_name, route;
    /// Carrier only: the queue's full URL, instead of name (+ endpoint).
    SQS_QUEUE_URL = "CARRIER_SQS_QUEUE_URL" => sqs_queue_url: Option<String> = optional, url, route;
    /// Most messages per ReceiveMessage, 1–10 (Go parity: 0 means 1).
    SQS_BATCH_SIZE = "CARRIER_SQS_BATCH_SIZE" => sqs_batch_size: usize = "1",
        |v| count(v, 0, 10).map(|n| n.max(1)), route;
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
        => sqs_visibility_timeout: Option<Duration> = optional, visibility_timeout, route;
    /// URL messages are POSTed to; `user:pass@` in it sends HTTP Basic auth.
    WEBHOOK_ENDPOINT = "CARRIER_WEBHOOK_ENDPOINT" => webhook_endpoint: Endpoint =
        "http://localhost:9000", endpoint, route;
    /// Accept any TLS certificate (webhook and health check).
    WEBHOOK_TLS_INSECURE_SKIP_VERIFY = "CARRIER_WEBHOOK_TLS_INSECURE_SKIP_VERIFY"
        => webhook_tls_insecure_skip_verify: bool = "false", boolean, route;
    /// Content-Type when the message has no `Body.ContentType` attribute.
    WEBHOOK_DEFAULT_CONTENT_TYPE = "CARRIER_WEBHOOK_DEFAULT_CONTENT_TYPE"
        => webhook_default_content_type: String = "application/json", header_value, route;
    /// Limit for one webhook delivery, redirects included.
    WEBHOOK_REQUEST_TIMEOUT = "CARRIER_WEBHOOK_REQUEST_TIMEOUT"
        => webhook_request_timeout: Duration = "60s", positive_duration, route;
    /// Carrier only: statuses that Ack, e.g. `200` (Go's rule) or `200,202-204`.
    WEBHOOK_SUCCESS_CODES = "CARRIER_WEBHOOK_SUCCESS_CODES"
        => webhook_success_codes: SuccessCodes = "200-299", |v| SuccessCodes::parse(&v), route;
    /// Carrier only: `carrier` (X-Carrier-* headers) or `sqsd` (Elastic Beanstalk's X-Aws-Sqsd-*).
    WEBHOOK_HEADER_STYLE = "CARRIER_WEBHOOK_HEADER_STYLE"
        => webhook_header_style: HeaderStyle = "carrier", header_style, route;
    /// Carrier only: `message` (one message per POST) or `lambda` (batches as Lambda's SQS
    /// event, answered with `batchItemFailures`).
    WEBHOOK_FORMAT = "CARRIER_WEBHOOK_FORMAT" => webhook_format: FormatName = "message", format, route;
    /// Carrier only, `lambda` format: most records per POST (1–10000).
    WEBHOOK_BATCH_SIZE = "CARRIER_WEBHOOK_BATCH_SIZE" => webhook_batch_size: usize = "10",
        |v| count(v, 1, 10_000), route;
    /// Carrier only, `lambda` format: how long to gather a batch that is not full (0s–300s);
    /// 0s sends what is in hand.
    WEBHOOK_BATCH_WINDOW = "CARRIER_WEBHOOK_BATCH_WINDOW"
        => webhook_batch_window: Duration = "0s", batch_window, route;
    /// Carrier only: `none`, `sns`, `eventbridge` or `auto`: deliver what an SNS or EventBridge
    /// envelope holds, its fields as headers (one-message format).
    WEBHOOK_UNWRAP = "CARRIER_WEBHOOK_UNWRAP" => webhook_unwrap: Unwrap = "none", unwrap, route;
    /// Carrier only: `whsec_…` secret(s), space-separated: sign requests (Standard Webhooks).
    WEBHOOK_SIGNING_SECRET = "CARRIER_WEBHOOK_SIGNING_SECRET"
        => webhook_signing_secret: Option<SigningKeys> = optional, |v| SigningKeys::parse(&v), route;
    /// Carrier only: a failed delivery's visibility timeout (0–12h); unset: left as it is.
    WEBHOOK_ERROR_VISIBILITY_TIMEOUT = "CARRIER_WEBHOOK_ERROR_VISIBILITY_TIMEOUT"
        => webhook_error_visibility_timeout: Option<Duration> = optional, sqs_duration, route;
    /// Carrier only: the error timeout doubles with each receive up to this (1s–12h).
    WEBHOOK_ERROR_BACKOFF_MAX = "CARRIER_WEBHOOK_ERROR_BACKOFF_MAX"
        => webhook_error_backoff_max: Option<Duration> = optional, visibility_timeout, route;
    /// Carrier only: a Retry-After below this is raised to it (0–12h).
    WEBHOOK_MIN_RETRY_DELAY = "CARRIER_WEBHOOK_MIN_RETRY_DELAY"
        => webhook_min_retry_delay: Duration = "1s", sqs_duration, route;
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
    /// Carrier only: route names (`[a-z0-9_]`, at most 16, comma-separated): serve one queue per
    /// route, each configured by `CARRIER_ROUTE_<NAME>_<SUFFIX>`.
    ROUTES = "CARRIER_ROUTES" => routes: Option<Vec<String>> = optional, route_names;
    /// Carrier only: `weighted` (slots by weight while several routes have messages) or
    /// `strict` (a later route only while every earlier one came back empty).
    ROUTES_POLICY = "CARRIER_ROUTES_POLICY" => routes_policy: Policy = "weighted", policy;
    /// Carrier only, per route only: the route's share of the slots while several routes have
    /// messages (1–1000).
    WEIGHT = "CARRIER_WEIGHT" => weight: u32 = "1", |v| count(v, 1, 1000).map(|n| n as u32),
        route_only;
}

/// A route's name for a variable: `CARRIER_ROUTE_ORDERS_WEBHOOK_ENDPOINT` for route `orders`
/// and `CARRIER_WEBHOOK_ENDPOINT`.
pub fn route_variable(route: &str, name: &str) -> String {
    let suffix = name.strip_prefix("CARRIER_").unwrap_or(name);
    format!("CARRIER_ROUTE_{}_{suffix}", route.to_ascii_uppercase())
}

/// How the README names a variable: its top-level name, or the route form for a route-only one.
pub fn documented_name(v: &Variable) -> String {
    match v.scope {
        Scope::RouteOnly => route_variable("<NAME>", v.name),
        Scope::Global | Scope::Route => v.name.to_string(),
    }
}

/// The most routes one carrier serves (SPEC 5.3).
pub const MAX_ROUTES: usize = 16;

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
    let vars: Vec<(&str, &str)> = vars
        .into_iter()
        .filter(|(n, _)| n.starts_with("CARRIER_"))
        .collect();
    // The routes named, leniently (a bad list is reported on its own).
    let routes: Vec<&str> = vars
        .iter()
        .find(|(n, _)| *n == ROUTES)
        .map(|(_, v)| v.split(',').map(str::trim).collect())
        .unwrap_or_default();
    let known = |name: &str| {
        VARIABLES.iter().any(|v| match v.scope {
            Scope::Global => v.name == name,
            Scope::Route => {
                v.name == name || routes.iter().any(|r| route_variable(r, v.name) == name)
            }
            Scope::RouteOnly => routes.iter().any(|r| route_variable(r, v.name) == name),
        })
    };
    let mut unknown: Vec<&str> = vars
        .into_iter()
        .filter(|(n, _)| !known(n))
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
/// (case aside), if it is close (a third of the name after `CARRIER_`, at most 3 edits). For a
/// route's variable (`CARRIER_ROUTE_<NAME>_…`), the closest route variable of that name.
pub fn did_you_mean(unknown: &str) -> Option<String> {
    let wanted = unknown.strip_prefix("CARRIER_")?.to_ascii_uppercase();
    let closest = |wanted: &str, scopes: &[Scope]| {
        let limit = (wanted.len() / 3).min(3);
        VARIABLES
            .iter()
            .filter(|v| scopes.contains(&v.scope))
            .map(|v| (edit_distance(wanted, &v.name["CARRIER_".len()..]), v.name))
            .filter(|(d, _)| *d <= limit)
            .min_by_key(|(d, _)| *d)
    };
    if let Some(rest) = wanted.strip_prefix("ROUTE_") {
        // Every split of `<NAME>_<SUFFIX>`; the closest suffix wins. An exact one is no typo of
        // the suffix: the route is not in CARRIER_ROUTES.
        let best = rest
            .match_indices('_')
            .filter_map(|(i, _)| {
                let (route, suffix) = (&rest[..i], &rest[i + 1..]);
                let (d, name) = closest(suffix, &[Scope::Route, Scope::RouteOnly])?;
                Some((d, route_variable(route, name)))
            })
            .min_by_key(|(d, _)| *d);
        if let Some((d, name)) = best {
            return (d > 0).then_some(name);
        }
    }
    closest(&wanted, &[Scope::Global, Scope::Route]).map(|(_, name)| name.to_string())
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
        None if name.starts_with("CARRIER_ROUTE_") => format!(
            "unknown variable {name} (a route's variable is read only for the routes {ROUTES} names)"
        ),
        None => format!("unknown variable {name}"),
    }
}

/// A setting that does nothing, or contradicts another: one log line at start, not a refusal.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Warning {
    /// The variable the warning is about (a route's own name when a route set it).
    pub variable: String,
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
        let lookup = |name: &str| std::env::var(name).ok();
        Self::from_raw(Raw::init_from_env(), unknown, &lookup)
    }

    /// The same, from a map instead of the process environment (tests, fuzzing).
    pub fn from_map(
        vars: &std::collections::HashMap<String, String>,
    ) -> Result<Config, ConfigErrors> {
        let unknown = unknown_names(vars.iter().map(|(k, v)| (k.as_str(), v.as_str())));
        let lookup = |name: &str| vars.get(name).cloned();
        Self::from_raw(Raw::init_from_hashmap(vars), unknown, &lookup)
    }

    fn from_raw(
        raw: Result<Raw, envconfig::Error>,
        unknown_variables: Vec<String>,
        lookup: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Config, ConfigErrors> {
        let raw = raw.map_err(|e| {
            let problem = format!("reading the environment: {e}");
            ConfigErrors(vec![problem], unknown_variables.clone())
        })?;
        let mut raw = raw;
        // A route-only variable has no top-level form (`CARRIER_WEIGHT` is unknown, not read).
        raw.weight = None;
        let mut p = Problems::default();
        let set = Explicit::of(&raw);
        let v = Values::parse(raw, &mut p);
        // Each route: the top level's values with its own applied (SPEC 5.3).
        let mut routes = Vec::new();
        for name in v.routes.iter().flatten() {
            let (raw, own) = route_raw(name, lookup);
            let mut rp = Problems {
                route: Some((name.clone(), own)),
                ..Problems::default()
            };
            let set = Explicit::of(&raw);
            let rv = Values::parse(raw, &mut rp);
            check_route(&rv, &mut rp);
            p.problems.append(&mut rp.problems);
            routes.push((name.clone(), rv, set, rp));
        }
        if v.routes.is_none() && !p.failed(ROUTES) {
            check_route(&v, &mut p);
        } else {
            check_backoff(&v, &mut p);
        }
        for (i, (name, rv, _, rp)) in routes.iter().enumerate() {
            // The same queue however it is spelled: by name at an endpoint, or by its URL.
            let queue = |v: &Values| {
                let address = QueueAddress {
                    endpoint: v.sqs_endpoint.clone(),
                    name: v.sqs_queue_name.clone(),
                    url: v.sqs_queue_url.clone(),
                };
                let endpoint = address
                    .effective_endpoint()
                    .map(|e| e.trim_end_matches('/').to_ascii_lowercase());
                (endpoint, address.display_name())
            };
            let has_queue = rv.sqs_queue_name.is_some() || rv.sqs_queue_url.is_some();
            if let Some((other, _, _, _)) = routes[..i]
                .iter()
                .find(|(_, o, _, _)| has_queue && queue(o) == queue(rv))
            {
                let variable = match rv.sqs_queue_url {
                    Some(_) => rp.name(SQS_QUEUE_URL),
                    None => rp.name(SQS_QUEUE_NAME),
                };
                p.problems.push(format!(
                    "{variable}: route {name} reads the queue route {other} reads; give each \
                     route its own ({} or {})",
                    route_variable(name, SQS_QUEUE_NAME),
                    route_variable(name, SQS_QUEUE_URL)
                ));
            }
        }
        // An inherited bad value is reported once, under its top-level name.
        let mut seen = std::collections::HashSet::new();
        p.problems.retain(|problem| seen.insert(problem.clone()));
        if !p.problems.is_empty() {
            return Err(ConfigErrors(p.problems, unknown_variables));
        }
        let mut warnings = global_warnings(&v, &set);
        let workers = match v.sqs_receiver_workers {
            0 => v.sqs_batch_size,
            n => n,
        };
        let route_settings = match v.routes.is_some() {
            false => {
                warnings.extend(route_warnings(&v, &set, workers, &Problems::default()));
                vec![route_settings(DEFAULT_ROUTE, &v)]
            }
            true => routes
                .iter()
                .map(|(name, rv, set, rp)| {
                    warnings.extend(route_warnings(rv, set, workers, rp));
                    route_settings(name, rv)
                })
                .collect(),
        };
        let mut seen = std::collections::HashSet::new();
        warnings.retain(|w| seen.insert(w.clone()));
        let mut settings = Settings::new(QueueAddress::default());
        settings.routes = route_settings;
        settings.policy = v.routes_policy;
        settings.receivers = v.sqs_receivers;
        settings.workers_per_receiver = workers;
        settings.threads = v.threads;
        settings.health_check =
            v.webhook_health_check_endpoint
                .map(|endpoint| HealthCheckSettings {
                    endpoint,
                    interval: v.webhook_health_check_interval,
                    timeout: v.webhook_health_check_timeout,
                    offline_threshold: v.webhook_offline_threshold_count,
                    startup_timeout: v.webhook_startup_timeout,
                    offline_action: v.webhook_offline_action,
                    tls_insecure_skip_verify: v.webhook_tls_insecure_skip_verify,
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

/// A route's raw variables: for each per-route variable its own value, else the top level's;
/// and which it set itself (by top-level name).
fn route_raw(route: &str, lookup: &dyn Fn(&str) -> Option<String>) -> (Raw, Vec<&'static str>) {
    let set = |v: Option<String>| v.filter(|v| !v.trim().is_empty());
    let mut map = std::collections::HashMap::new();
    let mut own = Vec::new();
    // The queue is inherited whole or not at all: a route that names its own queue (by name or
    // URL) takes neither of the top level's, or the top level's URL would win over its name.
    let own_queue = [SQS_QUEUE_NAME, SQS_QUEUE_URL]
        .iter()
        .any(|name| set(lookup(&route_variable(route, name))).is_some());
    for v in VARIABLES {
        if own_queue && [SQS_QUEUE_NAME, SQS_QUEUE_URL].contains(&v.name) {
            if let Some(value) = set(lookup(&route_variable(route, v.name))) {
                own.push(v.name);
                map.insert(v.name.to_string(), value);
            }
            continue;
        }
        let value = match v.scope {
            Scope::Global => continue,
            Scope::Route | Scope::RouteOnly => match set(lookup(&route_variable(route, v.name))) {
                Some(value) => {
                    own.push(v.name);
                    Some(value)
                }
                None if v.scope == Scope::Route => set(lookup(v.name)),
                None => None,
            },
        };
        if let Some(value) = value {
            map.insert(v.name.to_string(), value);
        }
    }
    // Only known names are in the map, each at most once: reading it cannot fail.
    let raw = Raw::init_from_hashmap(&map).unwrap_or_default();
    (raw, own)
}

/// One route's settings from its values.
fn route_settings(name: &str, v: &Values) -> RouteSettings {
    let mut route = RouteSettings::new(
        name,
        QueueAddress {
            endpoint: v.sqs_endpoint.clone(),
            name: v.sqs_queue_name.clone(),
            url: v.sqs_queue_url.clone(),
        },
    );
    route.batch_size = v.sqs_batch_size;
    route.visibility_timeout = v.sqs_visibility_timeout;
    route.webhook = WebhookSettings {
        endpoint: v.webhook_endpoint.clone(),
        tls_insecure_skip_verify: v.webhook_tls_insecure_skip_verify,
        default_content_type: v.webhook_default_content_type.clone(),
        request_timeout: v.webhook_request_timeout,
        success_codes: v.webhook_success_codes.clone(),
        header_style: v.webhook_header_style,
        signing: v.webhook_signing_secret.clone(),
        unwrap: v.webhook_unwrap,
        format: match v.webhook_format {
            FormatName::Message => Format::Message,
            FormatName::Lambda => Format::Lambda {
                batch_size: v.webhook_batch_size,
                window: v.webhook_batch_window,
            },
        },
    };
    route.nack = NackPolicy {
        error_visibility: v.webhook_error_visibility_timeout,
        backoff_max: v.webhook_error_backoff_max,
    };
    route.min_retry_delay = v.webhook_min_retry_delay;
    route.weight = v.weight;
    route
}

/// What every queue needs: the queue itself, and a backoff that can grow.
fn check_route(v: &Values, p: &mut Problems) {
    if v.sqs_queue_name.is_none()
        && v.sqs_queue_url.is_none()
        && !p.failed(SQS_QUEUE_URL)
        && !p.failed(SQS_QUEUE_NAME)
    {
        let (name, url) = (p.name(SQS_QUEUE_NAME), p.name(SQS_QUEUE_URL));
        let problem = match &p.route {
            None => format!("{name} is required (or set {url} to the queue's full URL)"),
            Some((route, _)) => format!(
                "{} is required for route {route} (or {}, or the top-level {SQS_QUEUE_NAME} / \
                 {SQS_QUEUE_URL} it would inherit): every route needs a queue",
                route_variable(route, SQS_QUEUE_NAME),
                route_variable(route, SQS_QUEUE_URL)
            ),
        };
        p.problems.push(problem);
    }
    check_backoff(v, p);
}

fn check_backoff(v: &Values, p: &mut Problems) {
    let (backoff, error) = (
        p.name(WEBHOOK_ERROR_BACKOFF_MAX),
        p.name(WEBHOOK_ERROR_VISIBILITY_TIMEOUT),
    );
    if let (Some(base), Some(max)) = (
        v.webhook_error_visibility_timeout,
        v.webhook_error_backoff_max,
    ) {
        if base.is_zero() {
            p.problems.push(format!(
                "{backoff} ({max:?}) is set with {error} 0s: the backoff doubles the error \
                 timeout, and a backoff from zero is no backoff; set {error} above zero (the \
                 first retry's delay), or unset it to start from the queue's visibility timeout"
            ));
        } else if max < base {
            p.problems.push(format!(
                "{backoff} ({max:?}) is below {error} ({base:?}), the backoff's base"
            ));
        }
    }
}

/// Which variables with a default were set explicitly (a default is not a choice to warn about).
struct Explicit {
    offline_action: bool,
    batch_size: bool,
    batch_window: bool,
    sqs_batch_size: bool,
    routes_policy: bool,
}

impl Explicit {
    fn of(raw: &Raw) -> Explicit {
        let set = |v: &Option<String>| v.as_deref().is_some_and(|v| !v.trim().is_empty());
        Explicit {
            offline_action: set(&raw.webhook_offline_action),
            batch_size: set(&raw.webhook_batch_size),
            batch_window: set(&raw.webhook_batch_window),
            sqs_batch_size: set(&raw.sqs_batch_size),
            routes_policy: set(&raw.routes_policy),
        }
    }
}

/// What a valid configuration's shared settings do nothing with, or contradict.
fn global_warnings(v: &Values, set: &Explicit) -> Vec<Warning> {
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
    if set.routes_policy && v.routes.is_none() {
        let message = format!("{ROUTES_POLICY} does nothing without {ROUTES}: there is one queue");
        warnings.push((ROUTES_POLICY, message));
    }
    warnings
        .into_iter()
        .map(|(variable, message)| Warning {
            variable: variable.to_string(),
            message,
        })
        .collect()
}

/// What a valid configuration's route (or the one queue) does nothing with, or contradicts;
/// `names` names the variables as the route set them.
fn route_warnings(v: &Values, set: &Explicit, workers: usize, names: &Problems) -> Vec<Warning> {
    let mut warnings = Vec::new();
    let n = |var| names.name(var);
    let lambda = v.webhook_format == FormatName::Lambda;
    let format = n(WEBHOOK_FORMAT);
    for (variable, set) in [
        (WEBHOOK_BATCH_SIZE, set.batch_size),
        (WEBHOOK_BATCH_WINDOW, set.batch_window),
    ] {
        if set && !lambda {
            let message = format!(
                "{} does nothing unless {format}=lambda: each POST carries one message",
                n(variable)
            );
            warnings.push((n(variable), message));
        }
    }
    if lambda && v.webhook_unwrap != Unwrap::None {
        let message = format!(
            "{} does nothing with {format}=lambda: Lambda gives each record as SQS holds it, \
             envelope and all",
            n(WEBHOOK_UNWRAP)
        );
        warnings.push((n(WEBHOOK_UNWRAP), message));
    }
    if lambda && set.sqs_batch_size {
        let message = format!(
            "{} does nothing with {format}=lambda: receives ask for 10 messages until a batch of \
             {} is gathered",
            n(SQS_BATCH_SIZE),
            n(WEBHOOK_BATCH_SIZE)
        );
        warnings.push((n(SQS_BATCH_SIZE), message));
    }
    let batch = v.sqs_batch_size;
    if batch > workers && !lambda {
        let message = format!(
            "{} ({batch}) is above {SQS_RECEIVER_WORKERS} ({workers}): a receiver never asks for \
             more messages than it has free workers, so receives are capped at {workers}",
            n(SQS_BATCH_SIZE)
        );
        warnings.push((n(SQS_BATCH_SIZE), message));
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
    /// Parsing a route's values: its name, and the variables it set itself (named in its form;
    /// the rest are the top level's).
    route: Option<(String, Vec<&'static str>)>,
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
        let problem = format!("{}={}: {why}", self.name(name), shown(name, value));
        self.problems.push(problem);
        self.failed.push(name);
    }

    /// How a variable is named here: the route's own form when the route set it.
    fn name(&self, name: &'static str) -> String {
        match &self.route {
            Some((route, own)) if own.contains(&name) => route_variable(route, name),
            _ => name.to_string(),
        }
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

/// `CARRIER_ROUTES`: 1 to 16 distinct names of `[a-z0-9_]`, comma-separated.
fn route_names(v: String) -> Result<Vec<String>, String> {
    let names: Vec<String> = v.split(',').map(|n| n.trim().to_string()).collect();
    if let Some(bad) = names.iter().find(|n| {
        n.is_empty()
            || !n
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
    }) {
        return Err(format!(
            "route name {bad:?} is not made of a-z, 0-9 and _; expected names such as \
             orders,reports"
        ));
    }
    if names.len() > MAX_ROUTES {
        return Err(format!("at most {MAX_ROUTES} routes"));
    }
    for (i, n) in names.iter().enumerate() {
        if names[..i].contains(n) {
            return Err(format!("route {n:?} is named twice"));
        }
    }
    Ok(names)
}

fn policy(v: String) -> Result<Policy, String> {
    match v.to_ascii_lowercase().as_str() {
        "weighted" => Ok(Policy::Weighted),
        "strict" => Ok(Policy::Strict),
        _ => Err("must be weighted or strict".into()),
    }
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
        let (g, s) = (&c.settings, &c.settings.routes[0]);
        assert_eq!(
            (s.batch_size, g.receivers, g.workers_per_receiver),
            (1, 1, 1)
        );
        assert_eq!(
            (g.routes.len(), s.name.as_str(), s.weight),
            (1, "default", 1)
        );
        assert_eq!(s.webhook.endpoint.url, "http://localhost:9000/");
        assert_eq!(s.webhook.default_content_type, "application/json");
        assert_eq!(s.webhook.request_timeout, Duration::from_secs(60));
        assert!(!s.webhook.tls_insecure_skip_verify);
        assert!(s.webhook.success_codes.contains(204));
        assert_eq!(s.webhook.header_style, HeaderStyle::Carrier);
        assert!(s.webhook.signing.is_none());
        assert!(g.health_check.is_none() && g.stat_log_interval.is_none());
        assert_eq!(g.shutdown_timeout, Duration::from_secs(20));
        assert_eq!(
            s.nack,
            NackPolicy::default(),
            "Go: a Nack makes no SQS call"
        );
        assert_eq!(s.min_retry_delay, Duration::from_secs(1));
        assert_eq!(
            (s.visibility_timeout, g.exit_when_idle, g.admin_addr),
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
        let (g, s) = (&c.settings, &c.settings.routes[0]);
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
        assert_eq!(g.exit_when_idle, Some(Duration::from_secs(30)));
        assert_eq!(g.admin_addr, Some("0.0.0.0:9464".parse().unwrap()));
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
        assert_eq!(
            did_you_mean("CARRIER_SQS_QUEUE_NMAE"),
            Some(SQS_QUEUE_NAME.into())
        );
        assert_eq!(
            did_you_mean("CARRIER_SQS_BATCHSIZE"),
            Some(SQS_BATCH_SIZE.into())
        );
        assert_eq!(did_you_mean("CARRIER_LOGLEVEL"), Some(LOG_LEVEL.into()));
        assert_eq!(
            did_you_mean("CARRIER_sqs_queue_url"),
            Some(SQS_QUEUE_URL.into())
        );
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
        let warned = |pairs: &[(&str, &str)]| -> Vec<String> {
            let mut env = vars(pairs);
            env.insert(SQS_QUEUE_NAME.into(), "q".into());
            let c = Config::from_map(&env).unwrap();
            c.warnings.iter().map(|w| w.variable.clone()).collect()
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
            (
                c.settings.routes[0].batch_size,
                c.settings.workers_per_receiver
            ),
            (7, 7)
        );
        let c = Config::from_map(&vars(&[(SQS_QUEUE_NAME, "q"), (SQS_BATCH_SIZE, "0")])).unwrap();
        assert_eq!(c.settings.routes[0].batch_size, 1);
    }

    #[test]
    fn empty_values_count_as_unset() {
        let c = Config::from_map(&vars(&[(SQS_QUEUE_NAME, "q"), (SQS_BATCH_SIZE, "")])).unwrap();
        assert_eq!(c.settings.routes[0].batch_size, 1);
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
    fn a_route_inherits_every_top_level_value_it_does_not_set_itself() {
        let c = Config::from_map(&vars(&[
            (ROUTES, "orders,reports"),
            (ROUTES_POLICY, "strict"),
            (WEBHOOK_REQUEST_TIMEOUT, "5s"),
            (WEBHOOK_HEADER_STYLE, "sqsd"),
            (SQS_RECEIVERS, "2"),
            ("CARRIER_ROUTE_ORDERS_SQS_QUEUE_NAME", "orders"),
            (
                "CARRIER_ROUTE_ORDERS_WEBHOOK_ENDPOINT",
                "http://127.0.0.1:9000/orders",
            ),
            ("CARRIER_ROUTE_ORDERS_WEIGHT", "3"),
            (
                "CARRIER_ROUTE_REPORTS_SQS_QUEUE_URL",
                "http://127.0.0.1:4566/000000000000/reports",
            ),
            ("CARRIER_ROUTE_REPORTS_WEBHOOK_FORMAT", "lambda"),
            ("CARRIER_ROUTE_REPORTS_WEBHOOK_HEADER_STYLE", "carrier"),
        ]))
        .unwrap();
        let s = &c.settings;
        assert_eq!(
            (s.policy, s.receivers, s.routes.len()),
            (Policy::Strict, 2, 2)
        );
        let (orders, reports) = (&s.routes[0], &s.routes[1]);
        assert_eq!((orders.name.as_str(), orders.weight), ("orders", 3));
        assert_eq!(orders.queue.name.as_deref(), Some("orders"));
        assert_eq!(orders.webhook.endpoint.url, "http://127.0.0.1:9000/orders");
        assert_eq!(orders.webhook.header_style, HeaderStyle::Sqsd, "inherited");
        assert_eq!(orders.webhook.request_timeout, Duration::from_secs(5));
        assert_eq!((reports.name.as_str(), reports.weight), ("reports", 1));
        assert_eq!(
            reports.webhook.header_style,
            HeaderStyle::Carrier,
            "its own"
        );
        assert!(matches!(
            reports.webhook.format,
            Format::Lambda { batch_size: 10, .. }
        ));
        assert_eq!(reports.webhook.request_timeout, Duration::from_secs(5));
        assert_eq!(reports.webhook.endpoint.url, "http://localhost:9000/");
        assert!(c.unknown_variables.is_empty(), "{:?}", c.unknown_variables);
    }

    #[test]
    fn every_problem_of_every_route_is_reported_naming_the_route_variable() {
        let e = Config::from_map(&vars(&[
            (ROUTES, "orders,reports,audit"),
            (WEBHOOK_REQUEST_TIMEOUT, "soon"),
            ("CARRIER_ROUTE_ORDERS_SQS_QUEUE_NAME", "orders"),
            ("CARRIER_ROUTE_ORDERS_WEIGHT", "0"),
            ("CARRIER_ROUTE_ORDERS_WEBHOOK_UNWRAP", "gzip"),
            ("CARRIER_ROUTE_REPORTS_SQS_QUEUE_NAME", "orders"),
            ("CARRIER_ROUTE_REPORTS_WEBHOOK_SIGNING_SECRET", "hunter2"),
            ("CARRIER_ROUTE_AUDIT_WEBHOOK_ENDPOINT", "ftp://x"),
            ("CARRIER_ROUTE_BILLING_SQS_QUEUE_NAME", "billing"),
            ("CARRIER_WEIGHT", "2"),
        ]))
        .unwrap_err();
        let text = e.to_string();
        for expected in [
            "CARRIER_WEBHOOK_REQUEST_TIMEOUT=\"soon\"",
            "CARRIER_ROUTE_ORDERS_WEIGHT=\"0\": must be a whole number from 1 to 1000",
            "CARRIER_ROUTE_ORDERS_WEBHOOK_UNWRAP=\"gzip\"",
            "CARRIER_ROUTE_REPORTS_WEBHOOK_SIGNING_SECRET=<redacted>",
            "CARRIER_ROUTE_AUDIT_WEBHOOK_ENDPOINT=\"ftp://x/\": must start with http",
            "CARRIER_ROUTE_AUDIT_SQS_QUEUE_NAME is required for route audit",
            "CARRIER_ROUTE_REPORTS_SQS_QUEUE_NAME: route reports reads the queue route orders reads",
            "unknown variable CARRIER_ROUTE_BILLING_SQS_QUEUE_NAME (a route's variable",
            "unknown variable CARRIER_WEIGHT",
        ] {
            assert!(
                text.contains(expected),
                "{expected:?} missing from:\n{text}"
            );
        }
        assert_eq!(
            text.matches("CARRIER_WEBHOOK_REQUEST_TIMEOUT=").count(),
            1,
            "an inherited problem is said once:\n{text}"
        );
        assert!(!text.contains("hunter2"));
        for bad in ["Orders", "a,a", "a,,b", "x-y"] {
            let e = Config::from_map(&vars(&[(ROUTES, bad), (SQS_QUEUE_NAME, "q")])).unwrap_err();
            assert!(e.to_string().contains("CARRIER_ROUTES="), "{bad}: {e}");
        }
        let many = (0..17)
            .map(|i| format!("r{i}"))
            .collect::<Vec<_>>()
            .join(",");
        assert!(Config::from_map(&vars(&[(ROUTES, &many), (SQS_QUEUE_NAME, "q")])).is_err());
    }

    #[test]
    fn a_route_that_names_its_queue_inherits_no_part_of_the_top_level_queue() {
        let c = Config::from_map(&vars(&[
            (ROUTES, "a,b"),
            (SQS_QUEUE_URL, "http://127.0.0.1:4566/000000000000/topq"),
            ("CARRIER_ROUTE_A_SQS_QUEUE_NAME", "qa"),
            (
                "CARRIER_ROUTE_B_SQS_QUEUE_URL",
                "http://127.0.0.1:4566/000000000000/qb",
            ),
        ]))
        .unwrap();
        let (a, b) = (&c.settings.routes[0].queue, &c.settings.routes[1].queue);
        assert_eq!((a.name.as_deref(), a.url.as_deref()), (Some("qa"), None));
        assert_eq!(b.name, None);
        assert_eq!(b.display_name(), "qb");
    }

    #[test]
    fn two_routes_on_one_queue_are_refused_however_it_is_spelled() {
        let e = Config::from_map(&vars(&[
            (ROUTES, "a,b"),
            (SQS_ENDPOINT, "http://127.0.0.1:4566"),
            ("CARRIER_ROUTE_A_SQS_QUEUE_NAME", "dupq"),
            (
                "CARRIER_ROUTE_B_SQS_QUEUE_URL",
                "http://127.0.0.1:4566/000000000000/dupq",
            ),
        ]))
        .unwrap_err();
        assert!(
            e.to_string()
                .contains("CARRIER_ROUTE_B_SQS_QUEUE_URL: route b reads the queue route a reads"),
            "{e}"
        );
        let e = Config::from_map(&vars(&[(ROUTES, "Bad")])).unwrap_err();
        assert!(
            !e.to_string().contains("CARRIER_SQS_QUEUE_NAME is required"),
            "{e}"
        );
    }

    #[test]
    fn a_near_miss_of_a_route_variable_is_suggested() {
        assert_eq!(
            did_you_mean("CARRIER_ROUTE_ORDERS_WEBHOOK_ENDPIONT").as_deref(),
            Some("CARRIER_ROUTE_ORDERS_WEBHOOK_ENDPOINT")
        );
        assert_eq!(
            did_you_mean("CARRIER_ROUTE_ORDERS_WIEGHT").as_deref(),
            Some("CARRIER_ROUTE_ORDERS_WEIGHT")
        );
        let unknown = unknown_variables([
            ("CARRIER_ROUTES", "orders"),
            ("CARRIER_ROUTE_ORDERS_WEIGHT", "2"),
            ("CARRIER_ROUTE_ORDERS_SQS_RECEIVERS", "2"),
            ("CARRIER_ROUTE_OTHER_WEIGHT", "2"),
        ]);
        assert_eq!(
            unknown,
            [
                "CARRIER_ROUTE_ORDERS_SQS_RECEIVERS",
                "CARRIER_ROUTE_OTHER_WEIGHT"
            ],
            "receivers are shared, not per route"
        );
    }

    #[test]
    fn a_route_s_warnings_name_its_own_variables() {
        let c = Config::from_map(&vars(&[
            (ROUTES, "a"),
            ("CARRIER_ROUTE_A_SQS_QUEUE_NAME", "a"),
            ("CARRIER_ROUTE_A_WEBHOOK_BATCH_SIZE", "5"),
        ]))
        .unwrap();
        let variables: Vec<&str> = c.warnings.iter().map(|w| w.variable.as_str()).collect();
        assert_eq!(variables, ["CARRIER_ROUTE_A_WEBHOOK_BATCH_SIZE"]);
        let c =
            Config::from_map(&vars(&[(SQS_QUEUE_NAME, "q"), (ROUTES_POLICY, "strict")])).unwrap();
        assert_eq!(c.warnings[0].variable, ROUTES_POLICY);
    }

    #[test]
    fn the_manifests_configurations_are_valid_and_quiet() {
        for (file, text) in [
            ("base", include_str!("../manifests/base/carrier.env")),
            (
                "lambda",
                include_str!("../manifests/overlays/lambda/carrier.env"),
            ),
            (
                "routes",
                include_str!("../manifests/overlays/routes/carrier.env"),
            ),
        ] {
            let env: std::collections::HashMap<String, String> = text
                .lines()
                .filter(|l| !l.trim_start().starts_with('#'))
                .filter_map(|l| l.split_once('='))
                .map(|(k, v)| (k.trim().to_string(), v.to_string()))
                .collect();
            let c = Config::from_map(&env).unwrap_or_else(|e| panic!("{file}: {e}"));
            assert!(
                c.unknown_variables.is_empty(),
                "{file}: {:?}",
                c.unknown_variables
            );
            assert!(c.warnings.is_empty(), "{file}: {:?}", c.warnings);
            if file == "routes" {
                let weights: Vec<u32> = c.settings.routes.iter().map(|r| r.weight).collect();
                assert_eq!(weights, [3, 1]);
            }
        }
    }

    #[test]
    fn the_readme_documents_every_variable_with_its_default() {
        let readme = include_str!("../README.md");
        for v in VARIABLES {
            let name = documented_name(v);
            let row = readme
                .lines()
                .find(|l| l.starts_with(&format!("| `{name}` |")))
                .unwrap_or_else(|| panic!("README has no table row for {name}"));
            if let Some(default) = v.default {
                assert!(
                    row.contains(&format!("`{default}`")),
                    "README row of {name} lacks its default `{default}`: {row}"
                );
            }
            assert_eq!(
                row.contains("| ↻ "),
                v.scope == Scope::Route,
                "README row of {name} must mark ↻ exactly the per-route variables: {row}"
            );
        }
    }
}
