//! SQS's limits and the ids carrier gives what it holds: the bottom layer. Everyone may import
//! it; it imports nothing.

/// Most messages per ReceiveMessage and entries per batch call.
pub const MAX_BATCH_SIZE: usize = 10;
/// Longest visibility timeout, and longest a message may stay invisible in all (12 hours).
pub const MAX_VISIBILITY_TIMEOUT_SECS: u64 = 43_200;
/// Longest long poll.
pub const MAX_WAIT_TIME_SECS: i32 = 20;
/// The message attribute that names a body's content type.
pub const CONTENT_TYPE_ATTRIBUTE: &str = "Body.ContentType";

/// One message carrier holds (a lease), from receipt until SQS confirms its last action.
pub type LeaseId = u64;
/// One POST: one message, or a Lambda batch.
pub type PostId = u64;
