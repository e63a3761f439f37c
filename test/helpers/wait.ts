/**
 * The one way tests wait: poll a condition until it holds, never sleep a fixed time. `check` may be
 * async and may throw while the thing is not there yet (the last error is named if time runs out).
 *
 *   const row = await waitFor('the worker row', async () => (await pool.query(...)).rows[0], { timeoutMs: 15_000 });
 */
export type Truthy<T> = Exclude<T, null | undefined | false | 0 | ''>;

export async function waitFor<T>(what: string, check: () => Promise<T> | T, opts: { timeoutMs?: number; intervalMs?: number } = {}): Promise<Truthy<T>> {
  const timeoutMs = opts.timeoutMs ?? 10_000;
  const deadline = Date.now() + timeoutMs;
  let last: unknown;
  for (;;) {
    try {
      const v = await check();
      if (v) return v as Truthy<T>;
    } catch (e) {
      last = e;
    }
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}${last ? ` (last error: ${(last as Error).message})` : ''}`);
    await new Promise((r) => setTimeout(r, opts.intervalMs ?? 20));
  }
}
