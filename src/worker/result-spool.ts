/**
 * The durable result spool: terminal results the database could not take (unreachable past
 * `worker.db_retry_window`, or the row locked elsewhere past the contention bound) are kept on disk,
 * one file per execution, and written when the database answers again — by this agent, by its next
 * start, or by another agent (another worker name) that mounts the same directory.
 *
 * Why files and how: the process may die before the database returns (SIGKILL, a pod replaced), so
 * a result is durable only once its file and directory entry are on disk: each file is written to
 * an O_EXCL temp name, fsync'ed, renamed over `execution-{id}.json`, then the directory is
 * fsync'ed. The directory is the agent's (0700, its uid), files are 0600, and every step is taken
 * without following links (execution/safe-fs.ts): the default lives under artifacts_dir, which
 * actions can write to. Bounded by count and bytes: when full, the results already kept stay and
 * the new one is refused (logged `LOST RESULT`, the row stays `running`).
 */
import { readdir, rename, unlink } from 'node:fs/promises';
import { basename, dirname, resolve } from 'node:path';
import type { Logger } from 'pino';
import type { TerminalStatus } from '../model.ts';
import { openDirBelow, openExistingIn, replaceFileIn, safeFsMode, type SafeDir } from '../execution/safe-fs.ts';

const FILE_RE = /^execution-(\d+)\.json$/;

/** One kept result: what the terminal write and the completion message need, and who kept it. */
export interface SpooledResult {
  execution_id: number;
  status: TerminalStatus;
  result: Record<string, unknown>;
  action: number | null;
  action_ref: string;
  /** The status the run replaced (`running`). */
  previous_status: string;
  written_at: string;
  /** Worker name of the agent that kept it. */
  agent: string;
}

export interface SpoolEntry {
  name: string;
  executionId: number;
  bytes: number;
  mtimeMs: number;
}

export interface ResultSpoolOptions {
  dir: string;
  maxFiles: number;
  maxBytes: number;
  /** Worker name written into each file. */
  agent: string;
  log: Logger;
}

/** Ids with a kept result in `dir` (names only; empty when the directory does not exist yet). */
export async function spooledExecutionIds(dir: string): Promise<number[]> {
  try {
    return (await readdir(dir)).map((n) => FILE_RE.exec(n)?.[1]).filter((x): x is string => x !== undefined).map(Number);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return [];
    throw e;
  }
}

export class ResultSpool {
  readonly path: string;
  readonly #o: ResultSpoolOptions;
  #dir: SafeDir | null = null;
  /** Known size, refreshed by every list(): the bound is checked against it. */
  #files = 0;
  #bytes = 0;

  constructor(o: ResultSpoolOptions) {
    this.#o = o;
    this.path = resolve(o.dir);
  }

  /** Files kept right now (as of the last list or put). */
  get size(): number {
    return this.#files;
  }

  async #open(): Promise<SafeDir> {
    if (this.#dir) return this.#dir;
    const dir = await openDirBelow(dirname(this.path), [basename(this.path)], { create: 0o700 });
    try {
      const st = await dir.handle.stat();
      if (typeof process.geteuid === 'function' && st.uid !== process.geteuid()) {
        throw new Error(`result spool ${this.path} belongs to uid ${st.uid}, not to this agent (uid ${process.geteuid()}): set worker.result_spool_dir to a directory of the agent's user`);
      }
      if ((st.mode & 0o777) !== 0o700) await dir.handle.chmod(0o700);
    } catch (e) {
      await dir.close().catch(() => undefined);
      throw e;
    }
    this.#dir = dir;
    return dir;
  }

  #listPath(dir: SafeDir): string {
    return safeFsMode() === 'proc-fd' ? `/proc/self/fd/${dir.handle.fd}` : dir.path;
  }

  /** Keep one result durably. False (logged) when the spool is full or cannot be written. */
  async put(r: Omit<SpooledResult, 'written_at' | 'agent'>): Promise<boolean> {
    const record: SpooledResult = { ...r, written_at: new Date().toISOString(), agent: this.#o.agent };
    const data = Buffer.from(JSON.stringify(record));
    const name = `execution-${r.execution_id}.json`;
    const log = this.#o.log.child({ execution_id: r.execution_id, spool_dir: this.path });
    try {
      const dir = await this.#open();
      if (this.#files + 1 > this.#o.maxFiles || this.#bytes + data.length > this.#o.maxBytes) {
        await this.list(); // the counters may be stale (another agent drained the volume)
        if (this.#files + 1 > this.#o.maxFiles || this.#bytes + data.length > this.#o.maxBytes) {
          log.error({ files: this.#files, bytes: this.#bytes, max_files: this.#o.maxFiles, max_bytes: this.#o.maxBytes, status: r.status },
            `LOST RESULT: the result spool is full; the ${r.status} result of execution ${r.execution_id} is not kept and the row stays ${r.previous_status}. `
            + 'The spool drains when the database is reachable; raise worker.result_spool_max_files / result_spool_max_bytes');
          return false;
        }
      }
      await replaceFileIn(dir, name, data, 0o600, { durable: true });
      await dir.handle.sync(); // the rename itself must survive a crash
      this.#files++;
      this.#bytes += data.length;
      return true;
    } catch (e) {
      log.error({ err: (e as Error).message, status: r.status },
        `LOST RESULT: could not keep the ${r.status} result of execution ${r.execution_id} in the result spool ${this.path}; the row stays ${r.previous_status}. Check that worker.result_spool_dir is writable by the agent`);
      return false;
    }
  }

  /** The kept results, oldest first. Refreshes the counters the bound is checked against. */
  async list(): Promise<SpoolEntry[]> {
    const dir = await this.#open();
    const entries: SpoolEntry[] = [];
    for (const name of await readdir(this.#listPath(dir))) {
      const m = FILE_RE.exec(name);
      if (!m) continue;
      let fh;
      try {
        fh = await openExistingIn(dir, name);
      } catch (e) {
        if ((e as NodeJS.ErrnoException).code === 'ENOENT') continue; // drained meanwhile (another agent)
        this.#o.log.error({ spool_file: `${dir.path}/${name}`, err: (e as Error).message }, 'result spool: ignoring an entry that is not a regular file of this agent');
        continue;
      }
      try {
        const st = await fh.stat();
        entries.push({ name, executionId: Number(m[1]), bytes: st.size, mtimeMs: st.mtimeMs });
      } finally {
        await fh.close();
      }
    }
    entries.sort((a, b) => a.mtimeMs - b.mtimeMs || a.executionId - b.executionId);
    this.#files = entries.length;
    this.#bytes = entries.reduce((n, e) => n + e.bytes, 0);
    return entries;
  }

  /** The result in `name`; null when it is gone (drained by another agent) or unreadable (logged). */
  async read(name: string): Promise<SpooledResult | null> {
    const dir = await this.#open();
    let text: string;
    try {
      const fh = await openExistingIn(dir, name);
      try {
        text = await fh.readFile('utf8');
      } finally {
        await fh.close();
      }
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ENOENT') return null;
      throw e;
    }
    try {
      const r = JSON.parse(text) as SpooledResult;
      if (!Number.isSafeInteger(r.execution_id) || typeof r.status !== 'string' || typeof r.result !== 'object') throw new Error('missing execution_id, status or result');
      return r;
    } catch (e) {
      // Renamed aside, not deleted: an operator can still read it; it is never replayed again.
      const aside = `${name}.bad`;
      await rename(dir.at(name), dir.at(aside)).catch(() => undefined);
      this.#o.log.error({ spool_file: `${dir.path}/${name}`, err: (e as Error).message }, `result spool: unreadable result file moved aside to ${aside}`);
      return null;
    }
  }

  async remove(name: string): Promise<void> {
    const dir = await this.#open();
    await unlink(dir.at(name)).catch((e: NodeJS.ErrnoException) => {
      if (e.code !== 'ENOENT') throw e;
    });
    await dir.handle.sync();
  }

  /** Execution ids with a kept result (start-up recovery leaves their rows to the replay). */
  async executionIds(): Promise<number[]> {
    return (await this.list()).map((e) => e.executionId);
  }

  async close(): Promise<void> {
    const d = this.#dir;
    this.#dir = null;
    await d?.close();
  }
}
