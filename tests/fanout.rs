//! Fan-out envelopes (SPEC 5.2, issue 18) made by the real producers: moto's SNS (a topic the
//! queue subscribes to without raw message delivery) and moto's EventBridge (a rule whose target
//! is the queue) put the envelopes on the queue; the real `carrier` binary opens them for a webhook
//! on 127.0.0.1.

mod support;

use std::collections::HashMap;
use std::time::Duration;

use serde_json::{json, Value};
use support::fanout::{publish_sns, put_events, put_events_aws_envelope};
use support::{
    free_port, http_get, parse_metrics, verify_standard_webhooks, CarrierProcess, Request, Sink,
    TestQueue,
};

const T: Duration = Duration::from_secs(30);

fn unwrap_env(queue: &TestQueue, sink: &Sink, unwrap: &str) -> Vec<(&'static str, String)> {
    let mut env = CarrierProcess::env_for(queue, sink);
    env.push(("CARRIER_WEBHOOK_UNWRAP", unwrap.into()));
    env
}

/// The request whose body is `body`.
fn with_body<'r>(requests: &'r [Request], body: &str) -> &'r Request {
    requests
        .iter()
        .find(|r| r.body == body)
        .unwrap_or_else(|| panic!("a request with body {body:?}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_sns_notification_is_delivered_as_published_with_its_fields_and_attributes() {
    let queue = TestQueue::create("fanout-sns", 30).await;
    let endpoint = support::moto().endpoint.clone();
    let published = json!([
        {
            "message": "{\"order\": 1, \"note\": \"h\u{e9}llo\"}",
            "subject": "Order placed",
            "attributes": {
                "Color": {"DataType": "String", "StringValue": "red"},
                "Count": {"DataType": "Number", "StringValue": "42"},
                "Tags": {"DataType": "String.Array", "StringValue": "[\"a\", \"b\", 3]"},
                "Blob": {"DataType": "Binary", "BinaryValue": "AAFiaW5hcnn/"},
                "Body.ContentType": {"DataType": "String", "StringValue": "application/vnd.order+json"}
            }
        },
        {"message": "plain text, no subject"}
    ]);
    let url = queue.url.clone();
    let out = tokio::task::spawn_blocking(move || publish_sns(&endpoint, &url, false, &published))
        .await
        .unwrap();
    // And one message sent straight to the queue: no envelope, delivered as it is.
    queue
        .send("{\"Type\":\"Notification\",\"not\":\"sns\"}")
        .await;
    let sink = Sink::answering(200);
    let secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    let port = free_port();
    let mut env = unwrap_env(&queue, &sink, "sns");
    env.push(("CARRIER_WEBHOOK_SIGNING_SECRET", secret.into()));
    env.push(("CARRIER_ADMIN_ADDR", format!("127.0.0.1:{port}")));
    let mut carrier = CarrierProcess::start(&env);

    let requests = sink.wait_requests(3, T).await;
    queue.wait_counts((0, 0), T).await;
    let topic = out["topic_arn"].as_str().unwrap();
    let first = with_body(&requests, "{\"order\": 1, \"note\": \"h\u{e9}llo\"}");
    let want = [
        ("content-type", "application/vnd.order+json"),
        (
            "x-carrier-sns-message-id",
            out["published"][0]["message_id"].as_str().unwrap(),
        ),
        ("x-carrier-sns-topic-arn", topic),
        ("x-carrier-sns-subject", "Order placed"),
        ("x-carrier-attribute-color", "red"),
        ("x-carrier-attribute-count", "42"),
        ("x-carrier-attribute-tags", "[\"a\", \"b\", 3]"),
        ("x-carrier-receive-count", "1"),
    ];
    for (name, value) in want {
        assert_eq!(first.header(name), Some(value), "{name}");
    }
    assert!(first.header("x-carrier-sns-timestamp").is_some());
    assert!(
        first.header("x-carrier-message-id").is_some(),
        "the SQS message's own"
    );
    assert_eq!(
        first.header("x-carrier-attribute-blob"),
        None,
        "Binary is skipped"
    );
    assert_eq!(
        first.header("x-carrier-attribute-body.contenttype"),
        Some("application/vnd.order+json")
    );
    let second = with_body(&requests, "plain text, no subject");
    assert_eq!(
        second.header("content-type"),
        Some("application/json"),
        "the default"
    );
    assert_eq!(second.header("x-carrier-sns-subject"), None);
    let raw = with_body(&requests, "{\"Type\":\"Notification\",\"not\":\"sns\"}");
    assert_eq!(raw.header("x-carrier-sns-message-id"), None);
    // Signed as delivered: the signature covers the opened body.
    let verdicts = verify_standard_webhooks(&[secret], &requests);
    assert!(verdicts.iter().all(|v| v.ends_with(": ok")), "{verdicts:?}");
    let (_, text) = tokio::task::spawn_blocking(move || http_get(port, "/metrics"))
        .await
        .unwrap()
        .unwrap();
    let m = parse_metrics(&text);
    assert_eq!(
        m["carrier_messages_unwrapped_total{envelope=\"sns\",route=\"default\"}"],
        2.0
    );
    assert_eq!(
        m["carrier_messages_unwrapped_total{envelope=\"none\",route=\"default\"}"],
        1.0
    );
    carrier.signal("TERM");
    assert!(carrier.wait_exit(T).await.success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fifo_topic_into_a_fifo_queue_keeps_order_and_the_sqsd_style_keeps_the_sns_names() {
    let queue = TestQueue::create_fifo("fanout-fifo", 30).await;
    let endpoint = support::moto().endpoint.clone();
    let bodies: Vec<String> = (1..=5).map(|i| format!("step {i}")).collect();
    let published: Value = bodies
        .iter()
        .map(|b| json!({"message": b, "group": "g1", "attributes": {"tenant": {"DataType": "String", "StringValue": "acme"}}}))
        .collect();
    let url = queue.url.clone();
    let out = tokio::task::spawn_blocking(move || publish_sns(&endpoint, &url, true, &published))
        .await
        .unwrap();
    let sink = Sink::answering(200);
    let mut env = unwrap_env(&queue, &sink, "auto");
    env.push(("CARRIER_WEBHOOK_HEADER_STYLE", "sqsd".into()));
    let mut carrier = CarrierProcess::start(&env);

    let requests = sink.wait_requests(5, T).await;
    let got: Vec<&str> = requests.iter().map(|r| r.body.as_str()).collect();
    assert_eq!(got, bodies.iter().map(String::as_str).collect::<Vec<_>>());
    for r in &requests {
        assert_eq!(
            r.header("x-carrier-sns-topic-arn"),
            out["topic_arn"].as_str()
        );
        assert_eq!(r.header("x-aws-sqsd-attr-tenant"), Some("acme"));
        assert_eq!(r.header("x-carrier-attribute-tenant"), None);
        assert!(r.header("x-aws-sqsd-msgid").is_some());
        assert!(r.header("x-carrier-sns-message-id").is_some());
    }
    queue.wait_counts((0, 0), T).await;
    carrier.signal("TERM");
    assert!(carrier.wait_exit(T).await.success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_eventbridge_event_is_delivered_as_its_detail_with_the_event_fields() {
    let queue = TestQueue::create("fanout-events", 30).await;
    let endpoint = support::moto().endpoint.clone();
    let detail = json!({"orderId": "o-1", "amount": 12.5, "items": [1, 2], "nested": {"k": null}});
    let events = json!([{
        "source": "com.example.orders",
        "detail_type": "Order Placed",
        "detail": detail,
        "resources": ["arn:aws:s3:::bucket-a", "arn:aws:s3:::bucket-b"],
    }]);
    let moto_events = json!([{
        "source": "com.example.billing",
        "detail_type": "Invoice",
        "detail": {"invoice": 7},
        "resources": [],
    }]);
    let url = queue.url.clone();
    let (aws, moto) = tokio::task::spawn_blocking(move || {
        (
            put_events_aws_envelope(&endpoint, &url, &events),
            put_events(&endpoint, &url, &moto_events),
        )
    })
    .await
    .unwrap();
    let sink = Sink::answering(200);
    let mut env = unwrap_env(&queue, &sink, "eventbridge");
    env.push(("CARRIER_WEBHOOK_DEFAULT_CONTENT_TYPE", "text/plain".into()));
    let mut carrier = CarrierProcess::start(&env);

    let requests = sink.wait_requests(2, T).await;
    queue.wait_counts((0, 0), T).await;
    let by_source: HashMap<&str, &Request> = requests
        .iter()
        .map(|r| (r.header("x-carrier-event-source").unwrap(), r))
        .collect();
    let order = by_source["com.example.orders"];
    let delivered: Value = serde_json::from_str(&order.body).expect("the detail, as JSON");
    assert_eq!(delivered, detail);
    let want = [
        ("content-type", "application/json"),
        ("x-carrier-event-id", aws["event_ids"][0].as_str().unwrap()),
        ("x-carrier-event-detail-type", "Order Placed"),
        ("x-carrier-event-account", "123456789012"),
        ("x-carrier-event-region", "us-east-1"),
        (
            "x-carrier-event-resources",
            "arn:aws:s3:::bucket-a,arn:aws:s3:::bucket-b",
        ),
    ];
    for (name, value) in want {
        assert_eq!(order.header(name), Some(value), "{name}");
    }
    assert!(order.header("x-carrier-event-time").is_some());
    // moto's own envelope has no account and no resources: those headers are left out.
    let invoice = by_source["com.example.billing"];
    assert_eq!(
        serde_json::from_str::<Value>(&invoice.body).unwrap(),
        json!({"invoice": 7})
    );
    assert_eq!(
        invoice.header("x-carrier-event-id"),
        moto["event_ids"][0].as_str()
    );
    assert_eq!(invoice.header("x-carrier-event-account"), None);
    assert_eq!(invoice.header("x-carrier-event-resources"), None);
    carrier.signal("TERM");
    assert!(carrier.wait_exit(T).await.success());
}
