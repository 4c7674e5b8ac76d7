"""Verifies carrier's webhook signatures with the independent `standardwebhooks` library.

Reads JSON from stdin: {"secrets": [...], "requests": [{"body": str, "headers": {name: value}}]}.
Prints one line per (secret, request): "ok" or "fail <reason>". Never prints a secret.
"""
import json
import sys

from standardwebhooks.webhooks import Webhook

job = json.load(sys.stdin)
for s, secret in enumerate(job["secrets"]):
    wh = Webhook(secret)
    for r, request in enumerate(job["requests"]):
        try:
            wh.verify(request["body"], request["headers"], json_parse=False)
            print(f"secret {s} request {r}: ok")
        except Exception as e:  # noqa: BLE001 - any failure is a failed verification
            print(f"secret {s} request {r}: fail {type(e).__name__}: {e}")
