"""Test guest: a Python wasi:http handler componentized by componentize-py."""

from wit_world import exports
from wit_world.imports.types import Fields, IncomingRequest, OutgoingBody, OutgoingResponse, ResponseOutparam
from componentize_py_types import Ok


# Module-level state: kept between the requests of a reused instance (`scaling.reuse`), fresh otherwise.
count = 0


class IncomingHandler(exports.IncomingHandler):
    def handle(self, request: IncomingRequest, response_out: ResponseOutparam) -> None:
        global count
        path = request.path_with_query() or "/"
        if path == "/count":
            count += 1
            body = str(count).encode()
        else:
            body = b"hello from python\n" if path == "/" else path.encode()
        response = OutgoingResponse(Fields.from_list([("content-type", b"text/plain")]))
        outgoing = response.body()
        ResponseOutparam.set(response_out, Ok(response))
        with outgoing.write() as stream:
            stream.blocking_write_and_flush(body)
        OutgoingBody.finish(outgoing, None)
