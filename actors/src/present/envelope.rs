//! Fan-out envelopes (SPEC 5.2): a message an SNS topic (without raw message delivery) or an
//! EventBridge rule put on the queue, recognised by its shape and opened, so the worker receives
//! what was published and the envelope's fields as headers.
//!
//! Pure: [`unwrap`] reads a body and says what is inside. Anything that is not the envelope asked
//! for — not JSON, another shape, a required field of the wrong type — is [`Opened::Unchanged`]
//! (delivered as it is); an optional field of the wrong type is left out. It never fails.

use std::borrow::Cow;
use std::collections::BTreeMap;

use serde::Deserialize;
use serde_json::value::RawValue;

/// Which envelopes to open (`CARRIER_WEBHOOK_UNWRAP`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Unwrap {
    /// Deliver bodies as they are.
    #[default]
    None,
    Sns,
    EventBridge,
    /// Each body is tried as SNS, then as EventBridge.
    Auto,
}

/// What a body held. Its text borrows from the body wherever the envelope holds it as it is
/// (no JSON escapes), so opening copies little.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Opened<'a> {
    /// Not the envelope asked for (or none asked for): delivered unchanged.
    Unchanged,
    Sns(SnsNotification<'a>),
    EventBridge(Event<'a>),
}

impl Opened<'_> {
    /// The label it is counted under (`carrier_messages_unwrapped_total{envelope}`).
    pub fn label(&self) -> &'static str {
        match self {
            Opened::Unchanged => "none",
            Opened::Sns(_) => "sns",
            Opened::EventBridge(_) => "eventbridge",
        }
    }
}

/// An SNS notification, opened.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SnsNotification<'a> {
    /// `Message`: what was published, delivered unchanged.
    pub message: Cow<'a, str>,
    pub message_id: Cow<'a, str>,
    pub topic_arn: Cow<'a, str>,
    pub timestamp: Option<Cow<'a, str>>,
    /// Set when the publisher gave one.
    pub subject: Option<Cow<'a, str>>,
    /// FIFO topics.
    pub sequence_number: Option<Cow<'a, str>>,
    /// `MessageAttributes`, by name: (name, SNS `Type`, `Value`). A `String.Array` value is the
    /// JSON text SNS gave; `Binary` ones are kept here (and skipped as headers).
    pub attributes: Vec<SnsAttribute<'a>>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SnsAttribute<'a> {
    pub name: Cow<'a, str>,
    pub kind: Cow<'a, str>,
    pub value: Cow<'a, str>,
}

impl SnsNotification<'_> {
    /// The `Body.ContentType` attribute, if it is a String one.
    pub fn content_type(&self) -> Option<&str> {
        self.attributes
            .iter()
            .find(|a| a.name == crate::limits::CONTENT_TYPE_ATTRIBUTE && a.kind == "String")
            .map(|a| &*a.value)
    }
}

/// An EventBridge event, opened.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event<'a> {
    /// The JSON text of `detail`, exactly as it stood in the envelope.
    pub detail: &'a str,
    pub id: Cow<'a, str>,
    pub source: Cow<'a, str>,
    pub detail_type: Cow<'a, str>,
    pub time: Cow<'a, str>,
    pub account: Option<Cow<'a, str>>,
    pub region: Option<Cow<'a, str>>,
    /// `resources`, its strings only.
    pub resources: Vec<Cow<'a, str>>,
}

/// Opens `body` as `unwrap` asks.
pub fn unwrap(unwrap: Unwrap, body: &[u8]) -> Opened<'_> {
    match unwrap {
        Unwrap::None => Opened::Unchanged,
        Unwrap::Sns => sns(body).map_or(Opened::Unchanged, Opened::Sns),
        Unwrap::EventBridge => event(body).map_or(Opened::Unchanged, Opened::EventBridge),
        Unwrap::Auto => match sns(body) {
            Some(n) => Opened::Sns(n),
            None => event(body).map_or(Opened::Unchanged, Opened::EventBridge),
        },
    }
}

/// The fields of an SNS notification carrier reads; the required ones must be strings.
#[derive(Deserialize)]
struct RawSns<'a> {
    #[serde(rename = "Type", borrow)]
    kind: Cow<'a, str>,
    #[serde(rename = "MessageId", borrow)]
    message_id: Cow<'a, str>,
    #[serde(rename = "TopicArn", borrow)]
    topic_arn: Cow<'a, str>,
    #[serde(rename = "Message", borrow)]
    message: Cow<'a, str>,
    #[serde(rename = "Timestamp", default, borrow)]
    timestamp: Option<&'a RawValue>,
    #[serde(rename = "Subject", default, borrow)]
    subject: Option<&'a RawValue>,
    #[serde(rename = "SequenceNumber", default, borrow)]
    sequence_number: Option<&'a RawValue>,
    #[serde(rename = "MessageAttributes", default, borrow)]
    attributes: Option<&'a RawValue>,
}

/// One SNS message attribute; read on its own, so a malformed one is skipped, not fatal.
#[derive(Deserialize)]
struct RawAttribute<'a> {
    #[serde(rename = "Type", borrow)]
    kind: Cow<'a, str>,
    #[serde(rename = "Value", borrow)]
    value: Cow<'a, str>,
}

fn sns(body: &[u8]) -> Option<SnsNotification<'_>> {
    if !looks_like_object(body) {
        return None;
    }
    let raw: RawSns<'_> = serde_json::from_slice(body).ok()?;
    if raw.kind != "Notification" {
        return None;
    }
    Some(SnsNotification {
        message: raw.message,
        message_id: raw.message_id,
        topic_arn: raw.topic_arn,
        timestamp: raw_text(raw.timestamp),
        subject: raw_text(raw.subject),
        sequence_number: raw_text(raw.sequence_number),
        attributes: raw.attributes.map(sns_attributes).unwrap_or_default(),
    })
}

/// `MessageAttributes`: each attribute read on its own, so a malformed one is skipped.
fn sns_attributes(raw: &RawValue) -> Vec<SnsAttribute<'_>> {
    // Every attribute well formed, no escapes in the names (the usual case): one pass.
    if let Ok(map) = serde_json::from_str::<BTreeMap<&str, RawAttribute<'_>>>(raw.get()) {
        return map
            .into_iter()
            .map(|(name, a)| SnsAttribute {
                name: Cow::Borrowed(name),
                kind: a.kind,
                value: a.value,
            })
            .collect();
    }
    let by_name: Vec<(Cow<'_, str>, &RawValue)> =
        match serde_json::from_str::<BTreeMap<&str, &RawValue>>(raw.get()) {
            Ok(map) => map
                .into_iter()
                .map(|(k, v)| (Cow::Borrowed(k), v))
                .collect(),
            // A name with JSON escapes in it.
            Err(_) => match serde_json::from_str::<BTreeMap<String, &RawValue>>(raw.get()) {
                Ok(map) => map.into_iter().map(|(k, v)| (Cow::Owned(k), v)).collect(),
                Err(_) => return Vec::new(),
            },
        };
    by_name
        .into_iter()
        .filter_map(|(name, a)| {
            let a: RawAttribute<'_> = serde_json::from_str(a.get()).ok()?;
            Some(SnsAttribute {
                name,
                kind: a.kind,
                value: a.value,
            })
        })
        .collect()
}

/// The fields of an EventBridge event carrier reads; the required ones must be strings (and
/// `detail` any JSON value).
#[derive(Deserialize)]
struct RawEvent<'a> {
    #[serde(borrow)]
    detail: &'a RawValue,
    #[serde(rename = "detail-type", borrow)]
    detail_type: Cow<'a, str>,
    #[serde(borrow)]
    source: Cow<'a, str>,
    #[serde(borrow)]
    id: Cow<'a, str>,
    #[serde(borrow)]
    time: Cow<'a, str>,
    #[serde(default, borrow)]
    account: Option<&'a RawValue>,
    #[serde(default, borrow)]
    region: Option<&'a RawValue>,
    #[serde(default, borrow)]
    resources: Option<&'a RawValue>,
}

fn event(body: &[u8]) -> Option<Event<'_>> {
    if !looks_like_object(body) {
        return None;
    }
    let raw: RawEvent<'_> = serde_json::from_slice(body).ok()?;
    let resources = raw
        .resources
        .and_then(|r| serde_json::from_str::<Vec<&RawValue>>(r.get()).ok())
        .map(|items| {
            items
                .into_iter()
                .filter_map(|r| raw_text(Some(r)))
                .collect()
        })
        .unwrap_or_default();
    Some(Event {
        detail: raw.detail.get(),
        id: raw.id,
        source: raw.source,
        detail_type: raw.detail_type,
        time: raw.time,
        account: raw_text(raw.account),
        region: raw_text(raw.region),
        resources,
    })
}

/// A JSON object at first sight (skipping leading whitespace): anything else is not parsed.
fn looks_like_object(body: &[u8]) -> bool {
    body.trim_ascii_start().first() == Some(&b'{')
}

/// An optional field's text, when it is a string (borrowed when it has no JSON escapes).
fn raw_text(value: Option<&RawValue>) -> Option<Cow<'_, str>> {
    let value = value?.get();
    if !value.starts_with('"') {
        return None;
    }
    match serde_json::from_str::<&str>(value) {
        Ok(text) => Some(Cow::Borrowed(text)),
        Err(_) => serde_json::from_str::<String>(value).ok().map(Cow::Owned),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SNS: &str = r#"{
      "Type" : "Notification",
      "MessageId" : "22b80b92-fdea-4c2c-8f9d-bdfb0c7bf324",
      "TopicArn" : "arn:aws:sns:us-west-2:123456789012:MyTopic",
      "Subject" : "My First Message",
      "Message" : "{\"order\":\"é\\\"1\\\"\"}",
      "Timestamp" : "2012-05-02T00:54:06.655Z",
      "SignatureVersion" : "1",
      "Signature" : "EXAMPLEw6JRN...",
      "SigningCertURL" : "https://sns.us-west-2.amazonaws.com/SimpleNotificationService-f3ecfb7224c7233fe7bb5f59f96de52f.pem",
      "UnsubscribeURL" : "https://sns.us-west-2.amazonaws.com/?Action=Unsubscribe",
      "MessageAttributes" : {
        "tenant" : {"Type":"String","Value":"acme"},
        "tags" : {"Type":"String.Array","Value":"[\"a\",\"b\"]"},
        "blob" : {"Type":"Binary","Value":"AQI="},
        "Body.ContentType" : {"Type":"String","Value":"text/plain"}
      }
    }"#;

    const EVENT: &str = r#"{"version":"0","id":"6a7e8feb-b491-4cf7-a9f1-bf3703467718",
      "detail-type":"EC2 Instance State-change Notification","source":"aws.ec2",
      "account":"111122223333","time":"2017-12-22T18:43:48Z","region":"us-west-1",
      "resources":["arn:aws:ec2:us-west-1:123456789012:instance/i-1234567890abcdef0", 7],
      "detail":{ "instance-id" : "i-1234567890abcdef0", "state":"terminated"}}"#;

    #[test]
    fn an_sns_notification_opens_to_its_message_and_fields() {
        let Opened::Sns(n) = unwrap(Unwrap::Sns, SNS.as_bytes()) else {
            panic!("an SNS notification")
        };
        assert_eq!(n.message, "{\"order\":\"é\\\"1\\\"\"}");
        assert_eq!(n.message_id, "22b80b92-fdea-4c2c-8f9d-bdfb0c7bf324");
        assert_eq!(n.topic_arn, "arn:aws:sns:us-west-2:123456789012:MyTopic");
        assert_eq!(n.subject.as_deref(), Some("My First Message"));
        assert_eq!(n.timestamp.as_deref(), Some("2012-05-02T00:54:06.655Z"));
        assert_eq!(n.sequence_number, None);
        assert_eq!(n.content_type(), Some("text/plain"));
        let tags = n.attributes.iter().find(|a| a.name == "tags").unwrap();
        assert_eq!(
            (&*tags.kind, &*tags.value),
            ("String.Array", "[\"a\",\"b\"]")
        );
        assert_eq!(unwrap(Unwrap::Auto, SNS.as_bytes()).label(), "sns");
        assert_eq!(
            unwrap(Unwrap::EventBridge, SNS.as_bytes()),
            Opened::Unchanged
        );
    }

    #[test]
    fn an_eventbridge_event_opens_to_the_exact_text_of_its_detail() {
        let Opened::EventBridge(e) = unwrap(Unwrap::Auto, EVENT.as_bytes()) else {
            panic!("an EventBridge event")
        };
        assert_eq!(
            e.detail,
            r#"{ "instance-id" : "i-1234567890abcdef0", "state":"terminated"}"#
        );
        assert_eq!(e.detail_type, "EC2 Instance State-change Notification");
        assert_eq!(e.source, "aws.ec2");
        assert_eq!(e.account.as_deref(), Some("111122223333"));
        assert_eq!(e.region.as_deref(), Some("us-west-1"));
        assert_eq!(
            e.resources,
            ["arn:aws:ec2:us-west-1:123456789012:instance/i-1234567890abcdef0"],
            "strings only"
        );
        assert_eq!(unwrap(Unwrap::Sns, EVENT.as_bytes()), Opened::Unchanged);
    }

    #[test]
    fn anything_else_is_delivered_unchanged() {
        let table: &[&[u8]] = &[
            b"",
            b"plain text",
            b"\xff\xfe not utf-8",
            b"[1,2]",
            b"{\"Type\":\"Notification\"",
            br#"{"Type":"Notification","MessageId":"m","TopicArn":"t"}"#,
            br#"{"Type":"Notification","MessageId":"m","TopicArn":"t","Message":7}"#,
            br#"{"Type":"SubscriptionConfirmation","MessageId":"m","TopicArn":"t","Message":"x"}"#,
            br#"{"detail-type":"x","source":"s","id":"i","time":"t"}"#,
            br#"{"detail-type":5,"source":"s","id":"i","time":"t","detail":{}}"#,
        ];
        for body in table {
            for kind in [Unwrap::None, Unwrap::Sns, Unwrap::EventBridge, Unwrap::Auto] {
                assert_eq!(
                    unwrap(kind, body),
                    Opened::Unchanged,
                    "{kind:?} {}",
                    String::from_utf8_lossy(body)
                );
            }
        }
    }

    #[test]
    fn optional_fields_of_the_wrong_type_are_left_out() {
        let body = br#"{"Type":"Notification","MessageId":"m","TopicArn":"t","Message":"hi",
            "Subject":42,"Timestamp":null,"MessageAttributes":{"ok":{"Type":"String","Value":"v"},
            "bad":{"Type":"String","Value":3},"worse":"x"}}"#;
        let Opened::Sns(n) = unwrap(Unwrap::Sns, body) else {
            panic!("still SNS")
        };
        assert_eq!((n.subject, n.timestamp), (None, None));
        assert_eq!(n.attributes.len(), 1);
        assert_eq!(n.attributes[0].name, "ok");
    }
}
