/** The command line (commander): flags only, no logic. Compatible with the Rust `attune-agent`. */
import { Command, CommanderError } from 'commander';
import { AGENT_BINARY_NAME, AGENT_VERSION } from './version.ts';

export type CliCommand =
  | { kind: 'run'; config?: string; name?: string }
  | { kind: 'detect'; config?: string; json: boolean }
  | { kind: 'install'; dir: string; source?: string }
  | { kind: 'exit'; code: number; output: string; stream: 'stdout' | 'stderr' };

export function parseCommandLine(argv: readonly string[]): CliCommand {
  let result: CliCommand | undefined;
  let out = '';
  let err = '';
  const program = new Command(AGENT_BINARY_NAME)
    .description('Attune universal worker agent: detects interpreters, registers as a worker, runs actions.')
    .version(AGENT_VERSION, '-V, --version', 'print the version and exit')
    .option('-c, --config <path>', 'YAML configuration file (exported as ATTUNE_CONFIG)')
    .option('-n, --name <name>', 'worker name (overrides config and ATTUNE_WORKER_NAME)')
    .option('--detect-only', 'detect interpreters, print a report and exit; touches no server')
    .option('--json', 'with --detect-only: print the report as JSON')
    .exitOverride()
    .configureOutput({ writeOut: (s) => (out += s), writeErr: (s) => (err += s) })
    .action((opts: { config?: string; name?: string; detectOnly?: boolean; json?: boolean }) => {
      if (opts.json && !opts.detectOnly) throw new CommanderError(2, 'usage', 'error: --json only goes with --detect-only\n');
      result = opts.detectOnly
        ? { kind: 'detect', config: opts.config, json: opts.json === true }
        : { kind: 'run', config: opts.config, name: opts.name };
    });
  program
    .command('install <dir>')
    .description('copy the agent (one file) to <dir>/attune-agent, e.g. an init container\'s shared volume, and check it runs there')
    .option('--source <file>', 'the one file to copy (default: the file this agent runs from)')
    .action((dir: string, opts: { source?: string }) => {
      result = { kind: 'install', dir, source: opts.source };
    });
  try {
    program.parse([...argv], { from: 'user' });
  } catch (e) {
    if (e instanceof CommanderError) {
      if (e.exitCode === 0) return { kind: 'exit', code: 0, output: out, stream: 'stdout' };
      return { kind: 'exit', code: 2, output: err || e.message + '\n', stream: 'stderr' };
    }
    throw e;
  }
  return result ?? { kind: 'exit', code: 2, output: 'error: nothing to do\n', stream: 'stderr' };
}
