//! What a worker receives: one SQS message, or a batch of them, as the request body (and the
//! answer read back), in each of carrier's formats. Pure functions, no I/O; the transmitter asks
//! here and keeps only HTTP.
//!
//! - `lambda`: the Lambda SQS event (SPEC 5.1) and the reading of its answer.

pub mod lambda;
