// The event log: the newest page of the log, then live events from the feed; pause,
// filters, expandable rows with the event's JSON, and paging back through history.

import { api, ApiError } from '../lib/api.js';
import { h, s, $, replace, copyText, toast, debounce } from '../lib/dom.js';
import { shortTime, dateTime, shortHash, money } from '../lib/format.js';
import { highlight } from '../lib/json.js';
import { feed } from '../lib/feed.js';

const PAGE = 100;
const MAX_LOADED = 5000;

const STATE_TEXT = {
  idle: 'Starting…',
  connecting: 'Connecting…',
  live: 'Live',
  reconnecting: 'Reconnecting…',
  polling: 'Live (polling)',
  offline: 'Offline — retrying',
  unauthorized: 'Needs a token',
};

export class EventsView {
  constructor() {
    this.events = []; // newest first
    this.rows = new Map(); // position -> li
    this.pending = []; // arrived while paused, oldest first
    this.paused = false;
    this.oldest = 0;
    this.hasOlder = false;
    this.filter = { type: '', account: '', text: '' };
    this.announce = [];
    this.announceTimer = 0;
    this.loaded = false;
    this.needsAuth = false; // the first page was refused for want of a token

    this.list = $('#event-list');
    this.empty = $('#event-empty');
    this.count = $('#event-count');
    this.olderButton = $('#older-button');
    this.olderState = $('#older-state');
    this.pauseButton = $('#pause-button');
    this.liveState = $('#live-state');
    this.announcer = $('#event-announcer');

    const form = $('#event-filters');
    form.addEventListener('submit', (e) => e.preventDefault());
    $('#filter-type').addEventListener('change', () => this.readFilters());
    const onText = debounce(() => this.readFilters(), 120);
    $('#filter-account').addEventListener('input', onText);
    $('#filter-text').addEventListener('input', onText);
    this.pauseButton.addEventListener('click', () => this.setPaused(!this.paused));
    this.olderButton.addEventListener('click', () => this.loadOlder());

    feed.addEventListener('state', (e) => this.renderState(e.detail.state));
    feed.addEventListener('events', (e) => this.onLive(e.detail));
  }

  async start() {
    this.renderState('idle');
    let cursor = 0;
    try {
      const page = await api.events({ order: 'desc', limit: PAGE });
      const events = page.events || [];
      this.events = events;
      this.oldest = events.length ? events[events.length - 1].position : 0;
      this.hasOlder = events.length === PAGE && this.oldest > 1;
      cursor = events.length ? events[0].position : 0;
      this.list.append(...events.map((ev) => this.row(ev)));
    } catch (err) {
      if (err instanceof ApiError && err.status === 401) {
        this.needsAuth = true; // the token prompt is up; reauth() starts again
        this.renderState('unauthorized');
        return;
      }
      this.showEmpty(`Could not load the log: ${err.message}`);
    }
    this.loaded = true;
    this.applyFilters();
    performance.mark('chronicle:first-data');
    document.documentElement.dataset.eventsLoaded = 'true';
    feed.start(cursor);
  }

  /** A token was entered: load what a 401 refused. */
  reauth() {
    if (this.needsAuth) {
      this.needsAuth = false;
      this.start();
    } else {
      feed.resume();
    }
  }

  show(params) {
    if (params.has('account')) {
      $('#filter-account').value = params.get('account');
      this.readFilters();
    }
  }

  readFilters() {
    this.filter = {
      type: $('#filter-type').value,
      account: $('#filter-account').value.trim().toLowerCase(),
      text: $('#filter-text').value.trim().toLowerCase(),
    };
    this.applyFilters();
  }

  matches(ev) {
    const f = this.filter;
    if (f.type && ev.event_type !== f.type) return false;
    if (f.account && !String(ev.aggregate_id).toLowerCase().includes(f.account)) return false;
    if (f.text) {
      if (ev._text === undefined) ev._text = JSON.stringify(ev).toLowerCase();
      if (!ev._text.includes(f.text)) return false;
    }
    return true;
  }

  applyFilters() {
    let shown = 0;
    for (const ev of this.events) {
      const li = this.rows.get(ev.position);
      const ok = this.matches(ev);
      if (li) li.hidden = !ok;
      if (ok) shown++;
    }
    this.renderCount(shown);
  }

  filtering() {
    const f = this.filter;
    return Boolean(f.type || f.account || f.text);
  }

  renderCount(shown) {
    if (shown === undefined) shown = this.events.filter((ev) => this.matches(ev)).length;
    const total = this.events.length;
    this.count.textContent = this.filtering()
      ? `${shown} of ${total} loaded events match`
      : `${total} event${total === 1 ? '' : 's'} loaded`;
    if (!this.loaded) return;
    if (total === 0) {
      this.showEmpty('No events yet. Open an account on the Commands page and it appears here at once.');
    } else if (shown === 0) {
      this.showEmpty(this.hasOlder ? 'No loaded event matches. Load older events to search further back.' : 'No event matches the filters.');
    } else {
      this.empty.hidden = true;
    }
    this.olderButton.hidden = !this.hasOlder;
    this.olderState.textContent = this.hasOlder ? '' : total ? 'This is the beginning of the log.' : '';
  }

  showEmpty(text) {
    this.empty.textContent = text;
    this.empty.hidden = false;
  }

  renderState(state) {
    const shown = this.paused && (state === 'live' || state === 'polling') ? 'paused' : state;
    this.liveState.dataset.state = shown;
    $('.live-text', this.liveState).textContent = shown === 'paused' ? `Paused${this.pending.length ? ` · ${this.pending.length} new` : ''}` : STATE_TEXT[state] || state;
  }

  setPaused(paused) {
    this.paused = paused;
    this.pauseButton.setAttribute('aria-pressed', String(paused));
    this.pauseButton.textContent = paused ? 'Resume' : 'Pause';
    if (!paused && this.pending.length) {
      const pending = this.pending;
      this.pending = [];
      this.insertNew(pending);
    }
    this.renderState(feed.state);
  }

  onLive(events) {
    if (!this.loaded) return;
    if (this.paused) {
      this.pending.push(...events);
      this.renderState(feed.state);
      return;
    }
    this.insertNew(events);
  }

  insertNew(events) {
    // events are oldest first; the list is newest first
    const fresh = events.filter((ev) => !this.rows.has(ev.position));
    if (!fresh.length) return;
    const rows = fresh.map((ev) => {
      const li = this.row(ev);
      li.classList.add('is-new'); // a short highlight, once
      li.addEventListener('animationend', () => li.classList.remove('is-new'), { once: true });
      li.hidden = !this.matches(ev);
      return li;
    });
    this.list.prepend(...rows.reverse());
    this.events.unshift(...fresh.slice().reverse());
    this.trim();
    this.renderCount();
    const visible = fresh.filter((ev) => this.matches(ev));
    if (visible.length) this.queueAnnouncement(visible);
  }

  trim() {
    while (this.events.length > MAX_LOADED) {
      const ev = this.events.pop();
      this.rows.get(ev.position)?.remove();
      this.rows.delete(ev.position);
      this.hasOlder = true;
    }
    if (this.events.length) this.oldest = this.events[this.events.length - 1].position;
  }

  queueAnnouncement(events) {
    this.announce.push(...events);
    if (this.announceTimer) return;
    this.announceTimer = setTimeout(() => {
      const list = this.announce;
      this.announce = [];
      this.announceTimer = 0;
      const last = list[list.length - 1];
      this.announcer.textContent = list.length === 1
        ? `New event at position ${last.position}: ${last.event_type} on ${last.aggregate_id}`
        : `${list.length} new events, latest at position ${last.position}: ${last.event_type} on ${last.aggregate_id}`;
    }, 1200);
  }

  async loadOlder() {
    if (!this.hasOlder || this.olderButton.disabled) return;
    this.olderButton.disabled = true;
    this.olderState.textContent = 'Loading…';
    try {
      const page = await api.events({ order: 'desc', after: this.oldest, limit: PAGE });
      const events = (page.events || []).filter((ev) => !this.rows.has(ev.position));
      this.events.push(...events);
      for (const ev of events) {
        const li = this.row(ev);
        li.hidden = !this.matches(ev);
        this.list.append(li);
      }
      if (events.length) this.oldest = events[events.length - 1].position;
      this.hasOlder = (page.events || []).length === PAGE && this.oldest > 1;
      this.olderState.textContent = '';
      this.renderCount();
    } catch (err) {
      this.olderState.textContent = `Could not load older events: ${err instanceof ApiError ? err.message : err}`;
    } finally {
      this.olderButton.disabled = false;
    }
  }

  row(ev) {
    const id = `ev-${ev.position}`;
    const toggle = h('button', {
      type: 'button', class: 'event-toggle', 'aria-expanded': 'false', 'aria-controls': `${id}-details`,
    },
    h('span', { class: 'ev-pos' }, h('span', { class: 'visually-hidden' }, 'Position '), `#${ev.position}`),
    h('span', { class: `badge type-${ev.event_type}` }, ev.event_type),
    h('span', { class: 'ev-agg' }, ev.aggregate_id),
    h('span', { class: 'ev-summary' }, summary(ev)),
    h('time', { class: 'ev-time', datetime: ev.created_at, title: ev.created_at }, shortTime(ev.created_at)),
    h('span', { class: 'ev-hash', title: `hash ${ev.hash}` }, h('span', { class: 'visually-hidden' }, 'hash '), shortHash(ev.hash)),
    chevron());
    const details = h('div', { class: 'event-details', id: `${id}-details`, hidden: true });
    const li = h('li', {
      class: 'event', id, dataset: { position: String(ev.position), type: ev.event_type, aggregate: ev.aggregate_id },
    }, toggle, details);
    toggle.addEventListener('click', () => {
      const open = toggle.getAttribute('aria-expanded') !== 'true';
      if (open && !details.firstChild) this.fillDetails(details, ev);
      toggle.setAttribute('aria-expanded', String(open));
      details.hidden = !open;
      li.classList.toggle('open', open);
    });
    this.rows.set(ev.position, li);
    return li;
  }

  fillDetails(el, ev) {
    const { _text, ...clean } = ev;
    const json = JSON.stringify(clean, null, 2);
    const d = ev.event_data || {};
    const links = [h('a', { href: `#/accounts/${encodeURIComponent(ev.aggregate_id)}` }, `Open account ${ev.aggregate_id}`)];
    if (d.counterparty && !String(d.counterparty).startsWith('@')) {
      links.push(h('a', { href: `#/accounts/${encodeURIComponent(d.counterparty)}` }, `Open account ${d.counterparty}`));
    }
    const copy = h('button', { type: 'button', class: 'button small' }, copyIcon(), 'Copy JSON');
    copy.addEventListener('click', async () => {
      const ok = await copyText(json);
      toast(ok ? `Event ${ev.position} copied to the clipboard` : 'Could not copy: select the JSON and copy it', ok ? 'ok' : 'error');
    });
    replace(el,
      h('dl', { class: 'kv' },
        kv('Event ID', ev.event_id, 'mono'),
        kv('Committed', [dateTime(ev.created_at), ' ', h('span', { class: 'muted' }, `(${ev.created_at})`)]),
        kv('Aggregate', `${ev.aggregate_type} ${ev.aggregate_id}, version ${ev.event_version}`),
        kv('Hash', ev.hash, 'mono break'),
        kv('Previous hash', ev.prev_hash, 'mono break')),
      h('div', { class: 'detail-actions' }, copy, ...links),
      h('pre', { class: 'json', tabindex: '0', 'aria-label': `JSON of event ${ev.position}` }, h('code', null, highlight(clean))));
  }
}

function kv(label, value, cls) {
  return h('div', null, h('dt', null, label), h('dd', { class: cls }, value));
}

function party(cp) {
  if (!cp) return '';
  return String(cp).startsWith('@') ? '' : cp;
}

/** One line describing an event's effect, from its payload (as text). */
export function summary(ev) {
  const d = ev.event_data || {};
  const desc = d.description ? h('span', { class: 'ev-desc' }, ` “${d.description}”`) : null;
  const bal = d.balance_after !== undefined ? h('span', { class: 'ev-bal' }, ` · balance ${d.balance_after}`) : null;
  switch (ev.event_type) {
    case 'AccountCreated':
      return [h('span', { class: 'ev-owner' }, d.owner_name), ` opened with ${money(d.initial_balance || '0', d.currency)}`,
        d.overdraft_limit ? ` · overdraft ${d.overdraft_limit}` : '', desc];
    case 'MoneyDeposited': {
      const from = party(d.counterparty);
      return [h('span', { class: 'amount plus' }, `+${money(d.amount, d.currency)}`), from ? ` from ${from}` : ' deposit', desc, bal];
    }
    case 'MoneyWithdrawn': {
      const to = party(d.counterparty);
      return [h('span', { class: 'amount minus' }, `−${money(d.amount, d.currency)}`), to ? ` to ${to}` : ' withdrawal', desc, bal];
    }
    // Account lifecycle: a status change, its reason, the unchanged balance.
    case 'AccountFrozen':
    case 'AccountUnfrozen':
    case 'AccountClosed': {
      const what = { AccountFrozen: 'frozen', AccountUnfrozen: 'unfrozen', AccountClosed: 'closed' }[ev.event_type];
      const reason = d.reason ? h('span', { class: 'ev-desc' }, ` “${d.reason}”`) : null;
      return [h('span', { class: `status status-${what === 'unfrozen' ? 'active' : what}` }, what), reason, bal];
    }
    // Two-phase transfers.
    case 'TransferPending':
      return [h('span', { class: 'amount' }, `hold ${money(d.amount, d.currency)}`), ` for ${d.to_account_id}`,
        d.expires_at ? ` · expires ${d.expires_at}` : '', desc, ` · held ${d.held_after || '0'}`, bal];
    case 'TransferCaptured':
      return ev.aggregate_id === d.from_account_id
        ? [h('span', { class: 'amount minus' }, `−${money(d.amount, d.currency)}`), ` captured to ${d.to_account_id}`, desc, ` · held ${d.held_after || '0'}`, bal]
        : [h('span', { class: 'amount plus' }, `+${money(d.amount, d.currency)}`), ` captured from ${d.from_account_id}`, desc, bal];
    case 'TransferVoided':
    case 'TransferExpired':
      return [`${ev.event_type === 'TransferVoided' ? 'released' : 'expired'} hold of ${money(d.amount, d.currency)}`,
        d.reason ? ` (${d.reason})` : '', ` · held ${d.held_after || '0'}`, bal];
    default:
      return JSON.stringify(d).slice(0, 160);
  }
}

function chevron() {
  return s('svg', { class: 'chevron', viewBox: '0 0 20 20', 'aria-hidden': 'true', focusable: 'false' },
    s('path', { d: 'M6 8l4 4 4-4', fill: 'none', stroke: 'currentColor', 'stroke-width': '2', 'stroke-linecap': 'round', 'stroke-linejoin': 'round' }));
}

function copyIcon() {
  return s('svg', { class: 'icon', viewBox: '0 0 20 20', 'aria-hidden': 'true', focusable: 'false' },
    s('rect', { x: '7', y: '7', width: '10', height: '10', rx: '2', fill: 'none', stroke: 'currentColor', 'stroke-width': '1.6' }),
    s('path', { d: 'M13 7V5a2 2 0 0 0-2-2H5a2 2 0 0 0-2 2v6a2 2 0 0 0 2 2h2', fill: 'none', stroke: 'currentColor', 'stroke-width': '1.6' }));
}
