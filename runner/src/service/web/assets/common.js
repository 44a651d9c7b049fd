'use strict';
// Helpers every page uses. Everything shown is set as text (textContent or
// text nodes): no server or submitted value is ever parsed as HTML.
window.R = (() => {
  const meta = (name) => { const m = document.querySelector(`meta[name="${name}"]`); return m ? m.content : ''; };
  const csrf = meta('csrf-token');
  async function api(method, path, body) {
    const headers = { Accept: 'application/json' };
    const opts = { method, headers, credentials: 'same-origin' };
    if (method !== 'GET') headers['X-CSRF-Token'] = csrf;
    if (body !== undefined) { headers['Content-Type'] = 'application/json'; opts.body = JSON.stringify(body); }
    const resp = await fetch(path, opts);
    const text = await resp.text();
    let data = text;
    try { data = text ? JSON.parse(text) : null; } catch (_) { /* plain text, e.g. logs */ }
    if (!resp.ok) {
      const err = data && data.error ? data.error : {};
      const e = new Error(err.message || `the server answered ${resp.status}`);
      e.status = resp.status; e.code = err.code;
      throw e;
    }
    return data;
  }
  function el(tag, attrs, ...children) {
    const e = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v === undefined || v === null || v === false) continue;
      e.setAttribute(k, v === true ? '' : String(v));
    }
    for (const c of children) if (c !== undefined && c !== null) e.append(c instanceof Node ? c : String(c));
    return e;
  }
  function clear(n) { while (n.firstChild) n.removeChild(n.firstChild); }
  function say(id, text, bad) { const n = document.getElementById(id); n.textContent = text; n.classList.toggle('bad', !!bad); }
  function bytes(n) { if (n === undefined || n === null) return '–'; return n >= 1048576 ? `${(n / 1048576).toFixed(1)} MiB` : n >= 1024 ? `${(n / 1024).toFixed(1)} KiB` : `${n} B`; }
  function ms(n) { return n === undefined || n === null ? '–' : `${n} ms`; }
  function when(t) { return t ? new Date(t).toLocaleString() : '–'; }
  function short(s, n) { return s ? (s.length > n ? s.slice(0, n) : s) : '–'; }
  function ready() { document.body.dataset.readyAt = String(Math.round(performance.now())); document.body.dataset.ready = 'true'; }
  function decode(text, encoding) {
    if (encoding !== 'base64' || !text) return text || '';
    try { return new TextDecoder().decode(Uint8Array.from(atob(text), (c) => c.charCodeAt(0))); } catch (_) { return text; }
  }
  return { api, el, clear, say, bytes, ms, when, short, ready, decode, role: meta('role') };
})();
