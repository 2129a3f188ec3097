// One function's pages: code (editor, dependencies, Save builds and deploys, build errors as markers), test
// invocation, live logs, revisions and traffic, and the manifest as YAML.
import { api, consoleState, errorBox, h, show } from './app.js';
import { settingsTab } from './settings.js';
import { triggersTab } from './triggers.js';

const TABS = ['code', 'settings', 'test', 'logs', 'metrics', 'triggers', 'revisions', 'yaml'];
let follow = null; // the open log stream, closed when the page changes

function stopFollowing() {
  follow?.close();
  follow = null;
}

export async function functionPage(namespace, name, tab) {
  stopFollowing();
  if (!namespace) return logsTab(null, null, h('div'));
  const base = `#/fn/${namespace}/${name}`;
  const tabs = h('nav', { class: 'tabs', 'aria-label': 'function' },
    TABS.map((t) => h('a', { href: `${base}/${t}`, 'aria-current': t === tab ? 'page' : null }, t)));
  const body = h('div');
  const del = h('button', { class: 'danger', type: 'button', id: 'delete', onclick: () => remove(namespace, name) },
    'Delete');
  show(h('div', { class: 'row' }, h('h1', {}, `${namespace}/${name}`), del), tabs, body);
  const pages = { code: codeTab, test: testTab, logs: logsTab, metrics: metricsTab, settings: settingsTab, triggers: triggersTab, revisions: revisionsTab, yaml: yamlTab };
  await (pages[tab] ?? codeTab)(namespace, name, body);
}

async function remove(namespace, name) {
  if (!confirm(`Delete ${namespace}/${name}? Its revisions and traffic go too.`)) return;
  await api('DELETE', `/v1/functions/${namespace}/${name}`);
  location.hash = '#/';
}

let vendor;
async function cm() {
  vendor ??= await import('/console/vendor.js');
  return vendor;
}

function language(v, file) {
  if (/\.(m?js|cjs)$/.test(file)) return v.javascript();
  if (file.endsWith('.py')) return v.python();
  if (file.endsWith('.rs')) return v.rust();
  if (file.endsWith('.json')) return v.json();
  if (/\.ya?ml$/.test(file)) return v.yaml();
  return [];
}

/** An editor on `text`; `onSave` on Ctrl/Cmd-S. */
async function editor(parent, file, text, onSave) {
  const v = await cm();
  const save = { key: 'Mod-s', preventDefault: true, run: () => (onSave(), true) };
  return new v.EditorView({
    parent,
    doc: text,
    extensions: [v.basicSetup, language(v, file), v.lintGutter(), v.keymap.of([save])],
  });
}

/** Build errors in the log lines of a build, as `{file, line, message}`: esbuild's `file:line:col: error:`
 * and Python's `File "…/file", line N` followed by the error line. */
export function buildErrors(lines) {
  const out = [];
  lines.forEach((l, i) => {
    let m = l.match(/^([\w./-]+\.(?:m?js|cjs|ts)):(\d+):\d+: error: (.*)$/);
    if (m) return out.push({ file: m[1], line: Number(m[2]), message: m[3] });
    m = l.match(/File "(?:[^"]*\/)?([\w.-]+\.py)", line (\d+)/);
    if (m) {
      const message = lines.slice(i + 1).find((x) => /^\w*(Error|Exception)\b/.test(x.trim())) ?? l;
      return out.push({ file: m[1], line: Number(m[2]), message: message.trim() });
    }
    m = l.match(/^\s*--> (?:src\/)?([\w./-]+\.rs):(\d+):\d+/);
    if (m) out.push({ file: m[1], line: Number(m[2]), message: lines[i - 1]?.trim() ?? 'error' });
  });
  return out;
}

async function codeTab(namespace, name, body) {
  const cs = await consoleState();
  if (!cs) {
    body.append(h('p', { class: 'muted' }, 'This node serves components; edit sources with `wasmfn up`.'));
    return;
  }
  const src = await api('GET', `/v1/console/functions/${namespace}/${name}/source`);
  const files = src.files;
  const select = h('select', { id: 'file', 'aria-label': 'File' }, files.map((f) => h('option', { value: f.name }, f.name)));
  const host = h('div', { class: 'editor', id: 'editor' });
  const status = h('div', { class: 'progress', id: 'build-status', role: 'status' });
  const saveButton = h('button', { type: 'button', id: 'save' }, 'Save and deploy');
  const phase = h('span', { id: 'fn-state', class: 'state' });
  body.append(h('div', { class: 'row' }, h('label', { for: 'file' }, 'File'), select, saveButton,
    h('span', { class: 'muted' }, `template ${src.template}`), phase), host, status);
  // The build state, kept fresh while the page shows it.
  const poll = async () => {
    if (!phase.isConnected) return;
    const s = (await consoleState())?.functions?.[`${namespace}/${name}`];
    phase.textContent = s?.state ?? '';
    phase.className = `state ${s?.state ?? ''}`;
    phase.title = s?.error ?? '';
    setTimeout(poll, 1000);
  };
  poll();
  const texts = Object.fromEntries(files.map((f) => [f.name, f.text]));
  let current = files[0].name;
  let view = await editor(host, current, texts[current], () => save());
  window.wasmfnEditor = view; // tests and power users
  select.addEventListener('change', async () => {
    texts[current] = view.state.doc.toString();
    current = select.value;
    view.destroy();
    view = await editor(host, current, texts[current], () => save());
    window.wasmfnEditor = view;
  });
  async function save() {
    texts[current] = view.state.doc.toString();
    saveButton.disabled = true;
    status.replaceChildren('Saving…');
    const v = await cm();
    view.dispatch(v.setDiagnostics(view.state, []));
    try {
      const since = (await api('GET', `/v1/logs?limit=1`)).next;
      const saved = await api('PUT', `/v1/console/functions/${namespace}/${name}/source`,
        { files: Object.entries(texts).map(([n, text]) => ({ name: n, text })) });
      if (saved?.unchanged) {
        status.replaceChildren('No changes to deploy.');
        return;
      }
      await watchBuild(namespace, name, since, status, (errors) => {
        const mine = errors.filter((e) => current.endsWith(e.file) || e.file.endsWith(current));
        const doc = view.state.doc;
        const diags = mine.filter((e) => e.line >= 1 && e.line <= doc.lines).map((e) => {
          const line = doc.line(e.line);
          return { from: line.from, to: Math.max(line.from, line.to), severity: 'error', message: e.message };
        });
        window.wasmfnDiagnostics = mine; // what the markers say, for tests
        view.dispatch(v.setDiagnostics(view.state, diags));
      });
    } catch (e) {
      status.replaceChildren(errorBox(e));
    } finally {
      saveButton.disabled = false;
    }
  }
  saveButton.addEventListener('click', save);
}

/** Follows the function's build output from `since` until the build ends; reports errors as markers. */
function watchBuild(namespace, name, since, status, onErrors) {
  return new Promise((resolve) => {
    const lines = [];
    const es = new EventSource(`/v1/logs?namespace=${namespace}&function=${name}&since=${since}&follow=true`);
    follow = es;
    const timer = setTimeout(() => finish('no build output within 5 minutes'), 300_000);
    function finish(note) {
      clearTimeout(timer);
      es.close();
      if (note) status.append(h('div', { class: 'error' }, note));
      resolve();
    }
    es.onmessage = (ev) => {
      const l = JSON.parse(ev.data);
      if (l.stream !== 'build') return;
      lines.push(l.line);
      status.append(h('div', {}, l.line));
      if (l.line.startsWith('deployed ')) {
        status.append(h('div', { class: 'state ready', id: 'build-done' }, 'Deployed.'));
        finish();
      } else if (l.line.startsWith('build failed')) {
        const errors = buildErrors(lines);
        onErrors(errors);
        status.append(h('div', { class: 'state failed', id: 'build-failed' },
          'The build failed; the previous revision keeps serving.'));
        finish();
      }
    };
  });
}

async function testTab(namespace, name, body) {
  const key = `wasmfn-payloads/${namespace}/${name}`;
  const saved = JSON.parse(localStorage.getItem(key) ?? '[]');
  const method = h('select', { id: 'method', 'aria-label': 'Method' }, ['POST', 'GET', 'PUT', 'DELETE', 'PATCH']
    .map((m) => h('option', {}, m)));
  const path = h('input', { id: 'path', value: '/', 'aria-label': 'Path' });
  const headers = h('textarea', { id: 'headers', rows: 2, 'aria-label': 'Headers, one per line' });
  headers.value = 'content-type: application/json';
  const data = h('textarea', { id: 'body', placeholder: '{"name": "wasmfn"}', 'aria-label': 'Body' });
  const kind = h('select', { id: 'kind', 'aria-label': 'Kind' }, h('option', { value: 'http' }, 'HTTP request'),
    h('option', { value: 'binary' }, 'CloudEvent (binary)'), h('option', { value: 'structured' }, 'CloudEvent (structured)'));
  const ceType = h('input', { id: 'ce-type', placeholder: 'dev.example.created', 'aria-label': 'Event type' });
  const ceSource = h('input', { id: 'ce-source', value: '/console', 'aria-label': 'Event source' });
  const result = h('div', { id: 'result', 'aria-live': 'polite' });
  const picks = h('select', { id: 'saved', 'aria-label': 'Saved payloads' }, h('option', { value: '' }, 'Saved payloads…'),
    saved.map((p, i) => h('option', { value: i }, p.label)));
  const request = () => {
    const hdrs = headers.value.split('\n').filter((l) => l.includes(':'))
      .map((l) => [l.slice(0, l.indexOf(':')).trim(), l.slice(l.indexOf(':') + 1).trim()]);
    const req = { method: method.value, path: path.value, headers: hdrs, body: data.value };
    if (kind.value !== 'http') {
      let payload = data.value;
      try { payload = JSON.parse(data.value || 'null'); } catch { /* sent as a string */ }
      req.event = { type: ceType.value, source: ceSource.value, data: payload, structured: kind.value === 'structured' };
    }
    return req;
  };
  picks.addEventListener('change', () => {
    const p = saved[picks.value];
    if (!p) return;
    Object.assign(method, { value: p.req.method }); path.value = p.req.path; data.value = p.req.body ?? '';
    headers.value = (p.req.headers ?? []).map(([k, v]) => `${k}: ${v}`).join('\n');
  });
  const send = h('button', { type: 'submit', id: 'send' }, 'Send');
  const form = h('form', { class: 'grid', onsubmit: async (ev) => {
    ev.preventDefault();
    send.disabled = true;
    try {
      const r = await api('POST', `/v1/functions/${namespace}/${name}/invoke`, request());
      const logs = `#/fn/${namespace}/${name}/logs?request=${encodeURIComponent(r.requestId ?? '')}`;
      result.replaceChildren(
        h('p', {}, h('strong', { id: 'result-status' }, r.status), ` from `, h('span', { id: 'result-revision' }, r.revision ?? '?'),
          ` in ${r.latencyMs.toFixed(1)} ms, request `, h('a', { href: logs, id: 'result-request' }, r.requestId ?? '?')),
        h('pre', {}, r.headers.map(([k, v]) => `${k}: ${v}`).join('\n')),
        h('pre', { id: 'result-body' }, r.bodyEncoding === 'base64' ? `(base64) ${r.body}` : r.body));
    } catch (e) {
      result.replaceChildren(errorBox(e));
    } finally {
      send.disabled = false;
    }
  } },
  h('label', { for: 'kind' }, 'Send'), kind, h('label', { for: 'method' }, 'Method and path'),
  h('div', { class: 'row' }, method, path), h('label', { for: 'ce-type' }, 'Event type, source'),
  h('div', { class: 'row' }, ceType, ceSource), h('label', { for: 'headers' }, 'Headers'), headers,
  h('label', { for: 'body' }, 'Body / data'), data, h('span'),
  h('div', { class: 'row' }, send, h('button', { type: 'button', class: 'secondary', onclick: () => {
    const label = prompt('Name this payload');
    if (!label) return;
    saved.push({ label, req: request() });
    localStorage.setItem(key, JSON.stringify(saved));
    picks.append(h('option', { value: saved.length - 1 }, label));
  } }, 'Save payload'), picks));
  body.append(form, result);
}

async function logsTab(namespace, name, body) {
  const params = new URLSearchParams(location.hash.split('?')[1] ?? '');
  const revision = h('input', { id: 'log-revision', placeholder: 'revision', value: params.get('revision') ?? '',
    'aria-label': 'Revision' });
  const request = h('input', { id: 'log-request', placeholder: 'request id', value: params.get('request') ?? '',
    'aria-label': 'Request id' });
  const out = h('pre', { class: 'logs', id: 'logs', 'aria-live': 'polite' });
  const start = () => {
    stopFollowing();
    out.replaceChildren();
    const q = new URLSearchParams({ follow: 'true', limit: '1000' });
    if (namespace) q.set('namespace', namespace);
    if (name) q.set('function', name);
    if (revision.value) q.set('revision', revision.value);
    if (request.value) q.set('request', request.value);
    follow = new EventSource(`/v1/logs?${q}`);
    follow.onmessage = (ev) => {
      const l = JSON.parse(ev.data);
      const who = namespace ? '' : `${l.namespace}/${l.function} `;
      out.append(h('div', { class: `l ${l.stream}`, 'data-request': l.requestId },
        `${l.time.slice(11, 23)} ${who}${l.revision || 'build'} ${l.requestId || '-'} ${l.line}`));
      out.scrollTop = out.scrollHeight;
    };
  };
  revision.addEventListener('change', start);
  request.addEventListener('change', start);
  const filters = h('div', { class: 'row' }, h('span', { class: 'muted' }, 'Following live. Filter:'), revision, request);
  if (!namespace) show(h('h1', {}, 'Logs'), filters, out);
  else body.append(filters, out);
  start();
}

async function revisionsTab(namespace, name, body, note) {
  const [info, revs] = await Promise.all([api('GET', `/v1/functions/${namespace}/${name}`),
    api('GET', `/v1/functions/${namespace}/${name}/revisions`)]);
  const inputs = new Map();
  const total = h('span', { id: 'traffic-total' });
  const apply = h('button', { type: 'button', id: 'apply-traffic' }, 'Apply split');
  const sum = () => {
    const s = [...inputs.values()].reduce((a, i) => a + (Number(i.value) || 0), 0);
    total.textContent = `total ${s}%`;
    apply.disabled = s !== 100;
    return s;
  };
  const rows = revs.revisions.map((r) => {
    const input = h('input', { type: 'number', min: 0, max: 100, value: r.percent ?? 0, 'aria-label': `${r.name} percent`,
      id: `percent-${r.name}`, oninput: sum, style: 'width:5rem' });
    inputs.set(r.name, input);
    return h('tr', {}, h('td', {}, r.name), h('td', {}, input), h('td', {}, (r.tags ?? []).join(', ')),
      h('td', {}, r.requests ?? 0), h('td', {}, r.errors ?? 0),
      h('td', {}, r.p50Ms != null ? `${r.p50Ms} / ${r.p99Ms} ms` : '-'), h('td', {}, r.created ?? ''),
      h('td', {}, [r.latest ? 'latest' : '', r.ready ? 'ready' : '', r.failure ? `failed: ${r.failure}` : ''].filter(Boolean).join(', ')));
  });
  const message = h('div', { id: 'traffic-message', role: 'status' }, note ?? '');
  apply.addEventListener('click', async () => {
    const traffic = [...inputs].filter(([, i]) => Number(i.value) > 0)
      .map(([revisionName, i]) => ({ revisionName, percent: Number(i.value) }));
    try {
      await api('PUT', `/v1/functions/${namespace}/${name}/traffic`, { traffic });
      message.replaceChildren('Traffic updated.');
    } catch (e) {
      message.replaceChildren(errorBox(e));
    }
  });
  // Back to an earlier revision: Knative-style (all traffic to it) when the split names revisions, else the
  // node's rollback of `latestRevision`.
  const names = revs.revisions.map((r) => r.name);
  const target = h('select', { id: 'rollback-to', 'aria-label': 'Roll back to' },
    names.map((n, i) => h('option', { value: n, selected: i === names.length - 2 ? true : null }, n)));
  const rollback = h('button', { type: 'button', class: 'secondary', id: 'rollback', onclick: async () => {
    const to = target.value;
    const now = await api('GET', `/v1/functions/${namespace}/${name}`);
    const followsLatest = (now.traffic ?? []).some((t) => t.latestRevision);
    try {
      if (followsLatest) await api('POST', `/v1/functions/${namespace}/${name}/rollback`, { revision: to });
      else await api('PUT', `/v1/functions/${namespace}/${name}/traffic`, { traffic: [{ revisionName: to, percent: 100 }] });
      body.replaceChildren();
      await revisionsTab(namespace, name, body, `Rolled back: ${to} serves ${followsLatest ? 'the latest' : 'all'} traffic.`);
    } catch (e) {
      message.replaceChildren(errorBox(e));
    }
  } }, 'Roll back to');
  const tags = (info.traffic ?? []).filter((t) => t.tag).map((t) => h('li', {}, `${t.tag}: `, h('a', { href: t.url }, t.url)));
  const rollout = info.rollout ? h('p', {}, `Rollout ${info.rollout.from} → ${info.rollout.to}: ${info.rollout.state}, ${info.rollout.percent}%`) : null;
  const head = ['Revision', 'Traffic %', 'Tags', 'Requests', 'Errors', 'p50 / p99', 'Created', 'State'].map((t) => h('th', {}, t));
  body.append(h('table', { id: 'revisions' }, h('thead', {}, h('tr', {}, head)), h('tbody', {}, rows)),
    h('div', { class: 'row' }, apply, total, rollback, target), message, rollout, tags.length ? h('ul', {}, tags) : null);
  sum();
}

async function yamlTab(namespace, name, body) {
  const host = h('div', { class: 'editor', id: 'yaml' });
  const message = h('div', { role: 'status', id: 'yaml-message' });
  // Under `wasmfn up`: function.yaml itself, which the settings and triggers forms write too (one source, so the
  // views agree). Against a plain node: the applied Function as JSON (YAML too), deployed as is.
  const src = (await consoleState()) ? await api('GET', `/v1/console/functions/${namespace}/${name}/source`).catch(() => null) : null;
  const file = src?.files.find((f) => f.name === 'function.yaml');
  let view;
  const applyIt = async () => {
    const text = view.state.doc.toString();
    try {
      if (file) {
        const r = await api('PUT', `/v1/console/functions/${namespace}/${name}/source`, { files: [{ name: 'function.yaml', text }] });
        message.replaceChildren(r?.unchanged ? 'No changes.' : 'Saved: the function is being redeployed.');
        return;
      }
      const headers = { 'x-wasmfn-console': '1' };
      const token = sessionStorage.getItem('wasmfn-token');
      if (token) headers.authorization = `Bearer ${token}`;
      const resp = await fetch('/v1/functions', { method: 'PUT', body: text, headers });
      const out = await resp.json();
      message.replaceChildren(resp.ok ? `Deployed ${out.function.revision}.` : errorBox(new Error(out.error)));
    } catch (e) {
      message.replaceChildren(errorBox(e));
    }
  };
  if (file) {
    body.append(h('p', { class: 'muted' }, 'function.yaml: saving redeploys the function.'), host);
    view = await editor(host, 'function.yaml', file.text, applyIt);
  } else {
    const info = await api('GET', `/v1/functions/${namespace}/${name}`);
    const manifest = { apiVersion: 'wasmfn.dev/v1alpha1', kind: 'Function', metadata: { name, namespace }, spec: info.spec };
    body.append(h('p', { class: 'muted' }, 'The applied Function (JSON is YAML too): edit and apply to deploy it.'), host);
    view = await editor(host, 'function.json', JSON.stringify(manifest, null, 2), applyIt);
  }
  body.append(h('div', { class: 'row' }, h('button', { type: 'button', id: 'apply-yaml', onclick: applyIt }, 'Apply')), message);
}

/** The last hour as charts (uPlot), refreshed every interval while the tab is open. */
async function metricsTab(namespace, name, body) {
  const v = await cm();
  const charts = h('div', { class: 'cards', id: 'charts' });
  const note = h('p', { class: 'muted', id: 'series-note' });
  body.append(note, charts);
  const specs = [
    { title: 'Requests, 5xx and cold starts per interval', series: ['requests', 'errors', 'coldStarts'],
      colors: ['#2457c5', '#b3261e', '#a65f00'] },
    { title: 'Latency p50 / p99 (ms)', series: ['p50Ms', 'p99Ms'], colors: ['#1c7c3c', '#7a3ec5'] },
    { title: 'In flight', series: ['inFlight'], colors: ['#2457c5'] },
  ];
  let plots = [];
  const draw = async () => {
    if (!charts.isConnected) return;
    const data = await api('GET', `/v1/functions/${namespace}/${name}/series`);
    note.textContent = `The last hour, one point per ${data.interval} s (${data.points.length} points).`;
    const xs = data.points.map((p) => p.time);
    plots.forEach((p) => p.destroy());
    charts.replaceChildren();
    plots = specs.map((spec) => {
      const card = h('div', { class: 'card', 'data-chart': spec.series.join(',') }, h('strong', {}, spec.title));
      charts.append(card);
      const opts = { width: 360, height: 180, series: [{}, ...spec.series.map((s, i) => ({ label: s, stroke: spec.colors[i] }))] };
      return new v.uPlot(opts, [xs, ...spec.series.map((s) => data.points.map((p) => p[s] ?? null))], card);
    });
    setTimeout(draw, Math.max(1000, data.interval * 1000));
  };
  await draw();
}
