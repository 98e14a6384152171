// Formatting. Money stays the decimal string the API sent: it is shown as is and never
// turned into a number (only the chart does that, to plot).

const pad = (n, w = 2) => String(n).padStart(w, '0');

/** "2026-01-02 15:04:05.123" in local time. */
export function dateTime(value, { ms = true } = {}) {
  const d = value instanceof Date ? value : new Date(value);
  if (Number.isNaN(d.getTime())) return String(value);
  const base = `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`;
  return ms ? `${base}.${pad(d.getMilliseconds(), 3)}` : base;
}

/** Time of day when value is today, else the date and time. */
export function shortTime(value) {
  const d = new Date(value);
  if (Number.isNaN(d.getTime())) return String(value);
  const now = new Date();
  const t = `${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}.${pad(d.getMilliseconds(), 3)}`;
  if (d.toDateString() === now.toDateString()) return t;
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ${t}`;
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
