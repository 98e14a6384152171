// Node and cluster status from /ready, /health and /cluster, refreshed every 2 s; the
// header's node pill comes from the same /ready poll.

import { api } from '../lib/api.js';
import { h, $, replace } from '../lib/dom.js';
import { number, goDuration, dateTime } from '../lib/format.js';
import { feed } from '../lib/feed.js';

const REFRESH_MS = 2000;

export class ClusterView {
  constructor() {
    this.visible = false;
    this.ready = null;
    this.health = null;
    this.timer = 0;
    this.busy = false;
    document.addEventListener('visibilitychange', () => {
      if (!document.hidden) this.tick();
    });
    // Between polls, the live log keeps the header's position current.
    feed.addEventListener('events', (e) => {
      const raft = this.ready && this.ready.node && this.ready.node.raft;
      const last = e.detail[e.detail.length - 1];
      if (raft && last && last.position > raft.position) {
        raft.position = last.position;
        this.renderPill();
      }
    });
  }

  start() {
    api.health().then((hl) => {
      this.health = hl;
      $('#footer-version').textContent = `Chronicle ${hl.version || ''}`.trim();
      if (this.visible) this.renderNode();
    }).catch(() => {});
    this.tick();
  }

  show() {
    this.visible = true;
    this.renderNode();
    this.tick();
  }

  hide() {
    this.visible = false;
  }

  async tick() {
    clearTimeout(this.timer);
    if (!this.busy && !document.hidden) {
      this.busy = true;
      try {
        await Promise.all([this.refreshReady(), this.visible ? this.refreshCluster() : null]);
      } finally {
        this.busy = false;
      }
    }
    this.timer = setTimeout(() => this.tick(), REFRESH_MS);
  }

  async refreshReady() {
    try {
      this.ready = await api.ready();
      this.readyError = '';
    } catch (err) {
      this.ready = null;
      this.readyError = err.message;
    }
    this.renderPill();
    if (this.visible) this.renderNode();
  }

  async refreshCluster() {
    const err = $('#cluster-error');
    try {
      const c = await api.cluster();
      this.renderMembers(c);
      err.hidden = true;
    } catch (e) {
      err.textContent = e.status === 404 ? 'This node runs without cluster endpoints.' : `Could not read the cluster: ${e.message}`;
      err.hidden = false;
    }
    $('#cluster-updated').textContent = `Updated ${dateTime(new Date(), { ms: false }).slice(11)}`;
  }

  renderPill() {
    const pill = $('#node-pill');
    const r = this.ready;
    const raft = r && r.node && r.node.raft;
    let state = 'down';
    let text = 'node unreachable';
    if (raft) {
      state = r.status === 'ready' ? 'ok' : 'warn';
      text = `${raft.node_id} · ${raft.state} · term ${raft.term} · pos ${raft.position}`;
    }
    pill.dataset.state = state;
    $('.node-pill-text', pill).textContent = text;
    pill.setAttribute('aria-label', raft
      ? `Node ${raft.node_id}: ${raft.state}, term ${raft.term}, position ${raft.position}, ${r.status === 'ready' ? 'ready' : 'not ready'}. Open node and cluster status.`
      : 'Node unreachable. Open node and cluster status.');
  }

  renderNode() {
    const root = $('#node-status');
    const r = this.ready;
    if (!r || !r.node) {
      replace(root, h('div', { class: 'card' }, h('p', { class: 'error-text' }, `The node does not answer${this.readyError ? `: ${this.readyError}` : '.'}`)));
      return;
    }
    const { raft = {}, projector: p = {}, nats = {}, version } = r.node;
    const role = roleBadge(raft.state, raft.leader && raft.leader === raft.node_id);
    const ready = r.status === 'ready';
    replace(root,
      card('Raft', [
        ['Node ID', h('strong', null, raft.node_id)],
        ['Role', role],
        ['Term', number(raft.term)],
        ['Leader', raft.leader || 'none'],
        ['Applied index', number(raft.applied_index)],
        ['Commit index', number(raft.commit_index)],
        ['Log position', number(raft.position)],
        ['Last contact', raft.state === 'Leader' ? '— (leader)' : goDuration(raft.last_contact)],
      ], [raftIndexNote(), raft.fatal ? h('p', { class: 'error-text' }, `State machine stopped: ${raft.fatal}`) : null]),
      card('Projector', [
        ['View', p.view || '—'],
        ['Position', number(p.position)],
        ['Log head', number(p.head)],
        ['Lag', h('span', { class: p.lag_events > 0 ? 'warn-text' : '' }, `${number(p.lag_events)} event${p.lag_events === 1 ? '' : 's'} · ${(p.lag_seconds || 0).toFixed(2)} s`)],
        ['Applied since start', number(p.applied_since_start)],
      ], p.error ? h('p', { class: 'error-text' }, p.error) : null),
      card('NATS JetStream', [
        ['Status', h('span', { class: `status ${nats.connected ? 'status-active' : 'status-down'}` }, nats.connected ? 'connected' : 'disconnected')],
        ['Stream', nats.stream || '—'],
        ['Published', number(nats.published)],
        ['Server', nats.url || 'embedded, in-process'],
      ]),
      card('Node', [
        ['Readiness', h('span', { class: `status ${ready ? 'status-active' : 'status-down'}` }, ready ? 'ready' : 'not ready')],
        ['Version', version || (this.health && this.health.version) || '—'],
        ['Health', this.health ? this.health.status : '—'],
      ], r.error ? h('p', { class: 'error-text' }, r.error) : null));
  }

  renderMembers(c) {
    const rows = (c.nodes || []).map((m) => {
      const info = m.info || {};
      const self = m.id === c.node_id;
      const leader = m.leader || m.id === c.leader;
      const proj = info.projector;
      return h('tr', { class: leader ? 'leader-row' : '', dataset: { node: m.id } },
        h('th', { scope: 'row' }, h('span', { class: 'node-name' }, m.id), self ? h('span', { class: 'tag' }, 'this node') : null),
        h('td', null, m.reachable ? roleBadge(info.state, leader) : h('span', { class: 'badge role-down', title: m.error || '' }, 'unreachable'),
          m.suffrage && m.suffrage !== 'Voter' ? h('span', { class: 'tag' }, m.suffrage) : null),
        h('td', { class: 'num' }, number(info.term)),
        h('td', { class: 'num' }, number(info.applied_index)),
        h('td', { class: 'num' }, number(info.commit_index)),
        h('td', { class: 'num' }, number(info.position)),
        h('td', null, !m.reachable ? '—' : info.state === 'Leader' ? '— (leader)' : goDuration(info.last_contact)),
        h('td', null, proj ? `${number(proj.position)}${proj.lag_events ? ` (lag ${proj.lag_events})` : ''}` : '—'),
        h('td', { class: 'mono small break' }, m.api_url || info.api_url || '—'));
    });
    replace($('#member-rows'), rows);
  }
}

// Why the Raft indexes and the log position are different numbers (users compared them).
function raftIndexNote() {
  return h('p', { class: 'muted small raft-note', id: 'raft-index-note' },
    'Log position counts ledger events (a transfer adds two). Applied and commit index count Raft log entries: ',
    'one entry can carry a batch of commands, and membership changes, API tokens and each new leader\'s no-op ',
    'are entries too, so index and position differ. Commit index: entries a majority has stored; ',
    'applied index: entries this node has executed.');
}

function roleBadge(state, leader) {
  const st = state || 'Unknown';
  return h('span', { class: `badge role-${st.toLowerCase()}` }, leader || st === 'Leader' ? '★ Leader' : st);
}

function card(title, pairs, extra) {
  return h('section', { class: 'card status-card' },
    h('h2', { class: 'card-title' }, title),
    h('dl', { class: 'kv kv-grid' }, pairs.map(([k, v]) => h('div', null, h('dt', null, k), h('dd', null, v)))),
    extra);
}
