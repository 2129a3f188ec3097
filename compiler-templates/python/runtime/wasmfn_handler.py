"""The wasi:http glue of the Python template: reads the request, calls the user's handler in its style and
writes the response. Not imported by user code."""

# The standard library modules Kyma/Kubeless functions use, imported here at build time: the component holds
# only the modules imported while it was made, so a handler may then import them anywhere, even inside a function.
import base64  # noqa: F401
import collections  # noqa: F401
import datetime  # noqa: F401
import hashlib  # noqa: F401
import hmac  # noqa: F401
import json  # noqa: F401
import logging  # noqa: F401
import math  # noqa: F401
import os
import random  # noqa: F401
import re  # noqa: F401
import sys
import time  # noqa: F401
import traceback
import urllib.parse  # noqa: F401
import uuid  # noqa: F401

import requests  # noqa: F401 - the wasi:http shim (runtime/requests), so `import requests` works anywhere
import wasmfn
import wasmfn_http
from componentize_py_types import Err, Ok
from wit_world import exports
from wit_world.imports import streams
from wit_world.imports.types import (
    Fields,
    IncomingRequest,
    OutgoingBody,
    OutgoingResponse,
    ResponseOutparam,
)

_CHUNK = 4096


def _method(m) -> str:
    value = getattr(m, "value", None)
    if isinstance(value, str):  # Method_Other
        return value
    return type(m).__name__.split("_", 1)[1].upper()


def _read_body(request: IncomingRequest) -> bytes:
    body = request.consume()
    chunks = []
    with body.stream() as stream:
        while True:
            try:
                chunks.append(stream.blocking_read(65536))
            except Err as e:
                if isinstance(e.value, streams.StreamError_Closed):
                    break
                raise
    return b"".join(chunks)


def _to_request(request: IncomingRequest) -> wasmfn.Request:
    headers = {}
    for name, value in request.headers().entries():
        v = value.decode("utf-8", errors="replace")
        headers[name] = f"{headers[name]}, {v}" if name in headers else v
    return wasmfn.Request(_method(request.method()), request.path_with_query() or "/", headers, _read_body(request))


def _send(out: ResponseOutparam, resp: wasmfn.Response) -> None:
    headers = Fields.from_list(wasmfn._items(resp.headers))
    response = OutgoingResponse(headers)
    response.set_status_code(resp.status)
    body = response.body()
    ResponseOutparam.set(out, Ok(response))
    with body.write() as stream:
        for i in range(0, len(resp.body), _CHUNK):
            stream.blocking_write_and_flush(resp.body[i : i + _CHUNK])
    OutgoingBody.finish(body, None)


def _failure(request: wasmfn.Request, error: BaseException) -> wasmfn.Response:
    request_id = request.headers.get("x-request-id", "")
    print(f"handler failed (request {request_id}):", file=sys.stderr)
    traceback.print_exception(error, file=sys.stderr)
    return wasmfn.Response({"error": f"the handler failed: {error!r}", "requestId": request_id}, status=500)


def _emit(body: bytes, headers: dict) -> int:
    """POSTs an event to the node's in-process route to the function's namespace broker; the status."""
    url = f"http://{wasmfn.EVENTS_AUTHORITY}/"
    try:
        status, _, _ = wasmfn_http.send("POST", url, wasmfn._items(headers), body)
    except wasmfn_http.HttpError as e:
        raise RuntimeError(f"emitCloudEvent: the node did not take the event: {e}") from None
    return status


def serve(user, runtime: str, entry: str, handler=None):
    """Returns the `IncomingHandler` class for the user's module; raises (failing the build) when it has none."""
    plain = None
    if handler is not None:
        kubeless = getattr(user, handler, None)
        if not callable(kubeless):
            names = [n for n in dir(user) if not n.startswith("_") and callable(getattr(user, n))]
            raise RuntimeError(
                f"wasmfn: {entry} has no function `{handler}` (the handler names it); it defines "
                + (", ".join(f"`{n}`" for n in names) or "nothing callable")
            )
    else:
        kubeless = getattr(user, "handler", None)
        if not callable(kubeless):
            kubeless = getattr(user, "main", None)
        plain = getattr(user, "handle", None)
    if not callable(kubeless) and not callable(plain):
        raise RuntimeError(
            f"wasmfn: {entry} has no handler: define `def handler(event, context)` (Kubeless), "
            "`def main(event, context)` (Kyma) or `def handle(request)` (request/response style), "
            "or name the function in spec.build.handler (`file.function`)"
        )

    class IncomingHandler(exports.IncomingHandler):
        def handle(self, request: IncomingRequest, response_out: ResponseOutparam) -> None:
            req = _to_request(request)
            try:
                if callable(kubeless):
                    event = wasmfn.kyma_event(wasmfn.kubeless_event(req), _emit)
                    result = kubeless(event, wasmfn.kubeless_context(dict(os.environ), runtime))
                    resp = event["extensions"]["response"].apply(wasmfn.to_response(result), result is None)
                else:
                    resp = wasmfn.to_response(plain(req))
            except Exception as e:  # noqa: BLE001 - any handler failure becomes a 500
                resp = _failure(req, e)
            _send(response_out, resp)

    return IncomingHandler
