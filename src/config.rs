//! `CARRIER_*` environment variables → one validated [`Config`].
//!
//! envconfig reads every variable as raw text (an empty value counts as unset); this module then
//! parses and validates *all* of them and reports every problem at once, each naming the
//! variable, the value and what is accepted. Defaults are the Go carrier's, beside each name.
//! It must not start anything or read anything but the environment.

use std::time::Duration;

use carrier_actors::{
    parse_http_url, HealthCheckSettings, QueueAddress, Settings, SuccessCodes, WebhookSettings,
};
use envconfig::Envconfig;

// Each variable, and its default where it has one (Go carrier's, unless marked "carrier only").
pub const SQS_ENDPOINT: &str = "CARRIER_SQS_ENDPOINT";
pub const SQS_QUEUE_NAME: &str = "CARRIER_SQS_QUEUE_NAME";
/// Carrier only: a full queue URL instead of name (+ endpoint).
pub const SQS_QUEUE_URL: &str = "CARRIER_SQS_QUEUE_URL";
pub const SQS_BATCH_SIZE: &str = "CARRIER_SQS_BATCH_SIZE";
const DEFAULT_SQS_BATCH_SIZE: &str = "1";
pub const SQS_RECEIVERS: &str = "CARRIER_SQS_RECEIVERS";
const DEFAULT_SQS_RECEIVERS: &str = "1";
pub const SQS_RECEIVER_WORKERS: &str = "CARRIER_SQS_RECEIVER_WORKERS";
const DEFAULT_SQS_RECEIVER_WORKERS: &str = "1";
pub const WEBHOOK_ENDPOINT: &str = "CARRIER_WEBHOOK_ENDPOINT";
const DEFAULT_WEBHOOK_ENDPOINT: &str = "http://localhost:9000";
pub const WEBHOOK_TLS_INSECURE_SKIP_VERIFY: &str = "CARRIER_WEBHOOK_TLS_INSECURE_SKIP_VERIFY";
const DEFAULT_WEBHOOK_TLS_INSECURE_SKIP_VERIFY: &str = "false";
pub const WEBHOOK_DEFAULT_CONTENT_TYPE: &str = "CARRIER_WEBHOOK_DEFAULT_CONTENT_TYPE";
const DEFAULT_WEBHOOK_DEFAULT_CONTENT_TYPE: &str = "application/json";
pub const WEBHOOK_REQUEST_TIMEOUT: &str = "CARRIER_WEBHOOK_REQUEST_TIMEOUT";
const DEFAULT_WEBHOOK_REQUEST_TIMEOUT: &str = "60s";
/// Carrier only: statuses that count as success. Any 2xx; Go accepted only 200.
pub const WEBHOOK_SUCCESS_CODES: &str = "CARRIER_WEBHOOK_SUCCESS_CODES";
const DEFAULT_WEBHOOK_SUCCESS_CODES: &str = "200-299";
pub const WEBHOOK_HEALTH_CHECK_ENDPOINT: &str = "CARRIER_WEBHOOK_HEALTH_CHECK_ENDPOINT";
pub const WEBHOOK_HEALTH_CHECK_INTERVAL: &str = "CARRIER_WEBHOOK_HEALTH_CHECK_INTERVAL";
const DEFAULT_WEBHOOK_HEALTH_CHECK_INTERVAL: &str = "60s";
pub const WEBHOOK_HEALTH_CHECK_TIMEOUT: &str = "CARRIER_WEBHOOK_HEALTH_CHECK_TIMEOUT";
const DEFAULT_WEBHOOK_HEALTH_CHECK_TIMEOUT: &str = "10s";
pub const WEBHOOK_OFFLINE_THRESHOLD_COUNT: &str = "CARRIER_WEBHOOK_OFFLINE_THRESHOLD_COUNT";
const DEFAULT_WEBHOOK_OFFLINE_THRESHOLD_COUNT: &str = "5";
pub const ENABLE_COLORIZED_LOGGING: &str = "CARRIER_ENABLE_COLORIZED_LOGGING";
const DEFAULT_ENABLE_COLORIZED_LOGGING: &str = "false";
pub const ENABLE_STAT_LOG: &str = "CARRIER_ENABLE_STAT_LOG";
const DEFAULT_ENABLE_STAT_LOG: &str = "false";
pub const STAT_LOG_TIMER: &str = "CARRIER_STAT_LOG_TIMER";
const DEFAULT_STAT_LOG_TIMER: &str = "120s";
/// Carrier only: how long in-flight deliveries may finish after SIGTERM. 25 s fits inside
/// Kubernetes' default 30 s termination grace period, leaving time to flush deletes.
pub const SHUTDOWN_TIMEOUT: &str = "CARRIER_SHUTDOWN_TIMEOUT";
const DEFAULT_SHUTDOWN_TIMEOUT: &str = "25s";
/// Carrier only: trace, debug, info, warn, error.
pub const LOG_LEVEL: &str = "CARRIER_LOG_LEVEL";
const DEFAULT_LOG_LEVEL: &str = "info";

/// Every variable carrier reads.
const KNOWN: &[&str] = &[
    SQS_ENDPOINT,
    SQS_QUEUE_NAME,
    SQS_QUEUE_URL,
    SQS_BATCH_SIZE,
    SQS_RECEIVERS,
    SQS_RECEIVER_WORKERS,
    WEBHOOK_ENDPOINT,
    WEBHOOK_TLS_INSECURE_SKIP_VERIFY,
    WEBHOOK_DEFAULT_CONTENT_TYPE,
    WEBHOOK_REQUEST_TIMEOUT,
    WEBHOOK_SUCCESS_CODES,
    WEBHOOK_HEALTH_CHECK_ENDPOINT,
    WEBHOOK_HEALTH_CHECK_INTERVAL,
    WEBHOOK_HEALTH_CHECK_TIMEOUT,
    WEBHOOK_OFFLINE_THRESHOLD_COUNT,
    ENABLE_COLORIZED_LOGGING,
    ENABLE_STAT_LOG,
    STAT_LOG_TIMER,
    SHUTDOWN_TIMEOUT,
    LOG_LEVEL,
];

/// The `CARRIER_*` names among `names` that carrier does not read: typos, or options of another
/// version. Worth a warning, not a refusal (a rollback must not fail on a newer option).
pub fn unknown_variables<'a>(names: impl IntoIterator<Item = &'a str>) -> Vec<&'a str> {
    let mut unknown: Vec<&str> = names
        .into_iter()
        .filter(|n| n.starts_with("CARRIER_") && !KNOWN.contains(n))
        .collect();
    unknown.sort_unstable();
    unknown
}

/// The raw variables, exactly as the environment has them.
#[derive(Envconfig, Debug, Default)]
struct RawConfig {
    #[envconfig(from = "CARRIER_SQS_ENDPOINT")]
    sqs_endpoint: Option<String>,
    #[envconfig(from = "CARRIER_SQS_QUEUE_NAME")]
    sqs_queue_name: Option<String>,
    #[envconfig(from = "CARRIER_SQS_QUEUE_URL")]
    sqs_queue_url: Option<String>,
    #[envconfig(from = "CARRIER_SQS_BATCH_SIZE")]
    sqs_batch_size: Option<String>,
    #[envconfig(from = "CARRIER_SQS_RECEIVERS")]
    sqs_receivers: Option<String>,
    #[envconfig(from = "CARRIER_SQS_RECEIVER_WORKERS")]
    sqs_receiver_workers: Option<String>,
    #[envconfig(from = "CARRIER_WEBHOOK_ENDPOINT")]
    webhook_endpoint: Option<String>,
    #[envconfig(from = "CARRIER_WEBHOOK_TLS_INSECURE_SKIP_VERIFY")]
    webhook_tls_insecure_skip_verify: Option<String>,
    #[envconfig(from = "CARRIER_WEBHOOK_DEFAULT_CONTENT_TYPE")]
    webhook_default_content_type: Option<String>,
    #[envconfig(from = "CARRIER_WEBHOOK_REQUEST_TIMEOUT")]
    webhook_request_timeout: Option<String>,
    #[envconfig(from = "CARRIER_WEBHOOK_SUCCESS_CODES")]
    webhook_success_codes: Option<String>,
    #[envconfig(from = "CARRIER_WEBHOOK_HEALTH_CHECK_ENDPOINT")]
    webhook_health_check_endpoint: Option<String>,
    #[envconfig(from = "CARRIER_WEBHOOK_HEALTH_CHECK_INTERVAL")]
    webhook_health_check_interval: Option<String>,
    #[envconfig(from = "CARRIER_WEBHOOK_HEALTH_CHECK_TIMEOUT")]
    webhook_health_check_timeout: Option<String>,
    #[envconfig(from = "CARRIER_WEBHOOK_OFFLINE_THRESHOLD_COUNT")]
    webhook_offline_threshold_count: Option<String>,
    #[envconfig(from = "CARRIER_ENABLE_COLORIZED_LOGGING")]
    enable_colorized_logging: Option<String>,
    #[envconfig(from = "CARRIER_ENABLE_STAT_LOG")]
    enable_stat_log: Option<String>,
    #[envconfig(from = "CARRIER_STAT_LOG_TIMER")]
    stat_log_timer: Option<String>,
    #[envconfig(from = "CARRIER_SHUTDOWN_TIMEOUT")]
    shutdown_timeout: Option<String>,
    #[envconfig(from = "CARRIER_LOG_LEVEL")]
    log_level: Option<String>,
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
}

/// Every problem found, one per line when displayed.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("invalid configuration:\n{}", .0.iter().map(|p| format!("  - {p}")).collect::<Vec<_>>().join("\n"))]
pub struct ConfigErrors(pub Vec<String>);

impl Config {
    pub fn from_env() -> Result<Config, ConfigErrors> {
        let raw = RawConfig::init_from_env()
            .map_err(|e| ConfigErrors(vec![format!("reading the environment: {e}")]))?;
        Self::from_raw(raw)
    }

    /// For tests: the same, from a map instead of the process environment.
    #[cfg(test)]
    pub fn from_map(
        vars: &std::collections::HashMap<String, String>,
    ) -> Result<Config, ConfigErrors> {
        let raw = RawConfig::init_from_hashmap(vars)
            .map_err(|e| ConfigErrors(vec![format!("reading the environment: {e}")]))?;
        Self::from_raw(raw)
    }

    fn from_raw(raw: RawConfig) -> Result<Config, ConfigErrors> {
        let mut p = Parser::default();
        let queue_name = p.optional(SQS_QUEUE_NAME, raw.sqs_queue_name, Ok);
        let queue_url = p.optional(SQS_QUEUE_URL, raw.sqs_queue_url, url);
        let endpoint = p.optional(SQS_ENDPOINT, raw.sqs_endpoint, url);
        if queue_name.is_none() && queue_url.is_none() && !p.failed(SQS_QUEUE_URL) {
            p.problems.push(format!(
                "{SQS_QUEUE_NAME} is required (or set {SQS_QUEUE_URL} to the queue's full URL)"
            ));
        }
        // Go parity: 0 leaves SQS's default of 1.
        let batch_size = p.value(
            SQS_BATCH_SIZE,
            raw.sqs_batch_size,
            DEFAULT_SQS_BATCH_SIZE,
            |v| count(v, 0, 10).map(|n| n.max(1)),
        );
        let receivers = p.value(
            SQS_RECEIVERS,
            raw.sqs_receivers,
            DEFAULT_SQS_RECEIVERS,
            |v| count(v, 1, 1024),
        );
        // Go parity: 0 means one worker per message of a batch.
        let workers = p.value(
            SQS_RECEIVER_WORKERS,
            raw.sqs_receiver_workers,
            DEFAULT_SQS_RECEIVER_WORKERS,
            |v| count(v, 0, 10_000),
        );
        let webhook_endpoint = p.value(
            WEBHOOK_ENDPOINT,
            raw.webhook_endpoint,
            DEFAULT_WEBHOOK_ENDPOINT,
            url,
        );
        let skip_verify = p.value(
            WEBHOOK_TLS_INSECURE_SKIP_VERIFY,
            raw.webhook_tls_insecure_skip_verify,
            DEFAULT_WEBHOOK_TLS_INSECURE_SKIP_VERIFY,
            boolean,
        );
        let content_type = p.value(
            WEBHOOK_DEFAULT_CONTENT_TYPE,
            raw.webhook_default_content_type,
            DEFAULT_WEBHOOK_DEFAULT_CONTENT_TYPE,
            header_value,
        );
        let request_timeout = p.value(
            WEBHOOK_REQUEST_TIMEOUT,
            raw.webhook_request_timeout,
            DEFAULT_WEBHOOK_REQUEST_TIMEOUT,
            positive_duration,
        );
        let success_codes = p.value(
            WEBHOOK_SUCCESS_CODES,
            raw.webhook_success_codes,
            DEFAULT_WEBHOOK_SUCCESS_CODES,
            |v| SuccessCodes::parse(&v),
        );
        let health_endpoint = p.optional(
            WEBHOOK_HEALTH_CHECK_ENDPOINT,
            raw.webhook_health_check_endpoint,
            url,
        );
        let health_interval = p.value(
            WEBHOOK_HEALTH_CHECK_INTERVAL,
            raw.webhook_health_check_interval,
            DEFAULT_WEBHOOK_HEALTH_CHECK_INTERVAL,
            interval,
        );
        let health_timeout = p.value(
            WEBHOOK_HEALTH_CHECK_TIMEOUT,
            raw.webhook_health_check_timeout,
            DEFAULT_WEBHOOK_HEALTH_CHECK_TIMEOUT,
            positive_duration,
        );
        let offline_threshold = p.value(
            WEBHOOK_OFFLINE_THRESHOLD_COUNT,
            raw.webhook_offline_threshold_count,
            DEFAULT_WEBHOOK_OFFLINE_THRESHOLD_COUNT,
            // Go parity: 0 behaves as 1 (offline at the first failure).
            |v| count(v, 0, 1_000_000).map(|n| n.max(1)),
        );
        let colorized = p.value(
            ENABLE_COLORIZED_LOGGING,
            raw.enable_colorized_logging,
            DEFAULT_ENABLE_COLORIZED_LOGGING,
            boolean,
        );
        let stat_log = p.value(
            ENABLE_STAT_LOG,
            raw.enable_stat_log,
            DEFAULT_ENABLE_STAT_LOG,
            boolean,
        );
        let stat_log_timer = p.value(
            STAT_LOG_TIMER,
            raw.stat_log_timer,
            DEFAULT_STAT_LOG_TIMER,
            interval,
        );
        let shutdown_timeout = p.value(
            SHUTDOWN_TIMEOUT,
            raw.shutdown_timeout,
            DEFAULT_SHUTDOWN_TIMEOUT,
            duration,
        );
        let level = p.value(LOG_LEVEL, raw.log_level, DEFAULT_LOG_LEVEL, log_level);

        if !p.problems.is_empty() {
            return Err(ConfigErrors(p.problems));
        }
        // No problems: every `value` above is `Some`.
        let (Some(batch_size), Some(receivers), Some(workers), Some(webhook_endpoint)) =
            (batch_size, receivers, workers, webhook_endpoint)
        else {
            unreachable!("validated above")
        };
        let mut settings = Settings::new(QueueAddress {
            endpoint,
            name: queue_name,
            url: queue_url,
        });
        settings.batch_size = batch_size;
        settings.receivers = receivers;
        settings.workers_per_receiver = if workers == 0 { batch_size } else { workers };
        settings.webhook = WebhookSettings {
            endpoint: webhook_endpoint,
            tls_insecure_skip_verify: skip_verify.unwrap_or_default(),
            default_content_type: content_type.unwrap_or_default(),
            request_timeout: request_timeout.unwrap_or_default(),
            success_codes: success_codes.unwrap_or_default(),
        };
        settings.health_check = health_endpoint.map(|endpoint| HealthCheckSettings {
            endpoint,
            interval: health_interval.unwrap_or_default(),
            timeout: health_timeout.unwrap_or_default(),
            offline_threshold: offline_threshold.unwrap_or(1) as u32,
        });
        settings.shutdown_timeout = shutdown_timeout.unwrap_or_default();
        settings.stat_log_interval = stat_log
            .unwrap_or_default()
            .then_some(stat_log_timer)
            .flatten();
        Ok(Config {
            settings,
            log: LogSettings {
                colorized: colorized.unwrap_or_default(),
                level: level.unwrap_or(slog::Level::Info),
            },
        })
    }
}

/// Collects problems while parsing each variable.
#[derive(Default)]
struct Parser {
    problems: Vec<String>,
    failed: Vec<&'static str>,
}

impl Parser {
    /// A variable with a default; `None` (and a recorded problem) when it does not parse.
    fn value<T>(
        &mut self,
        name: &'static str,
        raw: Option<String>,
        default: &str,
        parse: impl FnOnce(String) -> Result<T, String>,
    ) -> Option<T> {
        let raw = raw.filter(|v| !v.trim().is_empty());
        let from_env = raw.is_some();
        let value = raw.unwrap_or_else(|| default.to_string());
        match parse(value.trim().to_string()) {
            Ok(v) => Some(v),
            Err(why) => {
                debug_assert!(from_env, "default of {name} must be valid");
                self.problems.push(format!("{name}={value:?}: {why}"));
                self.failed.push(name);
                None
            }
        }
    }

    /// A variable without a default: unset (or empty) is `None`.
    fn optional<T>(
        &mut self,
        name: &'static str,
        raw: Option<String>,
        parse: impl FnOnce(String) -> Result<T, String>,
    ) -> Option<T> {
        let raw = raw.filter(|v| !v.trim().is_empty())?;
        match parse(raw.trim().to_string()) {
            Ok(v) => Some(v),
            Err(why) => {
                self.problems.push(format!("{name}={raw:?}: {why}"));
                self.failed.push(name);
                None
            }
        }
    }

    fn failed(&self, name: &str) -> bool {
        self.failed.contains(&name)
    }
}

fn count(v: String, min: usize, max: usize) -> Result<usize, String> {
    v.parse::<usize>()
        .ok()
        .filter(|n| (min..=max).contains(n))
        .ok_or_else(|| format!("must be a whole number from {min} to {max}"))
}

fn url(v: String) -> Result<String, String> {
    parse_http_url(&v)
        .map(|_| v)
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
    fn go_defaults_apply() {
        let c = Config::from_map(&vars(&[(SQS_QUEUE_NAME, "jobs")])).unwrap();
        let s = &c.settings;
        assert_eq!(
            (s.batch_size, s.receivers, s.workers_per_receiver),
            (1, 1, 1)
        );
        assert_eq!(s.webhook.endpoint, "http://localhost:9000");
        assert_eq!(s.webhook.default_content_type, "application/json");
        assert_eq!(s.webhook.request_timeout, Duration::from_secs(60));
        assert!(!s.webhook.tls_insecure_skip_verify);
        assert!(s.webhook.success_codes.contains(204));
        assert!(s.health_check.is_none() && s.stat_log_interval.is_none());
        assert_eq!(s.shutdown_timeout, Duration::from_secs(25));
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
        assert_eq!(c.settings.stat_log_interval, Some(Duration::from_secs(60)));
        assert!(c.log.colorized);
    }

    #[test]
    fn unknown_carrier_variables_are_found() {
        let names = [
            "CARRIER_SQS_BATCHSIZE",
            "CARRIER_SQS_BATCH_SIZE",
            "HOME",
            "CARRIER_X",
        ];
        assert_eq!(
            unknown_variables(names),
            ["CARRIER_SQS_BATCHSIZE", "CARRIER_X"]
        );
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
        ] {
            assert!(text.contains(needle), "missing {needle:?} in:\n{text}");
        }
        assert_eq!(err.0.len(), 8);
    }
}
