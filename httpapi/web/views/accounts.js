// Accounts: the paged list with search, and one account's statement, balance chart and
// time travel (balance at any instant).

import { api, ApiError } from '../lib/api.js';
import { h, s, $, replace, debounce, decode } from '../lib/dom.js';
import { dateTime, shortTime, money, lineSign, lineName, localInputValue } from '../lib/format.js';
import { feed } from '../lib/feed.js';
import { BalanceChart } from '../lib/chart.js';

const PAGE = 100;
const LINES_PAGE = 100;
const ID_RE = /^[A-Za-z0-9._:-]{1,64}$/;
// Account lifecycle: the status each event leaves, and the statement lines they make.
const LIFECYCLE_STATUS = { AccountFrozen: 'frozen', AccountUnfrozen: 'active', AccountClosed: 'closed' };
const LIFECYCLE_LINES = new Set(['account_frozen', 'account_unfrozen', 'account_closed']);

export class AccountsView {
  constructor() {
    this.accounts = new Map(); // id -> account JSON
    this.nextAfter = null;
    this.loadedOnce = false;
    this.query = '';
    this.lookup = null; // {id, account|null}
    this.selected = null;
    this.detail = null; // {account, lines, nextBefore}
    this.chart = null;
    this.tt = null; // {iso, date}
    this.ttSeq = 0;
    this.detailSeq = 0;

    this.rows = $('#account-rows');
    this.more = $('#more-accounts');
    this.empty = $('#account-empty');
    this.count = $('#account-count');

    $('#account-search').addEventListener('submit', (e) => {
      e.preventDefault();
      const q = $('#account-query').value.trim();
      const hit = this.accounts.get(q) || (this.lookup && this.lookup.id === q && this.lookup.account);
      if (hit) location.hash = `#/accounts/${encodeURIComponent(hit.account_id)}`;
      else this.doLookup(q);
    });
    const onQuery = debounce(() => this.setQuery($('#account-query').value.trim()), 120);
    $('#account-query').addEventListener('input', onQuery);
    this.more.addEventListener('click', () => this.loadMore());

    $('#timetravel').addEventListener('submit', (e) => {
      e.preventDefault();
      this.travelFromInput();
    });
    $('#tt-input').addEventListener('change', () => this.travelFromInput());
    $('#tt-now').addEventListener('click', () => this.travel(new Date()));
    $('#older-lines').addEventListener('click', () => this.loadOlderLines());

    feed.addEventListener('events', (e) => this.onLive(e.detail));
    this.refreshSelected = debounce(() => this.loadDetail(this.selected, { keepTravel: true }), 150);
  }

  /** A token was entered: the next show() loads the list (and account) again. */
  reauth() {
    if (!this.loadedOnce) return;
    this.loadedOnce = false;
    this.accounts.clear();
    this.nextAfter = null;
    this.empty.hidden = true;
    if (this.selected) {
      this.selected = null;
      this.closeDetail();
    }
  }

  /** Called on #/accounts and #/accounts/<id>. */
  async show(params, rest) {
    if (!this.loadedOnce) {
      this.loadedOnce = true;
      await this.loadMore();
    }
    const id = rest ? decode(rest) : null;
    if (id && id !== this.selected) {
      this.selected = id;
      this.renderList();
      await this.loadDetail(id);
      if (window.matchMedia('(max-width: 900px)').matches) $('#account-card').scrollIntoView({ block: 'start' });
    } else if (!id && this.selected) {
      this.selected = null;
      this.renderList();
      this.closeDetail();
    }
  }

  async loadMore() {
    this.more.disabled = true;
    try {
      const q = { limit: PAGE };
      if (this.nextAfter) q.after = this.nextAfter;
      const page = await api.accounts(q);
      for (const a of page.accounts || []) this.accounts.set(a.account_id, a);
      this.nextAfter = page.next_after || null;
      this.renderList();
      this.publishIds();
    } catch (err) {
      this.empty.textContent = `Could not load accounts: ${err.message}`;
      this.empty.hidden = false;
    } finally {
      this.more.disabled = false;
    }
  }

  publishIds() {
    const list = $('#account-ids');
    const ids = [...this.accounts.keys()].sort().slice(0, 500);
    replace(list, ids.map((id) => h('option', { value: id })));
  }

  setQuery(q) {
    this.query = q;
    this.lookup = null;
    this.renderList();
    if (q && ID_RE.test(q) && !this.accounts.has(q)) this.doLookupSoon(q);
  }

  doLookupSoon = debounce((q) => this.doLookup(q), 250);

  /** Exact id lookup, for accounts not in the loaded pages. */
  async doLookup(q) {
    if (!q || !ID_RE.test(q) || this.accounts.has(q)) return;
    try {
      const acc = await api.account(q);
      if (this.query === q) this.lookup = { id: q, account: acc };
    } catch (err) {
      if (this.query === q) this.lookup = { id: q, account: null, error: err instanceof ApiError && err.status === 404 ? '' : err.message };
    }
    if (this.query === q) this.renderList();
  }

  visibleAccounts() {
    const q = this.query.toLowerCase();
    const all = [...this.accounts.values()].sort((a, b) => (a.account_id < b.account_id ? -1 : a.account_id > b.account_id ? 1 : 0));
    const list = q ? all.filter((a) => a.account_id.toLowerCase().includes(q) || String(a.owner_name).toLowerCase().includes(q)) : all;
    if (this.lookup && this.lookup.account && !this.accounts.has(this.lookup.id)) list.unshift({ ...this.lookup.account, _lookup: true });
    return list;
  }

  renderList() {
    const list = this.visibleAccounts();
    replace(this.rows, list.map((a) => this.accountRow(a)));
    const total = this.accounts.size;
    this.count.textContent = this.query
      ? `${list.length} match${list.length === 1 ? '' : 'es'} among ${total} loaded account${total === 1 ? '' : 's'}`
      : `${total} account${total === 1 ? '' : 's'}${this.nextAfter ? ' loaded' : ''}`;
    let empty = '';
    if (!list.length) {
      if (this.query) {
        empty = this.lookup && this.lookup.id === this.query && !this.lookup.account
          ? (this.lookup.error || `No account has the id “${this.query}”.`)
          : `No loaded account matches “${this.query}”.${this.nextAfter ? ' Load more, or type an exact id.' : ''}`;
      } else if (this.loadedOnce) {
        empty = 'No accounts yet. Open one on the Commands page.';
      }
    }
    this.empty.textContent = empty;
    this.empty.hidden = !empty;
    this.more.hidden = !this.nextAfter;
  }

  accountRow(a) {
    const href = `#/accounts/${encodeURIComponent(a.account_id)}`;
    const current = a.account_id === this.selected;
    const tr = h('tr', { class: current ? 'selected' : '', dataset: { id: a.account_id } },
      h('th', { scope: 'row' }, h('a', { href, 'aria-current': current ? 'true' : false }, a.account_id),
        a._lookup ? h('span', { class: 'tag' }, 'exact id') : null,
        a.status && a.status !== 'active' ? h('span', { class: 'tag warn' }, a.status) : null,
        h('span', { class: 'owner-sub', 'aria-hidden': 'true' }, a.owner_name)),
      h('td', { class: 'owner-cell' }, a.owner_name),
      h('td', { class: 'num balance-cell' }, money(a.balance, a.currency)));
    tr.addEventListener('click', (e) => {
      if (e.target.closest('a')) return;
      location.hash = href;
    });
    return tr;
  }

  onLive(events) {
    let listChanged = false;
    let selectedChanged = false;
    for (const ev of events) {
      const d = ev.event_data || {};
      const id = ev.aggregate_id;
      if (ev.event_type === 'AccountCreated') {
        if (!this.accounts.has(id) && this.loadedOnce && (!this.nextAfter || id < this.nextAfter)) {
          this.accounts.set(id, {
            account_id: id, owner_name: d.owner_name, balance: d.balance_after, currency: d.currency,
            overdraft_limit: d.overdraft_limit, status: 'active', created_at: ev.created_at, last_updated: ev.created_at,
            version: ev.event_version,
          });
          listChanged = true;
        }
      } else if (this.accounts.has(id) && d.balance_after !== undefined) {
        const a = this.accounts.get(id);
        if ((a.version || 0) < ev.event_version) {
          const status = LIFECYCLE_STATUS[ev.event_type] || a.status; // account lifecycle events
          this.accounts.set(id, { ...a, balance: d.balance_after, status, last_updated: ev.created_at, version: ev.event_version });
          listChanged = true;
        }
      }
      if (id === this.selected) selectedChanged = true;
    }
    if (listChanged) {
      this.renderList();
      this.publishIds();
    }
    if (selectedChanged) this.refreshSelected();
  }

  closeDetail() {
    $('#account-card').hidden = true;
    $('#account-placeholder').hidden = false;
    if (this.chart) this.chart.destroy();
    this.chart = null;
    this.detail = null;
    this.tt = null;
  }

  async loadDetail(id, { keepTravel = false } = {}) {
    if (!id) return;
    const seq = ++this.detailSeq;
    const card = $('#account-card');
    try {
      const keep = keepTravel && this.detail && this.detail.account.account_id === id ? this.detail.lines.length : 0;
      const limit = Math.min(1000, Math.max(LINES_PAGE, keep + 10));
      const [account, st] = await Promise.all([api.account(id), api.transactions(id, { limit })]);
      if (seq !== this.detailSeq) return;
      this.detail = { account, lines: st.transactions || [], nextBefore: st.next_before || null };
      this.accounts.set(id, { ...(this.accounts.get(id) || {}), ...account });
      $('#account-placeholder').hidden = true;
      card.hidden = false;
      this.renderDetail();
      this.renderList();
      if (!keepTravel || !this.tt) {
        this.tt = null;
        $('#tt-input').value = localInputValue(new Date());
        $('#tt-result').replaceChildren();
        if (this.chart) this.chart.setMarker(null);
      } else {
        this.travel(this.tt.date, this.tt.iso);
      }
    } catch (err) {
      if (seq !== this.detailSeq) return;
      if (this.chart) this.chart.destroy();
      this.chart = null;
      this.detail = null;
      card.hidden = true;
      const ph = $('#account-placeholder');
      ph.hidden = false;
      replace(ph, h('p', { class: 'error-text' }, err instanceof ApiError && err.status === 404
        ? `There is no account with the id “${id}”.`
        : `Could not load account “${id}”: ${err.message}`));
    }
  }

  renderDetail() {
    const { account: a, lines } = this.detail;
    $('#account-title').textContent = `Account ${a.account_id}`;
    $('#account-owner').textContent = a.owner_name;
    replace($('#account-balance'), a.balance, ' ', h('span', { class: 'currency' }, a.currency));
    const fact = (k, v) => h('div', null, h('dt', null, k), h('dd', null, v));
    replace($('#account-facts'),
      fact('Status', h('span', { class: `status status-${a.status}` }, a.status)),
      fact('Currency', a.currency),
      fact('Overdraft limit', a.overdraft_limit ? money(a.overdraft_limit, a.currency) : 'none'),
      // Two-phase transfers: what open holds reserve, and what is left to spend.
      fact('Held', money(a.held || '0', a.currency)),
      fact('Available', money(a.available || a.balance, a.currency)),
      fact('Opened', h('time', { datetime: a.created_at, title: a.created_at }, dateTime(a.created_at, { ms: false }))),
      fact('Last change', h('time', { datetime: a.last_updated, title: a.last_updated }, dateTime(a.last_updated, { ms: false }))),
      fact('Version', String(a.version)));
    replace($('#account-links'),
      h('a', { href: `#/events?account=${encodeURIComponent(a.account_id)}` }, 'Events of this account'), ' · ',
      h('a', { href: `#/commands?account=${encodeURIComponent(a.account_id)}` }, 'Deposit, withdraw or transfer'));
    this.renderStatement();
    this.renderChart();
  }

  renderStatement() {
    const { account: a, lines, nextBefore } = this.detail;
    const rows = lines.map((l) => {
      const sign = lineSign(l.type);
      const cp = l.counterparty || '';
      const cpCell = !cp ? '—' : cp.startsWith('@')
        ? h('span', { class: 'muted', title: cp }, 'external')
        : h('a', { href: `#/accounts/${encodeURIComponent(cp)}` }, cp);
      const btn = h('button', {
        type: 'button', class: 'icon-button small tt-line', title: 'Balance at this moment',
        'aria-label': `Time travel to this ${lineName(l.type).toLowerCase()} at position ${l.position}`,
      }, clockIcon());
      btn.addEventListener('click', () => this.travel(new Date(l.timestamp), l.timestamp));
      return h('tr', { dataset: { position: String(l.position) } },
        h('td', { class: 'time-cell' }, h('time', { datetime: l.timestamp, title: l.timestamp }, withMillis(shortTime(l.timestamp)))),
        h('td', null, lineName(l.type)),
        // A status change (account lifecycle) moves no money.
        LIFECYCLE_LINES.has(l.type) ? h('td', { class: 'num muted' }, '—')
          : h('td', { class: `num amount ${sign === '+' ? 'plus' : 'minus'}` }, `${sign}${l.amount}`),
        h('td', { class: 'cp-cell' }, cpCell),
        h('td', { class: 'desc-cell' }, l.description || ''),
        h('td', { class: 'num' }, l.balance_after),
        h('td', { class: 'action-cell' }, btn));
    });
    replace($('#statement-rows'), rows);
    if (!lines.length) replace($('#statement-rows'), h('tr', null, h('td', { colspan: '7', class: 'muted' }, `No transactions on ${a.account_id} yet.`)));
    $('#older-lines').hidden = !nextBefore;
  }

  async loadOlderLines() {
    const d = this.detail;
    if (!d || !d.nextBefore) return;
    const btn = $('#older-lines');
    btn.disabled = true;
    try {
      const st = await api.transactions(d.account.account_id, { before: d.nextBefore, limit: LINES_PAGE });
      if (this.detail !== d) return;
      d.lines.push(...(st.transactions || []));
      d.nextBefore = st.next_before || null;
      this.renderStatement();
      this.renderChart();
    } catch (err) {
      btn.title = err.message;
    } finally {
      btn.disabled = false;
    }
  }

  renderChart() {
    const { account: a, lines, nextBefore } = this.detail;
    const el = $('#balance-chart');
    if (this.chart && this.chart.accountId !== a.account_id) {
      this.chart.destroy();
      this.chart = null;
      el.replaceChildren();
    }
    if (!this.chart) {
      this.chart = new BalanceChart(el, {
        onPick: (date, final) => {
          $('#tt-input').value = localInputValue(date);
          if (final) this.travel(date);
          else this.travelSoon(date);
        },
        onHover: (p) => this.renderReadout(p),
      });
      this.chart.accountId = a.account_id;
    }
    const points = lines.slice().reverse().map((l) => ({ t: new Date(l.timestamp).getTime(), balance: l.balance_after, label: l }));
    const end = Math.max(Date.now(), points.length ? points[points.length - 1].t : 0);
    this.chart.setData(points, end).then(() => {
      if (this.tt) this.chart.setMarker(this.tt.date.getTime());
    });
    const first = points[0];
    const last = points[points.length - 1];
    el.setAttribute('aria-label', points.length
      ? `Balance of ${a.account_id} over time: ${points.length} change${points.length === 1 ? '' : 's'} from ${dateTime(first.t, { ms: false })}, ` +
        `starting at ${first.balance} and now ${a.balance} ${a.currency}.`
      : `No balance history for ${a.account_id}.`);
    this.renderChartHint();
  }

  renderReadout(p) {
    const el = $('#chart-desc');
    if (!this.detail) return;
    if (!p) {
      this.renderChartHint();
      return;
    }
    el.textContent = `${dateTime(p.t)} · ${lineName(p.label.type)} ${lineSign(p.label.type)}${p.label.amount} → balance ${p.balance} ${this.detail.account.currency}`;
  }

  renderChartHint() {
    const { lines, nextBefore } = this.detail;
    $('#chart-desc').textContent = (nextBefore ? `Showing the latest ${lines.length} transactions; load older ones below to extend the chart. ` : '') +
      'Click or drag on the chart to see the balance at that instant.';
  }

  travelFromInput() {
    const v = $('#tt-input').value;
    if (!v) {
      this.renderTravel({ error: 'Pick a date and time first.' });
      return;
    }
    const d = new Date(v); // a datetime-local value is local time
    if (Number.isNaN(d.getTime())) {
      this.renderTravel({ error: 'That is not a valid date and time.' });
      return;
    }
    this.travel(d);
  }

  travelSoon = debounce((d) => this.travel(d), 150);

  /** Shows the balance at instant date (iso, when given, is the exact instant to ask for:
   * a statement line's nanosecond timestamp). */
  async travel(date, iso) {
    const d = this.detail;
    if (!d) return;
    const at = iso || date.toISOString();
    this.tt = { date, iso: at };
    $('#tt-input').value = localInputValue(date);
    if (this.chart) this.chart.setMarker(date.getTime());
    const seq = ++this.ttSeq;
    $('#tt-result').dataset.state = 'loading';
    try {
      const res = await api.balanceAt(d.account.account_id, at);
      if (seq !== this.ttSeq) return;
      this.renderTravel({ res, date });
    } catch (err) {
      if (seq !== this.ttSeq) return;
      if (err instanceof ApiError && err.status === 404 && err.code === 'account_not_found') this.renderTravel({ missing: true, date });
      else this.renderTravel({ error: err.message });
    }
  }

  renderTravel({ res, date, missing, error }) {
    const out = $('#tt-result');
    const id = this.detail ? this.detail.account.account_id : '';
    if (error) {
      out.dataset.state = 'error';
      replace(out, h('span', { class: 'error-text' }, error));
      return;
    }
    for (const tr of document.querySelectorAll('#statement-rows tr.tt-current')) tr.classList.remove('tt-current');
    if (missing) {
      out.dataset.state = 'missing';
      replace(out, h('span', { class: 'tt-balance muted' }, 'Account did not exist yet'),
        h('span', { class: 'tt-meta' }, `${id} was opened after ${dateTime(date)}.`));
      return;
    }
    out.dataset.state = 'ok';
    for (const tr of document.querySelectorAll('#statement-rows tr')) {
      tr.classList.toggle('tt-current', Number(tr.dataset.position) === res.position);
    }
    replace(out,
      h('span', { class: 'tt-balance' }, res.balance, ' ', h('span', { class: 'currency' }, res.currency)),
      h('span', { class: 'tt-meta' }, `Balance of ${id} at ${dateTime(date)}`,
        res.position ? ` · after position ${res.position}, committed ${dateTime(res.as_of)}` : ''));
  }
}

/** "10:01:28.774" as text with the milliseconds in their own span (hidden on phones). */
function withMillis(t) {
  const dot = t.lastIndexOf('.');
  return dot < 0 ? t : [t.slice(0, dot), h('span', { class: 'ms' }, t.slice(dot))];
}

function clockIcon() {
  return s('svg', { class: 'icon', viewBox: '0 0 20 20', 'aria-hidden': 'true', focusable: 'false' },
    s('circle', { cx: '10', cy: '10', r: '7', fill: 'none', stroke: 'currentColor', 'stroke-width': '1.6' }),
    s('path', { d: 'M10 6v4l3 2', fill: 'none', stroke: 'currentColor', 'stroke-width': '1.6', 'stroke-linecap': 'round' }));
}
