//! One message per POST: its body (or, unwrapped, what its envelope held) and its metadata as
//! headers, in carrier's style (`X-Carrier-*`) or Elastic Beanstalk's (`X-Aws-Sqsd-*`).
//!
//! Every header value from message data is bounded so no message can make itself undeliverable:
//! a value that is not a valid header value, or over [`MAX_ATTRIBUTE_VALUE`], is skipped; the
//! attribute headers of a request (the SQS message's and an SNS envelope's, taken in name order)
//! stop before they reach [`ATTRIBUTE_HEADERS_BUDGET`]. Each skip is reported as a [`Skip`].

use std::borrow::Cow;

use awc::http::header::{self, HeaderName, HeaderValue};
use bytes::Bytes;

use super::envelope::Opened;
use super::{Presenter, Request, Skip};
use crate::messages::{AttributeValue, Delivery};

/// An attribute value longer than this is not sent as a header: attributes hold up to 256 KiB,
/// header lines do not (Apache refuses one over 8190 bytes, nginx one over 8 KiB), and a request
/// the webhook server refuses outright (`431`) would be refused on every try.
pub(crate) const MAX_ATTRIBUTE_VALUE: usize = 1024;
/// The attribute headers of one request (names and values) together stay under this, so with
/// carrier's own headers a request head stays well within common servers' limits (Node.js
/// refuses a head over 16 KiB) however many attributes a message has.
pub(crate) const ATTRIBUTE_HEADERS_BUDGET: usize = 8 * 1024;

/// Which metadata headers a request carries (`CARRIER_WEBHOOK_HEADER_STYLE`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum HeaderStyle {
    /// `X-Carrier-*`, as the Go carrier (plus more).
    #[default]
    Carrier,
    /// Elastic Beanstalk worker's `X-Aws-Sqsd-*`, so EB worker apps move over unchanged.
    Sqsd,
}

/// The header names of a message's metadata (written in Go's canonical case on HTTP/1.1).
pub(crate) mod names {
    pub const RECEIVE_COUNT: &str = "x-carrier-receive-count";
    pub const FIRST_RECEIVE_TIME: &str = "x-carrier-first-receive-time";
    pub const MESSAGE_ID: &str = "x-carrier-message-id";
    pub const QUEUE_NAME: &str = "x-carrier-queue-name";
    pub const SENT_TIME: &str = "x-carrier-sent-time";
    pub const GROUP_ID: &str = "x-carrier-message-group-id";
    pub const SEQUENCE_NUMBER: &str = "x-carrier-sequence-number";
    pub const ATTRIBUTE_PREFIX: &str = "x-carrier-attribute-";
    pub const TRACE_ID: &str = "x-amzn-trace-id";
    pub const TRACEPARENT: &str = "traceparent";
    pub const TRACESTATE: &str = "tracestate";
    // An SNS envelope's fields (both styles).
    pub const SNS_MESSAGE_ID: &str = "x-carrier-sns-message-id";
    pub const SNS_TOPIC_ARN: &str = "x-carrier-sns-topic-arn";
    pub const SNS_TIMESTAMP: &str = "x-carrier-sns-timestamp";
    pub const SNS_SUBJECT: &str = "x-carrier-sns-subject";
    pub const SNS_SEQUENCE_NUMBER: &str = "x-carrier-sns-sequence-number";
    // An EventBridge event's fields.
    pub const EVENT_ID: &str = "x-carrier-event-id";
    pub const EVENT_SOURCE: &str = "x-carrier-event-source";
    pub const EVENT_DETAIL_TYPE: &str = "x-carrier-event-detail-type";
    pub const EVENT_TIME: &str = "x-carrier-event-time";
    pub const EVENT_ACCOUNT: &str = "x-carrier-event-account";
    pub const EVENT_REGION: &str = "x-carrier-event-region";
    pub const EVENT_RESOURCES: &str = "x-carrier-event-resources";
    // Elastic Beanstalk's sqsd.
    pub const SQSD_MSGID: &str = "x-aws-sqsd-msgid";
    pub const SQSD_QUEUE: &str = "x-aws-sqsd-queue";
    pub const SQSD_FIRST_RECEIVED_AT: &str = "x-aws-sqsd-first-received-at";
    pub const SQSD_RECEIVE_COUNT: &str = "x-aws-sqsd-receive-count";
    pub const SQSD_SENDER_ID: &str = "x-aws-sqsd-sender-id";
    pub const SQSD_ATTRIBUTE_PREFIX: &str = "x-aws-sqsd-attr-";
}

/// The request for one message: opened as configured, with its headers.
pub(crate) fn present(p: &Presenter, d: &Delivery) -> Request {
    let opened = super::envelope::unwrap(p.unwrap, &d.body);
    let mut out = Request {
        id: d.message_id.clone(),
        body: Bytes::new(),
        headers: Vec::with_capacity(16),
        skipped: Vec::new(),
        opened: (p.unwrap != super::Unwrap::None).then(|| opened.label()),
    };
    headers(p, d, &opened, &mut out);
    // What the envelope held as it is shares the body's memory; unescaped text is new.
    out.body = match opened {
        Opened::Unchanged => d.body.clone(),
        Opened::Sns(n) => match n.message {
            Cow::Borrowed(m) => d.body.slice_ref(m.as_bytes()),
            Cow::Owned(m) => Bytes::from(m),
        },
        Opened::EventBridge(e) => d.body.slice_ref(e.detail.as_bytes()),
    };
    out
}

/// `Content-Type`, the metadata of the header style, trace context, the envelope's fields and the
/// attributes.
fn headers(p: &Presenter, d: &Delivery, opened: &Opened, out: &mut Request) {
    let content_type = match opened {
        Opened::EventBridge(_) => Some(HeaderValue::from_static("application/json")),
        Opened::Sns(n) => n
            .content_type()
            .and_then(|ct| message_value("Content-Type", ct, out)),
        Opened::Unchanged => d
            .text_attribute(crate::limits::CONTENT_TYPE_ATTRIBUTE)
            .and_then(|ct| message_value("Content-Type", ct, out)),
    }
    .or_else(|| p.default_content_type.clone());
    out.headers
        .extend(content_type.map(|ct| (header::CONTENT_TYPE, ct)));
    let queue_name = match p.style {
        HeaderStyle::Carrier => {
            put(out, names::RECEIVE_COUNT, d.receive_count.as_deref());
            put(
                out,
                names::FIRST_RECEIVE_TIME,
                d.first_receive_time.as_deref(),
            );
            put(out, names::MESSAGE_ID, Some(&d.message_id));
            put(out, names::SENT_TIME, d.sent_time.as_deref());
            put(out, names::GROUP_ID, d.group_id.as_deref());
            put(out, names::SEQUENCE_NUMBER, d.sequence_number.as_deref());
            names::QUEUE_NAME
        }
        HeaderStyle::Sqsd => {
            let first = d
                .first_receive_time
                .as_deref()
                .and_then(iso8601_from_epoch_ms);
            put(out, names::SQSD_MSGID, Some(&d.message_id));
            put(out, names::SQSD_RECEIVE_COUNT, d.receive_count.as_deref());
            put(out, names::SQSD_FIRST_RECEIVED_AT, first.as_deref());
            put(out, names::SQSD_SENDER_ID, d.sender_id.as_deref());
            names::SQSD_QUEUE
        }
    };
    if let Some(q) = &p.queue_name {
        out.headers
            .push((HeaderName::from_static(queue_name), q.clone()));
    }
    // Trace context flows through the queue (outside the attribute headers' budget).
    put(out, names::TRACE_ID, d.trace_header.as_deref());
    put(out, names::TRACEPARENT, d.text_attribute("traceparent"));
    put(out, names::TRACESTATE, d.text_attribute("tracestate"));
    // The envelope's fields come from the body, as attributes do: the same rules (printable
    // ASCII, at most 1 KiB) and the same 8 KiB budget, charged first.
    let mut fields: Vec<(&'static str, &str)> = Vec::new();
    let resources;
    match opened {
        Opened::Sns(n) => {
            fields.extend(
                [
                    (names::SNS_MESSAGE_ID, Some(&*n.message_id)),
                    (names::SNS_TOPIC_ARN, Some(&*n.topic_arn)),
                    (names::SNS_TIMESTAMP, n.timestamp.as_deref()),
                    (names::SNS_SUBJECT, n.subject.as_deref()),
                    (names::SNS_SEQUENCE_NUMBER, n.sequence_number.as_deref()),
                ]
                .into_iter()
                .filter_map(|(k, v)| Some((k, v?))),
            );
        }
        Opened::EventBridge(e) => {
            resources = e.resources.join(",");
            fields.extend(
                [
                    (names::EVENT_ID, Some(&*e.id)),
                    (names::EVENT_SOURCE, Some(&*e.source)),
                    (names::EVENT_DETAIL_TYPE, Some(&*e.detail_type)),
                    (names::EVENT_TIME, Some(&*e.time)),
                    (names::EVENT_ACCOUNT, e.account.as_deref()),
                    (names::EVENT_REGION, e.region.as_deref()),
                    (
                        names::EVENT_RESOURCES,
                        Some(resources.as_str()).filter(|r| !r.is_empty()),
                    ),
                ]
                .into_iter()
                .filter_map(|(k, v)| Some((k, v?))),
            );
        }
        Opened::Unchanged => {}
    }
    let mut left = ATTRIBUTE_HEADERS_BUDGET;
    for (name, text) in fields {
        if let Some(value) = bounded_value(name, text, &mut left, out) {
            out.headers.push((HeaderName::from_static(name), value));
        }
    }
    attribute_headers(p, d, opened, left, out);
}

/// A value from the body for a header named `name` (the envelope's fields): an
/// [`attribute_value`] within what is `left` of the budget (charged); else skipped.
fn bounded_value(
    name: &str,
    text: &str,
    left: &mut usize,
    out: &mut Request,
) -> Option<HeaderValue> {
    let value = attribute_value(name, text, out)?;
    let cost = name.len() + text.len();
    if cost >= *left {
        out.skipped.push(Skip::OverBudget {
            first: name.to_string(),
            count: 1,
        });
        return None;
    }
    *left -= cost;
    Some(value)
}

/// Each String/Number attribute (the SQS message's, then an SNS envelope's; an SNS `String.Array`
/// as its JSON text) as `X-Carrier-Attribute-<Name>` (or `X-Aws-Sqsd-Attr-<Name>`): a value with a
/// byte outside printable ASCII (0x20–0x7E) or over [`MAX_ATTRIBUTE_VALUE`] is skipped, and taken
/// in name order the headers stop before their names and values reach
/// [`ATTRIBUTE_HEADERS_BUDGET`].
fn attribute_headers(p: &Presenter, d: &Delivery, opened: &Opened, left: usize, out: &mut Request) {
    let prefix = match p.style {
        HeaderStyle::Carrier => names::ATTRIBUTE_PREFIX,
        HeaderStyle::Sqsd => names::SQSD_ATTRIBUTE_PREFIX,
    };
    let mut attributes: Vec<(&str, &str)> = d
        .attributes
        .iter()
        .filter_map(|a| match &a.value {
            AttributeValue::Text(text) => Some((a.name.as_str(), text.as_str())),
            AttributeValue::Binary(_) => None, // no header form
        })
        .collect();
    if let Opened::Sns(n) = opened {
        attributes.extend(
            n.attributes
                .iter()
                .filter(|a| matches!(&*a.kind, "String" | "Number" | "String.Array"))
                .map(|a| (&*a.name, &*a.value)),
        );
    }
    attributes.sort_by_key(|(name, _)| *name);
    let mut left = left;
    let mut over_budget: Vec<&str> = Vec::new();
    for (name, text) in attributes {
        let Ok(header) = HeaderName::from_bytes(format!("{prefix}{name}").as_bytes()) else {
            out.skipped.push(Skip::Invalid {
                header: name.to_string(),
            });
            continue;
        };
        let Some(value) = attribute_value(name, text, out) else {
            continue;
        };
        let cost = header.as_str().len() + text.len();
        if !over_budget.is_empty() || cost >= left {
            over_budget.push(name);
            continue;
        }
        left -= cost;
        out.headers.push((header, value));
    }
    if let Some(first) = over_budget.first() {
        out.skipped.push(Skip::OverBudget {
            first: first.to_string(),
            count: over_budget.len(),
        });
    }
}

/// One header from the message's own data (its metadata, envelope fields, trace context), unless
/// absent or skipped.
fn put(out: &mut Request, name: &'static str, value: Option<&str>) {
    if let Some(v) = value.and_then(|v| message_value(name, v, out)) {
        out.headers.push((HeaderName::from_static(name), v));
    }
}

/// A header value from message data, or `None` (noted as skipped) when it is not a valid one or
/// is over [`MAX_ATTRIBUTE_VALUE`]: odd values are skipped, never injected, never fatal.
fn message_value(name: &str, value: &str, out: &mut Request) -> Option<HeaderValue> {
    if value.len() > MAX_ATTRIBUTE_VALUE {
        out.skipped.push(Skip::TooLong {
            header: name.to_string(),
            bytes: value.len(),
        });
        return None;
    }
    match HeaderValue::from_str(value) {
        Ok(v) => Some(v),
        Err(_) => {
            out.skipped.push(Skip::Invalid {
                header: name.to_string(),
            });
            None
        }
    }
}

/// A header value from an attribute or an envelope's field: a [`message_value`] of printable
/// ASCII only (noted as skipped otherwise).
fn attribute_value(name: &str, text: &str, out: &mut Request) -> Option<HeaderValue> {
    if !printable_ascii(text) {
        out.skipped.push(Skip::Invalid {
            header: name.to_string(),
        });
        return None;
    }
    message_value(name, text, out)
}

/// Whether every byte of `value` is printable ASCII (0x20–0x7E): what an attribute header's value
/// may hold. No tab, no obs-text: many servers and proxies refuse or mangle them.
fn printable_ascii(value: &str) -> bool {
    value.bytes().all(|b| (0x20..=0x7e).contains(&b))
}

/// `ApproximateFirstReceiveTimestamp` (epoch ms) as ISO 8601 UTC, as Elastic Beanstalk's sqsd sends it.
fn iso8601_from_epoch_ms(ms: &str) -> Option<String> {
    let ms: i64 = ms.parse().ok()?;
    let at = time::OffsetDateTime::from_unix_timestamp(ms / 1000).ok()?;
    let format =
        time::macros::format_description!("[year]-[month]-[day]T[hour]:[minute]:[second]Z");
    at.format(&format).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::messages::Attribute;
    use crate::messages::Incoming;
    use crate::present::{Format, Unwrap};
    use std::sync::Arc;

    fn presenter(style: HeaderStyle, unwrap: Unwrap) -> Presenter {
        Presenter::new(
            Format::Message,
            style,
            unwrap,
            None,
            "q",
            "application/json",
        )
    }

    fn request(p: &Presenter, body: &str, attributes: Vec<Attribute>) -> Request {
        p.present(&[Incoming {
            receipt: Arc::from("r"),
            delivery: Arc::new(Delivery {
                message_id: Arc::from("sqs-1"),
                body: Bytes::from(body.to_string()),
                receive_count: Some("2".into()),
                attributes,
                ..Default::default()
            }),
        }])
    }

    fn header<'r>(r: &'r Request, name: &str) -> Option<&'r str> {
        r.headers
            .iter()
            .find(|(k, _)| k.as_str() == name)
            .and_then(|(_, v)| v.to_str().ok())
    }

    const SNS: &str = r#"{"Type":"Notification","MessageId":"sns-1","TopicArn":"arn:aws:sns:us-east-1:123456789012:t.fifo",
        "Subject":"Hello","Message":"<p>hi</p>","Timestamp":"2026-12-03T05:00:00.000Z","SequenceNumber":"10000000000000003000",
        "MessageAttributes":{"Body.ContentType":{"Type":"String","Value":"text/html"},
          "tenant":{"Type":"String","Value":"acme"},"price":{"Type":"Number","Value":"9.5"},
          "tags":{"Type":"String.Array","Value":"[\"a\",\"b\"]"},"blob":{"Type":"Binary","Value":"AQI="},
          "evil":{"Type":"String","Value":"a\r\nX-Injected: yes"}}}"#;

    #[test]
    fn an_sns_message_is_delivered_with_its_fields_and_attributes_as_headers() {
        let r = request(
            &presenter(HeaderStyle::Carrier, Unwrap::Sns),
            SNS,
            Vec::new(),
        );
        assert_eq!(&r.body[..], b"<p>hi</p>");
        assert_eq!(r.opened, Some("sns"));
        assert_eq!(r.id.as_ref(), "sqs-1", "signed as the SQS message");
        let want = [
            ("content-type", "text/html"),
            ("x-carrier-sns-message-id", "sns-1"),
            (
                "x-carrier-sns-topic-arn",
                "arn:aws:sns:us-east-1:123456789012:t.fifo",
            ),
            ("x-carrier-sns-timestamp", "2026-12-03T05:00:00.000Z"),
            ("x-carrier-sns-subject", "Hello"),
            ("x-carrier-sns-sequence-number", "10000000000000003000"),
            ("x-carrier-attribute-tenant", "acme"),
            ("x-carrier-attribute-price", "9.5"),
            ("x-carrier-attribute-tags", "[\"a\",\"b\"]"),
            ("x-carrier-message-id", "sqs-1"),
            ("x-carrier-receive-count", "2"),
        ];
        for (name, value) in want {
            assert_eq!(header(&r, name), Some(value), "{name}");
        }
        assert_eq!(
            header(&r, "x-carrier-attribute-blob"),
            None,
            "Binary: no header form"
        );
        assert_eq!(header(&r, "x-carrier-attribute-evil"), None);
        assert_eq!(header(&r, "x-injected"), None);
        assert_eq!(
            r.skipped,
            [Skip::Invalid {
                header: "evil".into()
            }]
        );
    }

    #[test]
    fn in_sqsd_style_attributes_take_its_prefix_and_the_sns_names_stay() {
        let r = request(&presenter(HeaderStyle::Sqsd, Unwrap::Auto), SNS, Vec::new());
        assert_eq!(header(&r, "x-aws-sqsd-attr-tenant"), Some("acme"));
        assert_eq!(header(&r, "x-carrier-attribute-tenant"), None);
        assert_eq!(header(&r, "x-carrier-sns-subject"), Some("Hello"));
        assert_eq!(header(&r, "x-aws-sqsd-msgid"), Some("sqs-1"));
    }

    #[test]
    fn without_a_content_type_attribute_the_default_is_sent_and_an_event_is_json() {
        let sns = r#"{"Type":"Notification","MessageId":"m","TopicArn":"t","Message":"x"}"#;
        let r = request(
            &presenter(HeaderStyle::Carrier, Unwrap::Sns),
            sns,
            Vec::new(),
        );
        assert_eq!(header(&r, "content-type"), Some("application/json"));
        assert_eq!(header(&r, "x-carrier-sns-subject"), None);
        let event = r#"{"id":"e-1","detail-type":"Order Placed","source":"shop","time":"2026-12-03T05:00:00Z",
            "account":"123456789012","region":"eu-west-1","resources":["arn:a","arn:b"],"detail":{"order":7}}"#;
        let p = Presenter::new(
            Format::Message,
            HeaderStyle::Carrier,
            Unwrap::EventBridge,
            None,
            "q",
            "text/plain",
        );
        let r = request(&p, event, Vec::new());
        assert_eq!(&r.body[..], br#"{"order":7}"#);
        assert_eq!(r.opened, Some("eventbridge"));
        let want = [
            ("content-type", "application/json"),
            ("x-carrier-event-id", "e-1"),
            ("x-carrier-event-source", "shop"),
            ("x-carrier-event-detail-type", "Order Placed"),
            ("x-carrier-event-time", "2026-12-03T05:00:00Z"),
            ("x-carrier-event-account", "123456789012"),
            ("x-carrier-event-region", "eu-west-1"),
            ("x-carrier-event-resources", "arn:a,arn:b"),
        ];
        for (name, value) in want {
            assert_eq!(header(&r, name), Some(value), "{name}");
        }
    }

    #[test]
    fn envelope_fields_share_the_attribute_budget_and_must_be_printable_ascii() {
        let f = "f".repeat(1024);
        let event = serde_json::json!({
            "id": f, "detail-type": f, "source": f, "time": f, "account": f, "region": f,
            "resources": ["x".repeat(500), "y".repeat(523)], "detail": {"ok": 1}
        })
        .to_string();
        let attributes: Vec<Attribute> = (0..10)
            .map(|i| Attribute {
                name: format!("a{i}"),
                data_type: "String".into(),
                value: AttributeValue::Text("v".repeat(1000)),
            })
            .collect();
        let r = request(
            &presenter(HeaderStyle::Carrier, Unwrap::Auto),
            &event,
            attributes,
        );
        let bounded: usize = r
            .headers
            .iter()
            .filter(|(k, _)| {
                k.as_str().starts_with("x-carrier-event-")
                    || k.as_str().starts_with("x-carrier-attribute-")
            })
            .map(|(k, v)| k.as_str().len() + v.len())
            .sum();
        assert!(bounded < ATTRIBUTE_HEADERS_BUDGET, "{bounded}");
        assert!(
            header(&r, "x-carrier-event-id").is_some(),
            "envelope fields go first"
        );
        let odd = r#"{"id":"e","detail-type":"Commande passée","source":"  padded\t","time":"t","detail":{}}"#;
        let r = request(
            &presenter(HeaderStyle::Carrier, Unwrap::EventBridge),
            odd,
            Vec::new(),
        );
        assert_eq!(header(&r, "x-carrier-event-detail-type"), None);
        assert_eq!(header(&r, "x-carrier-event-source"), None);
        assert_eq!(header(&r, "x-carrier-event-id"), Some("e"));
    }

    #[test]
    fn a_body_that_is_not_the_envelope_is_delivered_unchanged_and_counted_as_none() {
        let tenant = Attribute {
            name: "tenant".into(),
            data_type: "String".into(),
            value: AttributeValue::Text("acme".into()),
        };
        let r = request(
            &presenter(HeaderStyle::Carrier, Unwrap::Auto),
            "{\"Type\":\"Notification\"",
            vec![tenant],
        );
        assert_eq!(&r.body[..], b"{\"Type\":\"Notification\"");
        assert_eq!(r.opened, Some("none"));
        assert_eq!(header(&r, "x-carrier-attribute-tenant"), Some("acme"));
        let plain = request(
            &presenter(HeaderStyle::Carrier, Unwrap::None),
            SNS,
            Vec::new(),
        );
        assert_eq!(&plain.body[..], SNS.as_bytes());
        assert_eq!(
            plain.opened, None,
            "not counted without an envelope configured"
        );
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
