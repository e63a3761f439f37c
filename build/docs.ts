/** `npm run docs`: rewrite README's generated configuration table from the option table. */
import { readFileSync, writeFileSync } from 'node:fs';
import { renderConfigTable, TABLE_START, TABLE_END } from '../src/config/docs.ts';

const path = new URL('../README.md', import.meta.url);
const readme = readFileSync(path, 'utf8');
const a = readme.indexOf(TABLE_START);
const b = readme.indexOf(TABLE_END);
if (a < 0 || b < a) throw new Error(`README.md has no ${TABLE_START} … ${TABLE_END} block`);
writeFileSync(path, readme.slice(0, a) + renderConfigTable() + readme.slice(b + TABLE_END.length));
console.log('README.md configuration table updated');
