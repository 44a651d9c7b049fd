'use strict';
(async () => {
  const { api, el, clear, say, when } = R;
  const $ = (id) => document.getElementById(id);
  const approver = R.role === 'release-manager';
  const dash = (v) => (v === undefined || v === null || v === '' ? '–' : String(v));
  // `image` may already be pinned (`repo@sha256:…`).
  const pinned = (image, digest) => (!image ? '–' : digest && !image.includes(digest) ? `${image}@${digest}` : image);

  async function environments() {
    try {
      const { environments } = await api('GET', '/v1/environments');
      const body = $('environments'); clear(body);
      for (const e of environments) {
        const scan = e.scan ? `${dash(e.scan.verdict)}: ${dash(e.scan.critical)} critical, ${dash(e.scan.high)} high, ${dash(e.scan.medium)} medium, ${dash(e.scan.low)} low` : '–';
        const rule = e.automatic ? 'automatic' : `${dash(e.approvals)} approval(s) by ${dash(e.approver_role)}`;
        body.append(el('tr', { 'data-environment': e.name },
          el('th', { scope: 'row' }, e.name),
          el('td', { class: 'mono' }, e.image ? pinned(e.image, e.digest) : 'nothing deployed', e.deploying ? ` (deploying ${e.deploying})` : null),
          el('td', { class: 'mono' }, dash(e.commit)),
          el('td', {}, e.sbom ? `${dash(e.sbom.components)} components` : '–'),
          el('td', {}, scan), el('td', {}, dash(e.signature)),
          el('td', {}, `${rule}${e.soak_in_previous ? `, after ${e.soak_in_previous} in the previous` : ''}; target: ${dash(e.target)}`)));
      }
      say('env-status', environments.length ? '' : 'No environments are configured.');
    } catch (e) { say('env-status', `Cannot read environments: ${e.message}`, true); }
  }

  function card(p) {
    const status = el('p', { role: 'alert', class: 'outcome' });
    const checks = el('ul', {});
    for (const v of p.verification || []) checks.append(el('li', { class: v.ok ? 'good' : 'bad' }, `${v.ok ? 'passed' : 'FAILED'}: ${v.check}${v.detail ? ` (${v.detail})` : ''}`));
    const decisions = el('ul', {});
    for (const a of p.approvals || []) decisions.append(el('li', {}, `${a.decision} by ${a.by} at ${when(a.at)}: ${a.reason}`));
    const section = el('section', { class: 'card', 'aria-labelledby': `p-${p.id}`, 'data-promotion': p.id },
      el('h3', { id: `p-${p.id}` }, `Promote to ${p.environment}`),
      el('dl', { class: 'facts' },
        el('dt', {}, 'Will deploy'), el('dd', { class: 'mono deploy' }, pinned(p.image, p.digest)),
        el('dt', {}, 'Commit'), el('dd', { class: 'mono' }, dash(p.commit)),
        el('dt', {}, 'Requested by'), el('dd', {}, `${dash(p.requested_by)} at ${when(p.requested_at)}`),
        el('dt', {}, 'Approvals'), el('dd', {}, `${(p.approvals || []).filter((a) => a.decision === 'approve').length} of ${dash(p.required_approvals)}`),
        el('dt', {}, 'State'), el('dd', { class: 'state' }, p.state)),
      el('h4', {}, 'What verification found'), checks.children.length ? checks : el('p', {}, 'No verification recorded.'),
      decisions.children.length ? el('h4', {}, 'Decisions so far') : null, decisions.children.length ? decisions : null);
    if (approver) {
      const id = `reason-${p.id}`;
      const reason = el('textarea', { id, rows: '2', required: true });
      const form = el('form', { class: 'decide' }, el('label', { for: id }, 'Reason (recorded in the audit log)'), reason,
        el('div', { class: 'row' },
          el('button', { type: 'submit', name: 'decision', value: 'approve', class: 'approve' }, 'Approve'),
          el('button', { type: 'submit', name: 'decision', value: 'reject', class: 'secondary reject' }, 'Reject')));
      form.addEventListener('submit', async (ev) => {
        ev.preventDefault();
        const decision = ev.submitter ? ev.submitter.value : 'approve';
        if (!reason.value.trim()) { status.textContent = 'Write a reason first.'; reason.focus(); return; }
        try {
          await api('POST', `/v1/promotions/${encodeURIComponent(p.id)}/approvals`, { decision, reason: reason.value.trim() });
          status.className = 'outcome good'; status.textContent = `Recorded: ${decision}.`;
          setTimeout(load, 500);
        } catch (e) {
          status.className = 'outcome bad';
          status.dataset.code = e.code || '';
          status.textContent = `Not recorded: ${e.message}`;
        }
      });
      section.append(form);
    }
    section.append(status);
    return section;
  }

  async function promotions() {
    try {
      const { promotions } = await api('GET', '/v1/promotions?state=pending');
      const box = $('promotions'); clear(box);
      for (const p of promotions) box.append(card(p));
      say('pending-status', promotions.length ? '' : 'Nothing awaits approval.');
    } catch (e) { say('pending-status', `Cannot read promotions: ${e.message}`, true); }
  }
  async function load() { await Promise.all([environments(), promotions()]); }
  await load();
  R.ready();
})();
