"""Demo orchestration: moto SQS emulator + sample webhook + carrier, all on 127.0.0.1."""
import http.server
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time

import boto3

CARRIER = sys.argv[1]
MESSAGES = 12
QUEUE = "carrier-demo"
lock = threading.Lock()
delivered = set()
retried = set()


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Webhook(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def reply(self, status, headers=()):
        self.send_response(status)
        for k, v in headers:
            self.send_header(k, v)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def do_GET(self):  # health check
        self.reply(200 if self.path == "/health" else 404)

    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length", 0))).decode()
        n = json.loads(body)["n"]
        with lock:
            if n == 7 and n not in retried:
                retried.add(n)
                print(f"  webhook: message {n:2} -> 429 Retry-After: 2 (try me again later)", flush=True)
                return self.reply(429, [("Retry-After", "2")])
            delivered.add(n)
        print(f"  webhook: message {n:2} -> 200  receive-count={self.headers['X-Carrier-Receive-Count']}"
              f" content-type={self.headers['Content-Type']}", flush=True)
        self.reply(200)


def wait_port(port, proc, what, timeout=30):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc is not None and proc.poll() is not None:
            sys.exit(f"demo: {what} exited early")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return
        except OSError:
            time.sleep(0.1)
    sys.exit(f"demo: {what} did not start")


def main():
    moto_port, hook_port = free_port(), free_port()
    moto = subprocess.Popen([os.path.join(os.path.dirname(sys.executable), "moto_server"),
                             "-H", "127.0.0.1", "-p", str(moto_port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    carrier = None
    try:
        wait_port(moto_port, moto, "moto")
        endpoint = f"http://127.0.0.1:{moto_port}"
        sqs = boto3.client("sqs", endpoint_url=endpoint, region_name="us-east-1",
                           aws_access_key_id="demo", aws_secret_access_key="demo")
        url = sqs.create_queue(QueueName=QUEUE)["QueueUrl"]
        for n in range(1, MESSAGES + 1):
            sqs.send_message(QueueUrl=url, MessageBody=json.dumps({"n": n}))
        print(f"demo: moto SQS at {endpoint}, queue {QUEUE!r} holds {MESSAGES} messages")

        server = http.server.ThreadingHTTPServer(("127.0.0.1", hook_port), Webhook)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        print(f"demo: sample webhook at http://127.0.0.1:{hook_port}/events")

        env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "CARRIER_"))}
        env.update({
            "CARRIER_SQS_ENDPOINT": endpoint,
            "CARRIER_SQS_QUEUE_NAME": QUEUE,
            "CARRIER_SQS_BATCH_SIZE": "10",
            "CARRIER_SQS_RECEIVER_WORKERS": "4",
            "CARRIER_WEBHOOK_ENDPOINT": f"http://127.0.0.1:{hook_port}/events",
            "CARRIER_WEBHOOK_HEALTH_CHECK_ENDPOINT": f"http://127.0.0.1:{hook_port}/health",
            "CARRIER_ENABLE_COLORIZED_LOGGING": os.environ.get("CARRIER_ENABLE_COLORIZED_LOGGING", "false"),
            "HOME": "/nonexistent",  # no AWS credentials anywhere: carrier still runs
        })
        print("demo: starting carrier (no AWS credentials configured); its log lines follow\n")
        carrier = subprocess.Popen([CARRIER], env=env)
        deadline = time.time() + 60
        while time.time() < deadline:
            attrs = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])["Attributes"]
            left = int(attrs["ApproximateNumberOfMessages"]) + int(attrs["ApproximateNumberOfMessagesNotVisible"])
            with lock:
                done = len(delivered)
            if done == MESSAGES and left == 0:
                break
            if carrier.poll() is not None:
                sys.exit(f"demo: carrier exited early with {carrier.returncode}")
            time.sleep(0.2)
        else:
            sys.exit(f"demo: timed out: {len(delivered)}/{MESSAGES} delivered, {left} left in the queue")
        print(f"\ndemo: all {MESSAGES} messages delivered and deleted; sending SIGTERM to carrier\n")
        carrier.send_signal(signal.SIGTERM)
        code = carrier.wait(timeout=30)
        print(f"\ndemo: carrier exited with status {code}; queue is empty. Done.")
        sys.exit(code)
    finally:
        if carrier is not None and carrier.poll() is None:
            carrier.kill()
        moto.terminate()
        moto.wait()


if __name__ == "__main__":
    main()
