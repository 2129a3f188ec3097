// The Kyma side of the handler interface (serverless.kyma-project.io Node.js runtime, as Kyma documents it):
// the Express-style `event.extensions.response`, the `ce-*` attributes, `event.emitCloudEvent`, the response
// helpers and `event.tracer` with the OpenTelemetry span API. Built onto the Kubeless event in wasmfn.mjs.

/** Where `emitCloudEvent` posts: the node routes this name to the function's namespace broker in-process. */
export const EVENTS_URL = 'http://events.wasmfn.internal/';

/** An Express-like response: what a handler sets (status, headers) and sends (send/json/end) instead of returning. */
export class KymaResponse {
  constructor() {
    this.statusCode = 200;
    this.statusSet = false;
    this.headers = new Headers();
    this.body = undefined;
    this.headersSent = false;
  }
  status(code) {
    this.statusCode = Number(code);
    this.statusSet = true;
    return this;
  }
  sendStatus(code) {
    return this.status(code).send(String(code));
  }
  set(name, value) {
    if (typeof name === 'object') {
      for (const [k, v] of Object.entries(name)) this.headers.set(k, String(v));
    } else {
      this.headers.set(name, String(value));
    }
    return this;
  }
  setHeader(name, value) {
    return this.set(name, value);
  }
  header(name, value) {
    return this.set(name, value);
  }
  get(name) {
    return this.headers.get(name) ?? undefined;
  }
  getHeader(name) {
    return this.get(name);
  }
  type(t) {
    return this.set('content-type', t.includes('/') ? t : t === 'json' ? 'application/json' : `text/${t}`);
  }
  send(body) {
    if (body !== undefined && body !== null && typeof body === 'object' && !isBytes(body)) return this.json(body);
    if (typeof body === 'string' && !this.headers.has('content-type')) this.type('text/html; charset=utf-8');
    this.body = body ?? '';
    this.headersSent = true;
    return this;
  }
  json(value) {
    if (!this.headers.has('content-type')) this.type('application/json');
    this.body = JSON.stringify(value);
    this.headersSent = true;
    return this;
  }
  end(body) {
    this.body = body ?? '';
    this.headersSent = true;
    return this;
  }
  toResponse(body = this.body) {
    // 204, 205 and 304 carry no body, not even an empty one.
    const none = [204, 205, 304].includes(this.statusCode);
    return new Response(none ? null : (body ?? ''), { status: this.statusCode, headers: this.headers });
  }
}

const isBytes = (v) => v instanceof Uint8Array || v instanceof ArrayBuffer;

/** Random hex of `n` bytes. */
function hex(n) {
  return Array.from(crypto.getRandomValues(new Uint8Array(n)), (b) => b.toString(16).padStart(2, '0')).join('');
}

/** A span with OpenTelemetry's API shape; it records nothing (wasmfn drops spans) but keeps the trace id. */
class Span {
  constructor(name, traceId) {
    this.name = name;
    this.context = { traceId, spanId: hex(8), traceFlags: 1 };
    this.attributes = {};
    this.ended = false;
  }
  spanContext() {
    return this.context;
  }
  setAttribute(k, v) {
    this.attributes[k] = v;
    return this;
  }
  setAttributes(attributes) {
    Object.assign(this.attributes, attributes);
    return this;
  }
  addEvent() {
    return this;
  }
  addLink() {
    return this;
  }
  setStatus(status) {
    this.status = status;
    return this;
  }
  updateName(name) {
    this.name = name;
    return this;
  }
  recordException() {}
  end() {
    this.ended = true;
  }
  isRecording() {
    return false;
  }
}

/** `event.tracer`: `startSpan` and `startActiveSpan` as OpenTelemetry's Tracer has them. */
export function tracer(traceparent) {
  const traceId = /^[\da-f]{2}-([\da-f]{32})-[\da-f]{16}-[\da-f]{2}$/.exec(traceparent ?? '')?.[1] ?? hex(16);
  const start = (name) => new Span(name, traceId);
  return {
    startSpan: (name) => start(name),
    startActiveSpan(name, ...rest) {
      const fn = rest[rest.length - 1];
      return fn(start(name));
    },
  };
}

/** Adds Kyma's fields to a Kubeless `event` for `request`'s headers and the response object `res`. */
export function kymaEvent(event, headers, ce, res) {
  const attr = (name) => headers[`ce-${name}`] ?? ce?.[name];
  for (const name of ['type', 'source', 'id', 'specversion', 'time', 'eventtypeversion', 'subject']) {
    const value = attr(name);
    if (value !== undefined) event[`ce-${name}`] = value;
  }
  event.extensions.response = res;
  event.setResponseHeader = (k, v) => res.set(k, v);
  event.setResponseContentType = (t) => res.type(t);
  event.setResponseStatus = (s) => res.status(s);
  event.tracer = tracer(headers.traceparent);
  event.emitCloudEvent = (type, source, data, attributes = {}) =>
    emitCloudEvent(type, source, data, attributes, headers.traceparent);
  event.publishCloudEvent = (ce) => emitCloudEvent(ce.type, ce.source, ce.data, ce, headers.traceparent);
  event.buildResponseCloudEvent = (id, type, data) => ({
    specversion: '1.0',
    id,
    type,
    source: event['ce-source'] ?? '/wasmfn',
    datacontenttype: 'application/json',
    data,
  });
  return event;
}

/** Publishes an event into the function's namespace broker (through the node, not the network). */
export async function emitCloudEvent(type, source, data, attributes, traceparent) {
  if (!type || !source) throw new Error('emitCloudEvent(type, source, data, attributes?): type and source are required');
  const { specversion, id, datacontenttype, data: _d, type: _t, source: _s, ...extensions } = attributes ?? {};
  const headers = {
    'ce-specversion': specversion ?? '1.0',
    'ce-id': id ?? crypto.randomUUID(),
    'ce-type': type,
    'ce-source': source,
  };
  for (const [k, v] of Object.entries(extensions)) headers[`ce-${k}`] = String(v);
  if (traceparent) headers.traceparent = traceparent;
  let body = data ?? '';
  if (typeof body === 'object' && !isBytes(body)) {
    body = JSON.stringify(body);
    headers['content-type'] = datacontenttype ?? 'application/json';
  } else {
    headers['content-type'] = datacontenttype ?? (isBytes(body) ? 'application/octet-stream' : 'text/plain');
  }
  const resp = await fetch(EVENTS_URL, { method: 'POST', headers, body });
  const text = await resp.text();
  if (!resp.ok) throw new Error(`emitCloudEvent: the broker answered ${resp.status}: ${text}`);
  return { status: resp.status, statusText: resp.statusText, ok: resp.ok, data: text };
}
