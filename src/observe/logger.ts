/** One pino logger, JSON lines on stdout (no transports: they do not survive bundling). */
import pino, { type Logger } from 'pino';
export type { Logger };

export function createLogger(level: string, base: Record<string, unknown> = {}): Logger {
  return pino({
    level,
    base: { service: 'attune-agent', ...base },
    timestamp: pino.stdTimeFunctions.isoTime,
    formatters: { level: (label) => ({ level: label }) },
  });
}
