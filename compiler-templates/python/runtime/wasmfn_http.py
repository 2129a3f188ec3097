"""Outbound HTTP over wasi:http for the Python template: what the `requests` shim and `emitCloudEvent` send with.
Imported at build time (componentize-py keeps only the modules imported while the component is made)."""

from typing import List, Optional, Tuple
from urllib.parse import urlsplit

from componentize_py_types import Err
from wit_world.imports import outgoing_handler, streams
from wit_world.imports.types import (
    Fields,
    Method_Connect,
    Method_Delete,
    Method_Get,
    Method_Head,
    Method_Options,
    Method_Other,
    Method_Patch,
    Method_Post,
    Method_Put,
    Method_Trace,
    OutgoingBody,
    OutgoingRequest,
    RequestOptions,
    Scheme_Http,
    Scheme_Https,
)

_CHUNK = 4096
_METHODS = {
    "GET": Method_Get,
    "HEAD": Method_Head,
    "POST": Method_Post,
    "PUT": Method_Put,
    "DELETE": Method_Delete,
    "CONNECT": Method_Connect,
    "OPTIONS": Method_Options,
    "TRACE": Method_Trace,
    "PATCH": Method_Patch,
}


class HttpError(Exception):
    """The request could not be sent or answered (the wasi:http error code in the message)."""


def send(
    method: str,
    url: str,
    headers: List[Tuple[str, bytes]],
    body: bytes = b"",
    timeout: Optional[float] = None,
    max_body: int = 64 * 1024 * 1024,
) -> Tuple[int, List[Tuple[str, bytes]], bytes]:
    """Sends one request; returns the status, the headers and the whole body (at most `max_body` bytes)."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise HttpError(f"not an http(s) URL: {url!r}")
    request = OutgoingRequest(Fields.from_list(headers))
    m = method.upper()
    request.set_method(_METHODS[m]() if m in _METHODS else Method_Other(m))
    request.set_scheme(Scheme_Https() if parts.scheme == "https" else Scheme_Http())
    request.set_authority(parts.netloc)
    request.set_path_with_query((parts.path or "/") + (f"?{parts.query}" if parts.query else ""))
    options = None
    if timeout is not None:
        options = RequestOptions()
        ns = int(timeout * 1e9)
        options.set_connect_timeout(ns)
        options.set_first_byte_timeout(ns)
        options.set_between_bytes_timeout(ns)
    out = request.body()
    # Sent first, so the peer reads the body as it is written.
    try:
        pending = outgoing_handler.handle(request, options)
    except Err as e:
        raise HttpError(f"{method} {url}: {e.value!r}") from None
    with out.write() as stream:
        for i in range(0, len(body), _CHUNK):
            stream.blocking_write_and_flush(body[i : i + _CHUNK])
    OutgoingBody.finish(out, None)
    with pending.subscribe() as ready:
        ready.block()
    result = pending.get()
    if result is None or isinstance(result, Err) or isinstance(result.value, Err):
        cause = getattr(getattr(result, "value", None), "value", result)
        raise HttpError(f"{method} {url}: {cause!r}")
    response = result.value.value
    status = response.status()
    fields = response.headers().entries()
    chunks = []
    size = 0
    incoming = response.consume()
    with incoming.stream() as stream:
        while True:
            try:
                chunk = stream.blocking_read(65536)
            except Err as e:
                if isinstance(e.value, streams.StreamError_Closed):
                    break
                raise HttpError(f"{method} {url}: reading the body: {e.value!r}") from None
            size += len(chunk)
            if size > max_body:
                raise HttpError(f"{method} {url}: the body is larger than {max_body} bytes")
            chunks.append(chunk)
    return status, fields, b"".join(chunks)
