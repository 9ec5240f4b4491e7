"""Fails unless every operation of the OpenAPI document got a successful (2xx/3xx) answer in the
run recorded by schemathesis's HAR report: an operation reached only with made-up ids (404) or
refused input has not really been tested.

usage: reached.py OPENAPI_JSON HAR_FILE [SCHEMA_PATH]

SCHEMA_PATH: the path the document was loaded from (e.g. /openapi.json). Schemathesis leaves that
operation out of the run when it loads the document from the server; the fetch itself succeeded.
"""

from __future__ import annotations

import collections
import json
import re
import sys
from urllib.parse import urlsplit

METHODS = {"get", "put", "post", "delete", "patch", "head", "options", "trace"}


def operations(document: dict) -> list[tuple[str, str, re.Pattern[str]]]:
    found = []
    for path, item in document["paths"].items():
        pattern = re.compile("^" + re.sub(r"\\\{[^}]+\\\}", "[^/]+", re.escape(path)) + "$")
        for method in item:
            if method in METHODS:
                found.append((method.upper(), path, pattern))
    return found


def main() -> int:
    with open(sys.argv[1]) as f:
        document = json.load(f)
    with open(sys.argv[2]) as f:
        entries = json.load(f)["log"]["entries"]
    schema_path = sys.argv[3] if len(sys.argv) > 3 else None
    ops = operations(document)
    statuses: dict[tuple[str, str], collections.Counter] = {(m, p): collections.Counter() for m, p, _ in ops}
    for entry in entries:
        method = entry["request"]["method"].upper()
        path = urlsplit(entry["request"]["url"]).path
        for m, p, pattern in ops:
            if m == method and pattern.match(path):
                statuses[(m, p)][entry["response"]["status"]] += 1
                break
    unreached = []
    print("responses per operation (status: count):")
    for (method, path), counter in statuses.items():
        summary = ", ".join(f"{status}: {n}" for status, n in sorted(counter.items()))
        if method == "GET" and path == schema_path and not counter:
            summary = "(the document itself, loaded before the run)"
        elif not any(200 <= status < 400 for status in counter):
            unreached.append(f"{method} {path}")
        print(f"  {method:6} {path:28} {summary or '-'}")
    if unreached:
        print("never answered with success: " + "; ".join(unreached), file=sys.stderr)
        return 1
    print(f"every one of the {len(ops)} operations answered with success at least once")
    return 0


if __name__ == "__main__":
    sys.exit(main())
