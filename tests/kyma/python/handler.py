import base64
import datetime
import hashlib
import json
import logging
import os
import urllib.parse

import requests

log = logging.getLogger("corpus")


def main(event, context):
    path = event["extensions"]["request"].path
    if path == "/stdlib":
        import hmac  # a runtime import: the template imported it at build time

        log.warning("stdlib corpus")
        parsed = urllib.parse.urlparse("http://example.test:8080/a/b?x=1&y=two")
        return {
            "json": json.loads('{"a": [1, 2]}'),
            "datetime": (datetime.datetime(2024, 2, 28) + datetime.timedelta(days=1)).date().isoformat(),
            "parse": {"host": parsed.netloc, "query": urllib.parse.parse_qs(parsed.query)},
            "quote": urllib.parse.quote("a b/c"),
            "sha256": hashlib.sha256(b"abc").hexdigest(),
            "md5": base64.b64encode(hashlib.md5(b"abc").digest()).decode(),
            "hmac": hmac.new(b"key", b"The quick brown fox jumps over the lazy dog", "sha256").hexdigest(),
            "base64": base64.b64encode(b"hello").decode(),
        }
    if path == "/requests":
        upstream = os.environ["UPSTREAM"]
        got = requests.get(f"{upstream}/json", params={"from": "requests"}, headers={"x-client": "requests"}, timeout=5)
        posted = requests.post(f"{upstream}/echo", json={"n": 1})
        missing = requests.get(f"{upstream}/missing")
        try:
            missing.raise_for_status()
            raised = None
        except requests.HTTPError as e:
            raised = str(e)
        return {"status": got.status_code, "data": got.json(), "posted": posted.json(),
                "contentType": got.headers["Content-Type"], "missing": missing.status_code, "raised": raised}
    event.setResponseStatus(404)
    return None
