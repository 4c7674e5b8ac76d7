//! Retry-After parsing never panics and never leaves [now, now + 12 h].
#![no_main]
use std::time::{Duration, SystemTime};

use libfuzzer_sys::fuzz_target;

fuzz_target!(|text: &str| {
    let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
    if let Some(at) = carrier_actors::http::retry_after(text, now) {
        assert!(at >= now && at <= now + Duration::from_secs(43_200));
    }
});
