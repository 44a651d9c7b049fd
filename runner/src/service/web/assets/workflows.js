'use strict';
(async () => {
  const { api, el, clear, say, when, short } = R;
  const $ = (id) => document.getElementById(id);
  const params = new URLSearchParams(location.search);

  async function list(cursor) {
    const q = new URLSearchParams({ limit: '50' });
    if ($('f-repo').value.trim()) q.set('repo', $('f-repo').value.trim());
    if ($('f-commit').value.trim()) q.set('commit', $('f-commit').value.trim());
    if (cursor) q.set('cursor', cursor);
    try {
      const page = await api('GET', `/v1/workflow-runs?${q}`);
      const body = $('wf-runs'); if (!cursor) clear(body);
      for (const r of page.runs) {
        body.append(el('tr', {},
          el('td', {}, el('a', { href: `/workflows?id=${encodeURIComponent(r.id)}` }, r.name || r.workflow)),
          el('td', {}, r.repo), el('td', { class: 'mono' }, short(r.commit, 12)), el('td', {}, r.ref || '–'),
          el('td', {}, r.state), el('td', {}, when(r.started_at || r.created_at))));
      }
      $('wf-next').hidden = !page.next_cursor;
      $('wf-next').onclick = () => list(page.next_cursor);
      say('wf-status', body.children.length ? '' : 'No workflow runs yet.');
    } catch (e) { say('wf-status', `Cannot list workflow runs: ${e.message}`, true); }
  }

  const logs = new Map();
  async function detail(id) {
    $('wf-list').hidden = true; $('wf-detail').hidden = false;
    let run;
    try { run = await api('GET', `/v1/workflow-runs/${encodeURIComponent(id)}`); } catch (e) { $('w-state').textContent = e.message; return; }
    $('w-name').textContent = run.name || run.workflow; $('w-state').textContent = run.state;
    $('w-commit').textContent = run.commit; $('w-ref').textContent = run.ref || '–'; $('w-message').textContent = run.message || '–';
    const box = $('w-jobs'); clear(box);
    // A run under way: its event stream starts with the output so far
    // (fetching the stored log too would show lines twice, or miss those
    // not yet stored); a finished one: the whole stored log.
    const finished = !['queued', 'running'].includes(run.state);
    for (const j of run.jobs) {
      const pre = el('pre', { tabindex: '0', 'aria-label': `Log of job ${j.name || j.id}` });
      logs.set(j.id, pre);
      const steps = el('ol', {});
      for (const s of j.steps || []) steps.append(el('li', {}, `${s.name || s.run || 'step'}: ${s.state || s.status || (s.exit_code === undefined ? 'pending' : `exit ${s.exit_code}`)}`));
      box.append(el('section', { class: 'card', 'aria-label': `Job ${j.name || j.id}` },
        el('h3', {}, `${j.name || j.id}: `, el('span', { 'data-job-state': j.id }, j.state)), steps,
        el('h4', {}, 'Log'), pre));
      if (finished && j.log_bytes > 0) api('GET', `/v1/workflow-runs/${encodeURIComponent(id)}/jobs/${encodeURIComponent(j.id)}/log`).then((t) => { pre.textContent = t; }).catch(() => {});
    }
    if (!finished) stream(id);
  }
  function stream(id) {
    const es = new EventSource(`/v1/workflow-runs/${encodeURIComponent(id)}/events`);
    es.addEventListener('output', (ev) => { const d = JSON.parse(ev.data); const pre = logs.get(d.job); if (pre) pre.append(d.text || ''); });
    es.addEventListener('lagged', () => { if (!$('w-lagged')) $('w-jobs').prepend(el('p', { id: 'w-lagged', role: 'status' }, 'Some output is not shown live; the whole log is here when the run ends.')); });
    es.addEventListener('job', (ev) => { const d = JSON.parse(ev.data); const s = document.querySelector(`[data-job-state="${CSS.escape(d.job)}"]`); if (s) s.textContent = d.state; });
    es.addEventListener('run', (ev) => { const d = JSON.parse(ev.data); $('w-state').textContent = d.state; if (!['queued', 'running'].includes(d.state)) { es.close(); setTimeout(() => detail(id), 300); } });
    es.onerror = () => es.close();
  }
  $('wf-filters').addEventListener('submit', (e) => { e.preventDefault(); list(null); });
  if (params.get('id')) await detail(params.get('id')); else await list(null);
  R.ready();
})();
