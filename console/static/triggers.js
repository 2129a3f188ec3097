// A function's triggers: what it has (cron triggers with their next runs), and a form that adds or removes a
// broker filter, a cron schedule or a NATS subject. Under `wasmfn up` the change goes into function.yaml and is
// redeployed; a rule it breaks comes back with its field and is shown beside that field.
import { api, consoleState, errorBox, h } from './app.js';

function describe(t) {
  if (t.cron) return `cron ${t.cron.schedule}${t.cron.timezone ? ` (${t.cron.timezone})` : ' (UTC)'}`;
  if (t.nats) return `nats ${t.nats.subject} on ${t.nats.url}`;
  if (t.events) return `broker ${JSON.stringify(t.events.filter ?? {})}`;
  return 'unknown';
}

async function nextRuns(schedule, timezone) {
  const q = new URLSearchParams({ schedule, count: '5' });
  if (timezone) q.set('timezone', timezone);
  return api('GET', `/v1/cron?${q}`);
}

export async function triggersTab(namespace, name, body) {
  const [info, cs] = await Promise.all([api('GET', `/v1/functions/${namespace}/${name}`), consoleState()]);
  const triggers = info.spec.triggers ?? [];
  const list = h('ul', { id: 'triggers' });
  for (const [i, t] of triggers.entries()) {
    const runs = h('ul', { class: 'muted', 'data-next-runs': t.name });
    const remove = cs ? h('button', { type: 'button', class: 'link', onclick: () => save(triggers.filter((_, j) => j !== i)) },
      'remove') : null;
    list.append(h('li', { 'data-trigger': t.name }, h('strong', {}, t.name), ` ${describe(t)} `, remove, runs));
    if (t.cron) {
      nextRuns(t.cron.schedule, t.cron.timezone).then((r) => runs.append(...r.next.map((n) => h('li', {}, `next: ${n}`))))
        .catch((e) => runs.append(h('li', { class: 'error' }, e.message)));
    }
  }
  body.append(h('h2', {}, 'Triggers'), triggers.length ? list : h('p', { class: 'muted' }, 'No triggers.'));
  if (!cs) return;

  // The form: one kind at a time; each field has its own error slot.
  const field = (id, label, attrs = {}) => {
    const input = h('input', { id, ...attrs, 'aria-describedby': `${id}-error` });
    const err = h('span', { class: 'field-error', id: `${id}-error`, role: 'alert' });
    return { input, err, nodes: [h('label', { for: id }, label), input, err] };
  };
  const tname = field('trigger-name', 'Name', { placeholder: 'nightly' });
  const kind = h('select', { id: 'trigger-kind' }, ['cron', 'events', 'nats'].map((k) => h('option', { value: k }, k)));
  const schedule = field('trigger-schedule', 'Schedule', { placeholder: '*/5 * * * *' });
  const timezone = field('trigger-timezone', 'Time zone', { placeholder: 'UTC' });
  const preview = h('ul', { id: 'trigger-next', class: 'muted' });
  const ceType = field('trigger-type', 'Event type (exact)', { placeholder: 'dev.example.created' });
  const ceSource = field('trigger-source', 'Event source (exact, optional)');
  const natsUrl = field('trigger-nats-url', 'NATS URL', { placeholder: 'nats://nats:4222' });
  const subject = field('trigger-subject', 'Subject', { placeholder: 'orders.>' });
  const stream = field('trigger-stream', 'Stream', { placeholder: 'ORDERS' });
  const groups = {
    cron: [...schedule.nodes, ...timezone.nodes, h('span'), preview],
    events: [...ceType.nodes, ...ceSource.nodes],
    nats: [...natsUrl.nodes, ...subject.nodes, ...stream.nodes],
  };
  const slot = h('div', { class: 'grid', style: 'grid-column: 1 / span 2' });
  const show = () => slot.replaceChildren(...groups[kind.value]);
  kind.addEventListener('change', show);
  show();
  const all = [tname, schedule, timezone, ceType, ceSource, natsUrl, subject, stream];
  const byField = { name: tname, schedule, timezone, type: ceType, source: ceSource, url: natsUrl, subject, stream };
  let timer;
  const check = () => {
    clearTimeout(timer);
    timer = setTimeout(async () => {
      schedule.err.textContent = '';
      timezone.err.textContent = '';
      if (!schedule.input.value) return preview.replaceChildren();
      try {
        const r = await nextRuns(schedule.input.value, timezone.input.value);
        preview.replaceChildren(...r.next.map((n) => h('li', {}, `next: ${n}`)));
      } catch (e) {
        preview.replaceChildren();
        (e.data?.field === 'timezone' ? timezone : schedule).err.textContent = e.message;
      }
    }, 250);
  };
  schedule.input.addEventListener('input', check);
  timezone.input.addEventListener('input', check);

  const message = h('div', { id: 'trigger-message', role: 'status' });
  async function save(next) {
    for (const f of all) f.err.textContent = '';
    message.replaceChildren();
    try {
      await api('PUT', `/v1/console/functions/${namespace}/${name}/spec`, { triggers: next });
      message.replaceChildren('Saved: the function is being redeployed with its new triggers…');
      // Shown again once the node serves them (the redeploy takes a moment).
      const want = JSON.stringify(next.map((t) => t.name));
      for (let i = 0; i < 240 && body.isConnected; i++) {
        const now = await api('GET', `/v1/functions/${namespace}/${name}`);
        if (JSON.stringify((now.spec.triggers ?? []).map((t) => t.name)) === want) {
          body.replaceChildren();
          return triggersTab(namespace, name, body);
        }
        await new Promise((r) => setTimeout(r, 500));
      }
    } catch (e) {
      // `spec.triggers[2].cron.schedule` → the schedule field.
      const leaf = String(e.data?.field ?? '').split('.').pop();
      const target = byField[leaf];
      if (target) target.err.textContent = e.message;
      else message.replaceChildren(errorBox(e));
    }
  }
  const add = () => {
    const t = { name: tname.input.value };
    if (kind.value === 'cron') {
      t.cron = { schedule: schedule.input.value };
      if (timezone.input.value) t.cron.timezone = timezone.input.value;
    } else if (kind.value === 'events') {
      const exact = { type: ceType.input.value };
      if (ceSource.input.value) exact.source = ceSource.input.value;
      t.events = { filter: { exact } };
    } else {
      t.nats = { url: natsUrl.input.value, subject: subject.input.value, stream: stream.input.value };
    }
    return save([...triggers, t]);
  };
  body.append(h('h2', {}, 'Add a trigger'),
    h('form', { class: 'grid', id: 'trigger-form', onsubmit: (ev) => (ev.preventDefault(), add()) },
      ...tname.nodes, h('label', { for: 'trigger-kind' }, 'Kind'), kind, slot,
      h('span'), h('div', {}, h('button', { type: 'submit', id: 'add-trigger' }, 'Add trigger'))), message);
}
