//! Configuration as a whole: any set of CARRIER_* values (one `NAME=value` per line, names taken
//! from carrier's own table by index when a line starts with a digit) is accepted or refused with
//! one line per problem, each naming a variable, never echoing the signing secret.
#![no_main]
use std::collections::HashMap;

use carrier::config::{Config, VARIABLES, WEBHOOK_SIGNING_SECRET};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|text: &str| {
    let mut vars = HashMap::new();
    for line in text.lines() {
        let (name, value) = line.split_once('=').unwrap_or((line, ""));
        let name = match name.parse::<usize>() {
            Ok(i) => VARIABLES[i % VARIABLES.len()].name.to_string(),
            Err(_) => name.to_string(),
        };
        vars.insert(name, value.to_string());
    }
    // A leak is the secret in an error that would not be there without it: errors quote the
    // values of ordinary variables and carrier's own words (fuzz/artifacts crashes de7cb6a0, two
    // variables with one value, and c836a698, a secret spelled like a variable name).
    let secret = vars
        .get(WEBHOOK_SIGNING_SECRET)
        .cloned()
        .filter(|s| s.len() > 8)
        .filter(|s| {
            let mut without = vars.clone();
            without.remove(WEBHOOK_SIGNING_SECRET);
            let baseline = Config::from_map(&without)
                .err()
                .map(|e| e.0.join("\n"))
                .unwrap_or_default();
            !baseline.contains(s.as_str())
                && !vars
                    .iter()
                    .any(|(n, v)| n != WEBHOOK_SIGNING_SECRET && v.contains(s.as_str()))
        });
    if let Err(errors) = Config::from_map(&vars) {
        for line in &errors.0 {
            assert!(line.starts_with("CARRIER_"), "{line}");
            if let Some(secret) = &secret {
                assert!(!line.contains(secret.as_str()), "secret echoed");
            }
        }
    }
});
