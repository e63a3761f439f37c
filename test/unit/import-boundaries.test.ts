/**
 * The layering of src/ (design.md "A layout that shows this"): which folder may import which, and
 * no import cycle between modules. Imports are read from the source text — static, type-only,
 * re-exports and dynamic import() — and resolved to files. A new folder or top-level module fails
 * this test until it is given its place in LAYERS.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';

const SRC = resolve(import.meta.dirname, '../../src');

/** Layer → the layers it may import (its own always). A layer is a folder of src/, or a top-level module. */
const LAYERS: Record<string, readonly string[]> = {
  // Shared vocabulary: Attune's rows and statuses, the runtime table, backoff, versions, exit codes.
  model: [],
  runtimes: [],
  backoff: [],
  version: [],
  'exit-codes': [],
  config: [],
  observe: ['model'],
  // Process-wide native state: the addon, posix_spawn children and their reaper, memory, PID 1.
  native: [],
  protocol: ['model'],
  detect: ['runtimes'],
  // Pure pieces of a run and the process adapter: no database, no broker, no service.
  execution: ['model', 'runtimes', 'config', 'observe', 'native'],
  db: ['model', 'runtimes', 'backoff', 'config', 'observe', 'native', 'detect'],
  mq: ['model', 'backoff', 'observe', 'native', 'protocol'],
  // The service and the worker's life: everything below, through ports.
  worker: ['model', 'runtimes', 'backoff', 'version', 'exit-codes', 'config', 'observe', 'native', 'protocol', 'detect', 'execution', 'db', 'mq'],
  cli: ['version'],
  install: ['exit-codes', 'native'],
  // The composition root, imported by nothing.
  main: ['model', 'runtimes', 'backoff', 'version', 'exit-codes', 'config', 'observe', 'native', 'protocol', 'detect', 'execution', 'db', 'mq', 'worker', 'cli', 'install'],
};

type Graph = Map<string, string[]>;

function layerOf(file: string): string {
  const rel = relative(SRC, file);
  return rel.includes('/') ? rel.split('/')[0] : rel.replace(/\.ts$/, '');
}

/** The relative imports of one module, resolved to files (comments are ignored). */
function importsOf(file: string): string[] {
  const text = readFileSync(file, 'utf8').replace(/\/\*[\s\S]*?\*\//g, '').replace(/^\s*\/\/.*$/gm, '');
  const specs = [
    ...text.matchAll(/(?:^|[;\n])\s*(?:import|export)\s[^'"`;]*?\bfrom\s*['"]([^'"]+)['"]/g),
    ...text.matchAll(/(?:^|[;\n])\s*import\s*['"]([^'"]+)['"]/g),
    ...text.matchAll(/\bimport\(\s*['"]([^'"]+)['"]\s*\)/g),
  ].map((m) => m[1]);
  return [...new Set(specs.filter((s) => s.startsWith('.')).map((s) => resolve(dirname(file), s)))];
}

function sourceGraph(): Graph {
  const files = readdirSync(SRC, { recursive: true, encoding: 'utf8' }).filter((f) => f.endsWith('.ts')).map((f) => join(SRC, f));
  return new Map(files.map((f) => [f, importsOf(f)]));
}

/** Every problem of a graph: unknown layers, imports outside src/ or of missing files, forbidden edges, cycles. */
function problems(graph: Graph): string[] {
  const out: string[] = [];
  const rel = (f: string) => relative(SRC, f);
  for (const [file, imports] of graph) {
    const from = layerOf(file);
    if (!(from in LAYERS)) out.push(`${rel(file)}: layer '${from}' has no place in LAYERS`);
    for (const target of imports) {
      if (!graph.has(target)) {
        out.push(`${rel(file)} imports ${rel(target)}, which is not a module of src/`);
        continue;
      }
      const to = layerOf(target);
      if (to !== from && from in LAYERS && !LAYERS[from].includes(to)) out.push(`${rel(file)} imports ${rel(target)}: ${from} → ${to} is not an allowed edge`);
    }
  }
  for (const cycle of cycles(graph)) out.push(`import cycle: ${[...cycle, cycle[0]].map(rel).join(' → ')}`);
  return out;
}

/** The import cycles (strongly connected components with more than one module, or a module importing itself). */
function cycles(graph: Graph): string[][] {
  const index = new Map<string, number>();
  const low = new Map<string, number>();
  const stack: string[] = [];
  const onStack = new Set<string>();
  const found: string[][] = [];
  let next = 0;
  const visit = (v: string): void => {
    index.set(v, next);
    low.set(v, next++);
    stack.push(v);
    onStack.add(v);
    for (const w of graph.get(v) ?? []) {
      if (!graph.has(w)) continue;
      if (!index.has(w)) {
        visit(w);
        low.set(v, Math.min(low.get(v)!, low.get(w)!));
      } else if (onStack.has(w)) {
        low.set(v, Math.min(low.get(v)!, index.get(w)!));
      }
    }
    if (low.get(v) !== index.get(v)) return;
    const scc: string[] = [];
    let w: string;
    do {
      w = stack.pop()!;
      onStack.delete(w);
      scc.push(w);
    } while (w !== v);
    if (scc.length > 1 || (graph.get(v) ?? []).includes(v)) found.push(scc.reverse());
  };
  for (const v of graph.keys()) if (!index.has(v)) visit(v);
  return found;
}

test('the checker reports a forbidden edge, a cycle, an unknown layer and a missing file', () => {
  const f = (p: string) => join(SRC, p);
  const graph: Graph = new Map([
    [f('db/a.ts'), [f('execution/b.ts')]],
    [f('execution/b.ts'), [f('execution/c.ts')]],
    [f('execution/c.ts'), [f('execution/b.ts')]],
    [f('gadgets/d.ts'), [f('model.ts'), f('nowhere.ts')]],
    [f('model.ts'), []],
  ]);
  assert.deepEqual(problems(graph), [
    'db/a.ts imports execution/b.ts: db → execution is not an allowed edge',
    "gadgets/d.ts: layer 'gadgets' has no place in LAYERS",
    'gadgets/d.ts imports nowhere.ts, which is not a module of src/',
    'import cycle: execution/b.ts → execution/c.ts → execution/b.ts',
  ]);
});

test('the parser sees every form of import: static, type-only, multi-line, re-export, dynamic', () => {
  const graph = sourceGraph();
  const has = (from: string, to: string) => graph.get(join(SRC, from))?.includes(join(SRC, to)) === true;
  assert.ok(has('main.ts', 'worker/lifecycle.ts'), 'dynamic import()');
  assert.ok(has('worker/ports.ts', 'protocol/messages.ts'), 'import type');
  assert.ok(has('config/index.ts', 'config/compile.ts'), 'export … from');
  assert.ok(has('worker/run-execution.ts', 'execution/plan.ts'), 'a multi-name import');
  assert.ok(graph.size > 50, `${graph.size} modules`);
});

test('src/ keeps its layers: no forbidden edge between folders, no import cycle', () => {
  assert.deepEqual(problems(sourceGraph()), []);
});
