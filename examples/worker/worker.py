"""A sample worker for carrier: the webhook that carrier POSTs each SQS message to.

Standard library only. Routes:
  GET  /health   200 while the worker can take messages (carrier's CARRIER_WEBHOOK_HEALTH_CHECK_ENDPOINT)
  POST /webhook  one message per request; the answer decides what carrier does with it:
                 200 -> carrier deletes the message;
                 429 + Retry-After -> carrier makes it reappear after that many seconds;
                 X-Carrier-Dead-Letter: true -> carrier moves it to the dead-letter queue.
To show those, a body containing "retry" is asked to come back in 5 s the first time it is seen,
and one containing "dead-letter" is sent to the dead-letter queue. Anything else is acked.

Environment: WORKER_HOST (0.0.0.0), WORKER_PORT (9000), WORKER_DELAY seconds of pretend work per message (0.2).
SIGTERM stops accepting connections, lets requests in progress finish (10 s at most), then exits.
"""

import json
import os
import signal
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

HOST = os.environ.get("WORKER_HOST", "0.0.0.0")
PORT = int(os.environ.get("WORKER_PORT", "9000"))
DELAY = float(os.environ.get("WORKER_DELAY", "0.2"))
RETRY_AFTER_SECONDS = 5
MAX_BODY = 1024 * 1024  # SQS's largest message
STOP_WAIT_SECONDS = 10

# Requests being handled, so a stop can wait for them (idle keep-alive connections it does not).
in_progress = 0
in_progress_changed = threading.Condition()
stopping = threading.Event()


def log(msg, **fields):
    print(json.dumps({"time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "msg": msg, **fields}), flush=True)


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as carrier pools its connections

    def do_GET(self):
        if self.path == "/health":
            self.answer(200, b"ok\n")
        else:
            self.answer(404, b"not found\n")

    def do_POST(self):
        global in_progress
        with in_progress_changed:
            in_progress += 1
        try:
            self.handle_message()
        finally:
            with in_progress_changed:
                in_progress -= 1
                in_progress_changed.notify_all()

    def handle_message(self):
        if self.path != "/webhook":
            self.answer(404, b"not found\n")
            return
        length = int(self.headers.get("Content-Length") or 0)
        if length > MAX_BODY:
            self.answer(413, b"too large\n")
            return
        body = self.rfile.read(length)
        receive_count = int(self.headers.get("X-Carrier-Receive-Count") or 1)
        fields = {
            "message_id": self.headers.get("X-Carrier-Message-Id"),
            "receive_count": receive_count,
            "content_type": self.headers.get("Content-Type"),
            "bytes": len(body),
        }
        time.sleep(DELAY)
        if b"dead-letter" in body:
            log("dead-lettering", **fields)
            self.answer(422, b"cannot process\n", {"X-Carrier-Dead-Letter": "true"})
        elif b"retry" in body and receive_count == 1:
            log("retry later", retry_after=RETRY_AFTER_SECONDS, **fields)
            self.answer(429, b"later\n", {"Retry-After": str(RETRY_AFTER_SECONDS)})
        else:
            log("processed", **fields)
            self.answer(200, b"done\n")

    def answer(self, status, body, headers=None):
        self.send_response(status)
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        if stopping.is_set():
            self.send_header("Connection", "close")
            self.close_connection = True
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format, *args):  # the JSON lines above say enough
        pass


def main():
    server = ThreadingHTTPServer((HOST, PORT), Handler)

    def stop(signum, _frame):
        log("stopping", signal=signal.Signals(signum).name)
        stopping.set()
        threading.Thread(target=server.shutdown).start()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    log("listening", port=PORT)
    server.serve_forever()
    server.server_close()
    with in_progress_changed:
        in_progress_changed.wait_for(lambda: in_progress == 0, timeout=STOP_WAIT_SECONDS)
    log("stopped", unfinished=in_progress)
    return 0


if __name__ == "__main__":
    sys.exit(main())
