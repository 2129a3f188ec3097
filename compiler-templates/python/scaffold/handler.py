"""A wasmfn function in the Kubeless style: event["data"] is the request body (parsed when it is JSON) and
event["extensions"]["request"] has the method, path, headers and query.
Return a string, a dict or list (sent as JSON), a (body, status) tuple or wasmfn.Response(body, status, headers)."""


def handler(event, context):
    request = event["extensions"]["request"]
    data = event["data"] if isinstance(event["data"], dict) else {}
    name = request.query.get("name") or data.get("name") or "world"
    return {"message": f"Hello, {name}!", "function": context["function-name"]}
