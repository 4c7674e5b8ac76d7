//! Go duration parsing never panics, and what it accepts is a sane, finite duration.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|text: &str| {
    if let Some(d) = carrier::config::parse_go_duration(text) {
        assert!(d.as_secs() < 1_000_000_000_000);
    }
});
