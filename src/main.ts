/**
 * Composition root: argv → config → adapters → run. The ONLY place that exits (codes: exit-codes.ts).
 * Everything past the command line is imported lazily: `--version` must not evaluate config (yaml),
 * detection, pg or amqplib (bench/: evaluating them eagerly cost ~10 ms of a ~70 ms start).
 */
import './launcher.ts'; // first: takes the launcher's variables out of the environment
import { parseCommandLine } from './cli.ts';
import { EXIT } from './exit-codes.ts';
import { AGENT_BINARY_NAME, AGENT_VERSION } from './version.ts';

async function main(argv: readonly string[]): Promise<number> {
  const cmd = parseCommandLine(argv);
  if (cmd.kind === 'exit') {
    (cmd.stream === 'stdout' ? process.stdout : process.stderr).write(cmd.output);
    return cmd.code;
  }
  // Contract §1.1: the agent marks itself before anything else; these reach `capabilities`.
  process.env.ATTUNE_AGENT_MODE = 'true';
  process.env.ATTUNE_AGENT_BINARY_NAME = AGENT_BINARY_NAME;
  process.env.ATTUNE_AGENT_BINARY_VERSION = AGENT_VERSION;
  if ('config' in cmd && cmd.config !== undefined) process.env.ATTUNE_CONFIG = cmd.config;

  if (cmd.kind === 'install') {
    const { installAgent } = await import('./install.ts');
    return installAgent({ targetDir: cmd.dir, source: cmd.source });
  }

  const { loadConfig, loadDetectConfig, ConfigError } = await import('./config/index.ts');
  const configInput = {
    env: process.env,
    cwd: process.cwd(),
    flags: { config: cmd.config, name: cmd.kind === 'run' ? cmd.name : undefined },
  };
  const configured = <T>(load: () => T): T | number => {
    try {
      return load();
    } catch (e) {
      if (e instanceof ConfigError) {
        process.stderr.write(`attune-agent: configuration error: ${e.message}\n`);
        return EXIT.CONFIG;
      }
      throw e;
    }
  };

  if (cmd.kind === 'detect') {
    const detectConfig = configured(() => loadDetectConfig(configInput));
    if (typeof detectConfig === 'number') return detectConfig;
    const [{ detectRuntimes }, { formatTextReport, jsonReport }, { baselineEnvironment }] = await Promise.all([
      import('./detect/detect.ts'),
      import('./detect/report.ts'),
      import('./execution/environment.ts'),
    ]);
    const result = await detectRuntimes({
      env: baselineEnvironment(process.env, detectConfig.passthroughEnv),
      probeTimeoutMs: detectConfig.probeTimeoutMs,
      filter: detectConfig.runtimes,
    });
    process.stdout.write(cmd.json ? JSON.stringify(jsonReport(result), null, 2) + '\n' : formatTextReport(result, process.env.ATTUNE_WORKER_RUNTIMES));
    return EXIT.OK;
  }

  const config = configured(() => loadConfig(configInput));
  if (typeof config === 'number') return config;

  // PID 1 (container entrypoint): become `tini -s -g -- attune-agent …` so orphans are reaped (pid1.ts).
  const warnings: string[] = [...config.warnings];
  if (process.pid === 1) {
    const { ensureInit } = await import('./pid1.ts');
    const w = ensureInit(argv);
    if (w) warnings.push(w);
  }
  const { pipesStatus } = await import('./execution/os-pipes.ts');
  const pipes = pipesStatus();
  if (!pipes.available) {
    warnings.push(`actions get socket pairs, not pipes, as stdin/stdout/stderr (${pipes.reason}): ` +
      'an action that opens /dev/stdout, /dev/stderr or /dev/stdin by path fails with ENXIO; ship lib/attune-pipes.node beside the executable');
  }
  const { runAgent } = await import('./worker/run.ts');
  const { ExecutionsAgentService } = await import('./worker/executions-service.ts');
  return runAgent(config, {
    services: [new ExecutionsAgentService()],
    startupWarnings: warnings,
    // Third signal: exit at once (run.ts has already SIGKILLed the actions' process groups).
    exitNow: (code) => process.exit(code),
  });
}

main(process.argv.slice(2)).then(
  (code) => flushAndExit(code),
  (e: unknown) => {
    process.stderr.write(`attune-agent: internal error: ${e instanceof Error ? (e.stack ?? e.message) : String(e)}\n`);
    flushAndExit(EXIT.INTERNAL);
  },
);

function flushAndExit(code: number): void {
  // Let stdout drain (pipes are async in Node) before exiting.
  if (process.stdout.writableLength === 0) process.exit(code);
  process.stdout.once('drain', () => process.exit(code));
}
