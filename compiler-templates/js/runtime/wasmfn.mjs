// The wasmfn JavaScript dispatcher: one fetch listener that calls the user's handler in whichever style the module
// uses, and turns its result (or its exception) into a Response. Without a handler name (`spec.build.handler`,
// Kubeless' `file.function`), the first of these:
//   Kubeless:       export function handler(event, context)  or  module.exports = { handler }
//   Kyma:           export function main(event, context)     or  module.exports = { main }
//   fetch object:   export default { fetch(request) }
//   default export: export default function (event, context)
//   fetch event:    addEventListener('fetch', (e) => e.respondWith(...))
import { environment, fetchListeners, realAddEventListener, startServing } from './prelude.mjs';
import { KymaResponse, kymaEvent } from './kyma.mjs';

/** `name` exported by the module, as ESM or CommonJS (`module.exports.name`, which esbuild puts on default). */
function exported(user, name) {
  const def = user.default;
  if (typeof user[name] === 'function') return user[name];
  if (def && typeof def[name] === 'function') return def[name];
  return null;
}

function exportedNames(user) {
  const names = Object.keys(user).filter((k) => k !== 'default');
  if (user.default && typeof user.default === 'object') names.push(...Object.keys(user.default));
  return [...new Set(names)];
}

function pick(user, named, entry) {
  if (named) {
    const fn = exported(user, named);
    if (!fn) {
      const has = exportedNames(user);
      throw new Error(
        `wasmfn: ${entry} has no function \`${named}\` (the handler names it); it exports ${has.length ? has.map((n) => `\`${n}\``).join(', ') : 'nothing'}`,
      );
    }
    return { style: 'kubeless', call: fn };
  }
  const def = user.default;
  const handler = exported(user, 'handler') ?? exported(user, 'main');
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

async function kubelessEvent(request, res) {
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
  const event = {
    data,
    'event-id': header('event-id', 'id') ?? crypto.randomUUID(),
    'event-type': header('event-type', 'type') ?? type,
    'event-time': header('event-time', 'time') ?? new Date().toISOString(),
    'event-namespace': header('event-namespace', 'source') ?? 'http.wasmfn.dev',
    extensions: {
      request: {
        method: request.method,
        path: url.pathname,
        url: url.pathname + url.search,
        originalUrl: url.pathname + url.search,
        headers,
        query: queryObject(url.searchParams),
        body: data,
        get: (name) => headers[String(name).toLowerCase()],
      },
      cloudevent: ce,
    },
  };
  return kymaEvent(event, headers, ce, res);
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

/** Kyma's rules first: what the handler sent through `event.extensions.response`, or a status it set with nothing
 * returned (an empty body with that status); else the returned value by Kubeless' rules, with the headers and
 * status the handler set. */
function kymaResponse(result, res) {
  if (res.headersSent) return res.toResponse();
  if ((result === undefined || result === null) && res.statusSet) return res.toResponse('');
  const resp = toResponse(result);
  if (!res.statusSet && [...res.headers].length === 0) return resp;
  const headers = new Headers(resp.headers);
  for (const [k, v] of res.headers) headers.set(k, v);
  const status = res.statusSet && resp.status === 200 ? res.statusCode : resp.status;
  return new Response([204, 205, 304].includes(status) ? null : resp.body, { status, headers });
}

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
export function serve(user, { runtime, entry, handler }) {
  const chosen = pick(user, handler, entry);
  if (!chosen) {
    throw new Error(
      `wasmfn: ${entry} has no handler: export \`handler(event, context)\` (Kubeless) or \`main(event, context)\` ` +
        "(Kyma), or set module.exports.handler / module.exports.main, `export default { fetch(request) }`, or call " +
        "addEventListener('fetch', …); or name the function in spec.build.handler (`file.function`)",
    );
  }
  realAddEventListener('fetch', (event) => {
    startServing();
    const request = event.request;
    const respond = async () => {
      try {
        if (chosen.style === 'kubeless') {
          const res = new KymaResponse();
          const ev = await kubelessEvent(request, res);
          return kymaResponse(await chosen.call(ev, kubelessContext(runtime)), res);
        }
        return toResponse(await chosen.call(request));
      } catch (e) {
        return failure(request, e);
      }
    };
    event.respondWith(respond());
  });
}
