//! Real fan-out producers for the SPEC 5.2 tests: tests/support/fanout.py (run from the project's
//! `.venv`) has the moto server's own SNS and EventBridge (served on the same endpoint as its SQS)
//! deliver into a test queue, so the envelopes carrier unwraps are made by the emulator, not by
//! the tests. See the script's docstring for the JSON it takes and prints, and for how moto's
//! envelopes differ from AWS's.
//!
//! Blocking (a child process): call it directly or from `tokio::task::spawn_blocking`.

use std::io::Write;
use std::process::Stdio;

use serde_json::Value;

/// Creates a fresh SNS topic (a FIFO topic with content-based deduplication when `fifo`),
/// subscribes the queue to it without raw message delivery and publishes `messages`, a list of
/// `{"message": str, "subject": str|null, "group": str|null, "deduplication_id": str|null,
/// "attributes": {name: {"DataType": ..., "StringValue" | "BinaryValue" (base64): ...}}}`.
/// Returns `{"topic_arn", "subscription_arn", "published": [{"message_id", "sequence_number"}]}`
/// (moto gives no sequence number: always null). A FIFO queue needs content-based deduplication
/// unless each message has a `deduplication_id` (`TestQueue::create_fifo` queues have it).
pub fn publish_sns(endpoint: &str, queue_url: &str, fifo: bool, messages: &Value) -> Value {
    let mut args = vec!["sns", "--endpoint", endpoint, "--queue-url", queue_url];
    if fifo {
        args.push("--fifo");
    }
    args.extend(["--publish", "-"]);
    run(&args, messages)
}

/// Creates a fresh event bus, a rule matching the sources of `events` with the queue as its
/// target, and puts `events`, a list of `{"source": str, "detail_type": str, "detail": {...},
/// "resources": [str], "time": ISO 8601 str|null}`. Returns `{"event_bus", "rule_arn",
/// "event_ids"}`. The envelope is moto's own, which has no `account` (see
/// [`put_events_aws_envelope`]). A FIFO queue needs content-based deduplication; its messages
/// get MessageGroupId `carrier`.
pub fn put_events(endpoint: &str, queue_url: &str, events: &Value) -> Value {
    eventbridge(endpoint, queue_url, events, false)
}

/// [`put_events`], with the target's input transformer making moto write the envelope AWS
/// writes: `version`, `id`, `detail-type`, `source`, `account`, `time`, `region`, `resources`,
/// `detail`, in that order.
pub fn put_events_aws_envelope(endpoint: &str, queue_url: &str, events: &Value) -> Value {
    eventbridge(endpoint, queue_url, events, true)
}

fn eventbridge(endpoint: &str, queue_url: &str, events: &Value, aws_envelope: bool) -> Value {
    let mut args = vec![
        "eventbridge",
        "--endpoint",
        endpoint,
        "--queue-url",
        queue_url,
    ];
    if aws_envelope {
        args.push("--aws-envelope");
    }
    args.extend(["--events", "-"]);
    run(&args, events)
}

/// Runs fanout.py with `args` and `input` (as JSON) on its stdin; its parsed stdout, or a panic
/// with its stderr.
fn run(args: &[&str], input: &Value) -> Value {
    let mut child = super::venv_python("fanout.py")
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start tests/support/fanout.py");
    // A write error (the script exited before reading) shows in its status and stderr below.
    let _ = child
        .stdin
        .take()
        .expect("piped stdin")
        .write_all(input.to_string().as_bytes());
    let out = child.wait_with_output().expect("wait for fanout.py");
    assert!(
        out.status.success(),
        "fanout.py {} failed ({}): {}",
        args[0],
        out.status,
        String::from_utf8_lossy(&out.stderr).trim_end()
    );
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "fanout.py {} printed no JSON ({e}): {}",
            args[0],
            String::from_utf8_lossy(&out.stdout)
        )
    })
}
