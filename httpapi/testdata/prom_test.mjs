// Unit tests of web/lib/prom.js, run by TestPromParserNode (web_js_test.go) with Node.js:
// the Go test copies prom.js beside this file as prom.mjs.
import assert from 'node:assert/strict';
import { parseLine, parseMetrics, parseValue, counterSeries, rates, sumBy } from './prom.mjs';

const exposition = `# HELP chronicle_commands_total Commands by type and result code.
# TYPE chronicle_commands_total counter
chronicle_commands_total{code="ok",type="transfer"} 120
chronicle_commands_total{type="transfer",code="insufficient_funds"} 3
chronicle_commands_total{code="ok",type="deposit"} 7 1700000000000
chronicle_commands_total{code="account_not_found",type="deposit"} 1e0
chronicle_commands_total { code = "ok" , type = "withdraw" , } 2
chronicle_other_total{code="ok"} 99
# a comment with chronicle_commands_total{code="x"} 5
go_goroutines 31
go_gc_duration_seconds{quantile="0.5"} NaN
weird{label="a \\"quoted\\" \\\\ back\\nslash"} +Inf
broken{code="ok" 5
broken2{code=ok} 5
broken3 five
broken4{code="unterminated} 1
`;

const samples = parseMetrics(exposition);
assert.equal(samples.filter((s) => s.name === 'chronicle_commands_total').length, 5);
assert.deepEqual(parseLine('chronicle_commands_total{code="ok",type="transfer"} 120'),
  { name: 'chronicle_commands_total', labels: { code: 'ok', type: 'transfer' }, value: 120 });
assert.equal(parseLine('weird{label="a \\"quoted\\" \\\\ back\\nslash"} +Inf').labels.label, 'a "quoted" \\ back\nslash');
assert.equal(parseLine('weird{label="x"} +Inf').value, Infinity);
assert.ok(Number.isNaN(parseLine('go_gc_duration_seconds{quantile="0.5"} NaN').value));
for (const bad of ['broken{code="ok" 5', 'broken2{code=ok} 5', 'broken3 five', 'broken4{code="unterminated} 1', '', '# TYPE x counter', '{code="ok"} 1', 'x 1 2 3', 'x{a="b"}1']) {
  assert.equal(parseLine(bad), null, bad);
}
assert.equal(parseValue('1.5e3'), 1500);
assert.equal(parseValue('-Inf'), -Infinity);
assert.equal(parseValue('0x10'), null);
assert.equal(parseValue(''), null);
assert.deepEqual(parseMetrics(undefined), []);
// CRLF line ends.
assert.equal(parseMetrics('a_total{code="ok"} 1\r\nb 2\r\n').length, 2);

// Counters: the _total name and the OpenMetrics base name are the same counter.
const c1 = counterSeries(samples, 'chronicle_commands_total');
assert.equal(c1.size, 5);
assert.equal(counterSeries(parseMetrics('chronicle_commands{code="ok",type="x"} 4'), 'chronicle_commands_total').size, 1);
// The same labels in another order are the same series.
assert.ok(c1.has('code="ok",type="transfer"'));

// Rates from two scrapes 2 s apart: a reset counts its new value; a new series from 0.
const first = rates(null, c1, 0);
assert.equal(first.get('code="ok",type="transfer"').rate, null);
const c2 = counterSeries(parseMetrics(`
chronicle_commands_total{code="ok",type="transfer"} 140
chronicle_commands_total{code="insufficient_funds",type="transfer"} 4
chronicle_commands_total{code="ok",type="deposit"} 3
chronicle_commands_total{code="account_not_found",type="deposit"} 1
chronicle_commands_total{code="ok",type="withdraw"} 2
chronicle_commands_total{code="account_frozen",type="withdraw"} 6
`), 'chronicle_commands_total');
const r = rates(c1, c2, 2);
assert.equal(r.get('code="ok",type="transfer"').rate, 10);
assert.equal(r.get('code="insufficient_funds",type="transfer"').rate, 0.5);
assert.equal(r.get('code="ok",type="deposit"').rate, 1.5); // reset: 7 -> 3 counts 3
assert.equal(r.get('code="account_frozen",type="withdraw"').rate, 3);

// Sums: everything by type, errors by code.
const byType = sumBy(r, 'type');
assert.deepEqual([...byType.keys()], ['deposit', 'transfer', 'withdraw']);
assert.equal(byType.get('transfer').value, 144);
assert.equal(byType.get('transfer').rate, 10.5);
const errors = sumBy(r, 'code', (l) => l.code !== 'ok');
assert.deepEqual([...errors.keys()], ['account_frozen', 'account_not_found', 'insufficient_funds']);
assert.equal(errors.get('account_frozen').value, 6);
assert.equal(sumBy(first, 'type').get('transfer').rate, null);

// Arbitrary input never throws.
let seed = 42;
const rnd = () => ((seed = (seed * 1103515245 + 12345) % 2147483648) / 2147483648);
const alphabet = 'ab_:{}="\\, \t\n#+-.0123456789eEInfNa';
for (let n = 0; n < 20000; n++) {
  let s = '';
  const len = Math.floor(rnd() * 60);
  for (let i = 0; i < len; i++) s += alphabet[Math.floor(rnd() * alphabet.length)];
  const out = parseMetrics(s);
  assert.ok(Array.isArray(out));
  for (const x of out) assert.equal(typeof x.value, 'number');
  counterSeries(out, 'a_total');
}
console.log('prom.js: ok');
