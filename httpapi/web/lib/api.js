// The HTTP API, by relative URL: resolved against document.baseURI, so the dashboard
// keeps working when a proxy serves the node under a path prefix.
//
// A node with API tokens answers 401 without one. The token the user enters is kept in
// sessionStorage only (this tab, until it closes or the user signs out: never
// localStorage, a cookie or a URL) and sent as "Authorization: Bearer <token>" on every
// request. A 401 asks for a token through the `auth` events below; a node without
// tokens never answers 401, so the dashboard never asks there.

const TOKEN_KEY = 'chronicle-token';

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

// The token, read once from sessionStorage; the in-memory copy is what requests use.
let current = '';
try {
  current = sessionStorage.getItem(TOKEN_KEY) || '';
} catch { /* storage disabled: the token lasts as long as the page */ }

/**
 * auth dispatches 'required' ({detail: {message, refused}}) when the node wants a token
 * (refused: the token sent was refused, and is forgotten), and 'change' when a token is
 * set or forgotten.
 */
export const auth = new EventTarget();

export function hasToken() {
  return current !== '';
}

/** The current token ('' for none), for requests made outside this module. */
export function token() {
  return current;
}

/** The Authorization header for the current token, if any. */
export function authHeaders(token = current) {
  return token ? { Authorization: `Bearer ${token}` } : {};
}

/** Keeps token for this tab (sessionStorage only) and tells the views. */
export function setToken(token) {
  current = token;
  try { sessionStorage.setItem(TOKEN_KEY, token); } catch { /* memory only */ }
  auth.dispatchEvent(new CustomEvent('change', { detail: { signedIn: true } }));
}

/** Forgets the token. */
export function forgetToken() {
  current = '';
  try { sessionStorage.removeItem(TOKEN_KEY); } catch { /* nothing kept */ }
  auth.dispatchEvent(new CustomEvent('change', { detail: { signedIn: false } }));
}

/**
 * Reports a 401 for a request sent with token `sent`: the node wants a token (or another
 * one). A token refused by the node is forgotten, unless it has been replaced meanwhile.
 */
export function unauthorized(sent, body) {
  if (sent !== current) return; // the answer to a token since replaced (or entered)
  const refused = sent !== '';
  if (refused) {
    current = '';
    try { sessionStorage.removeItem(TOKEN_KEY); } catch { /* nothing kept */ }
  }
  const message = (body && body.error) || 'This node requires an API token.';
  auth.dispatchEvent(new CustomEvent('required', { detail: { message, refused } }));
}

async function request(path, init = {}) {
  const token = current;
  let res;
  try {
    res = await fetch(url(path), {
      cache: 'no-store',
      ...init,
      headers: { Accept: 'application/json', ...authHeaders(token), ...(init.headers || {}) },
    });
  } catch (err) {
    if (err && err.name === 'AbortError') throw err;
    throw new ApiError(0, null, 'The node did not answer (network error).');
  }
  let body = null;
  const text = await res.text();
  if (text) {
    try { body = JSON.parse(text); } catch { body = null; }
  }
  if (res.status === 401) unauthorized(token, body);
  if (!res.ok) {
    const err = new ApiError(res.status, body, res.statusText);
    err.retryAfter = Number(res.headers.get('Retry-After')) || 0;
    throw err;
  }
  return { body, status: res.status, headers: res.headers };
}

export async function get(path, opts) {
  return (await request(path, opts)).body;
}

/**
 * Asks the node whether token is good for reading, without keeping it: resolves when it
 * is, rejects with the ApiError otherwise (401 for an unknown or revoked token).
 */
export async function checkToken(token) {
  let res;
  try {
    res = await fetch(url('events?limit=1&order=desc'), { cache: 'no-store', headers: { Accept: 'application/json', ...authHeaders(token) } });
  } catch {
    throw new ApiError(0, null, 'The node did not answer (network error).');
  }
  if (res.ok) return;
  let body = null;
  try { body = await res.json(); } catch { body = null; }
  const err = new ApiError(res.status, body, res.statusText);
  err.retryAfter = Number(res.headers.get('Retry-After')) || 0;
  throw err;
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
  overview: () => get('overview'),
};
