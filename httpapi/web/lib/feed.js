// The live feed of committed events: one EventSource on events/stream for the whole
// page, resumed by position, falling back to polling events?after= when the stream
// keeps failing (a proxy that buffers or cuts long responses), and trying the stream
// again later.

import { api } from './api.js';

const EVENT_TYPES = ['AccountCreated', 'MoneyDeposited', 'MoneyWithdrawn'];
const FAILURES_BEFORE_POLLING = 3;
const POLL_MS = 2000;
const STREAM_RETRY_MS = 30000;

export class Feed extends EventTarget {
  constructor() {
    super();
    this.cursor = 0; // highest position delivered
    this.state = 'idle';
    this.failures = 0;
    this.es = null;
    this.batch = [];
    this.flushTimer = 0;
    this.pollTimer = 0;
    this.retryTimer = 0;
    this.polling = false;
    this.onMessage = this.onMessage.bind(this);
  }

  /** Starts delivering events after position cursor. */
  start(cursor) {
    this.cursor = cursor;
    this.connect();
  }

  setState(state, detail = '') {
    if (state === this.state && detail === this.detail) return;
    this.state = state;
    this.detail = detail;
    this.dispatchEvent(new CustomEvent('state', { detail: { state, detail } }));
  }

  connect() {
    this.stopPolling();
    if (this.es) this.es.close();
    this.setState('connecting');
    const es = new EventSource(`events/stream?after=${this.cursor}`);
    this.es = es;
    es.onopen = () => {
      this.failures = 0;
      this.setState('live');
    };
    for (const t of EVENT_TYPES) es.addEventListener(t, this.onMessage);
    es.addEventListener('message', this.onMessage);
    es.onerror = () => {
      if (this.es !== es) return;
      this.failures++;
      if (this.failures >= FAILURES_BEFORE_POLLING) {
        es.close();
        this.es = null;
        this.startPolling();
      } else if (es.readyState === EventSource.CLOSED) {
        // A refused stream (HTTP error) is not retried by the browser: retry it ourselves.
        this.es = null;
        this.retryTimer = setTimeout(() => this.connect(), 2000);
        this.setState('reconnecting');
      } else {
        this.setState('reconnecting'); // the browser reconnects with Last-Event-ID
      }
    };
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
      } catch {
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
