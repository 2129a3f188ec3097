"""A CloudEvents function (Knative-style): accepts an event in binary (ce-* headers) or structured
(application/cloudevents+json) mode and replies with a new event in binary mode."""

import uuid


def handler(event, context):
    ce = event["extensions"]["cloudevent"]
    if ce is None:
        return {"statusCode": 400, "body": {"error": "expected a CloudEvent (ce-id, ce-type, ce-source headers or a structured event)"}}
    return {
        "statusCode": 200,
        "headers": {
            "ce-specversion": "1.0",
            "ce-id": str(uuid.uuid4()),
            "ce-type": f"{ce['type']}.processed",
            "ce-source": f"/wasmfn/{context['function-name']}",
            "ce-subject": event["event-id"],
            "content-type": "application/json",
        },
        "body": {"received": event["data"], "from": event["event-namespace"]},
    }
