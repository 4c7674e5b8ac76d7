"""A test worker built on AWS Lambda Powertools for Python, for carrier's Lambda-format batches.

carrier can POST a batch as the exact event AWS Lambda hands a function for an SQS event source
mapping (`{"Records": [...]}`) and read back a partial batch response. This worker checks that
claim with an independent implementation: it validates the whole event with Powertools' parser
model `SqsModel` and processes it with Powertools' `BatchProcessor` and `process_partial_response`,
as a real Lambda function would.

Run with the project's venv python (scripts/setup-test-env installs Powertools). It serves HTTP on
127.0.0.1 on an ephemeral port and prints, one JSON document per line, flushed:
  PORT <n>                                         once, first (not JSON)
  {"invalid": "<error text>"}                      a POST that is not a valid SQS event, or has no
                                                   records (answered 400)
  {"messageId": ..., "body": ..., "ok": true|false} each record handled
  {"batch": <n records>, "failures": [ids...]}     after each valid batch (answered 200 with the
                                                   {"batchItemFailures": [...]} Powertools returns)
A record fails (its handler raises) when its body contains "fail". Any path is accepted.
SIGTERM exits cleanly; with --stdin-lifeline it also exits when its standard input closes.
"""

import json
import signal
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from aws_lambda_powertools.utilities.batch import (
    BatchProcessor,
    EventType,
    process_partial_response,
)
from aws_lambda_powertools.utilities.batch.exceptions import UnexpectedBatchTypeError
from aws_lambda_powertools.utilities.parser.models import SqsModel, SqsRecordModel
from pydantic import ValidationError

_out_lock = threading.Lock()


def emit(line):
    """Prints one line (a str as is, anything else as JSON) and flushes; whole lines only."""
    text = line if isinstance(line, str) else json.dumps(line)
    with _out_lock:
        sys.stdout.write(text + "\n")
        sys.stdout.flush()


def record_handler(record: SqsRecordModel):
    ok = "fail" not in record.body
    emit({"messageId": record.messageId, "body": record.body, "ok": ok})
    if not ok:
        raise ValueError(f"record {record.messageId} asked to fail")


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_POST(self):
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length)
        try:
            event = json.loads(raw)
            SqsModel.model_validate(event)
        except (ValueError, ValidationError) as e:  # JSONDecodeError is a ValueError
            emit({"invalid": str(e)})
            self.answer(400, {"invalid": str(e)})
            return
        # One processor per batch: a BatchProcessor holds the state of the batch it processes.
        # An all-failed batch is answered like any other (every id in batchItemFailures) rather
        # than raised as a function error.
        processor = BatchProcessor(
            event_type=EventType.SQS,
            model=SqsRecordModel,
            raise_on_entire_batch_failure=False,
        )
        try:
            response = process_partial_response(
                event=event, record_handler=record_handler, processor=processor, context=None
            )
        except UnexpectedBatchTypeError as e:  # what SqsModel lets through: an empty Records
            emit({"invalid": str(e)})
            self.answer(400, {"invalid": str(e)})
            return
        failures = [f["itemIdentifier"] for f in response["batchItemFailures"]]
        emit({"batch": len(event["Records"]), "failures": failures})
        self.answer(200, response)

    def answer(self, status, doc):
        body = json.dumps(doc).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format, *args):  # no request log on stderr
        pass


def main():
    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    if "--stdin-lifeline" in sys.argv[1:]:

        def lifeline():
            sys.stdin.read()  # returns at EOF: whoever started us is gone
            server.shutdown()

        threading.Thread(target=lifeline, daemon=True).start()
    emit(f"PORT {server.server_address[1]}")
    try:
        server.serve_forever()
    finally:
        server.server_close()


if __name__ == "__main__":
    main()
