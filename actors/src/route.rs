//! One route (SPEC 5.3): a queue, its settings (the top-level values with the route's overrides,
//! built once at start), its receivers and their transmitters. The supervisor owns one per
//! queue; with `CARRIER_ROUTES` unset there is one, `default`.
//!
//! This file resolves the route's queue and reads its attributes ([`Route::startup`]), then
//! builds its actors ([`Route::start`]). It knows nothing of other routes: what they share (the
//! health check, the delivery slots, the shutdown) is the supervisor's, and `slots.rs`'.

use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;
use slog::{error, info, o, warn, Logger};

use crate::events::Events;
use crate::http::TlsConfigs;
use crate::lease::{Holders, Ledger, LedgerSettings, Posts};
use crate::messages::{Peers, Suspect};
use crate::present::{lambda, Format};
use crate::receiver::{ReceiverParts, SqsReceiverActor};
use crate::scheduler::Share;
use crate::slots::RouteSlots;
use crate::sqs::{self, DeadLetterQueue, QueueArn, QueueAttributes, SqsQueue};
use crate::transmitter::WebhookTransmitterActor;
use crate::RouteSettings;

/// The visibility timeout assumed when the queue does not say (SQS's own default). Receives then
/// ask for it explicitly, so SQS keeps what the heartbeat assumes.
pub(crate) const DEFAULT_VISIBILITY: Duration = Duration::from_secs(30);
/// A delivery is extended at most this long past its request timeout (the bounded body read,
/// then settling).
const DELIVERY_MARGIN: Duration = Duration::from_secs(10);

/// What startup found out about the queue.
pub(crate) struct Started {
    pub queue: SqsQueue,
    pub visibility: Duration,
    pub dead_letter: Option<Arc<DeadLetterQueue>>,
    /// The attributes could not be read: receives ask for [`DEFAULT_VISIBILITY`], and reading
    /// them is retried in the background.
    pub attributes_unknown: bool,
    /// Neither configured nor said by the queue: receives ask for [`DEFAULT_VISIBILITY`].
    visibility_assumed: bool,
    /// The queue's `QueueArn`, when its attributes could be read.
    arn: Option<String>,
}

/// What the supervisor lends every route: the shared parts.
pub(crate) struct Shared<'a> {
    pub tls: &'a TlsConfigs,
    /// The event-loop threads receivers are spread over (receiver i on thread i mod len).
    pub threads: &'a [actix_rt::ArbiterHandle],
    /// The health checker, when there is one: told when deliveries fail as if it were down.
    pub suspect: Option<Recipient<Suspect>>,
    pub receivers: usize,
    pub workers: usize,
}

/// A started route: its actors.
pub(crate) struct Route {
    pub settings: Arc<RouteSettings>,
    /// Its events: counted under its `route` label, logged with its `route` field.
    pub events: Events,
    pub receivers: Vec<Addr<SqsReceiverActor>>,
    pub transmitters: Vec<Addr<WebhookTransmitterActor>>,
}

impl Route {
    /// How the route counts against the shared slots: its weight, and messages per slot (one,
    /// or a Lambda batch).
    pub fn share(settings: &RouteSettings) -> Share {
        Share {
            weight: settings.weight.max(1),
            slot_size: match settings.webhook.format {
                Format::Message => 1,
                Format::Lambda { batch_size, .. } => batch_size.max(1),
            },
        }
    }

    /// Resolves the queue, reads its visibility timeout and dead-letter queue.
    /// While the queue cannot be resolved, the route counts as empty for the others (`slots`).
    pub async fn startup(
        settings: Arc<RouteSettings>,
        events: Events,
        slots: RouteSlots,
    ) -> Started {
        let client = sqs::client(&settings.queue).await;
        let unavailable = || slots.unavailable();
        let queue = SqsQueue::resolve(client, &settings.queue, events.clone(), unavailable).await;
        let log = events.log();
        let (attributes, attributes_unknown) = match queue.attributes().await {
            Ok(a) => (a, false),
            Err(e) => {
                warn!(log, "could not read the queue's attributes; asking for a 30 s visibility timeout on every receive and no dead-letter queue known until they can be read (retried in the background)";
                    "error" => %e);
                (QueueAttributes::default(), true)
            }
        };
        let visibility = match (settings.visibility_timeout, attributes.visibility_timeout) {
            (Some(v), _) => v,
            (None, Some(v)) => v,
            (None, None) => {
                if !attributes_unknown {
                    warn!(log, "the queue did not say its visibility timeout; assuming 30 s and asking for it on every receive";
                        "visibility_timeout_s" => DEFAULT_VISIBILITY.as_secs());
                }
                DEFAULT_VISIBILITY
            }
        };
        let dead_letter = dead_letter_queue(&queue, attributes.dead_letter_target, log).await;
        Started {
            arn: attributes.arn,
            queue,
            visibility,
            dead_letter,
            attributes_unknown,
            visibility_assumed: settings.visibility_timeout.is_none()
                && attributes.visibility_timeout.is_none(),
        }
    }

    /// Builds the route's receivers and transmitters (paused until the supervisor resumes them).
    pub fn start(
        settings: Arc<RouteSettings>,
        started: &Started,
        shared: Shared<'_>,
        slots: RouteSlots,
        events: Events,
        root_log: &Logger,
    ) -> Route {
        let s = &*settings;
        let queue = started.queue.clone();
        let queue_url = crate::http::redact(queue.url());
        if queue.is_confirmed() {
            info!(events.log(), "queue resolved"; "queue_url" => queue_url, "fifo" => queue.is_fifo(),
                "visibility_timeout_s" => started.visibility.as_secs(),
                "dead_letter_queue" => started.dead_letter.as_ref().map(|d| d.arn.name.clone()));
        } else {
            info!(events.log(), "queue URL not yet confirmed by SQS; resolved at the first successful receive";
                "queue_url" => queue_url, "fifo" => queue.is_fifo());
        }
        let webhook = Arc::new(s.webhook.clone());
        let tls = shared.tls.get(s.webhook.tls_insecure_skip_verify);
        let queue_name = s.queue.display_name();
        let workers = shared.workers.max(1);
        let source = matches!(s.webhook.format, Format::Lambda { .. }).then(|| {
            lambda::EventSource::from_arn(
                &started.arn.clone().unwrap_or_else(|| queue.arn_from_url()),
            )
        });
        let (posts, receive_size) = match s.webhook.format {
            Format::Message => (Posts::single(workers), s.batch_size),
            // Receives of 10 until a batch is full (SPEC 5.1).
            Format::Lambda { batch_size, window } => (
                Posts {
                    size: batch_size.max(1),
                    window,
                    concurrency: workers,
                    max_bytes: lambda::MAX_PAYLOAD - lambda::EVENT_OVERHEAD,
                    record_bytes: lambda::record_bytes,
                    record_overhead: source.as_ref().map_or(0, |s| s.bytes()),
                },
                sqs::MAX_BATCH_SIZE,
            ),
        };
        let ledger = LedgerSettings {
            // A receiver holds at most workers × batch size messages, the batch being gathered
            // included.
            slots: workers * posts.size,
            posts,
            fifo: queue.is_fifo(),
            visibility: started.visibility,
            heartbeat: started.visibility >= Duration::from_secs(1),
            delivery_bound: s.webhook.request_timeout + DELIVERY_MARGIN,
            nack: s.nack,
            min_retry_delay: s.min_retry_delay,
        };
        // Unknown attributes: ask for the timeout the heartbeat assumes, so SQS keeps it.
        let receive_visibility = match (s.visibility_timeout, started.visibility_assumed) {
            (Some(v), _) => Some(v.as_secs() as u32),
            (None, true) => Some(DEFAULT_VISIBILITY.as_secs() as u32),
            (None, false) => None,
        };
        let holders = Holders::default();
        let peers = Peers::default();
        let (mut receivers, mut transmitters) = (Vec::new(), Vec::new());
        for id in 0..shared.receivers {
            let thread = &shared.threads[id % shared.threads.len()];
            let (webhook, tls, source) = (webhook.clone(), tls.clone(), source.clone());
            let transmitter_events = events.with_log(root_log.new(o!("source" => "transmitter")));
            let queue_name = queue_name.clone();
            let transmitter = actix::Supervisor::start_in_arbiter(thread, move |_| {
                WebhookTransmitterActor::new(
                    webhook,
                    tls,
                    workers,
                    &queue_name,
                    source,
                    transmitter_events,
                )
            });
            let parts = ReceiverParts {
                id,
                queue: queue.clone(),
                transmitter: transmitter.clone(),
                batch_size: receive_size,
                receive_visibility,
                ledger: Ledger::new(ledger.clone()).shared(id, holders.clone()),
                dead_letter: started.dead_letter.clone(),
                suspect: shared.suspect.clone(),
                peers: peers.clone(),
                slots: slots.clone(),
                events: events.with_log(root_log.new(o!("source" => "receiver"))),
            };
            let receiver =
                actix::Supervisor::start_in_arbiter(thread, move |_| SqsReceiverActor::new(parts));
            transmitters.push(transmitter);
            receivers.push(receiver);
        }
        let _ = peers.set(receivers.iter().map(|r| r.clone().recipient()).collect());
        Route {
            settings,
            events,
            receivers,
            transmitters,
        }
    }
}

/// The dead-letter queue a RedrivePolicy names, if it is an SQS ARN.
pub(crate) async fn dead_letter_queue(
    queue: &SqsQueue,
    target: Option<String>,
    log: &Logger,
) -> Option<Arc<DeadLetterQueue>> {
    match target {
        None => None,
        Some(target) => match QueueArn::parse(&target) {
            Some(arn) => {
                let dlq = Arc::new(DeadLetterQueue::new(arn));
                if let Err(e) = dlq.url(queue).await {
                    error!(log, "cannot resolve the dead-letter queue yet; will try again when a message is dead-lettered";
                        "dead_letter_queue" => &dlq.arn.name, "error" => %e);
                }
                Some(dlq)
            }
            None => {
                error!(log, "the queue's RedrivePolicy names a dead-letter queue that is not an SQS ARN; dead-lettering is off";
                    "dead_letter_target" => target);
                None
            }
        },
    }
}
