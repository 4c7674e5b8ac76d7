//! What a worker receives: one SQS message, or a batch of them, as the request (body and headers)
//! in each of carrier's formats, and the answer read back. Pure functions, no I/O: the transmitter
//! asks a [`Presenter`] for each POST and keeps only HTTP; what was odd about a message (a header
//! value skipped) comes back as data for it to log.
//!
//! - `message`: one message per POST, its metadata as headers (carrier's or sqsd's style).
//! - `envelope`: SNS and EventBridge envelopes opened (SPEC 5.2).
//! - `lambda`: the Lambda SQS event (SPEC 5.1) and the reading of its answer.
//!
//! A new presentation is one function here and one arm of [`Presenter::present`].

use std::sync::Arc;
use std::time::Duration;

use awc::http::header::{self, HeaderName, HeaderValue};
use bytes::Bytes;

use crate::messages::Incoming;

pub mod envelope;
pub mod lambda;
pub mod message;

pub use envelope::Unwrap;

/// An event source with nothing known.
static EMPTY_SOURCE: lambda::EventSource = lambda::EventSource {
    arn: String::new(),
    region: String::new(),
};
pub use message::HeaderStyle;

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

/// One POST, ready to send.
#[derive(Debug, Clone)]
pub struct Request {
    /// What the request is signed as (`webhook-id`): the message's id, or a batch's first record's.
    pub id: Arc<str>,
    pub body: Bytes,
    /// Every request of the POST (redirect hops too) carries these.
    pub headers: Vec<(HeaderName, HeaderValue)>,
    /// Header values from message data that were left out.
    pub skipped: Vec<Skip>,
    /// With an envelope configured, what the body was counted as (`sns`, `eventbridge`, `none`).
    pub opened: Option<&'static str>,
}

/// A header value from message data that was left out, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Skip {
    /// Not a valid header value (or, for an attribute, not printable ASCII).
    Invalid { header: String },
    /// Over 1 KiB.
    TooLong { header: String, bytes: usize },
    /// Attribute headers past their 8 KiB budget: the first left out, and how many.
    OverBudget { first: String, count: usize },
}

/// Turns records into requests for one webhook's settings. Built once per transmitter.
#[derive(Debug, Clone)]
pub struct Presenter {
    pub(crate) format: Format,
    pub(crate) style: HeaderStyle,
    pub(crate) unwrap: Unwrap,
    /// Lambda format: the queue, as the event names it.
    pub(crate) source: Option<lambda::EventSource>,
    /// `X-Carrier-Queue-Name` / `X-Aws-Sqsd-Queue`.
    pub(crate) queue_name: Option<HeaderValue>,
    pub(crate) default_content_type: Option<HeaderValue>,
}

impl Presenter {
    pub fn new(
        format: Format,
        style: HeaderStyle,
        unwrap: Unwrap,
        source: Option<lambda::EventSource>,
        queue_name: &str,
        default_content_type: &str,
    ) -> Presenter {
        Presenter {
            format,
            style,
            unwrap,
            source,
            queue_name: HeaderValue::from_str(queue_name).ok(),
            default_content_type: HeaderValue::from_str(default_content_type).ok(),
        }
    }

    pub fn format(&self) -> Format {
        self.format
    }

    /// The request for one message in the one-message format (for property tests and fuzzing).
    pub fn message(&self, delivery: &crate::messages::Delivery) -> Request {
        message::present(self, delivery)
    }

    /// The request for these records (one, unless in Lambda format).
    pub fn present(&self, records: &[Incoming]) -> Request {
        match (&self.format, records) {
            // (The queue's ARN is always known by then; were it not, still a batch.)
            (Format::Lambda { .. }, _) => {
                self.lambda(records, self.source.as_ref().unwrap_or(&EMPTY_SOURCE))
            }
            (_, [first, ..]) => message::present(self, &first.delivery),
            (_, []) => Request {
                id: Arc::from(""),
                body: Bytes::new(),
                headers: Vec::new(),
                skipped: Vec::new(),
                opened: None,
            },
        }
    }

    /// A Lambda event: `Content-Type: application/json` and the queue's name; no per-message
    /// headers, and never unwrapped (Lambda gives the record as SQS holds it).
    fn lambda(&self, records: &[Incoming], source: &lambda::EventSource) -> Request {
        let borrowed: Vec<lambda::Record<'_>> = records
            .iter()
            .map(|r| lambda::Record {
                delivery: &r.delivery,
                receipt: &r.receipt,
            })
            .collect();
        let mut headers = vec![(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        )];
        if let Some(q) = &self.queue_name {
            headers.push((
                HeaderName::from_static(message::names::QUEUE_NAME),
                q.clone(),
            ));
        }
        Request {
            id: records
                .first()
                .map(|r| r.delivery.message_id.clone())
                .unwrap_or_else(|| Arc::from("")),
            body: Bytes::from(lambda::event(&borrowed, source)),
            headers,
            skipped: Vec::new(),
            opened: None,
        }
    }
}
