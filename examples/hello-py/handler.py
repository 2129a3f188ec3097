"""A request/response-style Python function."""

import os

from wasmfn import Response


def handle(request):
    greeting = os.environ.get("GREETING", "Hello")
    query = f"?{request.url.split('?', 1)[1]}" if "?" in request.url else ""
    return Response(f"{greeting} from wasmfn (Python)! You asked for {request.path}{query}\n")
