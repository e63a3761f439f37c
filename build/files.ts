/** File helpers shared by the build steps: hashing, tree walks, fixed modes and mtimes, tool runs. */
import { createHash } from 'node:crypto';
import { spawnSync } from 'node:child_process';
import { chmodSync, lstatSync, readdirSync, readFileSync, utimesSync, lutimesSync, existsSync } from 'node:fs';
import { join, relative } from 'node:path';

export function sha256File(path: string): string {
  return createHash('sha256').update(readFileSync(path)).digest('hex');
}

/** Every regular file and symlink below `dir`, as sorted paths relative to `dir` (POSIX order, stable). */
export function listTree(dir: string): string[] {
  const out: string[] = [];
  const walk = (d: string): void => {
    for (const name of readdirSync(d).sort()) {
      const p = join(d, name);
      const st = lstatSync(p);
      if (st.isDirectory()) walk(p);
      else out.push(relative(dir, p));
    }
  };
  if (existsSync(dir)) walk(dir);
  return out;
}

/** All directories below and including `dir`, deepest first (so parents get their mtime last). */
function listDirs(dir: string): string[] {
  const out: string[] = [];
  const walk = (d: string): void => {
    for (const name of readdirSync(d).sort()) {
      const p = join(d, name);
      if (lstatSync(p).isDirectory()) walk(p);
    }
    out.push(d);
  };
  walk(dir);
  return out;
}

/**
 * Reproducible metadata for a finished tree: files 0444, executables 0555, directories 0755,
 * every mtime = `epoch` (seconds). Directories stay writable by the owner so a rebuild can replace them.
 */
export function normalizeTree(dir: string, isExecutable: (rel: string) => boolean, epoch: number): void {
  for (const rel of listTree(dir)) {
    const p = join(dir, rel);
    const st = lstatSync(p);
    if (st.isSymbolicLink()) {
      lutimesSync(p, epoch, epoch);
      continue;
    }
    chmodSync(p, isExecutable(rel) ? 0o555 : 0o444);
    utimesSync(p, epoch, epoch);
  }
  for (const d of listDirs(dir)) {
    chmodSync(d, 0o755);
    utimesSync(d, epoch, epoch);
  }
}

export interface RunResult { stdout: string; stderr: string }

/** Runs a build tool; on failure the error names the command, its exit status and its output. */
export function runTool(cmd: string, args: readonly string[], opts: { cwd?: string; env?: NodeJS.ProcessEnv } = {}): RunResult {
  const r = spawnSync(cmd, args, { cwd: opts.cwd, env: opts.env ?? process.env, encoding: 'utf8', maxBuffer: 64 * 1024 * 1024 });
  if (r.error) {
    const hint = (r.error as NodeJS.ErrnoException).code === 'ENOENT' ? ' (is it installed? `npm run setup` as root installs .ci/apt-packages.txt)' : '';
    throw new Error(`build: cannot run ${cmd}${hint}: ${r.error.message}`);
  }
  if (r.status !== 0) {
    throw new Error(`build: '${cmd} ${args.join(' ')}' failed with ${r.signal ?? `exit ${r.status}`}\n${r.stdout}${r.stderr}`.trimEnd());
  }
  return { stdout: r.stdout, stderr: r.stderr };
}

/** Order-sensitive hash of labelled parts (file contents, versions, options). */
export class InputHasher {
  readonly #h = createHash('sha256');
  add(label: string, data: string | Buffer): this {
    this.#h.update(`${label}\0${data.length}\0`);
    this.#h.update(data);
    return this;
  }
  addFile(label: string, path: string): this {
    return this.add(label, readFileSync(path));
  }
  addTree(label: string, dir: string, keep: (rel: string) => boolean = () => true): this {
    for (const rel of listTree(dir)) if (keep(rel)) this.addFile(`${label}/${rel}`, join(dir, rel));
    return this;
  }
  digest(): string {
    return this.#h.digest('hex');
  }
}
