/**
 * Parameter formats (docs/attune-compat.md §5.5), pure. Attune's worker passes the execution's `config` map to
 * the action as one document:
 * - json   compact single-line object (so `readline()` gets all of it);
 * - dotenv `key='value'` lines, sorted, `'` → `'\''`, nested objects flattened with dots, arrays as
 *          JSON text, null as empty, empty objects produce nothing; lines joined by `\n`;
 * - yaml   a YAML document shaped like serde_yaml's (block style, sequences not indented under
 *          their key, ambiguous strings single-quoted, no `---`, trailing newline).
 * stdin delivery appends one `\n`; file delivery writes the text as is.
 * Key order: Attune builds the map from a Rust HashMap (no defined order), so nothing may depend on
 * it; json/yaml keep the order the row arrived in, dotenv sorts.
 */
import YAML from 'yaml';

export type ParameterFormat = 'json' | 'dotenv' | 'yaml';
export type ParameterDelivery = 'stdin' | 'file';
export type Parameters = Record<string, unknown>;

export function formatParameters(params: Parameters, format: ParameterFormat): string {
  switch (format) {
    case 'json':
      return JSON.stringify(params);
    case 'dotenv':
      return formatDotenv(params);
    case 'yaml':
      return formatYaml(params);
  }
}

/** What is written to the action's stdin for `stdin` delivery. */
export function stdinPayload(formatted: string): string {
  return formatted + '\n';
}

/** The file name extension used for a parameter file (cosmetic; helps humans debugging). */
export function parameterFileExtension(format: ParameterFormat): string {
  return format === 'json' ? '.json' : format === 'yaml' ? '.yaml' : '.env';
}

/** Bash single-quoting body: `it's` → `it'\''s` (used inside '…'). */
export function escapeSingleQuoted(value: string): string {
  return value.replace(/'/g, "'\\''");
}

export function formatDotenv(params: Parameters): string {
  const flat: [string, string][] = [];
  flatten(params, '', flat);
  for (const [k] of flat) checkDotenvKey(k);
  const lines = flat.map(([k, v]) => `${k}='${escapeSingleQuoted(v)}'`);
  // Rust sorts the finished lines (byte order), not the keys: `a.b='…'` vs `a='…'` order follows.
  lines.sort(compareBytes);
  return lines.join('\n');
}

/**
 * Keys are written bare (Attune does the same, unchecked): a key with a newline would add lines of
 * its own choosing, so keys that any dotenv reader takes as syntax are refused — line breaks and
 * other control characters, white space, `=`, `#`, quotes and backslashes.
 */
const DOTENV_KEY_SYNTAX = /[\p{Cc}\s=#'"`\\]/u;

export class DotenvKeyError extends Error {}

function checkDotenvKey(key: string): void {
  if (key === '') throw new DotenvKeyError('a parameter has an empty name, which cannot be written as a dotenv line; use parameter_format json or yaml');
  const bad = DOTENV_KEY_SYNTAX.exec(key);
  if (bad) {
    throw new DotenvKeyError(`parameter name ${JSON.stringify(key)} cannot be written as a dotenv line (it contains ${JSON.stringify(bad[0])}); rename the parameter or use parameter_format json or yaml`);
  }
}

function flatten(obj: Record<string, unknown>, prefix: string, out: [string, string][]): void {
  for (const [key, value] of Object.entries(obj)) {
    const full = prefix === '' ? key : `${prefix}.${key}`;
    if (value !== null && typeof value === 'object' && !Array.isArray(value)) {
      flatten(value as Record<string, unknown>, full, out);
    } else {
      out.push([full, scalarText(value)]);
    }
  }
}

function scalarText(value: unknown): string {
  if (value === null || value === undefined) return '';
  if (typeof value === 'string') return value;
  if (typeof value === 'number' || typeof value === 'boolean' || typeof value === 'bigint') return String(value);
  return JSON.stringify(value); // arrays
}

function compareBytes(a: string, b: string): number {
  return Buffer.compare(Buffer.from(a, 'utf8'), Buffer.from(b, 'utf8'));
}

export function formatYaml(params: Parameters): string {
  return YAML.stringify(params, {
    indentSeq: false, // serde_yaml: `key:\n- item`
    singleQuote: true, // serde_yaml quotes ambiguous scalars with '…'
    lineWidth: 0, // never fold long strings
    minContentWidth: 0,
    aliasDuplicateObjects: false, // a value reused in the map is written twice, never as an anchor
  });
}
