"""A Kubeless-style JSON API: POST {"title": "..."} and get a URL slug back, made by the python-slugify package
(vendored into the component from requirements.txt)."""

from slugify import slugify


def handler(event, context):
    request = event["extensions"]["request"]
    if request.method == "GET":
        return {"usage": 'POST {"title": "..."}', "function": context["function-name"]}
    data = event["data"]
    if not isinstance(data, dict) or not isinstance(data.get("title"), str):
        return {"statusCode": 400, "body": {"error": 'expected a JSON body like {"title": "..."}'}}
    return {
        "title": data["title"],
        "slug": slugify(data["title"]),
        "eventId": event["event-id"],
        "runtime": context["runtime"],
        "timeout": context["timeout"],
        "memoryLimit": context["memory-limit"],
    }
