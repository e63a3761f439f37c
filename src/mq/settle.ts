/**
 * Wait for a broker round trip, but not forever: on a connection that died without the socket
 * noticing (no FIN, heartbeat not yet missed) a close or cancel gets no reply, and shutdown must
 * not hang on it. Errors count as settled — the caller only wants the operation out of the way.
 */
export async function settleWithin(p: Promise<unknown>, ms: number): Promise<'settled' | 'timeout'> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<'timeout'>((r) => {
    timer = setTimeout(() => r('timeout'), ms);
  });
  try {
    return await Promise.race([p.then(() => 'settled' as const, () => 'settled' as const), timeout]);
  } finally {
    clearTimeout(timer);
  }
}

/** How long a close/cancel may take before it is abandoned. */
export const BROKER_RPC_TIMEOUT_MS = 5_000;
