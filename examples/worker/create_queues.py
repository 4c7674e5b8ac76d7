"""Creates the demo queues in the SQS emulator and puts a few messages in, then exits.

Standard library only: SQS's JSON protocol over HTTP, signed (AWS Signature Version 4) with
placeholder credentials, which an emulator accepts and nothing else would.

Creates QUEUE_NAME-dlq, then QUEUE_NAME with a RedrivePolicy pointing at it (so carrier can
dead-letter on request), then sends SEED_MESSAGES messages: the second asks to be retried, the
third to be dead-lettered (see worker.py). Environment: SQS_ENDPOINT (http://sqs:5000),
QUEUE_NAME (carrier-demo), SEED_MESSAGES (5), AWS_REGION (us-east-1).
"""

import datetime
import hashlib
import hmac
import json
import os
import sys
import time
import urllib.error
import urllib.parse
import urllib.request

ENDPOINT = os.environ.get("SQS_ENDPOINT", "http://sqs:5000").rstrip("/")
QUEUE = os.environ.get("QUEUE_NAME", "carrier-demo")
SEED = int(os.environ.get("SEED_MESSAGES", "5"))
REGION = os.environ.get("AWS_REGION", "us-east-1")
# Placeholders, not credentials: the emulator checks only that a request is signed.
ACCESS_KEY, SECRET_KEY = "placeholder", "placeholder"


def _hmac(key, text):
    return hmac.new(key, text.encode(), hashlib.sha256).digest()


def sqs(action, payload):
    """One SQS JSON-protocol call; returns the decoded answer."""
    body = json.dumps(payload).encode()
    host = urllib.parse.urlsplit(ENDPOINT).netloc
    now = datetime.datetime.now(datetime.timezone.utc)
    amz_date, day = now.strftime("%Y%m%dT%H%M%SZ"), now.strftime("%Y%m%d")
    headers = {
        "content-type": "application/x-amz-json-1.0",
        "host": host,
        "x-amz-date": amz_date,
        "x-amz-target": f"AmazonSQS.{action}",
    }
    signed = ";".join(sorted(headers))
    canonical = "\n".join([
        "POST", "/", "",
        "".join(f"{name}:{headers[name]}\n" for name in sorted(headers)),
        signed,
        hashlib.sha256(body).hexdigest(),
    ])
    scope = f"{day}/{REGION}/sqs/aws4_request"
    to_sign = "\n".join(["AWS4-HMAC-SHA256", amz_date, scope, hashlib.sha256(canonical.encode()).hexdigest()])
    key = _hmac(_hmac(_hmac(_hmac(("AWS4" + SECRET_KEY).encode(), day), REGION), "sqs"), "aws4_request")
    signature = hmac.new(key, to_sign.encode(), hashlib.sha256).hexdigest()
    headers["authorization"] = (
        f"AWS4-HMAC-SHA256 Credential={ACCESS_KEY}/{scope}, SignedHeaders={signed}, Signature={signature}"
    )
    request = urllib.request.Request(ENDPOINT + "/", data=body, headers=headers, method="POST")
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.loads(response.read() or b"{}")


def wait_for_emulator(deadline_seconds=60):
    deadline = time.monotonic() + deadline_seconds
    while True:
        try:
            return sqs("ListQueues", {})
        except (urllib.error.URLError, ConnectionError) as error:
            if time.monotonic() > deadline:
                raise SystemExit(f"SQS emulator at {ENDPOINT} not reachable: {error}")
            time.sleep(1)


def main():
    wait_for_emulator()
    dlq_url = sqs("CreateQueue", {"QueueName": f"{QUEUE}-dlq"})["QueueUrl"]
    dlq_arn = sqs("GetQueueAttributes", {"QueueUrl": dlq_url, "AttributeNames": ["QueueArn"]})["Attributes"]["QueueArn"]
    redrive = json.dumps({"deadLetterTargetArn": dlq_arn, "maxReceiveCount": "5"})
    url = sqs("CreateQueue", {
        "QueueName": QUEUE,
        "Attributes": {"VisibilityTimeout": "30", "RedrivePolicy": redrive},
    })["QueueUrl"]
    print(f"queue {url} (dead-letter queue {dlq_url})", flush=True)
    for n in range(1, SEED + 1):
        kind = {2: "retry", 3: "dead-letter"}.get(n, "hello")
        sqs("SendMessage", {"QueueUrl": url, "MessageBody": json.dumps({"n": n, "kind": kind})})
    print(f"sent {SEED} messages", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
