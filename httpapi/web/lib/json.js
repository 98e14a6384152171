// JSON pretty-printing with syntax highlighting, built from text nodes and spans.

const TOKEN = /("(?:[^"\\]|\\.)*")(\s*:)?|\b(true|false)\b|\b(null)\b|(-?\d+(?:\.\d+)?(?:[eE][+-]?\d+)?)/g;

/** Returns a DocumentFragment of value pretty-printed, tokens in classed spans. */
export function highlight(value) {
  const text = JSON.stringify(value, null, 2) ?? 'undefined';
  const frag = document.createDocumentFragment();
  let last = 0;
  for (const m of text.matchAll(TOKEN)) {
    if (m.index > last) frag.append(text.slice(last, m.index));
    let cls;
    if (m[1] !== undefined) cls = m[2] ? 'json-key' : 'json-string';
    else if (m[3] !== undefined) cls = 'json-bool';
    else if (m[4] !== undefined) cls = 'json-null';
    else cls = 'json-number';
    const span = document.createElement('span');
    span.className = cls;
    span.textContent = m[1] !== undefined ? m[1] : m[0];
    frag.append(span);
    if (m[2]) frag.append(m[2]);
    last = m.index + m[0].length;
  }
  if (last < text.length) frag.append(text.slice(last));
  return frag;
}
