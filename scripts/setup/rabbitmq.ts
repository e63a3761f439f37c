/**
 * RabbitMQ on this machine, as the tests and the demo use it (guest/guest on 127.0.0.1:5672, which
 * Debian's package allows from localhost). Ready means an AMQP login works, not merely an open
 * port: a broker that is still booting accepts TCP before it accepts logins.
 */
import { connect } from 'amqplib';
import { SetupError, endpoint, pollFor, portOpen, run, systemdRunning, type Check } from './host.ts';

type Probe = { state: 'ready' } | { state: 'down' | 'refused' | 'starting'; detail: string };

export async function probeRabbit(url: string): Promise<Probe> {
  const { host, port } = endpoint(url, 5672);
  if (!(await portOpen(host, port))) return { state: 'down', detail: `nothing listens on ${host}:${port}` };
  try {
    const model = await connect(url, { timeout: 3000 } as Parameters<typeof connect>[1]);
    model.on('error', () => undefined);
    await model.close().catch(() => undefined);
    return { state: 'ready' };
  } catch (e) {
    const msg = (e as Error).message;
    if (/ACCESS_REFUSED|403|NOT_ALLOWED|530/.test(msg)) return { state: 'refused', detail: msg };
    return { state: 'starting', detail: msg };
  }
}

/** probeRabbit, waiting up to `timeoutMs` while the broker boots. */
async function settledProbe(url: string, timeoutMs: number): Promise<Probe> {
  let last: Probe = await probeRabbit(url);
  await pollFor(async () => {
    last = await probeRabbit(url);
    return last.state === 'starting' ? undefined : last;
  }, last.state === 'starting' ? timeoutMs : 0, 500);
  return last;
}

function startCommand(): string[] {
  return systemdRunning() ? ['systemctl start rabbitmq-server'] : ['rabbitmq-server -detached'];
}

function refused(url: string, detail: string): SetupError {
  const { port } = endpoint(url, 5672);
  return new SetupError(`RabbitMQ on 127.0.0.1:${port} refuses the login in the URL (${detail})`, ['set ATTUNE_TEST_AMQP_URL / ATTUNE_DEMO_AMQP_URL to a user with access to the vhost']);
}

export async function checkRabbit(url: string): Promise<Check> {
  const p = await settledProbe(url, 90_000);
  if (p.state === 'ready') return { ready: true };
  if (p.state === 'refused') throw refused(url, p.detail);
  return { ready: false, problem: `RabbitMQ is not running (${p.detail})`, commands: startCommand(), fix: () => ensureRabbit(url) };
}

/** Start the broker if it is down and wait until it takes logins; says what it did. */
export async function ensureRabbit(url: string): Promise<string> {
  const first = await settledProbe(url, 90_000);
  if (first.state === 'ready') return 'RabbitMQ ready';
  if (first.state === 'refused') throw refused(url, first.detail);
  if (first.state === 'starting') throw new SetupError(`RabbitMQ accepts TCP but no login after 90 s (${first.detail})`, ['rabbitmqctl status', 'tail -n 50 /var/log/rabbitmq/*.log']);
  const [cmd, ...args] = startCommand()[0]!.split(' ');
  const started = await run(cmd!, args);
  // A concurrent set-up may have started it already; the login below is what counts.
  const { host, port } = endpoint(url, 5672);
  await pollFor(async () => ((await portOpen(host, port)) ? true : undefined), 120_000, 500);
  const p = await settledProbe(url, 120_000);
  if (p.state === 'ready') return `started RabbitMQ (${startCommand()[0]})`;
  if (p.state === 'refused') throw refused(url, p.detail);
  const out = `${started.stdout}${started.stderr}`.trim();
  throw new SetupError(`RabbitMQ does not take logins after '${startCommand()[0]}' (exit ${started.code}${out ? `: ${out}` : ''}; last: ${p.detail})`, ['tail -n 50 /var/log/rabbitmq/*.log']);
}

