//! Header mapping of message attributes: whatever names and values a message carries, the request
//! is built without panicking and every header value is a valid one (no CR, LF or NUL).
#![no_main]
use std::sync::Arc;

use carrier_actors::{request_headers, Attribute, AttributeValue, Delivery, HeaderStyle, WebhookSettings};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let mut parts = text.split('\u{1}');
    let sqsd = parts.next().is_some_and(|p| p.len() % 2 == 1);
    let mut attributes = Vec::new();
    while let (Some(name), Some(value)) = (parts.next(), parts.next()) {
        attributes.push(Attribute {
            name: name.to_string(),
            data_type: if value.starts_with('b') { "Binary".into() } else { "String".into() },
            value: AttributeValue::Text(value.to_string()),
        });
    }
    let delivery = Delivery {
        message_id: Arc::from("m"),
        body: bytes::Bytes::copy_from_slice(data),
        receive_count: Some(text.chars().take(5).collect()),
        first_receive_time: Some(text.chars().rev().take(13).collect()),
        attributes,
        ..Default::default()
    };
    let settings = WebhookSettings {
        header_style: if sqsd { HeaderStyle::Sqsd } else { HeaderStyle::Carrier },
        ..Default::default()
    };
    for (name, value) in request_headers(&settings, "queue", &delivery) {
        assert!(!value.contains(['\r', '\n', '\0']), "{name}: {value:?}");
    }
});
