import { test } from 'node:test';
import assert from 'node:assert/strict';
import YAML from 'yaml';
import { formatParameters, stdinPayload, escapeSingleQuoted } from '../../../src/execution/params.ts';

const SAMPLE = {
  url: 'https://example.com/a?b=c',
  message: "It's a \"test\"\nsecond line",
  count: 42,
  ratio: 1.5,
  enabled: true,
  missing: null,
  tags: ['a', "b'c", 3],
  headers: { 'Content-Type': 'application/json', Authorization: 'Bearer t0k3n' },
  query_params: {},
  deep: { level1: { level2: 'x' } },
  unicode: 'héllo ✓',
};

test('json: compact single line, row order, newline only for stdin', () => {
  const text = formatParameters(SAMPLE, 'json');
  assert.equal(
    text,
    '{"url":"https://example.com/a?b=c","message":"It\'s a \\"test\\"\\nsecond line","count":42,"ratio":1.5,' +
      '"enabled":true,"missing":null,"tags":["a","b\'c",3],"headers":{"Content-Type":"application/json",' +
      '"Authorization":"Bearer t0k3n"},"query_params":{},"deep":{"level1":{"level2":"x"}},"unicode":"héllo ✓"}',
  );
  assert.ok(!text.includes('\n'));
  assert.equal(stdinPayload(text), text + '\n');
  assert.equal(formatParameters({}, 'json'), '{}');
});

test('json: control characters escaped like serde_json (lowercase \\u00xx)', () => {
  assert.equal(formatParameters({ c: '\u0001\t\u001f' }, 'json'), '{"c":"\\u0001\\t\\u001f"}');
});

test('dotenv: sorted key=\'value\' lines, quotes escaped, nested flattened, arrays JSON, null empty, {} nothing', () => {
  assert.equal(
    formatParameters(SAMPLE, 'dotenv'),
    [
      "count='42'",
      "deep.level1.level2='x'",
      "enabled='true'",
      "headers.Authorization='Bearer t0k3n'",
      "headers.Content-Type='application/json'",
      "message='It'\\''s a \"test\"\nsecond line'",
      "missing=''",
      "ratio='1.5'",
      "tags='[\"a\",\"b'\\''c\",3]'",
      "unicode='héllo ✓'",
      "url='https://example.com/a?b=c'",
    ].join('\n'),
  );
});

test('dotenv: lines (not keys) sorted bytewise, like Rust', () => {
  // '.' (0x2e) sorts before '=' (0x3d): a.b='…' precedes a='…'; uppercase before lowercase.
  assert.equal(formatParameters({ a: 1, 'a.b': 2, B: 3 }, 'dotenv'), "B='3'\na.b='2'\na='1'");
  assert.equal(formatParameters({}, 'dotenv'), '');
  assert.equal(formatParameters({ only: {} }, 'dotenv'), '');
});

test('single quotes become the bash sequence \'\\\'\'', () => {
  assert.equal(escapeSingleQuoted("a'b''c"), "a'\\''b'\\'''\\''c");
});

test('yaml: serde_yaml-like block document', () => {
  assert.equal(
    formatParameters(SAMPLE, 'yaml'),
    [
      'url: https://example.com/a?b=c',
      'message: |-',
      '  It\'s a "test"',
      '  second line',
      'count: 42',
      'ratio: 1.5',
      'enabled: true',
      'missing: null',
      'tags:',
      '- a',
      "- b'c",
      '- 3',
      'headers:',
      '  Content-Type: application/json',
      '  Authorization: Bearer t0k3n',
      'query_params: {}',
      'deep:',
      '  level1:',
      '    level2: x',
      'unicode: héllo ✓',
      '',
    ].join('\n'),
  );
  assert.equal(formatParameters({}, 'yaml'), '{}\n');
});

test('yaml: ambiguous strings are quoted so they round-trip as strings', () => {
  const params = { a: '42', b: 'true', c: 'null', d: '', e: 'x: y', f: ' lead', g: '~', h: '1.5', i: 'line '.repeat(40) };
  const text = formatParameters(params, 'yaml');
  assert.match(text, /^a: '42'$/m);
  assert.match(text, /^b: 'true'$/m);
  assert.match(text, /^d: ''$/m);
  assert.deepEqual(YAML.parse(text), params);
  assert.ok(text.split('\n').every((l) => !l.startsWith('  line')), 'long strings are not folded');
});
