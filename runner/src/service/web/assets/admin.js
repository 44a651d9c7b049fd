'use strict';
(async () => {
  const { api, el, clear, say, when } = R;
  const $ = (id) => document.getElementById(id);

  async function keys() {
    try {
      const list = await api('GET', '/v1/keys');
      const body = $('keys'); clear(body);
      for (const k of Array.isArray(list) ? list : list.keys) {
        const revoke = el('button', { type: 'button', class: 'secondary' }, 'Revoke');
        revoke.setAttribute('aria-label', `Revoke key ${k.id}`);
        revoke.hidden = !!k.revoked_at;
        revoke.addEventListener('click', async () => {
          try { await api('DELETE', `/v1/keys/${encodeURIComponent(k.id)}`); keys(); } catch (e) { say('new-key', `Not revoked: ${e.message}`, true); }
        });
        body.append(el('tr', {}, el('td', { class: 'mono' }, k.id), el('td', {}, k.role), el('td', {}, k.label),
          el('td', {}, when(k.created_at)), el('td', {}, when(k.revoked_at)), el('td', {}, revoke)));
      }
    } catch (e) { say('new-key', `Cannot list keys: ${e.message}`, true); }
  }
  async function repos() {
    try {
      const list = await api('GET', '/v1/repos');
      const body = $('repos'); clear(body);
      for (const r of Array.isArray(list) ? list : list.repos) {
        const del = el('button', { type: 'button', class: 'secondary' }, 'Remove');
        del.setAttribute('aria-label', `Remove repository ${r.name}`);
        del.addEventListener('click', async () => {
          try { await api('DELETE', `/v1/repos/${encodeURIComponent(r.id)}`); repos(); } catch (e) { say('repo-status', `Not removed: ${e.message}`, true); }
        });
        body.append(el('tr', {}, el('td', {}, r.name), el('td', { class: 'mono' }, r.url), el('td', {}, (r.branches || []).join(', ') || 'all'),
          el('td', { class: 'mono' }, r.webhook_path), el('td', {}, del)));
      }
    } catch (e) { say('repo-status', `Cannot list repositories: ${e.message}`, true); }
  }
  $('key-form').addEventListener('submit', async (e) => {
    e.preventDefault();
    try {
      const k = await api('POST', '/v1/keys', { role: $('k-role').value, label: $('k-label').value });
      const box = $('new-key'); clear(box);
      box.append(el('p', {}, 'The new key, shown this once: copy it now.'), el('pre', { tabindex: '0', class: 'mono' }, k.key || k.text || ''));
      keys();
    } catch (err) { say('new-key', `Not created: ${err.message}`, true); }
  });
  $('repo-form').addEventListener('submit', async (e) => {
    e.preventDefault();
    const branches = $('r-branches').value.split(',').map((b) => b.trim()).filter((b) => b);
    try {
      await api('POST', '/v1/repos', { name: $('r-name').value.trim(), url: $('r-url').value.trim(), branches });
      say('repo-status', 'Registered.'); repos();
    } catch (err) { say('repo-status', `Not registered: ${err.message}`, true); }
  });
  await Promise.all([keys(), repos()]);
  R.ready();
})();
