/**
 * `npm run bench` — runs benchmark sections and prints each figure against a floor measured in the
 * same run, as a ratio, with its target. Add a section: write bench/sections/<name>.ts exporting a
 * BenchSection and list it in SECTIONS.
 *
 *   node bench/run.ts [--section <id>]... [--runs N] [--json] [--check]
 *
 * --check exits 1 when a figure misses its target (benchmarks are noisy: not part of `npm test`).
 */
import { parseArgs } from 'node:util';
import type { BenchSection, Figure } from './lib.ts';
import { executableSection } from './sections/executable.ts';
import { executionsSection } from './sections/executions.ts';
import { onefileSection } from './sections/onefile.ts';
import { environmentsSection } from './sections/environments.ts';

const SECTIONS: readonly BenchSection[] = [executableSection, onefileSection, executionsSection, environmentsSection];

interface Verdict { ratio?: number; ok?: boolean; target?: string }

function judge(f: Figure): Verdict {
  const ratio = f.floor && f.floor.value > 0 ? f.value / f.floor.value : undefined;
  if (!f.target) return { ratio };
  const checks: boolean[] = [];
  const parts: string[] = [];
  if (f.target.maxRatio !== undefined && ratio !== undefined) {
    checks.push(ratio <= f.target.maxRatio);
    parts.push(`≤ ${f.target.maxRatio.toFixed(2)}×`);
  }
  if (f.target.minRatio !== undefined && ratio !== undefined) {
    checks.push(ratio >= f.target.minRatio);
    parts.push(`≥ ${f.target.minRatio.toFixed(2)}×`);
  }
  if (f.target.maxAdded !== undefined && f.floor) {
    checks.push(f.value - f.floor.value <= f.target.maxAdded);
    const added = f.value - f.floor.value;
    parts.push(`adds ${added >= 0 ? '+' : ''}${added.toFixed(2)}, ≤ +${f.target.maxAdded} ${f.unit}`);
  }
  if (f.target.maxValue !== undefined) {
    checks.push(f.value <= f.target.maxValue);
    parts.push(`≤ ${f.target.maxValue} ${f.unit}`);
  }
  return { ratio, ok: checks.every(Boolean), target: parts.join(', ') };
}

function fmt(v: number, unit: string): string {
  return `${v.toFixed(1)} ${unit}`;
}

function table(title: string, figures: readonly Figure[]): string {
  const rows = figures.map((f) => {
    const v = judge(f);
    return [
      f.name,
      fmt(f.value, f.unit),
      f.floor ? `${f.floor.name}: ${fmt(f.floor.value, f.unit)}` : '',
      v.ratio !== undefined ? `${v.ratio.toFixed(2)}×` : '',
      v.target ?? '',
      v.ok === undefined ? '' : v.ok ? 'PASS' : 'MISS',
    ];
  });
  const head = ['figure', 'value', 'floor (same run)', 'ratio', 'target', ''];
  const widths = head.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i].length)));
  const line = (r: string[]) => r.map((c, i) => (i === 1 || i === 3 ? c.padStart(widths[i]) : c.padEnd(widths[i]))).join('  ').trimEnd();
  const notes = figures.flatMap((f, i) => (f.note ? [`  [${i + 1}] ${f.name}: ${f.note}`] : []));
  return [`== ${title} ==`, line(head), ...rows.map(line), ...(notes.length ? ['', 'notes:', ...notes] : [])].join('\n');
}

async function main(): Promise<number> {
  const { values } = parseArgs({
    options: {
      section: { type: 'string', multiple: true },
      runs: { type: 'string', default: '21' },
      json: { type: 'boolean', default: false },
      check: { type: 'boolean', default: false },
    },
    strict: true,
  });
  const runs = Number(values.runs);
  if (!Number.isInteger(runs) || runs < 3) throw new Error(`bench: --runs must be an integer >= 3, got '${values.runs}'`);
  const wanted = values.section ?? SECTIONS.map((s) => s.id);
  const unknown = wanted.filter((id) => !SECTIONS.some((s) => s.id === id));
  if (unknown.length) throw new Error(`bench: unknown section(s) ${unknown.join(', ')}; known: ${SECTIONS.map((s) => s.id).join(', ')}`);

  const results: { id: string; title: string; figures: Figure[] }[] = [];
  for (const s of SECTIONS.filter((x) => wanted.includes(x.id))) {
    const log = (l: string) => process.stderr.write(`[${s.id}] ${l}\n`);
    const started = performance.now();
    const figures = await s.run({ runs, log });
    log(`done in ${((performance.now() - started) / 1000).toFixed(1)} s`);
    results.push({ id: s.id, title: s.title, figures });
    if (!values.json) process.stdout.write(table(s.title, figures) + '\n\n');
  }
  if (values.json) {
    const out = results.map((r) => ({ ...r, figures: r.figures.map((f) => ({ ...f, ...judge(f) })) }));
    process.stdout.write(JSON.stringify(out, null, 2) + '\n');
  }
  const missed = results.flatMap((r) => r.figures).filter((f) => judge(f).ok === false);
  return values.check && missed.length > 0 ? 1 : 0;
}

main().then(
  (code) => (process.exitCode = code),
  (e: unknown) => {
    process.stderr.write(`${e instanceof Error ? e.message : String(e)}\n`);
    process.exitCode = 1;
  },
);
