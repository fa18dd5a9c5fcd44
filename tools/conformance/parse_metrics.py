#!/usr/bin/env python3
"""Reads Prometheus text format on stdin with prometheus_client's parser
(the rules Prometheus itself applies) and prints its samples as JSON:
[[name, {labels}, value], ...], with each family's type as
{"types": {family: type}}. Exits 1 with the parser's message on a
malformed exposition."""
import json
import sys

from prometheus_client.parser import text_string_to_metric_families

try:
    families = list(text_string_to_metric_families(sys.stdin.read()))
except Exception as e:  # the parser's ValueError names the bad line
    print(f"parse_metrics: {e}", file=sys.stderr)
    sys.exit(1)
print(json.dumps({
    "types": {f.name: f.type for f in families},
    "samples": [[s.name, s.labels, s.value] for f in families for s in f.samples],
}))
