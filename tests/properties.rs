//! Property tests (proptest, on stable, in CI): the parsers and mappings that take outside input
//! never panic and keep their promises for any input. Failures proptest finds are kept as
//! regression cases in `tests/properties.proptest-regressions`.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use carrier::config::{self, parse_go_duration, Config};
use carrier_actors::http::retry_after;
use carrier_actors::{
    request_headers, Attribute, AttributeValue, Delivery, Endpoint, HeaderStyle, SuccessCodes,
    WebhookSettings,
};
use proptest::prelude::*;

const TWELVE_HOURS: Duration = Duration::from_secs(43_200);

/// A Go duration written as its parts, and the nanoseconds it stands for.
fn go_duration() -> impl Strategy<Value = (String, u128)> {
    let unit = prop_oneof![
        Just(("h", 3_600_000_000_000u128)),
        Just(("m", 60_000_000_000)),
        Just(("s", 1_000_000_000)),
        Just(("ms", 1_000_000)),
        Just(("us", 1_000)),
        Just(("ns", 1)),
    ];
    prop::collection::vec((0u32..1000, unit), 1..5).prop_map(|parts| {
        let text: String = parts.iter().map(|(n, (u, _))| format!("{n}{u}")).collect();
        let nanos = parts.iter().map(|(n, (_, scale))| *n as u128 * scale).sum();
        (text, nanos)
    })
}

proptest! {
    #[test]
    fn go_durations_parse_to_the_sum_of_their_parts((text, nanos) in go_duration()) {
        let d = parse_go_duration(&text).expect("a valid Go duration");
        // Parts are summed as f64: exact to well under a microsecond at these sizes.
        prop_assert!((d.as_nanos() as i128 - nanos as i128).abs() <= 1_000, "{text}: {d:?}");
    }

    #[test]
    fn any_text_given_as_a_duration_parses_or_is_refused_without_panicking(text in ".{0,40}") {
        if let Some(d) = parse_go_duration(&text) {
            prop_assert!(d.as_secs() < 1_000_000_000_000, "{text:?} → {d:?}");
        }
    }

    #[test]
    fn retry_after_of_any_text_is_none_or_within_twelve_hours(text in ".{0,40}") {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        if let Some(at) = retry_after(&text, now) {
            prop_assert!(at >= now && at <= now + TWELVE_HOURS, "{text:?}");
        }
    }

    #[test]
    fn retry_after_seconds_are_taken_as_they_are_up_to_twelve_hours(secs in 0u64..u64::MAX) {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let at = retry_after(&secs.to_string(), now).expect("digits are delay-seconds");
        prop_assert_eq!(at, now + Duration::from_secs(secs).min(TWELVE_HOURS));
    }

    #[test]
    fn retry_after_http_dates_round_trip(ahead in 0u64..200_000) {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let date = httpdate::fmt_http_date(now + Duration::from_secs(ahead));
        let at = retry_after(&date, now).expect("an HTTP-date");
        prop_assert_eq!(at, now + Duration::from_secs(ahead).min(TWELVE_HOURS));
    }

    #[test]
    fn success_code_lists_contain_exactly_their_codes(
        ranges in prop::collection::vec((100u16..600, 0u16..30), 1..6),
    ) {
        let ranges: Vec<(u16, u16)> = ranges.into_iter().map(|(lo, w)| (lo, (lo + w).min(599))).collect();
        let text = ranges
            .iter()
            .map(|(lo, hi)| if lo == hi { lo.to_string() } else { format!("{lo}-{hi}") })
            .collect::<Vec<_>>()
            .join(", ");
        let codes = SuccessCodes::parse(&text).expect("a valid list");
        for status in 100..600 {
            let expected = ranges.iter().any(|(lo, hi)| (*lo..=*hi).contains(&status));
            prop_assert_eq!(codes.contains(status), expected, "{} in {}", status, text);
        }
    }

    #[test]
    fn any_success_code_text_parses_or_is_refused_without_panicking(text in "[0-9, -]{0,20}|.{0,20}") {
        let _ = SuccessCodes::parse(&text);
    }

    #[test]
    fn attributes_become_headers_only_as_valid_values_never_injected(
        attributes in prop::collection::vec((".{0,12}", ".{0,24}", any::<bool>()), 0..6),
        content_type in ".{0,20}",
        sqsd in any::<bool>(),
    ) {
        let settings = WebhookSettings {
            endpoint: Endpoint::parse("http://u:p@127.0.0.1:9000/hook").unwrap(),
            header_style: if sqsd { HeaderStyle::Sqsd } else { HeaderStyle::Carrier },
            ..Default::default()
        };
        let mut list: Vec<Attribute> = attributes
            .iter()
            .map(|(name, value, binary)| Attribute {
                name: name.clone(),
                data_type: if *binary { "Binary".into() } else { "String".into() },
                value: if *binary {
                    AttributeValue::Binary(value.clone().into_bytes().into())
                } else {
                    AttributeValue::Text(value.clone())
                },
            })
            .collect();
        list.push(Attribute {
            name: "Body.ContentType".into(),
            data_type: "String".into(),
            value: AttributeValue::Text(content_type),
        });
        let delivery = Delivery {
            message_id: Arc::from("m-1"),
            body: bytes::Bytes::from_static(b"{}"),
            receive_count: Some("1".into()),
            attributes: list,
            ..Default::default()
        };
        let headers = request_headers(&settings, "queue", &delivery);
        for (name, value) in &headers {
            prop_assert!(!value.contains(['\r', '\n', '\0']), "{name}: {value:?}");
            prop_assert!(!name.is_empty() && name.bytes().all(|b| b.is_ascii_graphic()), "{name:?}");
        }
        let prefix = if sqsd { "x-aws-sqsd-attr-" } else { "x-carrier-attribute-" };
        for (name, value, binary) in &attributes {
            let header = format!("{prefix}{}", name.to_ascii_lowercase());
            let sent = headers.iter().filter(|(k, _)| *k == header).map(|(_, v)| v).collect::<Vec<_>>();
            if *binary {
                // Binary attributes have no header form (unless a text one shares the name).
                prop_assert!(sent.is_empty() || attributes.iter().any(|(n, _, b)| !b && n.eq_ignore_ascii_case(name)));
            } else if !name.is_empty() && value.bytes().all(|b| (0x20..0x7f).contains(&b)) && name.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b)) {
                prop_assert!(sent.contains(&value), "{header} carries {value:?}: {sent:?}");
            }
        }
    }

    #[test]
    fn configuration_of_any_values_is_accepted_or_refused_naming_each_variable_never_a_secret(
        values in prop::collection::vec((0usize..config::VARIABLES.len(), ".{0,30}"), 0..12),
    ) {
        let mut vars: HashMap<String, String> = values
            .iter()
            .map(|(i, v)| (config::VARIABLES[*i].name.to_string(), v.clone()))
            .collect();
        vars.insert(config::WEBHOOK_SIGNING_SECRET.into(), "whsec_c2VjcmV0LXNoaGgtdGhpcy1pcy1hLXRlc3Q= hunter2".into());
        match Config::from_map(&vars) {
            Ok(_) => {}
            Err(errors) => {
                prop_assert!(!errors.0.is_empty());
                for line in &errors.0 {
                    prop_assert!(line.starts_with("CARRIER_"), "{line}");
                    prop_assert!(!line.contains("hunter2"), "a secret leaked: {line}");
                }
            }
        }
    }
}

proptest! {
    /// The same with routes: any values of route variables (two routes, and a third named in no
    /// CARRIER_ROUTES) and top-level ones, every problem a line naming its variable.
    #[test]
    fn routes_of_any_values_are_accepted_or_refused_naming_each_variable_never_a_secret(
        values in prop::collection::vec((0usize..config::VARIABLES.len(), 0usize..4, ".{0,30}"), 0..16),
    ) {
        let mut vars: HashMap<String, String> = HashMap::from([
            (config::ROUTES.to_string(), "orders,reports".to_string()),
            ("CARRIER_ROUTE_REPORTS_WEBHOOK_SIGNING_SECRET".to_string(), "hunter2-is-no-whsec".to_string()),
        ]);
        for (i, route, value) in &values {
            let name = config::VARIABLES[*i].name;
            let name = match route {
                0 => name.to_string(),
                1 => config::route_variable("orders", name),
                2 => config::route_variable("reports", name),
                _ => config::route_variable("unlisted", name),
            };
            vars.insert(name, value.clone());
        }
        match Config::from_map(&vars) {
            Ok(c) => prop_assert!(!c.settings.routes.is_empty()),
            Err(errors) => {
                prop_assert!(!errors.0.is_empty());
                for line in &errors.0 {
                    prop_assert!(line.starts_with("CARRIER_"), "{line}");
                    prop_assert!(!line.contains("hunter2"), "a secret leaked: {line}");
                }
            }
        }
    }
}

/// From two cargo-fuzz finds (fuzz/fuzz_targets/config.rs): a signing secret equal to the value of
/// another, invalid variable, and one spelled like a variable name. Errors quote ordinary values
/// and carrier's own words, so the secret's text may appear there; the secret's own error stays
/// redacted.
#[test]
fn a_secret_that_looks_like_other_config_text_is_still_redacted_in_its_own_error() {
    let cases = [
        (
            "555555559=0",
            Some(("CARRIER_SQS_BATCH_SIZE", "555555559=0")),
        ),
        ("CARRIER_SQS_QUEUE_NAME", None),
    ];
    for (secret, other) in cases {
        let mut vars: HashMap<String, String> = HashMap::from([
            (
                config::WEBHOOK_SIGNING_SECRET.to_string(),
                secret.to_string(),
            ),
            (
                "CARRIER_WEBHOOK_ENDPOINT".to_string(),
                "http://127.0.0.1:9/".to_string(),
            ),
        ]);
        if let Some((name, value)) = other {
            vars.insert(name.to_string(), value.to_string());
            vars.insert("CARRIER_SQS_QUEUE_NAME".to_string(), "q".to_string());
        }
        let errors = Config::from_map(&vars).expect_err("refused").0;
        if let Some((name, _)) = other {
            assert!(errors.iter().any(|l| l.starts_with(name)), "{errors:?}");
        }
        let own: Vec<&String> = errors
            .iter()
            .filter(|l| l.starts_with(config::WEBHOOK_SIGNING_SECRET))
            .collect();
        assert!(
            !own.is_empty(),
            "a secret without whsec_ is refused: {errors:?}"
        );
        for line in own {
            assert!(line.contains("<redacted>"), "{line}");
            assert!(!line.contains(secret), "the secret leaked: {line}");
        }
    }
}

/// A Lambda answer body: bytes, JSON-ish text, or a batchItemFailures list naming ids in and out of
/// the batch.
fn lambda_answer() -> impl Strategy<Value = Vec<u8>> {
    let id = prop_oneof![
        Just("m-0".to_string()),
        Just("m-1".to_string()),
        Just(String::new()),
        "[a-z0-9-]{0,6}",
    ];
    let item = prop_oneof![
        id.prop_map(|i| format!(r#"{{"itemIdentifier":"{i}"}}"#)),
        Just(r#"{"itemIdentifier":null}"#.to_string()),
        Just("{}".to_string()),
        Just("7".to_string()),
    ];
    prop_oneof![
        prop::collection::vec(any::<u8>(), 0..64),
        "[ -~]{0,40}".prop_map(String::into_bytes),
        prop::collection::vec(item, 0..4).prop_map(|items| {
            format!(r#"{{"batchItemFailures":[{}]}}"#, items.join(",")).into_bytes()
        }),
    ]
}

proptest! {
    /// Whatever a function answers, reading it never panics, and a partial failure names only
    /// records of the batch, each once.
    #[test]
    fn a_lambda_answer_is_read_without_panic_and_names_only_batch_records(
        body in lambda_answer(),
        status in prop_oneof![Just(200u16), Just(202), Just(429), Just(500)],
        function_error in any::<bool>(),
    ) {
        use carrier_actors::present::lambda::{read_answer, Answer, BatchAnswer};
        let batch: Vec<Arc<str>> = vec![Arc::from("m-0"), Arc::from("m-1")];
        let answer = read_answer(
            Answer {
                status,
                success: (200..300).contains(&status),
                function_error,
                retry_until: None,
                body: &body,
                declared_length: Some(body.len()),
            },
            &batch,
        );
        if let BatchAnswer::Partial(failed) = answer {
            prop_assert!(!failed.is_empty() && failed.len() <= batch.len());
            prop_assert!(failed.iter().all(|f| batch.contains(f)));
            prop_assert!(status == 200 || status == 202);
            prop_assert!(!function_error);
        }
    }
}

/// The unwrap fuzz target's seeds (fuzz/seeds/unwrap: SNS, FIFO SNS, EventBridge, odd and broken
/// envelopes), each mutated: bytes replaced, inserted, or the body cut short.
fn envelope_body() -> impl Strategy<Value = Vec<u8>> {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/fuzz/seeds/unwrap");
    let mut seeds: Vec<Vec<u8>> = std::fs::read_dir(dir)
        .expect("fuzz/seeds/unwrap")
        .map(|e| std::fs::read(e.unwrap().path()).unwrap())
        .collect();
    seeds.sort();
    assert!(seeds.len() >= 5, "the seeds are there");
    let edit = (any::<usize>(), any::<u8>(), 0u8..4);
    (
        prop::sample::select(seeds),
        prop::collection::vec(edit, 0..6),
    )
        .prop_map(|(mut body, edits)| {
            for (at, byte, op) in edits {
                let i = if body.is_empty() { 0 } else { at % body.len() };
                match op {
                    0 if !body.is_empty() => body[i] = byte,
                    1 => body.insert(i, byte),
                    2 => body.truncate(i),
                    _ => {}
                }
            }
            body
        })
}

proptest! {
    /// Whatever a body holds, opening it never panics; what is not an envelope is delivered byte
    /// for byte, and every header is one that cannot split the request.
    #[test]
    fn opening_an_envelope_never_loses_a_body_or_injects_a_header(body in envelope_body()) {
        use carrier_actors::present::{envelope, Format, Presenter, Unwrap};
        let delivery = Delivery {
            message_id: Arc::from("m"),
            body: bytes::Bytes::from(body.clone()),
            ..Default::default()
        };
        for unwrap in [Unwrap::Sns, Unwrap::EventBridge, Unwrap::Auto] {
            for style in [HeaderStyle::Carrier, HeaderStyle::Sqsd] {
                let p = Presenter::new(Format::Message, style, unwrap, None, "q", "application/json");
                let r = p.message(&delivery);
                match envelope::unwrap(unwrap, &body) {
                    envelope::Opened::Unchanged => prop_assert_eq!(&r.body[..], &body[..]),
                    envelope::Opened::Sns(n) => prop_assert_eq!(&r.body[..], n.message.as_bytes()),
                    envelope::Opened::EventBridge(e) => {
                        prop_assert_eq!(&r.body[..], e.detail.as_bytes());
                        prop_assert!(serde_json::from_slice::<serde_json::Value>(&r.body).is_ok());
                    }
                }
                for (_, value) in &r.headers {
                    prop_assert!(value.as_bytes().iter().all(|b| *b != b'\r' && *b != b'\n'));
                }
            }
        }
    }
}
