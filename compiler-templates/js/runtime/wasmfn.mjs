// The wasmfn JavaScript dispatcher: one fetch listener that calls the user's handler in whichever style the module
// uses, and turns its result (or its exception) into a Response.
//   Kubeless/Kyma:  export function handler(event, context)  or  module.exports = { handler }
//   fetch object:   export default { fetch(request) }
//   fetch event:    addEventListener('fetch', (e) => e.respondWith(...))
import { environment, fetchListeners, realAddEventListener } from './prelude.mjs';

function pick(user) {
  const def = user.default;
  const handler = typeof user.handler === 'function' ? user.handler : def && typeof def.handler === 'function' ? def.handler : null;
  if (handler) return { style: 'kubeless', call: handler };
  if (def && typeof def.fetch === 'function') return { style: 'fetch', call: (req) => def.fetch(req) };
  if (typeof def === 'function' && fetchListeners.length === 0) return { style: 'kubeless', call: def };
  if (fetchListeners.length > 0) return { style: 'listener', call: dispatchToListeners };
  return null;
}

function dispatchToListeners(request) {
  return new Promise((resolve, reject) => {
    let responded = false;
    const event = {
      type: 'fetch',
      request,
      respondWith(response) {
        responded = true;
        Promise.resolve(response).then(resolve, reject);
      },
      waitUntil() {},
    };
    try {
      for (const listener of fetchListeners) {
        typeof listener === 'function' ? listener(event) : listener.handleEvent(event);
        if (responded) return;
      }
      reject(new Error('the fetch listener did not call event.respondWith()'));
    } catch (e) {
      reject(e);
    }
  });
}

function queryObject(params) {
  const query = {};
  for (const [k, v] of params) {
    if (!(k in query)) query[k] = v;
    else if (Array.isArray(query[k])) query[k].push(v);
    else query[k] = [query[k], v];
  }
  return query;
}

/** CloudEvent attributes: from a structured-mode envelope, or from `ce-*` headers (binary mode); else null. */
function cloudEvent(headers, envelope) {
  if (envelope) {
    const { data, data_base64, ...attributes } = envelope;
    return attributes;
  }
  if (!headers['ce-id'] || !headers['ce-type']) return null;
  const attributes = {};
  for (const [k, v] of Object.entries(headers)) if (k.startsWith('ce-')) attributes[k.slice(3)] = v;
  if (headers['content-type']) attributes.datacontenttype = headers['content-type'];
  return attributes;
}

function parseData(text, type) {
  if (/[/+]json\b/.test(type) && text.length > 0) {
    try {
      return JSON.parse(text);
    } catch {
      // Kubeless hands over the raw body when it does not parse.
    }
  }
  return text;
}

async function kubelessEvent(request) {
  const url = new URL(request.url);
  const headers = Object.fromEntries(request.headers);
  const type = headers['content-type'] ?? '';
  const text = await request.text();
  let data = parseData(text, type);
  let envelope = null;
  if (type.startsWith('application/cloudevents+json') && data && typeof data === 'object') {
    envelope = data;
    data = envelope.data_base64 !== undefined ? atob(envelope.data_base64) : envelope.data;
  }
  const ce = cloudEvent(headers, envelope);
  const header = (a, b) => headers[a] ?? (ce ? ce[b] : undefined);
  return {
    data,
    'event-id': header('event-id', 'id') ?? crypto.randomUUID(),
    'event-type': header('event-type', 'type') ?? type,
    'event-time': header('event-time', 'time') ?? new Date().toISOString(),
    'event-namespace': header('event-namespace', 'source') ?? 'http.wasmfn.dev',
    extensions: {
      request: { method: request.method, path: url.pathname, url: url.pathname + url.search, headers, query: queryObject(url.searchParams) },
      cloudevent: ce,
    },
  };
}

function kubelessContext(runtime) {
  const env = environment();
  return {
    'function-name': env.WASMFN_FUNCTION_NAME ?? '',
    timeout: env.WASMFN_TIMEOUT ?? '',
    runtime,
    'memory-limit': env.WASMFN_MEMORY_LIMIT ?? '',
  };
}

const isBytes = (v) => v instanceof Uint8Array || v instanceof ArrayBuffer;

/** Kubeless return rules: a string, bytes, an object (JSON) or `{statusCode, headers, body}`. */
function toResponse(result) {
  if (result instanceof Response) return result;
  if (result === undefined || result === null) return new Response('');
  if (typeof result === 'string') return new Response(result, { headers: { 'content-type': 'text/plain; charset=utf-8' } });
  if (isBytes(result)) return new Response(result, { headers: { 'content-type': 'application/octet-stream' } });
  if (typeof result === 'object' && typeof result.statusCode === 'number') {
    const headers = new Headers(result.headers ?? {});
    let body = result.body ?? '';
    if (typeof body !== 'string' && !isBytes(body)) {
      body = JSON.stringify(body);
      if (!headers.has('content-type')) headers.set('content-type', 'application/json');
    }
    return new Response(body, { status: result.statusCode, headers });
  }
  return new Response(JSON.stringify(result), { headers: { 'content-type': 'application/json' } });
}

function failure(request, error) {
  const requestId = request.headers.get('x-request-id') ?? '';
  const message = error instanceof Error ? error.message : String(error);
  console.error(`handler failed (request ${requestId}): ${error instanceof Error && error.stack ? `${message}\n${error.stack}` : message}`);
  return new Response(JSON.stringify({ error: `the handler failed: ${message}`, requestId }), {
    status: 500,
    headers: { 'content-type': 'application/json' },
  });
}

/** Installs the fetch listener for the user's module; throws at build time when the module has no handler. */
export function serve(user, { runtime, entry }) {
  const chosen = pick(user);
  if (!chosen) {
    throw new Error(
      `wasmfn: ${entry} has no handler: export \`handler(event, context)\` (or set module.exports.handler), ` +
        "`export default { fetch(request) }`, or call addEventListener('fetch', …)",
    );
  }
  realAddEventListener('fetch', (event) => {
    const request = event.request;
    const respond = async () => {
      try {
        if (chosen.style === 'kubeless') {
          const ev = await kubelessEvent(request);
          return toResponse(await chosen.call(ev, kubelessContext(runtime)));
        }
        return toResponse(await chosen.call(request));
      } catch (e) {
        return failure(request, e);
      }
    };
    event.respondWith(respond());
  });
}
