// A CloudEvents function (Knative-style): accepts an event in binary (ce-* headers) or structured
// (application/cloudevents+json) mode and replies with a new event in binary mode.
module.exports = {
  handler(event, context) {
    const ce = event.extensions.cloudevent;
    if (!ce) {
      return { statusCode: 400, body: { error: 'expected a CloudEvent (ce-id, ce-type, ce-source headers or a structured event)' } };
    }
    return {
      statusCode: 200,
      headers: {
        'ce-specversion': '1.0',
        'ce-id': crypto.randomUUID(),
        'ce-type': `${ce.type}.processed`,
        'ce-source': `/wasmfn/${context['function-name']}`,
        'ce-subject': event['event-id'],
        'content-type': 'application/json',
      },
      body: { received: event.data, from: event['event-namespace'] },
    };
  },
};
