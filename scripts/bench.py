"""Bounded measurement of the carrier binary against moto and a webhook, all on 127.0.0.1."""
import http.server
import os
import signal
import socket
import subprocess
import sys
import threading
import time

import boto3

CARRIER, N = sys.argv[1], int(sys.argv[2])
assert 1 <= N <= 20000, "N is bounded to 20000 messages"
TICK = os.sysconf("SC_CLK_TCK")
lock = threading.Lock()
delivered = 0


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Hook(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *a):
        pass

    def do_POST(self):
        global delivered
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        with lock:
            delivered += 1
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()


def status(pid, key):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1])


def cpu_seconds(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK


def wait_port(port, deadline=30):
    end = time.time() + deadline
    while time.time() < end:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return
        except OSError:
            time.sleep(0.1)
    sys.exit("bench: emulator did not start")


def main():
    moto_port, hook_port = free_port(), free_port()
    moto = subprocess.Popen([os.path.join(os.path.dirname(sys.executable), "moto_server"),
                             "-H", "127.0.0.1", "-p", str(moto_port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    carrier = None
    rows = [("binary size (stripped)", f"{os.path.getsize(CARRIER) / 1e6:.2f} MB")]
    try:
        wait_port(moto_port)
        endpoint = f"http://127.0.0.1:{moto_port}"
        sqs = boto3.client("sqs", endpoint_url=endpoint, region_name="us-east-1",
                           aws_access_key_id="x", aws_secret_access_key="x")
        sqs.create_queue(QueueName="bench-idle")
        # Run 2 gets its own queue: run 1's aborted long polls stay open inside moto for up to
        # 20 s and would swallow messages sent meanwhile (SQS behaves the same way).
        url = sqs.create_queue(QueueName="bench")["QueueUrl"]
        server = http.server.ThreadingHTTPServer(("127.0.0.1", hook_port), Hook)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        env = {"PATH": os.environ["PATH"], "HOME": "/nonexistent",
               "CARRIER_SQS_ENDPOINT": endpoint, "CARRIER_SQS_QUEUE_NAME": "bench-idle",
               "CARRIER_SQS_BATCH_SIZE": "10", "CARRIER_SQS_RECEIVERS": "2",
               "CARRIER_SQS_RECEIVER_WORKERS": "10", "CARRIER_LOG_LEVEL": "warn",
               "CARRIER_WEBHOOK_ENDPOINT": f"http://127.0.0.1:{hook_port}/"}
        # Run 1: idle, queue resolved and long polls open.
        carrier = subprocess.Popen([CARRIER], env=env, stdout=subprocess.DEVNULL)
        time.sleep(3)
        rows.append(("idle RSS", f"{status(carrier.pid, 'VmRSS') / 1024:.1f} MB"))
        rows.append(("threads", str(status(carrier.pid, "Threads"))))
        carrier.send_signal(signal.SIGTERM)
        carrier.wait(timeout=30)
        # Run 2: N messages waiting, carrier started against them.
        for start in range(0, N, 10):
            sqs.send_message_batch(QueueUrl=url, Entries=[
                {"Id": str(i), "MessageBody": f'{{"n": {start + i}}}'} for i in range(min(10, N - start))])
        t0 = time.time()
        carrier = subprocess.Popen([CARRIER], env={**env, "CARRIER_SQS_QUEUE_NAME": "bench"},
                                   stdout=subprocess.DEVNULL)
        deadline = t0 + 300
        while time.time() < deadline:
            with lock:
                if delivered >= N:
                    break
            time.sleep(0.05)
        else:
            sys.exit(f"bench: only {delivered}/{N} delivered in 300 s")
        elapsed, cpu = time.time() - t0, cpu_seconds(carrier.pid)
        rows.append((f"{N} messages via moto (batch 10, 2x10 workers)", f"{N / elapsed:.0f} msg/s (emulator-bound)"))
        rows.append(("carrier CPU per message", f"{cpu / N * 1e6:.0f} µs"))
        rows.append(("peak RSS under load", f"{status(carrier.pid, 'VmHWM') / 1024:.1f} MB"))
        carrier.send_signal(signal.SIGTERM)
        rows.append(("exit after SIGTERM", f"status {carrier.wait(timeout=30)}"))
    finally:
        if carrier is not None and carrier.poll() is None:
            carrier.kill()
        moto.terminate()
        moto.wait()
    print("| measure | value |\n|---|---|")
    for k, v in rows:
        print(f"| {k} | {v} |")


if __name__ == "__main__":
    main()
