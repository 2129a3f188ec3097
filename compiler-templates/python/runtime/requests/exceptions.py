"""The exceptions of `requests`, as functions catch them."""


class RequestException(IOError):
    """Any failure of a request."""

    def __init__(self, *args, response=None, **kwargs):
        super().__init__(*args)
        self.response = response


class HTTPError(RequestException):
    """`raise_for_status()` on a 4xx/5xx answer."""


class ConnectionError(RequestException):  # noqa: A001 - requests' name
    """The request could not be sent (refused by the node's egress policy, no route, TLS, ...)."""


class Timeout(RequestException):
    """No answer within `timeout`."""


class ReadTimeout(Timeout):
    """No answer within `timeout`."""


class ConnectTimeout(ConnectionError, Timeout):
    """No connection within `timeout`."""


class TooManyRedirects(RequestException):
    """More than 10 redirects."""


class JSONDecodeError(RequestException, ValueError):
    """`Response.json()` on a body that is not JSON."""
