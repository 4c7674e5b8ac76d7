#!/usr/bin/env python3
"""End-to-end run of the carrier image, for scripts/check-image.

Run inside a fresh network namespace whose only interface is loopback (check-image starts it with
`unshare -n` and brings `lo` up), with the Python of .venv (moto's venv, which has boto3):

    check_image.py --image IMAGE --moto-server PATH -- PODMAN [GLOBAL-OPTIONS...]

It starts, all on 127.0.0.1: the moto SQS emulator, dnsmasq (answers sqs.test.internal and
nothing else of test.internal), and a webhook that answers 200 and records what it got. It creates
a queue, sends a few messages and runs the image read-only, without credentials, with SQS reached
by a name only DNS knows and the webhook by a name only the container's /etc/hosts knows. It then
checks: every message delivered, the queue empty, the names resolved where they should be, and on
SIGTERM a drain and exit status 0, with JSON log lines on stdout. Every wait is bounded; everything
started here is stopped on the way out, failure or not.
"""

import argparse
import http.server
import json
import os
import queue
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
import uuid

import boto3

# A fresh network namespace is empty, so fixed ports cannot collide with anything.
MOTO_PORT = 4566
WEBHOOK_PORT = 8080
DNS_PORT = 53
SQS_HOST = "sqs.test.internal"  # known only to dnsmasq
WEBHOOK_HOST = "webhook.test.internal"  # known only to the container's /etc/hosts (--add-host)
QUEUE_NAME = "carrier-image-check"
CONTAINER = "carrier-image-check"
MESSAGES = 5

T0 = time.monotonic()


def say(text):
    print(f"e2e [{time.monotonic() - T0:6.2f}s] {text}", flush=True)


class CheckFailed(Exception):
    pass


def wait_until(what, predicate, timeout, interval=0.05):
    """Polls predicate (for things that have no event to wait on) until it is true or time is up."""
    deadline = time.monotonic() + timeout
    while True:
        if predicate():
            return
        if time.monotonic() >= deadline:
            raise CheckFailed(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(interval)


def port_open(port):
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.settimeout(0.5)
        return s.connect_ex(("127.0.0.1", port)) == 0


def dns_query_a(name, timeout=1.0):
    """One A query to the dnsmasq on 127.0.0.1: (rcode, first address or None)."""
    qid = int.from_bytes(os.urandom(2), "big")
    header = struct.pack(">HHHHHH", qid, 0x0100, 1, 0, 0, 0)  # recursion desired, one question
    qname = b"".join(bytes([len(p)]) + p.encode() for p in name.split(".")) + b"\0"
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(timeout)
        s.sendto(header + qname + struct.pack(">HH", 1, 1), ("127.0.0.1", DNS_PORT))
        data, _ = s.recvfrom(4096)
    rid, flags, _qd, an, _ns, _ar = struct.unpack(">HHHHHH", data[:12])
    if rid != qid:
        raise CheckFailed("DNS answer with the wrong id")
    rcode = flags & 0xF
    pos = 12 + len(qname) + 4
    for _ in range(an):
        if data[pos] & 0xC0 == 0xC0:  # compressed name
            pos += 2
        else:
            while data[pos]:
                pos += data[pos] + 1
            pos += 1
        rtype, _cls, _ttl, rdlen = struct.unpack(">HHIH", data[pos : pos + 10])
        pos += 10
        if rtype == 1 and rdlen == 4:
            return rcode, socket.inet_ntoa(data[pos : pos + 4])
        pos += rdlen
    return rcode, None


class Lines:
    """Collects the lines of a child's stream in a thread; waiters are woken by each new line."""

    def __init__(self, stream, name):
        self.lines = []
        self.cond = threading.Condition()
        self.closed = False
        self.thread = threading.Thread(target=self._read, args=(stream,), name=name, daemon=True)
        self.thread.start()

    def _read(self, stream):
        for raw in stream:
            with self.cond:
                self.lines.append(raw.decode("utf-8", "replace").rstrip("\n"))
                self.cond.notify_all()
        with self.cond:
            self.closed = True
            self.cond.notify_all()

    def wait_for(self, what, predicate, timeout):
        deadline = time.monotonic() + timeout
        with self.cond:
            while True:
                for line in self.lines:
                    if predicate(line):
                        return line
                left = deadline - time.monotonic()
                if self.closed or left <= 0:
                    why = "the stream ended" if self.closed else f"timed out after {timeout:.0f}s"
                    raise CheckFailed(f"{why} waiting for {what}")
                self.cond.wait(left)

    def snapshot(self):
        with self.cond:
            return list(self.lines)


class Webhook(http.server.ThreadingHTTPServer):
    """Answers every POST with 200 and records (path, headers, body)."""

    daemon_threads = True

    def __init__(self):
        self.requests = []
        self.cond = threading.Condition()
        super().__init__(("127.0.0.1", WEBHOOK_PORT), WebhookHandler)

    def wait_for_bodies(self, bodies, timeout):
        deadline = time.monotonic() + timeout
        with self.cond:
            while not bodies <= {r[2] for r in self.requests}:
                left = deadline - time.monotonic()
                if left <= 0:
                    got = len({r[2] for r in self.requests} & bodies)
                    raise CheckFailed(f"timed out after {timeout:.0f}s: webhook saw {got} of {len(bodies)} messages")
                self.cond.wait(left)


class WebhookHandler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as carrier's pool expects

    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length", "0"))).decode()
        with self.server.cond:
            self.server.requests.append((self.path, dict(self.headers), body))
            self.server.cond.notify_all()
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *_args):
        pass


def is_json_object(line):
    try:
        return isinstance(json.loads(line), dict)
    except ValueError:
        return False


def stop(proc, name, timeout=10):
    if proc is None or proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        say(f"{name} ignored SIGTERM; killing it")
        proc.kill()
        proc.wait(timeout)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--image", required=True)
    parser.add_argument("--moto-server", required=True)
    parser.add_argument("podman", nargs="+", help="podman and its global options")
    args = parser.parse_args()
    podman = args.podman

    # SIGTERM from check-image's trap: unwind through the finally blocks below.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))

    moto = dnsmasq = carrier = None
    webhook = None
    try:
        # --- the services, all on loopback ------------------------------------------------------
        moto = subprocess.Popen(
            [args.moto_server, "-H", "127.0.0.1", "-p", str(MOTO_PORT)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        dnsmasq = subprocess.Popen(
            [
                "dnsmasq", "--keep-in-foreground", "--conf-file=/dev/null", "--pid-file=",
                "--no-resolv", "--no-hosts", "--listen-address=127.0.0.1", "--bind-interfaces",
                f"--port={DNS_PORT}", f"--host-record={SQS_HOST},127.0.0.1", "--local=/test.internal/",
                "--log-queries", "--log-facility=-",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        dns_log = Lines(dnsmasq.stderr, "dnsmasq")
        webhook = Webhook()
        threading.Thread(target=webhook.serve_forever, name="webhook", daemon=True).start()

        def dns_ready():
            if dnsmasq.poll() is not None:
                raise CheckFailed(f"dnsmasq exited with {dnsmasq.returncode}: {dns_log.snapshot()[-3:]}")
            try:
                return dns_query_a(SQS_HOST) == (0, "127.0.0.1")
            except OSError:
                return False

        wait_until("dnsmasq to answer", dns_ready, timeout=10)
        rcode, _ = dns_query_a(WEBHOOK_HOST)
        if rcode != 3:
            raise CheckFailed(f"dnsmasq should not know {WEBHOOK_HOST} (rcode {rcode}, expected NXDOMAIN)")
        say(f"dnsmasq: {SQS_HOST} -> 127.0.0.1, {WEBHOOK_HOST} NXDOMAIN")

        def moto_ready():
            if moto.poll() is not None:
                raise CheckFailed(f"moto_server exited with {moto.returncode}")
            return port_open(MOTO_PORT)

        wait_until("moto_server to listen", moto_ready, timeout=30)
        sqs = boto3.client(
            "sqs",
            endpoint_url=f"http://127.0.0.1:{MOTO_PORT}",
            region_name="us-east-1",
            aws_access_key_id="check",
            aws_secret_access_key="check",
        )
        queue_url = sqs.create_queue(QueueName=QUEUE_NAME)["QueueUrl"]
        run_id = uuid.uuid4().hex
        bodies = {json.dumps({"check": "carrier-image", "run": run_id, "n": i}) for i in range(MESSAGES)}
        for body in sorted(bodies):
            sqs.send_message(QueueUrl=queue_url, MessageBody=body)
        say(f"moto: queue {QUEUE_NAME} with {MESSAGES} messages; webhook on 127.0.0.1:{WEBHOOK_PORT}")
        dns_lines_before = len(dns_log.snapshot())

        # --- the image --------------------------------------------------------------------------
        env = {
            "CARRIER_SQS_ENDPOINT": f"http://{SQS_HOST}:{MOTO_PORT}",
            "CARRIER_SQS_QUEUE_NAME": QUEUE_NAME,
            "CARRIER_WEBHOOK_ENDPOINT": f"http://{WEBHOOK_HOST}:{WEBHOOK_PORT}/hook",
            "CARRIER_SHUTDOWN_TIMEOUT": "10s",
        }
        cmd = [
            *podman, "run", "--rm", "--name", CONTAINER,
            "--runtime", "runc", "--ulimit", "nofile=1024:1024", "--ulimit", "nproc=1024:1024",
            "--network", "host", "--dns", "127.0.0.1", "--add-host", f"{WEBHOOK_HOST}:127.0.0.1",
            # Nothing writable at all, not even the tmpfs podman adds to a read-only root.
            "--read-only", "--read-only-tmpfs=false",
            "--cap-drop", "ALL", "--security-opt", "no-new-privileges",
        ]
        for key, value in env.items():
            cmd += ["--env", f"{key}={value}"]
        cmd.append(args.image)
        started = time.monotonic()
        carrier = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        out = Lines(carrier.stdout, "carrier-stdout")
        err = Lines(carrier.stderr, "carrier-stderr")

        def has_msg(msg):
            def match(line):
                try:
                    return json.loads(line).get("msg") == msg
                except ValueError:
                    return False

            return match

        try:
            out.wait_for('"carrier has arrived"', has_msg("carrier has arrived"), timeout=60)
            say(f'carrier: "carrier has arrived" {time.monotonic() - started:.2f}s after podman run')
            webhook.wait_for_bodies(bodies, timeout=30)
            say(f"webhook: all {MESSAGES} bodies received")

            def queue_empty():
                attrs = sqs.get_queue_attributes(
                    QueueUrl=queue_url,
                    AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
                )["Attributes"]
                return all(v == "0" for v in attrs.values())

            wait_until("the queue to be empty (every message deleted)", queue_empty, timeout=30, interval=0.1)
            say("moto: queue empty, every message deleted")
        except CheckFailed:
            for line in out.snapshot()[-20:] + err.snapshot()[-20:]:
                print(f"  carrier: {line}", file=sys.stderr)
            raise

        requests = list(webhook.requests)
        for path, headers, _body in requests:
            if path != "/hook" or "X-Carrier-Message-Id" not in headers:
                raise CheckFailed(f"unexpected webhook request: {path} {headers}")
        new_dns = dns_log.snapshot()[dns_lines_before:]
        if not any(f"query[A] {SQS_HOST}" in line for line in new_dns):
            raise CheckFailed(f"carrier did not ask dnsmasq for {SQS_HOST}: {new_dns}")
        if any(WEBHOOK_HOST in line for line in new_dns):
            raise CheckFailed(f"carrier asked DNS for {WEBHOOK_HOST} instead of reading /etc/hosts first")
        say(f"names: {SQS_HOST} through dnsmasq, {WEBHOOK_HOST} from /etc/hosts (no DNS query)")

        # --- SIGTERM: drain and exit 0 ----------------------------------------------------------
        term = time.monotonic()
        subprocess.run([*podman, "kill", "--signal", "TERM", CONTAINER], check=True, timeout=30,
                       stdout=subprocess.DEVNULL)
        try:
            status = carrier.wait(timeout=40)
        except subprocess.TimeoutExpired:
            raise CheckFailed("carrier did not exit within 40s of SIGTERM") from None
        out.thread.join(5)
        err.thread.join(5)
        lines = out.snapshot()
        if status != 0:
            for line in lines[-20:] + err.snapshot()[-20:]:
                print(f"  carrier: {line}", file=sys.stderr)
            raise CheckFailed(f"carrier exited with status {status} after SIGTERM, expected 0")
        if not any(has_msg("carrier stopped")(line) for line in lines):
            raise CheckFailed('no "carrier stopped" log line')
        not_json = [line for line in lines if not is_json_object(line)]
        if not_json:
            raise CheckFailed(f"stdout lines that are not JSON objects: {not_json[:3]}")
        say(f'carrier: SIGTERM -> "carrier stopped", exit 0 in {time.monotonic() - term:.2f}s')
        say(f"ok: {len(requests)} webhook requests for {MESSAGES} messages, {len(lines)} JSON log lines")
        for line in lines:
            if json.loads(line).get("msg") in ("carrier has arrived", "carrier stopped"):
                print(f"  {line}")
        return 0
    except CheckFailed as failure:
        say(f"FAILED: {failure}")
        return 1
    finally:
        if carrier is not None and carrier.poll() is None:
            subprocess.run([*podman, "rm", "--force", "--time", "0", CONTAINER], timeout=30,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False)
            stop(carrier, "podman run")
        stop(dnsmasq, "dnsmasq")
        stop(moto, "moto_server")
        if webhook is not None:
            webhook.shutdown()
            webhook.server_close()


if __name__ == "__main__":
    sys.exit(main())
