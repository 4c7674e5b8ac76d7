//! The real actor system in-process, against moto and a webhook on 127.0.0.1: supervised actors
//! crash while messages flow, are restarted, and nothing is lost.

mod support;

use std::time::Duration;

use carrier_actors::{Carrier, ExitReason, Fault, QueueAddress, Settings};
use support::{moto, quiet_logger, Reply, Sink, TestQueue};

const T: Duration = Duration::from_secs(60);

fn settings(queue: &TestQueue, sink: &Sink) -> Settings {
    let mut settings = Settings::new(QueueAddress {
        endpoint: Some(moto().endpoint.clone()),
        name: Some(queue.name.clone()),
        url: None,
    });
    settings.route().webhook.endpoint = carrier_actors::Endpoint::parse(&sink.url).unwrap();
    settings.route().batch_size = 5;
    settings.receivers = 2;
    settings.workers_per_receiver = 5;
    settings
}

#[actix_rt::test]
async fn crashed_receivers_and_transmitters_restart_under_load_and_lose_nothing() {
    // A short visibility timeout: any outcome a crash lost would show up as a redelivery soon.
    let queue = TestQueue::create("crash", 5).await;
    let bodies = queue.send_many("crash", 120).await;
    let sink = Sink::start(|_, _| Reply::status(200).after(Duration::from_millis(20)));
    let mut carrier = Carrier::start(settings(&queue, &sink), quiet_logger()).unwrap();

    sink.wait("20 deliveries", T, |s| {
        (s.answered().len() >= 20).then_some(())
    })
    .await;
    carrier.inject(Fault::StopReceiver(0));
    carrier.inject(Fault::StopTransmitter(1));
    sink.wait("40 deliveries", T, |s| {
        (s.answered().len() >= 40).then_some(())
    })
    .await;
    carrier.inject(Fault::StopReceiver(1));
    carrier.inject(Fault::StopTransmitter(0));

    sink.wait_answered_all(&bodies, T).await;
    queue.wait_empty(T).await;
    let stats = carrier.stats();
    assert_eq!(stats.restarts, 4, "{stats:?}");
    assert!(stats.acked >= 120, "{stats:?}");
    carrier.shutdown();
    assert_eq!(carrier.wait().await, ExitReason::Shutdown);
    assert_eq!(carrier.stats().in_flight, 0);
}

#[actix_rt::test]
async fn shutdown_from_the_embedding_program_drains_in_flight_work() {
    let queue = TestQueue::create("embedded", 30).await;
    let bodies = queue.send_many("embedded", 10).await;
    let sink = Sink::start(|_, _| Reply::status(200).after(Duration::from_millis(300)));
    let mut carrier = Carrier::start(settings(&queue, &sink), quiet_logger()).unwrap();

    sink.wait_requests(1, T).await;
    carrier.shutdown();
    assert_eq!(carrier.wait().await, ExitReason::Shutdown);
    // Everything that reached the webhook was answered and acknowledged; the rest is in SQS.
    let answered = sink.answered();
    let stats = carrier.stats();
    assert_eq!(stats.acked as usize, answered.len(), "{stats:?}");
    assert_eq!(stats.in_flight, 0);
    let (visible, in_flight) = queue.counts().await;
    assert_eq!(
        in_flight, 0,
        "nothing left invisible: undelivered messages were released"
    );
    assert_eq!(visible as usize, bodies.len() - answered.len());
}
