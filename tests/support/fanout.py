"""Real fan-out producers for carrier's SPEC 5.2 tests: SNS and EventBridge, as served by the moto
server the tests run (one endpoint serves SQS, SNS and EventBridge), deliver into an SQS queue, so
the envelopes carrier unwraps are made by the emulator itself, not by the tests.

Run with the project's venv python (scripts/setup-test-env makes it). Credentials are moto's
("test"), region us-east-1. Prints one JSON object on stdout; on any error prints
"fanout.py: <what failed>" on stderr and exits non-zero.

  fanout.py sns --endpoint URL --queue-url URL [--fifo] --publish JSON
      Creates a fresh SNS topic (a FIFO topic, `<name>.fifo` with content-based deduplication,
      under --fifo), subscribes the queue to it with protocol sqs and raw message delivery off (so
      SNS wraps each message in its notification envelope), adds a statement to the queue policy
      admitting the topic (as real AWS needs; moto does not check it), then publishes each message
      of JSON, a list of
        {"message": str, "subject": str|null, "group": str|null,
         "attributes": {name: {"DataType": "String"|"Number"|"String.Array"|"Binary"|...,
                               "StringValue": str | "BinaryValue": base64 str}}}
      ("subject", "group" and "attributes" may be left out; "group" is the MessageGroupId, needed
      under --fifo; an optional "deduplication_id" is passed as MessageDeduplicationId). moto
      hands SNS's deduplication id to a FIFO queue only when it was given explicitly, so without
      one the FIFO queue must have content-based deduplication (moto fails the Publish if not).
      Prints
        {"topic_arn": str, "subscription_arn": str,
         "published": [{"message_id": str, "sequence_number": str|null}, ...]}

  fanout.py eventbridge --endpoint URL --queue-url URL --events JSON [--event-bus NAME] [--group G]
                        [--aws-envelope]
      Creates a fresh event bus (or uses --event-bus, e.g. "default"), a rule on it with the event
      pattern {"source": [the sources of the events]}, a target that is the queue (for a FIFO
      queue with MessageGroupId G, default "carrier"; the queue must have content-based
      deduplication, as on AWS: moto silently drops the event otherwise, so this fails first),
      adds a statement to the queue policy admitting the rule, then puts each event of JSON, a
      list of
        {"source": str, "detail_type": str, "detail": {...}, "resources": [str], "time": str|null}
      ("resources" and "time", ISO 8601, may be left out). Prints
        {"event_bus": str, "rule_arn": str, "event_ids": [str, ...]}
      moto's own envelope lacks "account" (AWS always has it); --aws-envelope gives the target an
      input transformer (moto-specific: moto's <time> is still a number there) that makes moto
      write the envelope AWS writes, with the same keys in AWS's order:
        {"version", "id", "detail-type", "source", "account", "time", "region", "resources",
         "detail"}
      moto substitutes values into its template unescaped, so a source or detail-type holding
      '"' or '\\' makes moto fail (both envelopes).

JSON may be given as "-" to read it from stdin.
"""
import argparse
import base64
import datetime
import json
import sys
import uuid

REGION = "us-east-1"

# The envelope AWS EventBridge writes to an SQS target, as a moto input template: moto fills it
# with the event's fields (time still a Unix number, made ISO 8601 when sent to SQS).
AWS_ENVELOPE_PATHS = [
    "id", "detail-type", "source", "account", "time", "region", "resources", "detail",
]
AWS_ENVELOPE_TEMPLATE = (
    '{"version": "0", "id": "<id>", "detail-type": "<detail-type>", "source": "<source>",'
    ' "account": "<account>", "time": <time>, "region": "<region>",'
    ' "resources": <resources>, "detail": <detail>}'
)


class Failure(Exception):
    """An error worth a clear one-line message."""


def clients(endpoint, *services):
    import boto3
    from botocore.config import Config

    config = Config(
        connect_timeout=5,
        read_timeout=30,
        retries={"max_attempts": 2, "mode": "standard"},
    )
    session = boto3.session.Session(
        aws_access_key_id="test",
        aws_secret_access_key="test",
        region_name=REGION,
    )
    return [session.client(s, endpoint_url=endpoint, config=config) for s in services]


def load_json(text, what):
    if text == "-":
        text = sys.stdin.read()
    try:
        return json.loads(text)
    except json.JSONDecodeError as e:
        raise Failure(f"{what} is not JSON: {e}") from e


def queue_arn(sqs, queue_url):
    attrs = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])
    return attrs["Attributes"]["QueueArn"]


def admit(sqs, queue_url, queue, service, source_arn):
    """Adds to the queue's policy a statement letting `service` send from `source_arn`, keeping
    the statements already there. Real AWS drops deliveries without it; moto ignores policies."""
    attrs = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["Policy"])
    existing = attrs.get("Attributes", {}).get("Policy")
    policy = json.loads(existing) if existing else {"Version": "2012-10-17", "Statement": []}
    statements = policy.setdefault("Statement", [])
    if isinstance(statements, dict):
        statements = policy["Statement"] = [statements]
    statements.append(
        {
            "Sid": f"carrier-fanout-{uuid.uuid4().hex[:12]}",
            "Effect": "Allow",
            "Principal": {"Service": service},
            "Action": "sqs:SendMessage",
            "Resource": queue,
            "Condition": {"ArnEquals": {"aws:SourceArn": source_arn}},
        }
    )
    sqs.set_queue_attributes(QueueUrl=queue_url, Attributes={"Policy": json.dumps(policy)})


def as_list(value, what):
    if not isinstance(value, list):
        raise Failure(f"{what} must be a JSON list, got {type(value).__name__}")
    for i, item in enumerate(value):
        if not isinstance(item, dict):
            raise Failure(f"{what}[{i}] must be a JSON object, got {type(item).__name__}")
    return value


def sns_attributes(attributes, where):
    if not attributes:
        return {}
    if not isinstance(attributes, dict):
        raise Failure(f"{where}.attributes must be an object")
    out = {}
    for name, attr in attributes.items():
        if not isinstance(attr, dict) or "DataType" not in attr:
            raise Failure(f"{where}.attributes.{name} needs a DataType")
        value = {"DataType": attr["DataType"]}
        if "BinaryValue" in attr:
            try:
                value["BinaryValue"] = base64.b64decode(attr["BinaryValue"], validate=True)
            except (ValueError, TypeError) as e:
                raise Failure(f"{where}.attributes.{name}.BinaryValue is not base64: {e}") from e
        elif "StringValue" in attr:
            value["StringValue"] = attr["StringValue"]
        else:
            raise Failure(f"{where}.attributes.{name} needs a StringValue or a BinaryValue")
        out[name] = value
    return out


def cmd_sns(args):
    messages = as_list(load_json(args.publish, "--publish"), "--publish")
    sns, sqs = clients(args.endpoint, "sns", "sqs")
    queue = queue_arn(sqs, args.queue_url)

    name = f"carrier-fanout-{uuid.uuid4().hex[:12]}"
    attributes = {}
    if args.fifo:
        name += ".fifo"
        attributes = {"FifoTopic": "true", "ContentBasedDeduplication": "true"}
    topic_arn = sns.create_topic(Name=name, Attributes=attributes)["TopicArn"]
    subscription_arn = sns.subscribe(
        TopicArn=topic_arn,
        Protocol="sqs",
        Endpoint=queue,
        Attributes={"RawMessageDelivery": "false"},
        ReturnSubscriptionArn=True,
    )["SubscriptionArn"]
    admit(sqs, args.queue_url, queue, "sns.amazonaws.com", topic_arn)

    published = []
    for i, m in enumerate(messages):
        where = f"--publish[{i}]"
        if not isinstance(m.get("message"), str):
            raise Failure(f"{where}.message must be a string")
        request = {"TopicArn": topic_arn, "Message": m["message"]}
        if m.get("subject") is not None:
            request["Subject"] = m["subject"]
        attrs = sns_attributes(m.get("attributes"), where)
        if attrs:
            request["MessageAttributes"] = attrs
        if m.get("group") is not None:
            request["MessageGroupId"] = m["group"]
        elif args.fifo:
            raise Failure(f"{where}.group (the MessageGroupId) is needed for a FIFO topic")
        if m.get("deduplication_id") is not None:
            request["MessageDeduplicationId"] = m["deduplication_id"]
        response = sns.publish(**request)
        published.append(
            {
                "message_id": response["MessageId"],
                "sequence_number": response.get("SequenceNumber"),
            }
        )
    return {"topic_arn": topic_arn, "subscription_arn": subscription_arn, "published": published}


def parse_time(text, where):
    try:
        t = datetime.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError as e:
        raise Failure(f"{where}.time is not ISO 8601: {e}") from e
    return t if t.tzinfo else t.replace(tzinfo=datetime.timezone.utc)


def cmd_eventbridge(args):
    events = as_list(load_json(args.events, "--events"), "--events")
    if not events:
        raise Failure("--events is empty: nothing to match a rule on")
    entries = []
    for i, e in enumerate(events):
        where = f"--events[{i}]"
        for key in ("source", "detail_type"):
            if not isinstance(e.get(key), str):
                raise Failure(f"{where}.{key} must be a string")
        if not isinstance(e.get("detail"), dict):
            raise Failure(f"{where}.detail must be a JSON object")
        entry = {
            "Source": e["source"],
            "DetailType": e["detail_type"],
            "Detail": json.dumps(e["detail"]),
            "Resources": list(e.get("resources") or []),
        }
        if e.get("time") is not None:
            entry["Time"] = parse_time(e["time"], where)
        entries.append(entry)

    events_client, sqs = clients(args.endpoint, "events", "sqs")
    queue = queue_arn(sqs, args.queue_url)

    suffix = uuid.uuid4().hex[:12]
    bus = args.event_bus
    if bus is None:
        bus = f"carrier-fanout-{suffix}"
        events_client.create_event_bus(Name=bus)
    rule = f"carrier-fanout-{suffix}"
    sources = sorted({e["Source"] for e in entries})
    rule_arn = events_client.put_rule(
        Name=rule,
        EventBusName=bus,
        EventPattern=json.dumps({"source": sources}),
        State="ENABLED",
    )["RuleArn"]
    target = {"Id": "carrier-queue", "Arn": queue}
    if queue.endswith(".fifo"):
        target["SqsParameters"] = {"MessageGroupId": args.group}
        attrs = sqs.get_queue_attributes(
            QueueUrl=args.queue_url, AttributeNames=["ContentBasedDeduplication"]
        )["Attributes"]
        if attrs.get("ContentBasedDeduplication") != "true":
            raise Failure(
                "EventBridge delivers to a FIFO queue only with content-based deduplication"
                " (moto drops the events silently otherwise): create the queue with"
                " ContentBasedDeduplication=true"
            )
    if args.aws_envelope:
        target["InputTransformer"] = {
            "InputPathsMap": {k: f"$.{k}" for k in AWS_ENVELOPE_PATHS},
            "InputTemplate": AWS_ENVELOPE_TEMPLATE,
        }
    result = events_client.put_targets(Rule=rule, EventBusName=bus, Targets=[target])
    if result.get("FailedEntryCount"):
        raise Failure(f"PutTargets failed: {result['FailedEntries']}")
    admit(sqs, args.queue_url, queue, "events.amazonaws.com", rule_arn)

    event_ids = []
    for start in range(0, len(entries), 10):  # PutEvents takes at most 10 entries
        batch = [dict(entry, EventBusName=bus) for entry in entries[start : start + 10]]
        result = events_client.put_events(Entries=batch)
        if result.get("FailedEntryCount"):
            raise Failure(f"PutEvents failed: {result['Entries']}")
        event_ids.extend(entry["EventId"] for entry in result["Entries"])
    return {"event_bus": bus, "rule_arn": rule_arn, "event_ids": event_ids}


def main():
    parser = argparse.ArgumentParser(
        prog="fanout.py",
        description="Publish through moto's SNS or EventBridge into an SQS queue.",
    )
    sub = parser.add_subparsers(dest="command", required=True)

    sns = sub.add_parser("sns", help="publish through an SNS topic subscribed by the queue")
    sns.add_argument("--endpoint", required=True)
    sns.add_argument("--queue-url", required=True)
    sns.add_argument("--fifo", action="store_true", help="a FIFO topic (for a FIFO queue)")
    sns.add_argument("--publish", required=True, help='JSON list of messages, or "-" for stdin')
    sns.set_defaults(run=cmd_sns)

    eb = sub.add_parser("eventbridge", help="put events matched by a rule targeting the queue")
    eb.add_argument("--endpoint", required=True)
    eb.add_argument("--queue-url", required=True)
    eb.add_argument("--events", required=True, help='JSON list of events, or "-" for stdin')
    eb.add_argument("--event-bus", help="an existing bus (e.g. default) instead of a fresh one")
    eb.add_argument("--group", default="carrier", help="MessageGroupId for a FIFO queue target")
    eb.add_argument(
        "--aws-envelope",
        action="store_true",
        help="make moto write AWS's full envelope (with account) through an input transformer",
    )
    eb.set_defaults(run=cmd_eventbridge)

    args = parser.parse_args()
    try:
        import botocore.exceptions
    except ImportError as e:
        print(f"fanout.py: boto3 is missing ({e}): run scripts/setup-test-env", file=sys.stderr)
        return 1
    try:
        out = args.run(args)
    except Failure as e:
        print(f"fanout.py {args.command}: {e}", file=sys.stderr)
        return 1
    except (botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError) as e:
        print(f"fanout.py {args.command}: {type(e).__name__}: {e}", file=sys.stderr)
        return 1
    json.dump(out, sys.stdout)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
