// Signing in. A node with API tokens answers 401 without one: the first 401 hides the
// views behind a token prompt. The token entered is checked against the node before it
// is kept (in sessionStorage, for this tab only: see lib/api.js), then the views load
// again with it. "Sign out" forgets the token and reloads the page, so that nothing read
// with it stays on screen. A node without tokens never answers 401: no prompt there.

import { auth, checkToken, setToken, forgetToken, hasToken } from '../lib/api.js';
import { $, toast } from '../lib/dom.js';

export class SignIn {
  /** onSignedIn runs once a token has been accepted and kept. */
  constructor(onSignedIn) {
    this.onSignedIn = onSignedIn;
    this.panel = $('#signin');
    this.form = $('#signin-form');
    this.input = $('#signin-token');
    this.error = $('#signin-error');
    this.reason = $('#signin-reason');
    this.button = $('#signin-form button[type=submit]');
    this.signOut = $('#sign-out');
    this.busy = false;

    auth.addEventListener('required', (e) => this.ask(e.detail));
    auth.addEventListener('change', () => this.renderSignOut());
    this.form.addEventListener('submit', (e) => {
      e.preventDefault();
      this.submit();
    });
    this.input.addEventListener('input', () => this.setError(''));
    this.signOut.addEventListener('click', () => {
      forgetToken();
      location.reload(); // drops every view's data read with the token
    });
    this.renderSignOut();
  }

  renderSignOut() {
    this.signOut.hidden = !hasToken();
  }

  get open() {
    return !this.panel.hidden;
  }

  /** Shows the prompt (once: later 401s while it is up change nothing). */
  ask({ message, refused }) {
    this.renderSignOut();
    if (this.open) return;
    this.reason.textContent = refused
      ? `The node refused this tab's token (${message}). Enter another token.`
      : 'This node requires an API token to show its ledger.';
    document.getElementById('main').dataset.auth = 'required';
    this.panel.hidden = false;
    this.input.focus();
  }

  setError(text) {
    this.error.textContent = text;
    if (text) this.input.setAttribute('aria-invalid', 'true');
    else this.input.removeAttribute('aria-invalid');
  }

  async submit() {
    if (this.busy) return;
    const candidate = this.input.value.trim();
    if (!candidate) {
      this.setError('Enter an API token.');
      this.input.focus();
      return;
    }
    this.busy = true;
    this.button.disabled = true;
    this.form.setAttribute('aria-busy', 'true');
    this.setError('');
    try {
      await checkToken(candidate);
    } catch (err) {
      let text;
      if (err.status === 401) text = `The node refused this token: ${err.message}`;
      else if (err.status === 429) text = `Too many requests with this token: try again${err.retryAfter ? ` in ${err.retryAfter} s` : ' shortly'}.`;
      else text = `Could not check the token: ${err.message}`;
      this.setError(text);
      this.input.focus();
      return;
    } finally {
      this.busy = false;
      this.button.disabled = false;
      this.form.removeAttribute('aria-busy');
    }
    this.input.value = '';
    setToken(candidate);
    this.panel.hidden = true;
    delete document.getElementById('main').dataset.auth;
    toast('Signed in: the token is kept for this tab only', 'ok');
    this.onSignedIn();
  }
}
