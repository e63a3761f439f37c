/**
 * The compose recipe merges cleanly into Attune's compose stack, checked with a real compose
 * implementation (podman-compose, Debian package; Debian 12's docker-compose 1.29 rejects the
 * top-level `name:` Attune's file uses): `podman-compose -f <attune> -f <recipe> up` in dry-run mode
 * with a podman that does nothing (/bin/true) prints the merged project and the `podman run` line of
 * every container. Attune's file is stood in for by test/fixtures/compose/attune-like.yaml (same
 * service, volume and network names and shape).
 *
 * Clean means: the merge leaves every one of Attune's services, volumes and networks exactly as
 * Attune's file alone defines them (no name clash: a clash would silently merge into Attune's
 * service), adds exactly the recipe's services and volumes, puts them on attune-network, and every
 * volume and dependency they name exists in the merged project. A control recipe that reuses
 * Attune's names is caught by the same check.
 */
import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parse, stringify } from 'yaml';

const ATTUNE = new URL('../fixtures/compose/attune-like.yaml', import.meta.url).pathname;
const RECIPE = new URL('../../docker/compose/docker-compose.agent.yaml', import.meta.url).pathname;
const PROJECT = 'attune-dev';
const work = mkdtempSync(join(tmpdir(), 'attune-compose-'));
after(() => rmSync(work, { recursive: true, force: true }));

interface Service { networks?: string[] | Record<string, unknown>; volumes?: string[]; depends_on?: Record<string, unknown> | string[]; [k: string]: unknown }
interface Project { services: Record<string, Service>; volumes?: Record<string, unknown>; networks?: Record<string, unknown> }
interface Up { merged: Project; runs: Map<string, string> }

/** podman-compose's merge of `files`, and the `podman run` line it would run per service. */
function composeUp(files: readonly string[]): Up {
  const args = ['--podman-path', '/bin/true', '--dry-run', '-p', PROJECT, ...files.flatMap((f) => ['-f', f]), 'up', '-d'];
  const r = spawnSync('podman-compose', args, { cwd: work, encoding: 'utf8', timeout: 60_000, env: { PATH: process.env.PATH ?? '/usr/bin:/bin' } });
  if (r.error) throw new Error(`podman-compose: ${r.error.message} (apt-get install podman-compose)`);
  assert.equal(r.status, 0, `podman-compose ${args.join(' ')}:\n${r.stdout}${r.stderr}`);
  const start = r.stdout.indexOf('** merged:');
  const end = r.stdout.indexOf('\n** excluding');
  assert.ok(start >= 0 && end > start, `podman-compose printed no merged project:\n${r.stdout}`);
  const merged = JSON.parse(r.stdout.slice(r.stdout.indexOf('{', start), end)) as Project;
  const runs = new Map<string, string>();
  for (const line of r.stdout.split('\n')) {
    const m = /\brun --name=\S+ .*--label com\.docker\.compose\.service=(\S+)/.exec(line);
    if (m) runs.set(m[1], line);
  }
  return { merged, runs };
}

const networksOf = (s: Service): string[] => (Array.isArray(s.networks) ? s.networks : Object.keys(s.networks ?? {}));
const dependsOf = (s: Service): string[] => (Array.isArray(s.depends_on) ? s.depends_on : Object.keys(s.depends_on ?? {}));
const namedVolumesOf = (s: Service): string[] =>
  (s.volumes ?? []).map((v) => v.split(':')[0]).filter((src) => !src.startsWith('.') && !src.startsWith('/'));

/** Attune's file as podman-compose sees it (merged with an empty override, so it prints the project). */
function attuneAlone(): Up {
  const empty = join(work, 'empty.yaml');
  writeFileSync(empty, 'services: {}\n');
  return composeUp([ATTUNE, empty]);
}

/** Everything that makes a merge unclean; [] when clean. */
function mergeProblems(recipe: string): string[] {
  const problems: string[] = [];
  const alone = attuneAlone();
  const { merged, runs } = composeUp([ATTUNE, recipe]);
  const ours = parse(readFileSync(recipe, 'utf8')) as Project;
  for (const [name, svc] of Object.entries(alone.merged.services)) {
    if (name in ours.services) problems.push(`service ${name} clashes with Attune's`);
    else if (JSON.stringify(merged.services[name]) !== JSON.stringify(svc)) problems.push(`Attune's service ${name} changed in the merge`);
  }
  for (const name of Object.keys(ours.volumes ?? {})) if (name in (alone.merged.volumes ?? {})) problems.push(`volume ${name} clashes with Attune's`);
  for (const [name, v] of Object.entries(alone.merged.volumes ?? {})) {
    if (JSON.stringify(merged.volumes?.[name]) !== JSON.stringify(v)) problems.push(`Attune's volume ${name} changed in the merge`);
  }
  if (JSON.stringify(merged.networks) !== JSON.stringify(alone.merged.networks)) problems.push('the networks differ from Attune\'s');
  const expected = [...Object.keys(alone.merged.services), ...Object.keys(ours.services)].sort();
  if (JSON.stringify(Object.keys(merged.services).sort()) !== JSON.stringify(expected)) problems.push('the merged services are not Attune\'s plus the recipe\'s');
  for (const name of Object.keys(ours.services)) {
    const svc = merged.services[name];
    if (!networksOf(svc).includes('attune-network')) problems.push(`${name} is not on attune-network`);
    if (!runs.get(name)?.includes(` --net ${PROJECT}_attune-network `)) problems.push(`${name}'s container does not join ${PROJECT}_attune-network`);
    for (const v of namedVolumesOf(svc)) if (!(v in (merged.volumes ?? {}))) problems.push(`${name} mounts undeclared volume ${v}`);
    for (const d of dependsOf(svc)) if (!(d in merged.services)) problems.push(`${name} depends on missing service ${d}`);
  }
  return problems;
}

test('the recipe merges cleanly with Attune\'s compose stack (podman-compose): no name clash, Attune\'s definitions untouched, workers on attune-network', () => {
  assert.deepEqual(mergeProblems(RECIPE), []);
  const { merged, runs } = composeUp([ATTUNE, RECIPE]);
  // The recipe's worker runs our file from our volume, read-only, beside Attune's own workers.
  const worker = merged.services['agent-ts-worker-ruby'];
  assert.deepEqual(worker.entrypoint, ['/opt/attune/agent/attune-agent']);
  assert.ok(worker.volumes!.includes('agent_ts_bin:/opt/attune/agent:ro'));
  assert.match(runs.get('agent-ts-worker-ruby')!, / -v attune-dev_agent_ts_bin:\/opt\/attune\/agent:ro /);
  assert.match(runs.get('worker-shell')!, / -v attune-dev_agent_bin:\/opt\/attune\/agent:ro /, "Attune's worker keeps Attune's volume");
  assert.ok(runs.has('init-agent') && runs.has('agent-ts-init'), 'both init services run');
});

test('control: a recipe reusing Attune\'s names (service init-agent, volume agent_bin) or off its network is caught by the same check', () => {
  const ours = parse(readFileSync(RECIPE, 'utf8')) as Project;
  const clash: Project = {
    ...ours,
    services: Object.fromEntries(Object.entries(ours.services).map(([k, v]) => [k === 'agent-ts-init' ? 'init-agent' : k, v])),
    volumes: { agent_bin: {} },
  };
  const clashFile = join(work, 'clash.yaml');
  writeFileSync(clashFile, stringify(clash, { version: '1.1' })); // 1.1: 'no' stays a string for podman-compose's YAML 1.1 parser
  const problems = mergeProblems(clashFile);
  assert.ok(problems.includes('service init-agent clashes with Attune\'s'), problems.join('; '));
  assert.ok(problems.includes('volume agent_bin clashes with Attune\'s'), problems.join('; '));

  const offNet = structuredClone(ours);
  delete offNet.services['agent-ts-worker-ruby'].networks;
  const offNetFile = join(work, 'off-network.yaml');
  writeFileSync(offNetFile, stringify(offNet, { version: '1.1' }));
  assert.ok(mergeProblems(offNetFile).includes('agent-ts-worker-ruby is not on attune-network'));
});
