"""A `requests`-style client over wasi:http, for functions moved from Kyma/Kubeless.

The real `requests` opens sockets (urllib3), which a Wasm function does not have; this module stands in for it
(the template puts it before vendored packages) with the calls functions use: `get`/`post`/`put`/`patch`/
`delete`/`head`/`options`/`request`, `Session`, and a `Response` with `status_code`, `ok`, `headers`, `content`,
`text`, `json()` and `raise_for_status()`. Not supported: streaming, files=, auth objects other than a
(user, password) tuple, proxies, certificates (the node verifies TLS)."""

import base64
import json as _json
from typing import Any, Dict, Iterator, Optional
from urllib.parse import urlencode, urlsplit, urlunsplit

import wasmfn_http

from . import exceptions
from .exceptions import ConnectionError, HTTPError, JSONDecodeError, RequestException, Timeout  # noqa: A004

__all__ = ["Response", "Session", "request", "get", "post", "put", "patch", "delete", "head", "options",
           "exceptions", "RequestException", "HTTPError", "ConnectionError", "Timeout", "JSONDecodeError", "codes"]
__version__ = "2.32.0-wasmfn"


class CaseInsensitiveDict(dict):
    """Headers: looked up case-insensitively, keeping the names as sent."""

    def __init__(self, data=None):
        super().__init__()
        self._keys: Dict[str, str] = {}
        for k, v in (data or {}).items():
            self[k] = v

    def __setitem__(self, key, value):
        old = self._keys.get(key.lower())
        if old is not None and old != key:
            super().__delitem__(old)
        self._keys[key.lower()] = key
        super().__setitem__(key, value)

    def __getitem__(self, key):
        return super().__getitem__(self._keys[key.lower()])

    def __delitem__(self, key):
        super().__delitem__(self._keys.pop(key.lower()))

    def __contains__(self, key):
        return isinstance(key, str) and key.lower() in self._keys

    def get(self, key, default=None):
        return self[key] if key in self else default


class Response:
    """An answered request."""

    def __init__(self, method: str, url: str, status: int, headers: CaseInsensitiveDict, content: bytes):
        self.request_method = method
        self.url = url
        self.status_code = status
        self.headers = headers
        self.content = content
        self.encoding = "utf-8"
        self.reason = _REASONS.get(status, "")

    @property
    def ok(self) -> bool:
        return self.status_code < 400

    @property
    def text(self) -> str:
        return self.content.decode(self.encoding or "utf-8", errors="replace")

    def json(self, **kwargs) -> Any:
        try:
            return _json.loads(self.content, **kwargs)
        except ValueError as e:
            raise JSONDecodeError(f"the response of {self.url} is not JSON: {e}") from e

    def raise_for_status(self) -> None:
        if self.status_code >= 400:
            kind = "Client" if self.status_code < 500 else "Server"
            raise HTTPError(f"{self.status_code} {kind} Error: {self.reason} for url: {self.url}", response=self)

    def iter_content(self, chunk_size: int = 1) -> Iterator[bytes]:
        for i in range(0, len(self.content), chunk_size or len(self.content) or 1):
            yield self.content[i : i + (chunk_size or len(self.content))]

    def close(self) -> None:
        pass

    def __bool__(self) -> bool:
        return self.ok

    def __repr__(self) -> str:
        return f"<Response [{self.status_code}]>"


def _with_params(url: str, params) -> str:
    if not params:
        return url
    parts = urlsplit(url)
    extra = urlencode(params, doseq=True)
    return urlunsplit(parts._replace(query=f"{parts.query}&{extra}" if parts.query else extra))


class Session:
    """Default headers (and auth) for several requests; no connection is kept between them."""

    def __init__(self):
        self.headers = CaseInsensitiveDict({"User-Agent": f"python-requests/{__version__}", "Accept": "*/*"})
        self.auth = None
        self.params: Dict[str, Any] = {}

    def request(self, method, url, params=None, data=None, headers=None, json=None, auth=None, timeout=None,
                allow_redirects=True, **_ignored) -> Response:
        all_headers = CaseInsensitiveDict(dict(self.headers))
        for k, v in (headers or {}).items():
            all_headers[k] = v
        body = b""
        if json is not None:
            body = _json.dumps(json).encode()
            if "content-type" not in all_headers:
                all_headers["Content-Type"] = "application/json"
        elif isinstance(data, dict):
            body = urlencode(data, doseq=True).encode()
            if "content-type" not in all_headers:
                all_headers["Content-Type"] = "application/x-www-form-urlencoded"
        elif isinstance(data, str):
            body = data.encode()
        elif data is not None:
            body = bytes(data)
        if body or method.upper() in ("POST", "PUT", "PATCH"):
            # Sent with a length, as requests does: servers that do not read chunked bodies get it too.
            all_headers["Content-Length"] = str(len(body))
        auth = auth or self.auth
        if isinstance(auth, tuple) and len(auth) == 2:
            token = base64.b64encode(f"{auth[0]}:{auth[1]}".encode()).decode()
            all_headers["Authorization"] = f"Basic {token}"
        if isinstance(timeout, tuple):
            timeout = max(t for t in timeout if t is not None) if any(t is not None for t in timeout) else None
        url = _with_params(url, {**self.params, **(params or {})})
        for _ in range(10 if allow_redirects else 1):
            pairs = [(k, str(v).encode()) for k, v in all_headers.items() if v is not None]
            try:
                status, fields, content = wasmfn_http.send(method, url, pairs, body, timeout)
            except wasmfn_http.HttpError as e:
                text = str(e)
                raise (Timeout if "timeout" in text.lower() else ConnectionError)(text) from None
            got = CaseInsensitiveDict()
            for name, value in fields:
                v = value.decode("latin-1")
                got[name] = f"{got[name]}, {v}" if name in got else v
            location = got.get("location")
            if not (allow_redirects and status in (301, 302, 303, 307, 308) and location):
                return Response(method.upper(), url, status, got, content)
            url = _join(url, location)
            if status == 303 or (status in (301, 302) and method.upper() == "POST"):
                method, body = "GET", b""
                if "content-length" in all_headers:
                    del all_headers["Content-Length"]
        raise exceptions.TooManyRedirects(f"more than 10 redirects from {url}")

    def get(self, url, **kw):
        return self.request("GET", url, **kw)

    def post(self, url, data=None, json=None, **kw):
        return self.request("POST", url, data=data, json=json, **kw)

    def put(self, url, data=None, **kw):
        return self.request("PUT", url, data=data, **kw)

    def patch(self, url, data=None, **kw):
        return self.request("PATCH", url, data=data, **kw)

    def delete(self, url, **kw):
        return self.request("DELETE", url, **kw)

    def head(self, url, **kw):
        return self.request("HEAD", url, allow_redirects=kw.pop("allow_redirects", False), **kw)

    def options(self, url, **kw):
        return self.request("OPTIONS", url, **kw)

    def close(self) -> None:
        pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


def _join(base: str, location: str) -> str:
    from urllib.parse import urljoin

    return urljoin(base, location)


def request(method, url, **kw) -> Response:
    return Session().request(method, url, **kw)


def get(url, params=None, **kw) -> Response:
    return request("GET", url, params=params, **kw)


def post(url, data=None, json=None, **kw) -> Response:
    return request("POST", url, data=data, json=json, **kw)


def put(url, data=None, **kw) -> Response:
    return request("PUT", url, data=data, **kw)


def patch(url, data=None, **kw) -> Response:
    return request("PATCH", url, data=data, **kw)


def delete(url, **kw) -> Response:
    return request("DELETE", url, **kw)


def head(url, **kw) -> Response:
    return request("HEAD", url, allow_redirects=kw.pop("allow_redirects", False), **kw)


def options(url, **kw) -> Response:
    return request("OPTIONS", url, **kw)


_REASONS = {200: "OK", 201: "Created", 202: "Accepted", 204: "No Content", 301: "Moved Permanently", 302: "Found",
            304: "Not Modified", 400: "Bad Request", 401: "Unauthorized", 403: "Forbidden", 404: "Not Found",
            409: "Conflict", 429: "Too Many Requests", 500: "Internal Server Error", 502: "Bad Gateway",
            503: "Service Unavailable", 504: "Gateway Timeout"}


class _Codes:
    ok = 200
    created = 201
    accepted = 202
    no_content = 204
    bad_request = 400
    unauthorized = 401
    forbidden = 403
    not_found = 404
    internal_server_error = 500


codes = _Codes()
