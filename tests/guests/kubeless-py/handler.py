"""Test guest: a Kubeless-style handler that reports what it was given. `/throw` raises; `/text` returns a string;
`/status` returns {statusCode, headers, body}."""


def handler(event, context):
    request = event["extensions"]["request"]
    if request.path == "/throw":
        raise RuntimeError("kaboom from python")
    if request.path == "/text":
        return "plain text"
    if request.path == "/status":
        return {"statusCode": 201, "headers": {"x-made-by": "handler"}, "body": {"created": True}}
    return {
        "event": {
            "data": event["data"],
            "event-id": event["event-id"],
            "event-type": event["event-type"],
            "event-time": event["event-time"],
            "event-namespace": event["event-namespace"],
            "request": {
                "method": request.method,
                "path": request.path,
                "headers": request.headers,
                "query": request.query,
            },
            "cloudevent": event["extensions"]["cloudevent"],
        },
        "context": context,
    }
