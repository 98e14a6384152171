// The HTTP API, by relative URL: resolved against document.baseURI, so the dashboard
// keeps working when a proxy serves the node under a path prefix.

export class ApiError extends Error {
  constructor(status, body, fallback) {
    super((body && body.error) || fallback || `HTTP ${status}`);
    this.status = status;
    this.code = (body && body.code) || (status === 0 ? 'network' : 'http_' + status);
    this.field = (body && body.field) || '';
    this.body = body;
  }
}

export function url(path) {
  return new URL(path, document.baseURI).href;
}

async function request(path, init = {}) {
  let res;
  try {
    res = await fetch(url(path), { cache: 'no-store', ...init, headers: { Accept: 'application/json', ...(init.headers || {}) } });
  } catch (err) {
    if (err && err.name === 'AbortError') throw err;
    throw new ApiError(0, null, 'The node did not answer (network error).');
  }
  let body = null;
  const text = await res.text();
  if (text) {
    try { body = JSON.parse(text); } catch { body = null; }
  }
  if (!res.ok) throw new ApiError(res.status, body, res.statusText);
  return { body, status: res.status, headers: res.headers };
}

export async function get(path, opts) {
  return (await request(path, opts)).body;
}

/** Encodes an account id as one path segment. */
export function seg(id) {
  return encodeURIComponent(id);
}

/**
 * Posts a command. The Idempotency-Key makes a repeat of the same submission (double
 * click, retry after a timeout) answer the first result instead of posting twice.
 */
export async function command(name, payload, idempotencyKey) {
  const { body, status } = await request(`commands/${name}`, {
    method: 'POST',
    headers: { 'Content-Type': 'application/json', 'Idempotency-Key': idempotencyKey },
    body: JSON.stringify(payload),
  });
  return { ...body, status };
}

export const api = {
  events: (q) => get('events?' + new URLSearchParams(q)),
  accounts: (q) => get('accounts?' + new URLSearchParams(q)),
  account: (id, q) => get(`accounts/${seg(id)}` + (q ? '?' + new URLSearchParams(q) : '')),
  transactions: (id, q) => get(`accounts/${seg(id)}/transactions?` + new URLSearchParams(q)),
  balanceAt: (id, ts) => get(`accounts/${seg(id)}/balance-at?` + new URLSearchParams({ timestamp: ts })),
  ready: async () => {
    // /ready answers 503 with the same body while the node is not ready.
    try {
      return await get('ready');
    } catch (err) {
      if (err instanceof ApiError && err.status === 503 && err.body) return err.body;
      throw err;
    }
  },
  health: () => get('health'),
  cluster: () => get('cluster'),
};
