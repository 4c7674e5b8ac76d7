//! Success-code lists parse or are refused; what parses only holds real status codes.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|text: &str| {
    if let Ok(codes) = carrier_actors::SuccessCodes::parse(text) {
        assert!(!codes.contains(99) && !codes.contains(600));
    }
});
