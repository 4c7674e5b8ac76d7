//! The library half of the `carrier` binary: configuration (`CARRIER_*` → validated settings) and
//! the log setup, kept apart from `main.rs` so property tests and fuzz targets can reach them.
//! The engine itself is the `carrier-actors` crate.

pub mod config;
pub mod logging;
