// Command forms. Each submission carries an Idempotency-Key: kept while the outcome is
// unknown (network error, timeout) so that submitting again cannot post twice, and
// replaced once the node has answered or the form changes.

import { api, command, ApiError } from '../lib/api.js';
import { h, $, $$, replace, uuid } from '../lib/dom.js';
import { money } from '../lib/format.js';

const OPTIONAL = new Set(['initial_balance', 'overdraft_limit', 'description', 'reason', 'timeout_seconds']);
const UNKNOWN_OUTCOME = new Set(['network', 'timeout', 'unavailable', 'no_leader', 'not_leader', 'http_502', 'http_503', 'http_504']);

export class CommandsView {
  constructor() {
    for (const form of $$('form.command')) this.wire(form);
  }

  show(params) {
    const id = params.get('account');
    if (id) {
      for (const sel of ['#dp-account', '#wd-account', '#tr-from', '#lc-account']) $(sel).value = id;
    }
  }

  wire(form) {
    // The lifecycle form's action chooses its command.
    const action = form.querySelector('[data-sets-command]');
    if (action) action.addEventListener('change', () => { form.dataset.command = action.value; });
    form.addEventListener('input', (e) => {
      delete form.dataset.key; // changed content is a new submission
      if (e.target.name) this.clearFieldError(form, e.target);
    });
    form.addEventListener('submit', (e) => {
      e.preventDefault();
      this.submit(form);
    });
  }

  payload(form) {
    const out = {};
    for (const el of form.elements) {
      if (!el.name) continue;
      if (el.type === 'checkbox') { // "pending": sent only when ticked
        if (el.checked) out[el.name] = true;
        continue;
      }
      let v = el.value.trim();
      if (v === '' && el.dataset.optional !== undefined) continue;
      if (el.name === 'timeout_seconds' && /^[0-9]{1,9}$/.test(v)) { out[el.name] = Number(v); continue; }
      if (el.name === 'currency') v = v.toUpperCase();
      if (v === '' && OPTIONAL.has(el.name)) continue;
      out[el.name] = v; // amounts go as strings: exact decimals, never floats
    }
    return out;
  }

  clearFieldError(form, el) {
    el.removeAttribute('aria-invalid');
    const msg = form.querySelector(`#${el.id}-error`);
    if (msg) msg.textContent = '';
  }

  clearErrors(form) {
    for (const el of form.elements) if (el.name) this.clearFieldError(form, el);
  }

  async submit(form) {
    if (form.dataset.busy === 'true') return; // a double click while the first is in flight
    const name = form.dataset.command;
    const result = $('.form-result', form);
    const button = $('button[type=submit]', form);
    const payload = this.payload(form);
    const key = form.dataset.key || (form.dataset.key = uuid());
    this.clearErrors(form);
    form.dataset.busy = 'true';
    form.setAttribute('aria-busy', 'true');
    button.disabled = true;
    result.dataset.kind = 'pending';
    replace(result, 'Sending…');
    try {
      const res = await command(name, payload, key);
      delete form.dataset.key;
      await this.success(form, name, payload, res, result);
    } catch (err) {
      this.failure(form, err, result);
    } finally {
      delete form.dataset.busy;
      form.removeAttribute('aria-busy');
      button.disabled = false;
    }
  }

  async success(form, name, p, res, result) {
    const replay = res.idempotent_replay ? ' (already applied: this is the original result)' : '';
    let ids = name === 'transfer' ? [p.from_account_id, p.to_account_id] : [res.account_id || p.account_id];
    if (name === 'capture-transfer' || name === 'void-transfer') ids = [...new Set((res.events || []).map((e) => e.aggregate_id))];
    let head;
    switch (name) {
      case 'capture-transfer': head = `Captured ${p.amount || 'the whole hold'} of transfer ${p.transfer_id}`; break;
      case 'void-transfer': head = `Voided transfer ${p.transfer_id}`; break;
      case 'transfer':
        if (p.pending) { head = `Held ${p.amount} on ${p.from_account_id} for ${p.to_account_id}`; break; }
        head = `Transferred ${p.amount} from ${p.from_account_id} to ${p.to_account_id}`; break;
      case 'create-account': head = `Account ${p.account_id} opened for ${p.owner_name}`; break;
      case 'deposit': head = `Deposited ${p.amount} into ${p.account_id}`; break;
      case 'withdraw': head = `Withdrew ${p.amount} from ${p.account_id}`; break;
      case 'freeze-account': head = `Account ${p.account_id} frozen`; break;
      case 'unfreeze-account': head = `Account ${p.account_id} unfrozen`; break;
      case 'close-account': head = `Account ${p.account_id} closed`; break;
      default: head = `Transferred ${p.amount} from ${p.from_account_id} to ${p.to_account_id}`;
    }
    const balances = h('span', { class: 'result-balances' });
    result.dataset.kind = 'ok';
    replace(result,
      h('strong', null, `✓ ${head}${replay}`),
      h('span', { class: 'result-meta' },
        `Position ${res.position} · event `, h('code', { class: 'break' }, res.event_id || '—'),
        res.transfer_id ? [' · transfer ', h('code', { class: 'break' }, res.transfer_id)] : null),
      balances,
      h('span', { class: 'result-links' }, ...ids.flatMap((id, i) => [i ? ' · ' : '', h('a', { href: `#/accounts/${encodeURIComponent(id)}` }, `Open ${id}`)]),
        ' · ', h('a', { href: '#/events' }, 'Event log')));
    // Clear what should not be sent twice by accident; keep the accounts.
    for (const field of ['amount', 'description', 'initial_balance', 'overdraft_limit', 'transfer_id', 'reason', 'timeout_seconds']) {
      if (form.elements[field]) form.elements[field].value = '';
    }
    if (form.elements.pending) form.elements.pending.checked = false;
    if (name === 'create-account') {
      form.elements.account_id.value = '';
      form.elements.owner_name.value = '';
    }
    // Show the balances the command produced (read-your-writes via min_position).
    const parts = [];
    for (const id of ids) {
      try {
        const a = await api.account(id, { min_position: res.position });
        const held = a.held && Number(a.held) !== 0 ? ` (held ${a.held}, available ${a.available})` : '';
        parts.push(`${a.account_id}: ${money(a.balance, a.currency)}${held}`);
      } catch { /* the result above stands on its own */ }
    }
    if (parts.length) balances.textContent = `Balance now ${parts.join(' · ')}`;
  }

  failure(form, err, result) {
    const e = err instanceof ApiError ? err : new ApiError(0, null, String(err));
    if (!UNKNOWN_OUTCOME.has(e.code)) delete form.dataset.key;
    const el = e.field && form.elements[e.field];
    result.dataset.kind = 'error';
    if (el && el.id) {
      el.setAttribute('aria-invalid', 'true');
      const msg = form.querySelector(`#${el.id}-error`);
      if (msg) msg.textContent = e.message;
      replace(result, h('span', null, `Not committed: ${e.message}`), h('span', { class: 'code' }, ` (${e.code})`));
      el.focus();
      return;
    }
    let text = UNKNOWN_OUTCOME.has(e.code)
      ? `Outcome unknown: ${e.message} Submitting again is safe: it reuses the same Idempotency-Key.`
      : `Not committed: ${e.message}`;
    if (e.code === 'forbidden_role') {
      // "token "x" has role reader; this needs writer"
      const role = /has role (\w+)/.exec(e.message);
      text = `Not committed: this token is ${role ? `a ${role[1]} token` : 'not allowed to send commands'}; commands need a writer token. Sign out and sign in with a writer (or admin) token to send them.`;
    } else if (e.code === 'unauthorized') {
      text = `Not committed: ${e.message}. Sign in with a token, then submit again.`;
    } else if (e.code === 'rate_limited' && e.retryAfter) {
      text = `Not committed: too many requests with this token; try again in ${e.retryAfter} s.`;
    }
    replace(result, h('span', null, text), h('span', { class: 'code' }, ` (${e.code})`));
  }
}
