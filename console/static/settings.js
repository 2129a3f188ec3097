// A function's environment, limits and scaling as a form. Under `wasmfn up` the change goes into function.yaml
// and is redeployed (the yaml tab shows the result); a rule it breaks is shown beside its field.
import { api, consoleState, errorBox, h } from './app.js';

export async function settingsTab(namespace, name, body, note) {
  const [info, cs] = await Promise.all([api('GET', `/v1/functions/${namespace}/${name}`), consoleState()]);
  const spec = info.spec;
  const fields = {};
  const field = (key, label, value, attrs = {}) => {
    const input = h(attrs.rows ? 'textarea' : 'input', { id: `set-${key}`, 'aria-describedby': `set-${key}-error`, ...attrs });
    input.value = value ?? '';
    const err = h('span', { class: 'field-error', id: `set-${key}-error`, role: 'alert' });
    fields[key] = { input, err };
    return [h('label', { for: `set-${key}` }, label), input, err];
  };
  const env = (spec.env ?? []).map((e) => `${e.name}=${e.value ?? ''}`).join('\n');
  const limits = spec.limits ?? {};
  const scaling = spec.scaling ?? {};
  const message = h('div', { id: 'settings-message', role: 'status' }, note ?? '');
  const form = h('form', { class: 'grid', id: 'settings', onsubmit: (ev) => (ev.preventDefault(), save()) },
    h('strong', { style: 'grid-column: 1 / span 2' }, 'Environment (NAME=value, one per line)'),
    ...field('env', 'Variables', env, { rows: 4 }),
    h('strong', { style: 'grid-column: 1 / span 2' }, 'Limits'),
    ...field('timeout', 'Timeout', limits.timeout, { placeholder: '30s' }),
    ...field('memory', 'Memory', limits.memory, { placeholder: '128Mi' }),
    ...field('maxRequestBody', 'Largest request body', limits.maxRequestBody, { placeholder: '10Mi' }),
    h('strong', { style: 'grid-column: 1 / span 2' }, 'Scaling (per node)'),
    ...field('maxConcurrency', 'Instances at once (0: no limit)', scaling.maxConcurrency, { type: 'number', min: 0 }),
    ...field('maxQueue', 'Requests waiting', scaling.maxQueue, { type: 'number', min: 0 }),
    ...field('queueTimeout', 'Longest wait', scaling.queueTimeout, { placeholder: '10s' }),
    h('span'), h('div', {}, h('button', { type: 'submit', id: 'save-settings', disabled: !cs }, 'Save and deploy')));
  body.append(form, message);
  if (!cs) body.append(h('p', { class: 'muted' }, 'This node serves components: change its manifest and deploy it.'));

  async function save() {
    for (const f of Object.values(fields)) f.err.textContent = '';
    const vars = fields.env.input.value.split('\n').map((l) => l.trim()).filter(Boolean).map((l) => {
      const i = l.indexOf('=');
      return i < 0 ? { name: l, value: '' } : { name: l.slice(0, i).trim(), value: l.slice(i + 1) };
    });
    const num = (k) => Number(fields[k].input.value || 0);
    const change = {
      env: vars,
      limits: { timeout: fields.timeout.input.value, memory: fields.memory.input.value,
        maxRequestBody: fields.maxRequestBody.input.value },
      scaling: { ...scaling, maxConcurrency: num('maxConcurrency'), maxQueue: num('maxQueue'),
        queueTimeout: fields.queueTimeout.input.value },
    };
    try {
      await api('PUT', `/v1/console/functions/${namespace}/${name}/spec`, change);
      message.replaceChildren('Saved: the function is being redeployed…');
      for (let i = 0; i < 240 && body.isConnected; i++) {
        const now = await api('GET', `/v1/functions/${namespace}/${name}`);
        if (now.revision !== info.revision) {
          body.replaceChildren();
          return settingsTab(namespace, name, body, `Saved and deployed as ${now.revision}.`);
        }
        await new Promise((r) => setTimeout(r, 500));
      }
    } catch (e) {
      // `spec.limits.timeout` → the timeout field; `spec.env[1].name` → the variables.
      const path = String(e.data?.field ?? '');
      const leaf = path.startsWith('spec.env') ? 'env' : path.split('.').pop();
      if (fields[leaf]) fields[leaf].err.textContent = e.message;
      else message.replaceChildren(errorBox(e));
    }
  }
}
