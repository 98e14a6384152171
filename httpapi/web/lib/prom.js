// Prometheus text exposition format (version 0.0.4, and the OpenMetrics text the same
// server may send): a small parser for what the overview reads from GET /metrics, and
// rates from two successive scrapes. It never throws on input: a line it cannot read is
// skipped, so one odd metric cannot blank the page.

const NAME = /^[a-zA-Z_:][a-zA-Z0-9_:]*/;
const LABEL = /^[a-zA-Z_][a-zA-Z0-9_]*/;
const MAX_LINES = 200000; // a node's exposition is a few thousand lines

/** Parses a sample value: a float, NaN, +Inf or -Inf; null when it is none. */
export function parseValue(text) {
  switch (text) {
    case 'NaN': return NaN;
    case '+Inf': case 'Inf': return Infinity;
    case '-Inf': return -Infinity;
    default:
      if (!/^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$/.test(text)) return null;
      return Number(text);
  }
}

/**
 * Parses one sample line: {name, labels, value}, or null for a comment, a blank line or
 * a line that is not a sample.
 */
export function parseLine(line) {
  const s = line.trim();
  if (s === '' || s[0] === '#') return null;
  const m = NAME.exec(s);
  if (!m) return null;
  const name = m[0];
  let i = name.length;
  const labels = {};
  let j = i;
  while (s[j] === ' ' || s[j] === '\t') j++;
  if (s[j] === '{') {
    i = j;
    i++;
    for (;;) {
      while (s[i] === ' ' || s[i] === '\t') i++;
      if (s[i] === '}') { i++; break; }
      const lm = LABEL.exec(s.slice(i));
      if (!lm) return null;
      const key = lm[0];
      i += key.length;
      while (s[i] === ' ') i++;
      if (s[i] !== '=') return null;
      i++;
      while (s[i] === ' ') i++;
      if (s[i] !== '"') return null;
      i++;
      let value = '';
      for (;;) {
        if (i >= s.length) return null; // unterminated
        const c = s[i++];
        if (c === '"') break;
        if (c === '\\') {
          const e = s[i++];
          if (e === 'n') value += '\n';
          else if (e === '\\' || e === '"') value += e;
          else return null;
        } else {
          value += c;
        }
      }
      labels[key] = value;
      while (s[i] === ' ') i++;
      if (s[i] === ',') { i++; continue; }
      if (s[i] === '}') { i++; break; }
      return null;
    }
  }
  if (s[i] !== ' ' && s[i] !== '\t') return null;
  const rest = s.slice(i).trim().split(/[ \t]+/); // value [timestamp]
  if (rest.length < 1 || rest.length > 2) return null;
  const value = parseValue(rest[0]);
  if (value === null) return null;
  return { name, labels, value };
}

/** Parses a whole exposition into its samples, in order. */
export function parseMetrics(text) {
  const out = [];
  if (typeof text !== 'string') return out;
  const lines = text.split(/\r?\n/, MAX_LINES);
  for (const line of lines) {
    const sample = parseLine(line);
    if (sample) out.push(sample);
  }
  return out;
}

/**
 * The series of one counter, keyed by their labels (sorted, so the key is stable):
 * Map<key, {labels, value}>. Accepts the name with or without _total, as the
 * exposition and OpenMetrics name counters differently.
 */
export function counterSeries(samples, name) {
  const base = name.endsWith('_total') ? name.slice(0, -'_total'.length) : name;
  const out = new Map();
  for (const s of samples) {
    if (s.name !== base + '_total' && s.name !== base) continue;
    if (!Number.isFinite(s.value) || s.value < 0) continue;
    const key = Object.keys(s.labels).sort().map((k) => `${k}=${JSON.stringify(s.labels[k])}`).join(',');
    out.set(key, { labels: s.labels, value: s.value });
  }
  return out;
}

/**
 * Per-second rates of each series between two scrapes seconds apart: a series that went
 * down was reset (the node restarted), so its whole new value counts; a series not seen
 * before counts from zero only when prev exists (a command type used for the first time).
 * Returns Map<key, {labels, value, rate}>.
 */
export function rates(prev, cur, seconds) {
  const out = new Map();
  for (const [key, s] of cur) {
    let rate = null;
    if (prev && seconds > 0) {
      const p = prev.get(key);
      const before = p ? p.value : 0;
      const delta = s.value >= before ? s.value - before : s.value;
      rate = delta / seconds;
    }
    out.set(key, { labels: s.labels, value: s.value, rate });
  }
  return out;
}

/**
 * Sums series by one label: Map<label value, {value, rate}> (rate null when any summed
 * series has none), sorted by label value. keep filters series by their labels.
 */
export function sumBy(series, label, keep = () => true) {
  const out = new Map();
  for (const s of series.values()) {
    if (!keep(s.labels)) continue;
    const k = s.labels[label] ?? '';
    const acc = out.get(k) || { value: 0, rate: 0 };
    acc.value += s.value;
    acc.rate = acc.rate === null || s.rate === null || s.rate === undefined ? null : acc.rate + s.rate;
    out.set(k, acc);
  }
  return new Map([...out.entries()].sort((a, b) => (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0)));
}
