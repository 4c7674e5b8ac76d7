//! Opening envelopes (SPEC 5.2) never panics, never loses a body and never lets a header through
//! that could split a request: whatever a body holds, in every unwrap mode and header style, what
//! is not an envelope is delivered byte for byte, and every header value is a valid one.
//! Seeds: fuzz/seeds/unwrap (also the property test's in tests/properties.rs).
#![no_main]
use std::sync::Arc;

use carrier_actors::present::{Format, HeaderStyle, Presenter, Unwrap};
use carrier_actors::Delivery;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|body: &[u8]| {
    let delivery = Delivery {
        message_id: Arc::from("m"),
        body: bytes::Bytes::copy_from_slice(body),
        ..Default::default()
    };
    for unwrap in [Unwrap::Sns, Unwrap::EventBridge, Unwrap::Auto] {
        for style in [HeaderStyle::Carrier, HeaderStyle::Sqsd] {
            let p = Presenter::new(Format::Message, style, unwrap, None, "q", "application/json");
            let r = p.message(&delivery);
            if r.opened == Some("none") {
                assert_eq!(&r.body[..], body);
            }
            for (_, value) in &r.headers {
                assert!(!value.as_bytes().iter().any(|b| *b == b'\r' || *b == b'\n'));
            }
        }
    }
});
