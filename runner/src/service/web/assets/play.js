'use strict';
(async () => {
  const { api, el, clear, say, bytes, ms, decode } = R;
  const $ = (id) => document.getElementById(id);
  const lang = $('language'); const ver = $('version'); const form = $('run-form'); const button = $('run');
  const byName = new Map();
  try {
    for (const l of await api('GET', '/v1/languages')) {
      if (!byName.has(l.name)) byName.set(l.name, []);
      byName.get(l.name).push(l);
    }
  } catch (e) { say('status', `Cannot list the languages: ${e.message}`, true); }
  for (const name of [...byName.keys()].sort()) lang.append(el('option', { value: name }, name));
  const versions = () => { clear(ver); for (const l of byName.get(lang.value) || []) ver.append(el('option', { value: l.version }, l.version)); };
  if (byName.has('python')) lang.value = 'python';
  versions();
  lang.addEventListener('change', versions);
  $('code').addEventListener('keydown', (e) => { if (e.key === 'Enter' && (e.ctrlKey || e.metaKey)) { e.preventDefault(); form.requestSubmit(); } });
  form.addEventListener('submit', (e) => { e.preventDefault(); run(); });

  function reset() {
    for (const id of ['stdout', 'stderr']) $(id).textContent = '';
    for (const id of ['verdict', 'time', 'memory', 'exit', 'run-id']) $(id).textContent = '–';
    delete $('verdict').dataset.status;
  }
  async function run() {
    reset();
    button.disabled = true;
    say('status', 'Submitting…');
    const language = lang.value;
    const file = ((byName.get(language) || []).find((l) => l.version === ver.value) || {}).file || 'main';
    const body = {
      language, version: ver.value || undefined,
      files: [{ name: file, content: $('code').value }],
      stdin: $('stdin').value,
      args: $('args').value.split('\n').filter((a) => a.length > 0),
    };
    try {
      const sub = await api('POST', '/v1/runs', body);
      $('run-id').textContent = sub.id;
      follow(sub.id);
    } catch (e) { say('status', `Not run: ${e.message}`, true); button.disabled = false; }
  }
  function follow(id) {
    const es = new EventSource(`/v1/runs/${encodeURIComponent(id)}/events`);
    let done = false;
    es.addEventListener('state', (ev) => { say('status', `Run ${JSON.parse(ev.data).state}…`); });
    es.addEventListener('output', (ev) => {
      const d = JSON.parse(ev.data);
      $(d.stream === 'stderr' ? 'stderr' : 'stdout').append(decode(d.text, d.encoding));
    });
    es.addEventListener('result', (ev) => { done = true; es.close(); show(JSON.parse(ev.data)); });
    es.onerror = () => { es.close(); if (!done) poll(id); };
  }
  async function poll(id) {
    try {
      for (;;) {
        const r = await api('GET', `/v1/runs/${encodeURIComponent(id)}`);
        if (r.result) return show(r);
        await new Promise((res) => setTimeout(res, 500));
      }
    } catch (e) { say('status', `Lost the run: ${e.message}`, true); button.disabled = false; }
  }
  function show(r) {
    button.disabled = false;
    const res = r.result || {};
    const stage = res.run || res.compile || {};
    const failedCompile = res.compile && res.compile.exit_code !== 0 && !res.run;
    const shown = failedCompile ? res.compile : stage;
    $('stdout').textContent = decode(shown.stdout, shown.stdout_encoding);
    $('stderr').textContent = decode(shown.stderr, shown.stderr_encoding);
    $('verdict').textContent = res.status || r.state;
    $('verdict').dataset.status = res.status || r.state;
    $('time').textContent = ms(stage.wall_ms);
    $('memory').textContent = bytes(stage.memory_peak_bytes);
    $('exit').textContent = stage.exit_code ?? stage.signal ?? '–';
    say('status', `Finished: ${res.status || r.state}${res.message ? ` (${res.message})` : ''}`, res.status !== 'ok');
  }
  R.ready();
})();
