// The wasmfn console: a hash-routed page over the admin API (`/v1/…`) and, under `wasmfn up`, the embedded
// console API (`/v1/console…`: templates, sources, build state). No framework; CodeMirror and uPlot come from
// vendor.js, loaded only by the pages that use them.
import { functionPage } from './function.js';

const main = document.getElementById('main');
const state = { console: null };

/** Calls the admin API; every call says it comes from the console (the admin API refuses cross-site calls). */
export async function api(method, path, body) {
  const headers = { 'x-wasmfn-console': '1' };
  const token = sessionStorage.getItem('wasmfn-token');
  if (token) headers.authorization = `Bearer ${token}`;
  if (body !== undefined) headers['content-type'] = 'application/json';
  const resp = await fetch(path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
  if (resp.status === 401) document.getElementById('token-button').hidden = false;
  const text = await resp.text();
  let data = null;
  try {
    data = text ? JSON.parse(text) : null;
  } catch {
    data = text;
  }
  if (!resp.ok) {
    const message = (data && data.error) || `${resp.status} ${resp.statusText}`;
    const err = new Error(message);
    Object.assign(err, { status: resp.status, data });
    throw err;
  }
  return data;
}

/** `h('tag', {attr}, ...children)`: a small element builder (text children are escaped). */
export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith('on')) el.addEventListener(k.slice(2), v);
    else if (k === 'class') el.className = v;
    else el.setAttribute(k, v === true ? '' : v);
  }
  for (const c of children.flat()) if (c !== null && c !== undefined) el.append(c instanceof Node ? c : String(c));
  return el;
}

export function show(...nodes) {
  main.replaceChildren(...nodes);
}

export function errorBox(e) {
  return h('p', { class: 'error', role: 'alert' }, e.message ?? String(e));
}

/** The embedded console's state (templates, build states), or null against a plain node. */
export async function consoleState() {
  try {
    state.console = await api('GET', '/v1/console');
  } catch {
    state.console = null;
  }
  return state.console;
}

function functionState(f, cs) {
  const s = cs?.functions?.[`${f.namespace}/${f.name}`];
  if (s?.state === 'failed') return { state: 'failed', error: s.error };
  if (s?.state === 'building') return { state: 'building' };
  return { state: f.lastError ? 'ready' : 'ready', error: f.lastError };
}

const pct = (n, d) => (d ? `${((100 * n) / d).toFixed(1)}%` : '-');

async function listPage(filter = '') {
  const [list, cs] = await Promise.all([api('GET', '/v1/functions'), consoleState()]);
  const rows = list.functions.map((f) => ({ ...f, ...functionState(f, cs) }));
  // Functions announced by `wasmfn up` and not deployed yet.
  for (const [key, s] of Object.entries(cs?.functions ?? {})) {
    const [namespace, name] = key.split('/');
    if (!rows.some((r) => r.namespace === namespace && r.name === name)) {
      rows.push({ namespace, name, state: s.state, error: s.error, urls: s.urls ?? [], requests: 0, coldStarts: 0 });
    }
  }
  rows.sort((a, b) => `${a.namespace}/${a.name}`.localeCompare(`${b.namespace}/${b.name}`));
  const input = h('input', { type: 'search', placeholder: 'Filter by namespace or name', value: filter,
    'aria-label': 'Filter functions' });
  const body = h('tbody');
  const render = () => {
    const q = input.value.trim().toLowerCase();
    body.replaceChildren(...rows.filter((r) => `${r.namespace}/${r.name}`.includes(q)).map((r) => {
      const total = r.requests ?? 0;
      const errors = r.errors ?? 0;
      return h('tr', { 'data-function': `${r.namespace}/${r.name}` },
        h('td', {}, r.namespace),
        h('td', {}, h('a', { href: `#/fn/${r.namespace}/${r.name}/code` }, r.name)),
        h('td', {}, h('span', { class: `state ${r.state}` }, r.state)),
        h('td', {}, r.latestReadyRevision ?? '-'),
        h('td', {}, r.urls?.[0] ? h('a', { href: r.urls[1] ?? r.urls[0] }, r.urls[0]) : '-'),
        h('td', {}, total), h('td', {}, pct(errors, total)),
        h('td', {}, r.p50Ms != null ? `${r.p50Ms.toFixed(1)} / ${r.p99Ms.toFixed(1)} ms` : '-'),
        h('td', {}, r.coldStarts ?? 0),
        h('td', { class: 'error' }, r.error ?? ''));
    }));
  };
  input.addEventListener('input', render);
  render();
  const head = ['Namespace', 'Name', 'State', 'Revision', 'URL', 'Requests', '5xx', 'p50 / p99', 'Cold starts',
    'Last error'].map((t) => h('th', { scope: 'col' }, t));
  show(h('h1', {}, 'Functions'), h('div', { class: 'row' }, input,
    state.console ? h('a', { href: '#/new' }, 'New function') : null),
  rows.length ? h('table', {}, h('thead', {}, h('tr', {}, head)), body) : h('p', { class: 'muted' }, 'No functions.'));
}

async function newPage() {
  const cs = await consoleState();
  if (!cs) return show(h('p', {}, 'Creating functions needs `wasmfn up` (or `wasmfn console` on a cluster).'));
  const name = h('input', { id: 'new-name', required: true, pattern: '[a-z0-9]([-a-z0-9]*[a-z0-9])?',
    'aria-describedby': 'new-name-error' });
  const namespace = h('input', { id: 'new-namespace', value: 'default' });
  const template = h('select', { id: 'new-template' },
    cs.templates.map((t) => h('option', { value: t.name }, `${t.name}: ${t.description}`)));
  const err = h('span', { class: 'field-error', id: 'new-name-error', role: 'alert' });
  const form = h('form', { class: 'grid', onsubmit: async (ev) => {
    ev.preventDefault();
    err.textContent = '';
    try {
      await api('POST', '/v1/console/functions', { name: name.value, namespace: namespace.value,
        template: template.value });
      location.hash = `#/fn/${namespace.value}/${name.value}/code`;
    } catch (e) {
      err.textContent = e.message;
    }
  } },
  h('label', { for: 'new-name' }, 'Name'), name, err,
  h('label', { for: 'new-namespace' }, 'Namespace'), namespace,
  h('label', { for: 'new-template' }, 'Template'), template,
  h('span'), h('div', {}, h('button', { type: 'submit', id: 'create' }, 'Create')));
  show(h('h1', {}, 'New function'), form);
  name.focus();
}

async function route() {
  // `#/fn/ns/name/logs?request=…`: the query is the page's (logsTab reads it).
  const parts = location.hash.replace(/^#\/?/, '').split('?')[0].split('/').map(decodeURIComponent);
  for (const a of document.querySelectorAll('header nav a')) {
    a.toggleAttribute('aria-current', a.getAttribute('href') === `#/${parts[0] ?? ''}`);
  }
  try {
    if (parts[0] === 'new') await newPage();
    else if (parts[0] === 'fn' && parts[2]) await functionPage(parts[1], parts[2], parts[3] || 'code');
    else if (parts[0] === 'logs') await functionPage(null, null, 'logs');
    else await listPage();
  } catch (e) {
    show(errorBox(e));
  }
}

document.getElementById('token-button').addEventListener('click', () => {
  const token = prompt('Admin API token (kept in this tab only)');
  if (token) sessionStorage.setItem('wasmfn-token', token);
  route();
});
window.addEventListener('hashchange', route);
// When the first page was on screen, in ms since navigation started (the README quotes it).
route().then(() => {
  window.wasmfnFirstRender = performance.now();
});
consoleState().then((cs) => {
  document.getElementById('mode').textContent = cs ? `${cs.mode}` : 'node';
  document.getElementById('nav-new').hidden = !cs;
});
