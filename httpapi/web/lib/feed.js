// The live feed of committed events: one Server-Sent Events stream on events/stream for
// the whole page, read with fetch() so that it can carry the Authorization header (an
// EventSource cannot send one, and a token must never travel in a URL). It resumes by
// position (?after= and Last-Event-ID), falls back to polling events?after= when the
// stream keeps failing (a proxy that buffers or cuts long responses), and tries the
// stream again later. A 401 stops it until a token is entered.

import { api, auth, url, token, authHeaders, unauthorized } from './api.js';

const EVENT_TYPES = new Set(['AccountCreated', 'MoneyDeposited', 'MoneyWithdrawn', 'message',
  'AccountFrozen', 'AccountUnfrozen', 'AccountClosed']);
for (const t of ['TransferPending', 'TransferCaptured', 'TransferVoided', 'TransferExpired']) EVENT_TYPES.add(t); // two-phase transfers
const FAILURES_BEFORE_POLLING = 3;
const POLL_MS = 2000;
const STREAM_RETRY_MS = 30000;
const RECONNECT_MS = 2000; // until the stream's retry: field says otherwise

/**
 * Parses text/event-stream as the HTML standard says: lines end with CRLF, LF or CR;
 * `field: value` lines build an event (data lines joined with \n) that a blank line
 * dispatches; lines starting with ':' are comments (the server's heartbeats).
 */
export class EventStreamParser {
  constructor(onEvent) {
    this.onEvent = onEvent;
    this.buf = '';
    this.type = '';
    this.data = [];
    this.lastEventId = '';
    this.retry = 0;
  }

  /** Feeds decoded text; whole lines are processed, a partial one is kept. */
  push(text) {
    this.buf += text;
    const eol = /\r\n|\r|\n/g;
    let start = 0;
    let m;
    while ((m = eol.exec(this.buf))) {
      if (m[0] === '\r' && m.index === this.buf.length - 1) break; // may be half of a CRLF
      this.line(this.buf.slice(start, m.index));
      start = eol.lastIndex;
    }
    this.buf = this.buf.slice(start);
  }

  line(line) {
    if (line === '') {
      this.dispatch();
      return;
    }
    if (line[0] === ':') return;
    const colon = line.indexOf(':');
    const field = colon < 0 ? line : line.slice(0, colon);
    let value = colon < 0 ? '' : line.slice(colon + 1);
    if (value[0] === ' ') value = value.slice(1);
    switch (field) {
      case 'event': this.type = value; break;
      case 'data': this.data.push(value); break;
      case 'id': if (!value.includes('\0')) this.lastEventId = value; break;
      case 'retry': if (/^\d+$/.test(value)) this.retry = Number(value); break;
      default: // unknown fields are ignored
    }
  }

  dispatch() {
    const { type, data } = this;
    this.type = '';
    this.data = [];
    if (!data.length) return;
    this.onEvent({ type: type || 'message', data: data.join('\n'), lastEventId: this.lastEventId });
  }
}

export class Feed extends EventTarget {
  constructor() {
    super();
    this.cursor = 0; // highest position delivered
    this.state = 'idle';
    this.detail = '';
    this.failures = 0;
    this.stream = null; // the AbortController of the open (or opening) stream
    this.reconnectMs = RECONNECT_MS;
    this.batch = [];
    this.flushTimer = 0;
    this.pollTimer = 0;
    this.retryTimer = 0;
    this.polling = false;
    this.onMessage = this.onMessage.bind(this);
    // A 401 anywhere (a revoked token): stop streaming with it until a token is entered.
    auth.addEventListener('required', () => {
      if (this.state === 'idle' || this.state === 'unauthorized') return;
      this.stopPolling();
      this.closeStream();
      this.setState('unauthorized');
    });
  }

  /** Starts delivering events after position cursor. */
  start(cursor) {
    this.cursor = cursor;
    this.connect();
  }

  /** Reconnects with the token just entered, from the cursor (a started feed only). */
  resume() {
    if (this.state !== 'idle') this.connect();
  }

  setState(state, detail = '') {
    if (state === this.state && detail === this.detail) return;
    this.state = state;
    this.detail = detail;
    this.dispatchEvent(new CustomEvent('state', { detail: { state, detail } }));
  }

  closeStream() {
    if (this.stream) this.stream.abort();
    this.stream = null;
  }

  connect() {
    this.stopPolling();
    this.closeStream();
    this.setState('connecting');
    const ctrl = new AbortController();
    this.stream = ctrl;
    this.read(ctrl);
  }

  /** Opens the stream and reads it until it ends, then decides what comes next. */
  async read(ctrl) {
    const sent = token();
    let res;
    try {
      res = await fetch(url(`events/stream?after=${this.cursor}`), {
        cache: 'no-store',
        signal: ctrl.signal,
        headers: { Accept: 'text/event-stream', 'Last-Event-ID': String(this.cursor), ...authHeaders(sent) },
      });
    } catch {
      if (this.stream === ctrl) this.failed('network error');
      return;
    }
    if (this.stream !== ctrl) {
      ctrl.abort();
      return;
    }
    if (res.status === 401) {
      let body = null;
      try { body = await res.json(); } catch { body = null; }
      if (this.stream !== ctrl) return;
      this.stream = null;
      if (sent !== token()) { // the token changed while this one was refused
        this.connect();
        return;
      }
      this.setState('unauthorized', (body && body.error) || '');
      unauthorized(sent, body);
      return;
    }
    const type = res.headers.get('Content-Type') || '';
    if (!res.ok || !res.body || !type.startsWith('text/event-stream')) {
      ctrl.abort();
      // 429 rate_limited and 503 too_many_streams say when to come back.
      const wait = Number(res.headers.get('Retry-After')) * 1000 || 0;
      this.failed(`HTTP ${res.status}`, wait);
      return;
    }
    this.failures = 0;
    this.setState('live');
    const parser = new EventStreamParser((ev) => this.onFrame(ev));
    const reader = res.body.getReader();
    const decoder = new TextDecoder();
    try {
      for (;;) {
        const { value, done } = await reader.read();
        if (done || this.stream !== ctrl) break;
        parser.push(decoder.decode(value, { stream: true }));
        if (parser.retry) this.reconnectMs = parser.retry;
      }
    } catch { /* cut off or aborted */ }
    if (this.stream !== ctrl) return; // closed on purpose
    this.failed(this.streamError || 'stream ended');
    this.streamError = '';
  }

  onFrame(ev) {
    if (ev.type === 'error') {
      // The server explains why it ends the stream (it fell behind, a read failed); the
      // reconnect resumes at the cursor.
      try { this.streamError = JSON.parse(ev.data).error || ev.data; } catch { this.streamError = ev.data; }
      return;
    }
    if (EVENT_TYPES.has(ev.type)) this.onMessage(ev);
  }

  /** A stream that could not open or ended: retry it, or poll after repeated failures. */
  failed(why, wait = 0) {
    this.stream = null;
    this.failures++;
    clearTimeout(this.retryTimer);
    if (this.failures >= FAILURES_BEFORE_POLLING) {
      this.startPolling();
      return;
    }
    this.setState('reconnecting', why);
    this.retryTimer = setTimeout(() => this.connect(), Math.max(wait, this.reconnectMs));
  }

  onMessage(e) {
    let ev;
    try {
      ev = JSON.parse(e.data);
    } catch {
      return;
    }
    if (!ev || typeof ev.position !== 'number') return;
    this.deliver([ev]);
  }

  deliver(events) {
    for (const ev of events) {
      if (ev.position <= this.cursor) continue; // already delivered (a resumed stream or poll)
      this.cursor = ev.position;
      this.batch.push(ev);
    }
    if (this.batch.length && !this.flushTimer) {
      this.flushTimer = setTimeout(() => {
        this.flushTimer = 0;
        const batch = this.batch;
        this.batch = [];
        this.dispatchEvent(new CustomEvent('events', { detail: batch }));
      }, 40);
    }
  }

  startPolling() {
    this.polling = true;
    this.setState('polling');
    const poll = async () => {
      if (!this.polling) return;
      try {
        for (;;) {
          const page = await api.events({ after: this.cursor, order: 'asc', limit: 1000 });
          this.deliver(page.events || []);
          if (!page.events || page.events.length < 1000) break;
        }
        if (this.polling) this.setState('polling');
      } catch (err) {
        if (err && err.status === 401) { // api asked for a token; resume() restarts
          this.stopPolling();
          this.setState('unauthorized', err.message);
          return;
        }
        if (this.polling) this.setState('offline');
      }
      if (this.polling) this.pollTimer = setTimeout(poll, POLL_MS);
    };
    poll();
    this.retryTimer = setTimeout(() => {
      this.failures = FAILURES_BEFORE_POLLING - 1; // one more failure goes back to polling
      this.connect();
    }, STREAM_RETRY_MS);
  }

  stopPolling() {
    this.polling = false;
    clearTimeout(this.pollTimer);
    clearTimeout(this.retryTimer);
  }
}

export const feed = new Feed();
