"""Parses an OpenMetrics text (carrier's /metrics) with the independent prometheus_client package.

Reads the text on stdin; prints a JSON object: 'name{label="value",...}' (labels sorted) → value.
Fails (non-zero exit) if the text is not valid OpenMetrics.
"""
import json
import sys

from prometheus_client.openmetrics.parser import text_string_to_metric_families

samples = {}
for family in text_string_to_metric_families(sys.stdin.read()):
    for s in family.samples:
        labels = ",".join(f'{k}="{v}"' for k, v in sorted(s.labels.items()))
        samples[f"{s.name}{{{labels}}}" if labels else s.name] = s.value
json.dump(samples, sys.stdout)
