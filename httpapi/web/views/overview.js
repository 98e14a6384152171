// The overview: money held per currency and the number of accounts (GET overview), and
// commands per second and errors by code from this node's Prometheus counters (GET
// metrics), refreshed every few seconds while the view is on screen and the tab is
// visible. Polling, not the event stream: totals and counters are not events, and a
// poll recovers from anything by itself.

import { api, ApiError, url, authHeaders, token } from '../lib/api.js';
import { h, $, replace } from '../lib/dom.js';
import { number, dateTime } from '../lib/format.js';
import { parseMetrics, counterSeries, rates, sumBy } from '../lib/prom.js';

export const REFRESH_MS = 5000;
// A node without /metrics gets it only by a restart: ask again once a minute, not at
// every refresh (each 404 is a line in the browser's console).
const METRICS_OFF_RECHECK_MS = 60000;
const COMMANDS = 'chronicle_commands_total';

/** A rate as people read it: "12.5/s", "0/s", "—" before there are two scrapes. */
function perSecond(r) {
  if (r === null || r === undefined || !Number.isFinite(r)) return '—';
  if (r === 0) return '0/s';
  if (r < 0.1) return '< 0.1/s';
  return `${r >= 100 ? Math.round(r).toLocaleString('en-US') : r.toFixed(1)}/s`;
}

export class OverviewView {
  constructor() {
    this.visible = false;
    this.timer = 0;
    this.busy = false;
    this.prev = null; // the last scrape: {at, series}
    this.metricsState = 'unknown'; // on | off | forbidden | error
    this.metricsOffUntil = 0; // performance.now() before which a 404 is assumed
    // A hidden tab polls nothing: the timer stops, and showing the tab reads at once.
    document.addEventListener('visibilitychange', () => {
      if (!this.visible) return;
      if (document.hidden) this.pause();
      else this.tick();
    });
  }

  show() {
    if (this.visible) return;
    this.visible = true;
    this.tick();
  }

  hide() {
    this.visible = false;
    this.pause();
  }

  pause() {
    clearTimeout(this.timer);
    this.timer = 0;
    this.prev = null; // a rate across the pause would be an average over it
    $('#overview-updated').dataset.polling = 'paused';
  }

  reauth() {
    this.prev = null;
    this.metricsOffUntil = 0;
    if (this.visible) this.tick();
  }

  async tick() {
    clearTimeout(this.timer);
    if (!this.visible) return;
    if (!this.busy && !document.hidden) {
      this.busy = true;
      try {
        await Promise.all([this.refreshTotals(), this.refreshMetrics()]);
        $('#overview-updated').textContent = `Updated ${dateTime(new Date(), { ms: false }).slice(11)}`;
      } finally {
        this.busy = false;
      }
    }
    // Hidden tab or another view: no timer; visibilitychange or show() starts again.
    if (this.visible && !document.hidden) {
      this.timer = setTimeout(() => this.tick(), REFRESH_MS);
      $('#overview-updated').dataset.polling = 'on';
    } else {
      this.pause();
    }
  }

  async refreshTotals() {
    const root = $('#overview-money');
    try {
      const o = await api.overview();
      $('#overview-accounts').textContent = number(o.accounts);
      $('#overview-position').textContent = `as of log position ${number(o.position)}${o.scanned ? ' (recounted every 10 s)' : ''}`;
      const rows = (o.currencies || []).map((c) => h('tr', { dataset: { currency: c.currency } },
        h('th', { scope: 'row' }, c.currency),
        h('td', { class: `num${c.total.startsWith('-') ? ' warn-text' : ''}` }, c.total)));
      replace($('#overview-money-rows'), rows);
      $('#overview-money-empty').hidden = rows.length > 0;
      root.dataset.state = 'ok';
    } catch (err) {
      root.dataset.state = 'error';
      $('#overview-accounts').textContent = '—';
      $('#overview-position').textContent = err instanceof ApiError && err.status === 401 ? 'needs a token' : `could not load: ${err.message}`;
    }
  }

  // GET metrics answers the Prometheus text format, not JSON, so it is fetched here
  // rather than through api.get. 404: the node has no metrics (an older build, or
  // metrics turned off); that is a state to show, not an error.
  async fetchMetrics() {
    const sent = token();
    let res;
    try {
      res = await fetch(url('metrics'), { cache: 'no-store', headers: { Accept: 'text/plain', ...authHeaders(sent) } });
    } catch {
      return { state: 'error', detail: 'the node did not answer' };
    }
    if (res.status === 404) return { state: 'off' };
    // Not a reason to ask for another token (nor to forget this one): the overview's
    // own request says whether the token is good; /metrics may want another role.
    if (res.status === 401) return { state: 'forbidden', detail: sent ? 'this token may not read metrics' : 'needs a token' };
    if (res.status === 403) return { state: 'forbidden', detail: 'this token may not read metrics' };
    if (!res.ok) return { state: 'error', detail: `HTTP ${res.status}` };
    return { state: 'on', text: await res.text() };
  }

  async refreshMetrics() {
    let m;
    if (this.metricsState === 'off' && performance.now() < this.metricsOffUntil) {
      m = { state: 'off' };
    } else {
      m = await this.fetchMetrics();
      if (m.state === 'off') this.metricsOffUntil = performance.now() + METRICS_OFF_RECHECK_MS;
    }
    const root = $('#overview-metrics');
    root.dataset.state = m.state;
    this.metricsState = m.state;
    if (m.state !== 'on') {
      this.prev = null;
      const text = m.state === 'off'
        ? 'metrics off — this node serves no /metrics (metrics disabled, or a build without them)'
        : `metrics unavailable: ${m.detail}`;
      $('#overview-rate').textContent = m.state === 'off' ? 'metrics off' : '—';
      $('#overview-rate-note').textContent = text;
      replace($('#overview-type-rows'));
      replace($('#overview-error-rows'));
      $('#overview-type-table').hidden = true;
      $('#overview-error-table').hidden = true;
      $('#overview-errors-empty').textContent = m.state === 'off' ? 'metrics off' : text;
      $('#overview-errors-empty').hidden = false;
      return;
    }
    const now = performance.now();
    const series = counterSeries(parseMetrics(m.text), COMMANDS);
    const seconds = this.prev ? (now - this.prev.at) / 1000 : 0;
    const withRates = rates(this.prev && this.prev.series, series, seconds);
    this.prev = { at: now, series };

    const all = sumBy(withRates, '__all__');
    const total = all.get('') || { value: 0, rate: 0 };
    $('#overview-rate').textContent = perSecond(seconds ? total.rate : null);
    $('#overview-rate-note').textContent = seconds
      ? `${number(total.value)} commands since this node started; rate over the last ${seconds.toFixed(1)} s`
      : `${number(total.value)} commands since this node started; the rate needs a second reading`;

    // Types never sent since the node started (their series exist from the start) stay out.
    replace($('#overview-type-rows'), [...sumBy(withRates, 'type').entries()].filter(([, s]) => s.value > 0).map(([type, s]) =>
      h('tr', { dataset: { type } }, h('th', { scope: 'row' }, type), h('td', { class: 'num' }, perSecond(seconds ? s.rate : null)), h('td', { class: 'num' }, number(s.value)))));

    const errors = [...sumBy(withRates, 'code', (l) => l.code !== 'ok').entries()].filter(([, s]) => s.value > 0);
    replace($('#overview-error-rows'), errors.map(([code, s]) =>
      h('tr', { dataset: { code } }, h('th', { scope: 'row' }, h('code', null, code)), h('td', { class: 'num' }, perSecond(seconds ? s.rate : null)), h('td', { class: 'num' }, number(s.value)))));
    $('#overview-errors-empty').textContent = 'No refused commands since this node started.';
    $('#overview-errors-empty').hidden = errors.length > 0;
    $('#overview-type-table').hidden = $('#overview-type-rows').children.length === 0;
    $('#overview-error-table').hidden = errors.length === 0;
  }
}
