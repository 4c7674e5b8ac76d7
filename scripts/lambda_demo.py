"""Lambda demo orchestration: a real Rust Lambda function (examples/lambda-function, on
lambda_runtime) served by `cargo lambda watch`, the moto SQS emulator, and carrier with
CARRIER_WEBHOOK_FORMAT=lambda between them; all on 127.0.0.1.

Usage: lambda_demo.py CARRIER_BINARY CARGO_LAMBDA_BINARY

Proves that the function consumes carrier's batches as it would Lambda's: every good message is
deleted, every record the function names in batchItemFailures comes back (after
CARRIER_WEBHOOK_ERROR_VISIBILITY_TIMEOUT) and is offered again. Exits 0 with a summary table, or
non-zero with the reason.
"""
import collections
import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request

import boto3

CARRIER, CARGO_LAMBDA = (os.path.abspath(path) for path in sys.argv[1:3])
FUNCTION_DIR = "examples/lambda-function"
FUNCTION = "carrier-lambda-function"  # the binary's name, which `cargo lambda watch` serves
QUEUE = "carrier-lambda-demo"
MESSAGES = 50
FAILING = {5, 15, 25, 35, 45}  # these bodies contain "fail": the function reports them failed
DEADLINE = 120  # seconds for carrier to bring the queue down to the failing messages

RECORD = re.compile(r"^record (\S+) (ok|fail) receive_count=(\S+)$")
BATCH = re.compile(r"^batch records=(\d+) ok=(\d+) fail=(\d+)$")


def fail(why):
    sys.exit(f"lambda-demo: FAILED: {why}")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port, proc, what, timeout):
    """Waits until something accepts connections on 127.0.0.1:port (polled every 0.2 s)."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc.poll() is not None:
            fail(f"{what} exited early with status {proc.returncode}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return
        except OSError:
            time.sleep(0.2)
    fail(f"{what} did not listen on 127.0.0.1:{port} within {timeout} s")


class FunctionLog:
    """Reads what `cargo lambda watch` prints (the function's stderr included) and counts the
    function's `record ...` and `batch ...` lines (see examples/lambda-function/src/main.rs)."""

    def __init__(self, stream):
        self.lock = threading.Lock()
        self.tail = collections.deque(maxlen=40)
        self.batches = []  # (records, ok, fail) per invocation
        self.outcomes = collections.defaultdict(list)  # messageId -> ["ok" | "fail", ...]
        threading.Thread(target=self._read, args=(stream,), daemon=True).start()

    def _read(self, stream):
        for raw in stream:
            line = raw.decode(errors="replace").rstrip()
            with self.lock:
                self.tail.append(line)
                if m := RECORD.match(line):
                    self.outcomes[m[1]].append(m[2])
                elif m := BATCH.match(line):
                    self.batches.append((int(m[1]), int(m[2]), int(m[3])))
                    print(f"  function: {line}", flush=True)

    def snapshot(self):
        with self.lock:
            return list(self.batches), {k: list(v) for k, v in self.outcomes.items()}

    def reset(self):
        with self.lock:
            self.batches.clear()
            self.outcomes.clear()

    def dump(self):
        with self.lock:
            return "\n".join(f"    | {line}" for line in self.tail)


class CarrierLog:
    """Echoes carrier's log lines and notes whether it ignored CARRIER_WEBHOOK_FORMAT as an
    unknown variable (a carrier without SPEC 5.1 warns and goes on delivering one message per
    POST, which the function cannot read)."""

    def __init__(self, stream):
        self.format_unknown = threading.Event()
        threading.Thread(target=self._read, args=(stream,), daemon=True).start()

    def _read(self, stream):
        for raw in stream:
            line = raw.decode(errors="replace").rstrip()
            print(f"  carrier: {line}", flush=True)
            if "unknown" in line and "CARRIER_WEBHOOK_FORMAT" in line:
                self.format_unknown.set()


def invoke(url, event, timeout):
    request = urllib.request.Request(url, data=json.dumps(event).encode(), method="POST",
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=timeout) as answer:
        return answer.status, json.loads(answer.read() or b"null")


def smoke_test(url):
    """Invokes the function by hand with a realistic 3-record SQS event, the second record's body
    containing "fail", and checks that it answers exactly that record in batchItemFailures."""
    def record(message_id, body, receive_count):
        return {
            "messageId": message_id, "receiptHandle": f"AQEB{message_id}", "body": body,
            "attributes": {"ApproximateReceiveCount": str(receive_count),
                           "SentTimestamp": "1545082649183", "SenderId": "AIDAIENQZJOLO23YVJ4VO",
                           "ApproximateFirstReceiveTimestamp": "1545082649185"},
            "messageAttributes": {}, "md5OfBody": "e4e68fb7bd0e697a0ae8f1bb342846b3",
            "eventSource": "aws:sqs",
            "eventSourceARN": "arn:aws:sqs:us-east-1:123456789012:smoke-test", "awsRegion": "us-east-1",
        }
    event = {"Records": [
        record("00000000-0000-4000-8000-000000000001", '{"n":1}', 1),
        record("00000000-0000-4000-8000-000000000002", '{"n":2,"action":"fail"}', 2),
        record("00000000-0000-4000-8000-000000000003", '{"n":3}', 1),
    ]}
    # The first invocation starts the function (cargo run of the prebuilt binary): allow for it.
    status, answer = invoke(url, event, timeout=120)
    expected = {"batchItemFailures": [{"itemIdentifier": "00000000-0000-4000-8000-000000000002"}]}
    if status != 200 or answer != expected:
        fail(f"smoke test: expected 200 {json.dumps(expected)}, got {status} {json.dumps(answer)}")
    print(f"lambda-demo: smoke test passed: 3 records in, answer {json.dumps(answer)}")


def stop(proc, what, group=False):
    """Ends a process we started (with its process group when it has one of its own)."""
    if proc is None or proc.poll() is not None:
        return
    try:
        if group:
            os.killpg(proc.pid, signal.SIGTERM)
        else:
            proc.terminate()
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        print(f"lambda-demo: {what} ignored SIGTERM; killing it", file=sys.stderr)
        if group:
            os.killpg(proc.pid, signal.SIGKILL)
        else:
            proc.kill()
        proc.wait()
    except ProcessLookupError:
        pass


def main():
    started = time.time()
    # SIGTERM / SIGHUP end the demo through the `finally` below, like Ctrl-C, so nothing is left.
    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, lambda signum, _frame: sys.exit(128 + signum))

    lambda_port, moto_port = free_port(), free_port()
    function_url = f"http://127.0.0.1:{lambda_port}/2015-03-31/functions/{FUNCTION}/invocations"
    watch = moto = carrier = None
    try:
        # 1. The function, served by cargo lambda's emulation of the Lambda control plane. It gets a
        #    session (process group) of its own so it and the function it spawns end together.
        watch = subprocess.Popen(
            [CARGO_LAMBDA, "lambda", "watch", "--invoke-address", "127.0.0.1",
             "--invoke-port", str(lambda_port), "--ignore-changes", "--color", "never"],
            cwd=FUNCTION_DIR, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT, start_new_session=True)
        function_log = FunctionLog(watch.stdout)
        wait_port(lambda_port, watch, "cargo lambda watch", timeout=60)
        print(f"lambda-demo: function {FUNCTION!r} served at {function_url}")

        # 2. Invoke it by hand once: proof that it is up and answers as Lambda expects.
        try:
            smoke_test(function_url)
        except OSError as e:
            fail(f"smoke test: invoking {function_url}: {e}\n{function_log.dump()}")
        function_log.reset()

        # 3. moto, a queue, and the messages.
        moto = subprocess.Popen([os.path.join(os.path.dirname(sys.executable), "moto_server"),
                                 "-H", "127.0.0.1", "-p", str(moto_port)],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_port(moto_port, moto, "moto", timeout=30)
        endpoint = f"http://127.0.0.1:{moto_port}"
        sqs = boto3.client("sqs", endpoint_url=endpoint, region_name="us-east-1",
                           aws_access_key_id="demo", aws_secret_access_key="demo")
        url = sqs.create_queue(QueueName=QUEUE, Attributes={"VisibilityTimeout": "5"})["QueueUrl"]
        failing_ids = set()
        for first in range(1, MESSAGES + 1, 10):
            entries = []
            for n in range(first, min(first + 10, MESSAGES + 1)):
                body = {"n": n, "action": "fail"} if n in FAILING else {"n": n}
                entries.append({"Id": str(n), "MessageBody": json.dumps(body)})
            sent = sqs.send_message_batch(QueueUrl=url, Entries=entries)
            if sent.get("Failed"):
                fail(f"SendMessageBatch failed: {sent['Failed']}")
            failing_ids |= {s["MessageId"] for s in sent["Successful"] if int(s["Id"]) in FAILING}
        print(f"lambda-demo: moto SQS at {endpoint}, queue {QUEUE!r} holds {MESSAGES} messages,"
              f" {len(FAILING)} of them with \"fail\" in the body")

        # 4. carrier, POSTing Lambda events to the function (no AWS credentials anywhere).
        env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "CARRIER_"))}
        env.update({
            "CARRIER_SQS_ENDPOINT": endpoint,
            "CARRIER_SQS_QUEUE_NAME": QUEUE,
            "CARRIER_SQS_RECEIVERS": "1",
            "CARRIER_SQS_RECEIVER_WORKERS": "1",  # cargo lambda runs one invocation at a time
            "CARRIER_WEBHOOK_ENDPOINT": function_url,
            "CARRIER_WEBHOOK_FORMAT": "lambda",
            "CARRIER_WEBHOOK_BATCH_SIZE": "10",
            "CARRIER_WEBHOOK_BATCH_WINDOW": "1s",
            "CARRIER_WEBHOOK_ERROR_VISIBILITY_TIMEOUT": "2s",
            "CARRIER_ENABLE_COLORIZED_LOGGING": "false",
            "HOME": "/nonexistent",
        })
        print("lambda-demo: starting carrier; its log lines and the function's batches follow\n")
        carrier = subprocess.Popen([CARRIER], env=env, stdin=subprocess.DEVNULL,
                                   stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        carrier_log = CarrierLog(carrier.stdout)

        # 5. Wait (checked once a second) until only the failing messages are left in the queue and
        #    the function has seen each of them at least twice (offered again after its error
        #    visibility timeout).
        deadline = time.time() + DEADLINE
        while True:
            if carrier_log.format_unknown.wait(timeout=1.0):
                fail("this carrier does not know CARRIER_WEBHOOK_FORMAT (SPEC 5.1 not in this"
                     " build): it ignored it and would POST one message at a time")
            if carrier.poll() is not None:
                fail(f"carrier exited early with status {carrier.returncode}")
            attrs = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])["Attributes"]
            left = int(attrs["ApproximateNumberOfMessages"]) + int(attrs["ApproximateNumberOfMessagesNotVisible"])
            batches, outcomes = function_log.snapshot()
            retried = sum(1 for i in failing_ids if outcomes.get(i, []).count("fail") >= 2)
            if left == len(FAILING) and retried == len(FAILING):
                break
            if time.time() > deadline:
                fail(f"after {DEADLINE} s: {left} messages left in the queue (want {len(FAILING)}),"
                     f" {retried}/{len(FAILING)} failing messages seen twice, {len(batches)} batches"
                     f"\n  function output, last lines:\n{function_log.dump()}")

        # 6. Stop carrier as Kubernetes would, and check it exits 0.
        print(f"\nlambda-demo: {MESSAGES - len(FAILING)} good messages deleted, the {len(FAILING)}"
              " failing ones retried; sending SIGTERM to carrier\n")
        carrier.send_signal(signal.SIGTERM)
        try:
            code = carrier.wait(timeout=40)
        except subprocess.TimeoutExpired:
            fail("carrier did not exit within 40 s of SIGTERM")
        if code != 0:
            fail(f"carrier exited with status {code} after SIGTERM")

        # 7. Check what the function saw, and summarise.
        batches, outcomes = function_log.snapshot()
        wrong = sorted(i for i, seen in outcomes.items() if (i in failing_ids) != ("fail" in seen)
                       or (i not in failing_ids and seen.count("ok") != 1))
        if wrong:
            fail(f"messages seen with the wrong outcome, or good ones seen more than once: {wrong}")
        good_seen = sum(1 for i in outcomes if i not in failing_ids)
        if good_seen != MESSAGES - len(FAILING):
            fail(f"the function saw {good_seen} good messages, want {MESSAGES - len(FAILING)}")
        rows = [
            ("messages sent", MESSAGES),
            ("batches the function saw", len(batches)),
            ("records ok", sum(b[1] for b in batches)),
            ("records failed", sum(b[2] for b in batches)),
            ("max records per batch", max(b[0] for b in batches)),
            ("carrier exit status", code),
            ("seconds, all told", f"{time.time() - started:.1f}"),
        ]
        width = max(len(name) for name, _ in rows)
        print("\nlambda-demo: PASSED")
        for name, value in rows:
            print(f"  {name:<{width}}  {value:>6}")
    finally:
        stop(carrier, "carrier")
        stop(moto, "moto")
        stop(watch, "cargo lambda watch", group=True)


if __name__ == "__main__":
    main()
