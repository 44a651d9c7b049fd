'use strict';
(async () => {
  const { api, el, clear, say, bytes, ms, when, short, decode } = R;
  const $ = (id) => document.getElementById(id);
  const params = new URLSearchParams(location.search);
  if (R.role === 'learner') { $('f-mine').checked = true; $('f-mine').disabled = true; }
  let cursors = [null];

  async function load(cursor) {
    say('list-status', 'Loading…');
    const q = new URLSearchParams({ limit: $('f-size').value });
    if (cursor) q.set('cursor', cursor);
    if ($('f-mine').checked) q.set('mine', 'true');
    try {
      const page = await api('GET', `/v1/runs?${q}`);
      const lang = $('f-language').value.trim().toLowerCase();
      const status = $('f-status').value;
      const rows = page.runs.filter((r) => (!lang || r.language.toLowerCase().includes(lang)) && (!status || r.status === status));
      const body = $('runs'); clear(body);
      for (const r of rows) {
        body.append(el('tr', {},
          el('td', {}, el('a', { href: `/runs?id=${encodeURIComponent(r.id)}`, class: 'mono' }, short(r.id, 12))),
          el('td', {}, `${r.language} ${r.version}`), el('td', {}, r.state), el('td', {}, r.status || '–'),
          el('td', {}, r.submitted_by), el('td', {}, when(r.created_at))));
      }
      $('next').disabled = !page.next_cursor;
      $('next').onclick = () => { cursors.push(page.next_cursor); load(page.next_cursor); };
      $('page-caption').textContent = `Page ${cursors.length}: ${rows.length} of ${page.runs.length} runs shown`;
      say('list-status', rows.length ? '' : 'No runs match.');
    } catch (e) { say('list-status', `Cannot list runs: ${e.message}`, true); }
  }
  async function detail(id) {
    $('list-section').hidden = true; $('detail').hidden = false;
    try {
      const r = await api('GET', `/v1/runs/${encodeURIComponent(id)}`);
      const res = r.result || {}; const s = res.run || res.compile || {};
      const set = (k, v) => { $(k).textContent = v ?? '–'; };
      set('d-id', r.id); set('d-state', r.state); set('d-verdict', res.status); set('d-language', `${r.language} ${r.version}`);
      set('d-by', r.submitted_by); set('d-created', when(r.created_at)); set('d-finished', when(r.finished_at));
      set('d-time', ms(s.wall_ms)); set('d-memory', bytes(s.memory_peak_bytes)); set('d-exit', s.exit_code ?? s.signal);
      $('d-stdout').textContent = decode(s.stdout, s.stdout_encoding);
      $('d-stderr').textContent = decode(s.stderr, s.stderr_encoding);
      const live = r.state === 'queued' || r.state === 'running';
      $('d-cancel').hidden = !live;
      $('d-cancel').onclick = async () => { try { await api('DELETE', `/v1/runs/${encodeURIComponent(id)}`); detail(id); } catch (e) { alert(e.message); } };
      if (live) setTimeout(() => detail(id), 1000);
    } catch (e) { $('d-state').textContent = `Cannot read the run: ${e.message}`; }
  }
  $('filters').addEventListener('submit', (e) => { e.preventDefault(); cursors = [null]; load(null); });
  $('first').addEventListener('click', () => { cursors = [null]; load(null); });
  if (params.get('id')) await detail(params.get('id')); else await load(null);
  R.ready();
})();
