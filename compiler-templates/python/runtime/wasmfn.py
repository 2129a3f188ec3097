"""wasmfn's Python helpers: the request/response types and the Kubeless return rules.

Pure Python with no component bindings, so handlers that use it can be unit-tested on the host.

Request/response style::

    from wasmfn import Response

    def handle(request):
        return Response({"path": request.path}, status=200)

Kubeless/Kyma style::

    def handler(event, context):
        return {"hello": event["data"]}
"""

import base64
import datetime
import json
import uuid
from typing import Any, Dict, List, Optional, Tuple, Union
from urllib.parse import parse_qsl, urlsplit

__all__ = [
    "Request",
    "Response",
    "cloud_event",
    "kubeless_event",
    "kubeless_context",
    "kyma_event",
    "to_response",
]

# Where `emitCloudEvent` posts: the node routes this name to the function's namespace broker in-process.
EVENTS_AUTHORITY = "events.wasmfn.internal"



class Request:
    """An HTTP request: `method`, `path`, `query` (dict; repeated keys give lists), `headers` (lower-case dict),
    `body` (bytes), with `text()` and `json()`."""

    def __init__(self, method: str, url: str, headers: Dict[str, str], body: bytes):
        parts = urlsplit(url)
        self.method = method
        self.url = url
        self.path = parts.path or "/"
        self.query = _query(parts.query)
        self.headers = headers
        self.body = body

    def text(self) -> str:
        """The body decoded as UTF-8."""
        return self.body.decode("utf-8")

    def json(self) -> Any:
        """The body parsed as JSON; raises ValueError when it is not JSON."""
        return json.loads(self.body)


class Response:
    """An HTTP response. `body` may be str, bytes, or any JSON-serialisable value (sent as JSON)."""

    def __init__(self, body: Any = b"", status: int = 200, headers: Optional[Dict[str, str]] = None):
        self.status = status
        self.headers = {k.lower(): v for k, v in (headers or {}).items()}
        if isinstance(body, str):
            self.body = body.encode("utf-8")
            self.headers.setdefault("content-type", "text/plain; charset=utf-8")
        elif isinstance(body, (bytes, bytearray, memoryview)):
            self.body = bytes(body)
            if self.body:
                self.headers.setdefault("content-type", "application/octet-stream")
        else:
            self.body = json.dumps(body).encode("utf-8")
            self.headers.setdefault("content-type", "application/json")


def _query(qs: str) -> Dict[str, Union[str, List[str]]]:
    query: Dict[str, Union[str, List[str]]] = {}
    for k, v in parse_qsl(qs, keep_blank_values=True):
        if k not in query:
            query[k] = v
        elif isinstance(query[k], list):
            query[k].append(v)  # type: ignore[union-attr]
        else:
            query[k] = [query[k], v]  # type: ignore[list-item]
    return query


def cloud_event(headers: Dict[str, str], envelope: Optional[Dict[str, Any]]) -> Optional[Dict[str, Any]]:
    """CloudEvent attributes of a request: from a structured-mode envelope, or from `ce-*` headers (binary
    mode); None when it is not a CloudEvent."""
    if envelope is not None:
        return {k: v for k, v in envelope.items() if k not in ("data", "data_base64")}
    if not headers.get("ce-id") or not headers.get("ce-type"):
        return None
    attributes: Dict[str, Any] = {k[3:]: v for k, v in headers.items() if k.startswith("ce-")}
    if "content-type" in headers:
        attributes["datacontenttype"] = headers["content-type"]
    return attributes


def kubeless_event(request: Request) -> Dict[str, Any]:
    """The Kubeless `event` for a request: `data` is the body (parsed when it is JSON), plus `event-id`,
    `event-type`, `event-time`, `event-namespace` (from `event-*` headers or the CloudEvent, binary or
    structured) and `extensions` (`request`, and `cloudevent` with the CloudEvent's attributes or None)."""
    h = request.headers
    content_type = h.get("content-type", "")
    data: Any = request.body.decode("utf-8", errors="replace")
    if ("/json" in content_type or "+json" in content_type) and request.body:
        try:
            data = json.loads(request.body)
        except ValueError:
            pass  # Kubeless hands over the raw body when it does not parse.
    envelope = None
    if content_type.startswith("application/cloudevents+json") and isinstance(data, dict):
        envelope = data
        data = base64.b64decode(data["data_base64"]) if "data_base64" in data else data.get("data")
    ce = cloud_event(h, envelope) or {}
    return {
        "data": data,
        "event-id": h.get("event-id") or ce.get("id") or str(uuid.uuid4()),
        "event-type": h.get("event-type") or ce.get("type") or content_type,
        "event-time": h.get("event-time")
        or ce.get("time")
        or datetime.datetime.now(datetime.timezone.utc).isoformat(),
        "event-namespace": h.get("event-namespace") or ce.get("source") or "http.wasmfn.dev",
        "extensions": {"request": request, "cloudevent": ce or None},
    }


class KymaResponse:
    """`event['extensions']['response']`: a status and headers a handler sets instead of returning them."""

    def __init__(self):
        self.status = None
        self.headers: Dict[str, str] = {}

    def set_status(self, status: int) -> "KymaResponse":
        self.status = int(status)
        return self

    def set_header(self, name: str, value: str) -> "KymaResponse":
        self.headers[name.lower()] = str(value)
        return self

    def apply(self, resp: Response, returned_nothing: bool) -> Response:
        """The response with what the handler set: a status with nothing returned sends an empty body."""
        if returned_nothing and self.status is not None:
            resp = Response(b"", status=self.status)
        elif self.status is not None and resp.status == 200:
            resp.status = self.status
        resp.headers.update(self.headers)
        return resp


class _Span:
    """A span with OpenTelemetry's API shape; wasmfn drops spans (they record nothing)."""

    def __init__(self, name: str):
        self.name = name
        self.attributes: Dict[str, Any] = {}

    def set_attribute(self, key, value):
        self.attributes[key] = value
        return self

    def add_event(self, *args, **kwargs):
        return self

    def set_status(self, *args, **kwargs):
        return self

    def record_exception(self, *args, **kwargs):
        return None

    def end(self, *args, **kwargs):
        return None

    def is_recording(self) -> bool:
        return False

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


class _Tracer:
    """`event.tracer`: `start_span` and `start_as_current_span` as OpenTelemetry's Tracer has them."""

    def start_span(self, name, *args, **kwargs):
        return _Span(name)

    def start_as_current_span(self, name, *args, **kwargs):
        return _Span(name)


class KymaEvent(dict):
    """The Kubeless event with Kyma's additions: `ce-*` keys, `emitCloudEvent`, `tracer`, the response."""

    def __init__(self, base: Dict[str, Any], emit):
        super().__init__(base)
        self._emit = emit
        self.tracer = _Tracer()
        ce = base["extensions"].get("cloudevent") or {}
        for name in ("type", "source", "id", "specversion", "time", "eventtypeversion", "subject"):
            if name in ce:
                self["ce-" + name] = ce[name]
        self["extensions"]["response"] = KymaResponse()

    def setResponseHeader(self, name, value):  # noqa: N802 - Kyma's names
        self["extensions"]["response"].set_header(name, value)

    def setResponseStatus(self, status):  # noqa: N802
        self["extensions"]["response"].set_status(status)

    def setResponseContentType(self, content_type):  # noqa: N802
        self["extensions"]["response"].set_header("content-type", content_type)

    def emitCloudEvent(self, type, source, data, optionalCloudEventAttributes=None):  # noqa: N802, A002
        """Publishes an event into the function's namespace broker; returns the broker's status code."""
        attributes = dict(optionalCloudEventAttributes or {})
        headers = {
            "ce-specversion": str(attributes.pop("specversion", "1.0")),
            "ce-id": str(attributes.pop("id", uuid.uuid4())),
            "ce-type": type,
            "ce-source": source,
        }
        content_type = attributes.pop("datacontenttype", None)
        for k, v in attributes.items():
            headers["ce-" + k] = str(v)
        if isinstance(data, (bytes, bytearray)):
            body = bytes(data)
            headers["content-type"] = content_type or "application/octet-stream"
        elif isinstance(data, str):
            body = data.encode("utf-8")
            headers["content-type"] = content_type or "text/plain"
        else:
            body = json.dumps(data).encode("utf-8")
            headers["content-type"] = content_type or "application/json"
        status = self._emit(body, headers)
        if status >= 300:
            raise RuntimeError(f"emitCloudEvent: the broker answered {status}")
        return status


def kyma_event(event: Dict[str, Any], emit) -> KymaEvent:
    """Adds Kyma's interface to a Kubeless event; `emit(body, headers)` posts an event to the node."""
    return KymaEvent(event, emit)


def kubeless_context(env: Dict[str, str], runtime: str) -> Dict[str, str]:
    """The Kubeless `context`: `function-name`, `timeout` (seconds), `runtime` and `memory-limit`."""
    return {
        "function-name": env.get("WASMFN_FUNCTION_NAME", ""),
        "timeout": env.get("WASMFN_TIMEOUT", ""),
        "runtime": runtime,
        "memory-limit": env.get("WASMFN_MEMORY_LIMIT", ""),
    }


def to_response(result: Any) -> Response:
    """Kubeless return rules: a Response, a string, bytes, a `(body, status)` tuple, a dict with `statusCode`
    (and optional `headers`, `body`), or any other JSON-serialisable value."""
    if isinstance(result, Response):
        return result
    if result is None:
        return Response(b"")
    if isinstance(result, tuple) and len(result) in (2, 3):
        body, status = result[0], result[1]
        return Response(body, status=int(status), headers=result[2] if len(result) == 3 else None)
    if isinstance(result, dict) and isinstance(result.get("statusCode"), int):
        return Response(result.get("body", b""), status=result["statusCode"], headers=result.get("headers"))
    return Response(result)


def _items(headers: Dict[str, str]) -> List[Tuple[str, bytes]]:
    return [(k, str(v).encode("utf-8")) for k, v in headers.items()]
