// The Chronicle dashboard: a hash router over five views (the overview first), the theme toggle, and start-up.

import { $, $$, decode } from './lib/dom.js';
import { EventsView } from './views/events.js';
import { AccountsView } from './views/accounts.js';
import { CommandsView } from './views/commands.js';
import { ClusterView } from './views/cluster.js';
import { OverviewView } from './views/overview.js';
import { SignIn } from './views/signin.js';

const TITLES = { overview: 'Overview', events: 'Event log', accounts: 'Accounts', commands: 'Commands', cluster: 'Node & cluster' };

const views = {
  overview: new OverviewView(),
  events: new EventsView(),
  accounts: new AccountsView(),
  commands: new CommandsView(),
  cluster: new ClusterView(),
};

let current = null;

/** "#/accounts/A%3A1?x=y" -> {name: 'accounts', rest: 'A%3A1', params} */
function parseHash() {
  const raw = location.hash.startsWith('#/') ? location.hash.slice(2) : '';
  const [path, query = ''] = raw.split('?');
  const slash = path.indexOf('/');
  const name = slash < 0 ? path : path.slice(0, slash);
  const rest = slash < 0 ? '' : path.slice(slash + 1);
  return { name: TITLES[name] ? name : 'overview', rest, params: new URLSearchParams(query) };
}

function route({ focus }) {
  if (location.hash && !location.hash.startsWith('#/')) return; // an in-page anchor
  const { name, rest, params } = parseHash();
  const changed = name !== current;
  if (changed) {
    if (current && views[current].hide) views[current].hide();
    for (const [n] of Object.entries(TITLES)) $(`#view-${n}`).hidden = n !== name;
    for (const a of $$('.mainnav a')) {
      if (a.dataset.view === name) a.setAttribute('aria-current', 'page');
      else a.removeAttribute('aria-current');
    }
    current = name;
  }
  document.title = `${rest && name === 'accounts' ? `${decode(rest)} · ` : ''}${TITLES[name]} · Chronicle`;
  views[name].show?.(params, rest);
  if (changed && focus) $(`#${name}-title`).focus({ preventScroll: false });
}

// Theme: the saved choice, else the system's; the toggle saves an explicit choice.
function effectiveTheme() {
  const t = document.documentElement.dataset.theme;
  if (t === 'light' || t === 'dark') return t;
  return matchMedia('(prefers-color-scheme: dark)').matches ? 'dark' : 'light';
}

function renderThemeToggle() {
  const btn = $('#theme-toggle');
  const dark = effectiveTheme() === 'dark';
  btn.setAttribute('aria-pressed', String(dark));
  btn.title = dark ? 'Switch to the light theme' : 'Switch to the dark theme';
}

$('#theme-toggle').addEventListener('click', () => {
  const next = effectiveTheme() === 'dark' ? 'light' : 'dark';
  document.documentElement.dataset.theme = next;
  try { localStorage.setItem('chronicle-theme', next); } catch { /* private mode */ }
  renderThemeToggle();
  document.dispatchEvent(new CustomEvent('themechange'));
});
matchMedia('(prefers-color-scheme: dark)').addEventListener('change', () => {
  renderThemeToggle();
  document.dispatchEvent(new CustomEvent('themechange'));
});
renderThemeToggle();

$('#skip-link').addEventListener('click', (e) => {
  e.preventDefault();
  $('#main').focus();
});

// A token was entered after a 401: every view loads again what it was refused.
new SignIn(() => {
  for (const v of Object.values(views)) v.reauth?.();
  route({ focus: false });
  $(`#${current}-title`).focus();
});

window.addEventListener('hashchange', () => route({ focus: true }));
route({ focus: false });
views.events.start();
views.cluster.start();
