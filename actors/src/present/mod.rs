//! What a worker receives: one SQS message, or a batch of them, as the request body (and the
//! answer read back), in each of carrier's formats. Pure functions, no I/O; the transmitter asks
//! here and keeps only HTTP.
//!
//! - `lambda`: the Lambda SQS event (SPEC 5.1) and the reading of its answer.
//! - The one-message format's headers are still built by the transmitter (they move here with
//!   the envelopes of SPEC 5.2).

use std::time::Duration;

pub mod lambda;

/// What one POST carries (`CARRIER_WEBHOOK_FORMAT`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Format {
    /// One message per POST: its body unchanged, its metadata as headers (sections 1–4).
    #[default]
    Message,
    /// Batches as Lambda's SQS event, answered with `batchItemFailures` (SPEC 5.1).
    Lambda {
        /// Most records per POST (`CARRIER_WEBHOOK_BATCH_SIZE`, 1–10 000).
        batch_size: usize,
        /// How long to gather a batch that is not full (`CARRIER_WEBHOOK_BATCH_WINDOW`).
        window: Duration,
    },
}

impl Format {
    /// The most records in one POST.
    pub fn batch_size(&self) -> usize {
        match self {
            Format::Message => 1,
            Format::Lambda { batch_size, .. } => (*batch_size).max(1),
        }
    }
}
