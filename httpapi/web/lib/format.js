// Formatting. Money stays the decimal string the API sent: it is shown as is and never
// turned into a number (only the chart does that, to plot).

const pad = (n, w = 2) => String(n).padStart(w, '0');

// Times: always the date, the time and the zone, in the browser's time zone, e.g.
// "2026-11-30 14:31:07.123 UTC" or "2026-11-30 09:31:07.123 EST" — one format everywhere
// (event log, statements, account facts, time travel), so no time is read in the wrong zone.

/** The browser's short name for its zone at d ("UTC", "CET", "EST", or "GMT+5:30"). */
export function zoneName(d) {
  try {
    const part = new Intl.DateTimeFormat('en-US', { timeZoneName: 'short' }).formatToParts(d).find((p) => p.type === 'timeZoneName');
    if (part && part.value) return part.value === 'GMT' && d.getTimezoneOffset() === 0 ? 'UTC' : part.value;
  } catch { /* no Intl: fall back to the offset */ }
  const off = -d.getTimezoneOffset();
  if (off === 0) return 'UTC';
  const a = Math.abs(off);
  return `UTC${off < 0 ? '−' : '+'}${pad(Math.floor(a / 60))}:${pad(a % 60)}`;
}

/** "2026-01-02 15:04:05.123 UTC": the date, the time and the zone, in local time. */
export function dateTime(value, { ms = true, zone = true } = {}) {
  const d = value instanceof Date ? value : new Date(value);
  if (Number.isNaN(d.getTime())) return String(value);
  let s = `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`;
  if (ms) s += `.${pad(d.getMilliseconds(), 3)}`;
  return zone ? `${s} ${zoneName(d)}` : s;
}

/** An event's or a statement line's time: the full dateTime, date and zone included (a
 * time of day alone was misread across midnight and across zones). */
export function shortTime(value) {
  return dateTime(value);
}

/** The value of a datetime-local input with seconds, in local time. */
export function localInputValue(d) {
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())}T${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`;
}

/** "3 s ago", "5 min ago". */
export function ago(value) {
  const s = Math.round((Date.now() - new Date(value).getTime()) / 1000);
  if (!Number.isFinite(s)) return '';
  if (s < 2) return 'just now';
  if (s < 60) return `${s} s ago`;
  if (s < 3600) return `${Math.floor(s / 60)} min ago`;
  if (s < 86400) return `${Math.floor(s / 3600)} h ago`;
  return `${Math.floor(s / 86400)} d ago`;
}

export function money(amount, currency) {
  if (amount === undefined || amount === null || amount === '') return '—';
  return currency ? `${amount} ${currency}` : String(amount);
}

/** The sign a statement line or event moves the balance by. */
export function lineSign(type) {
  switch (type) {
    case 'opening_balance':
    case 'deposit':
    case 'transfer_in':
    case 'MoneyDeposited':
    case 'AccountCreated':
      return '+';
    case 'withdrawal':
    case 'transfer_out':
    case 'MoneyWithdrawn':
      return '−';
    default:
      return '';
  }
}

const LINE_NAMES = {
  opening_balance: 'Opening balance',
  deposit: 'Deposit',
  withdrawal: 'Withdrawal',
  transfer_in: 'Transfer in',
  transfer_out: 'Transfer out',
  account_frozen: 'Frozen',
  account_unfrozen: 'Unfrozen',
  account_closed: 'Closed',
  // Two-phase transfers: a hold and its release leave the balance as it was.
  hold: 'Hold',
  hold_voided: 'Hold voided',
  hold_expired: 'Hold expired',
};
export const lineName = (t) => LINE_NAMES[t] || t;

export const shortHash = (hash) => (hash ? hash.slice(0, 12) : '');

export function number(n) {
  if (n === undefined || n === null || n === '') return '—';
  return typeof n === 'number' ? n.toLocaleString('en-US') : String(n);
}

/** "1.2 s", "350 ms" from a Go duration string such as "1.234567ms", "1m2.5s" or "0";
 * anything else (e.g. "never") as it is. */
export function goDuration(str) {
  if (str === undefined || str === null || str === '') return '—';
  const raw = String(str);
  if (raw === '0' || raw === '0s') return '0 ms';
  const unit = { ns: 1e-6, us: 1e-3, 'µs': 1e-3, 'μs': 1e-3, ms: 1, s: 1000, m: 60000, h: 3600000 };
  const re = /(\d+(?:\.\d+)?)(ns|us|µs|μs|ms|s|m|h)/g;
  let ms = 0, matched = '';
  for (const m of raw.matchAll(re)) {
    ms += parseFloat(m[1]) * unit[m[2]];
    matched += m[0];
  }
  if (matched !== raw) return raw;
  if (ms < 1) return '< 1 ms';
  if (ms < 1000) return `${Math.round(ms)} ms`;
  if (ms < 120000) return `${(ms / 1000).toFixed(1)} s`;
  return `${Math.round(ms / 60000)} min`;
}
