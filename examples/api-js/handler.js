// A Kubeless-style JSON API: POST a JSON object, get it back with what the function saw, plus a cache
// lifetime parsed by the `ms` npm package (bundled into the component by the build).
import ms from 'ms';

export async function handler(event, context) {
  const request = event.extensions.request;
  if (request.method === 'GET') {
    return { usage: 'POST a JSON object; ?ttl=2h sets the cache lifetime', function: context['function-name'] };
  }
  if (typeof event.data !== 'object' || event.data === null) {
    return { statusCode: 400, body: { error: 'expected a JSON object body' } };
  }
  const ttl = ms(request.query.ttl ?? '1h');
  if (ttl === undefined) {
    return { statusCode: 400, body: { error: `cannot parse ttl=${request.query.ttl}` } };
  }
  return {
    statusCode: 200,
    headers: { 'cache-control': `max-age=${Math.floor(ttl / 1000)}` },
    body: {
      echo: event.data,
      eventId: event['event-id'],
      runtime: context.runtime,
      timeout: context.timeout,
      memoryLimit: context['memory-limit'],
    },
  };
}
