import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createHmac } from 'node:crypto';
import { planExecution, effectiveTimeoutMs, runtimeKind, shellHelperWrapper, type PlanInput, type PlanFacts } from '../../../src/execution/plan.ts';
import type { ActionRow, ExecutionRow, RuntimeRow, RuntimeVersionRow } from '../../../src/model.ts';
import type { ActionSource } from '../../../src/execution/pack-files.ts';
import { chooseRuntimeVersion, rowMatchesDetected, satisfies } from '../../../src/execution/runtime-version.ts';

const PACK_DIR = '/opt/attune/packs/demo';

function execution(over: Partial<ExecutionRow> = {}): ExecutionRow {
  return {
    id: 7, action: 1, action_ref: 'demo.hello', pack_release: null, pack_release_digest: null, executable_snapshot: null,
    config: { name: 'x' }, env_vars: null, parent: null, enforcement: null, executor: null, permission_set_refs: null,
    worker: null, status: 'scheduled', trace_tag: null, result: null, started_at: null, timeout_seconds: null,
    workflow_task: null, ...over,
  };
}
function action(over: Partial<ActionRow> = {}): ActionRow {
  return {
    id: 1, ref: 'demo.hello', pack: 1, pack_ref: 'demo', entrypoint: 'hello.py', runtime: 1, runtime_version_constraint: null,
    param_schema: null, out_schema: null, is_adhoc: false, parameter_delivery: 'stdin', parameter_format: 'json',
    output_format: 'text', timeout_seconds: null, log_retention_policy: null, log_retention_limit: null, ...over,
  };
}
function rt(name: string, binary: string, over: Partial<RuntimeRow> = {}): RuntimeRow {
  return {
    id: 1, ref: `core.${name.toLowerCase()}`, pack: null, pack_ref: 'core', description: null, name, aliases: [name.toLowerCase()],
    distributions: null, installation: null, execution_config: { interpreter: { binary, args: [] } }, auto_detected: false,
    detection_config: null, ...over,
  };
}
const fileSource = (name = 'hello.py'): ActionSource => ({ kind: 'file', path: `${PACK_DIR}/actions/${name}`, packDir: PACK_DIR, packDirExists: true });

/** A fake image: these paths exist and are executable; PATH lookups find /usr/bin/<name> if listed. */
function facts(executables: string[]): PlanFacts {
  const set = new Set(executables);
  return {
    isExecutableFile: (p) => set.has(p),
    which: (name) => (set.has(`/usr/bin/${name}`) ? `/usr/bin/${name}` : null),
  };
}

function input(over: Partial<PlanInput> = {}): PlanInput {
  return {
    execution: execution(), action: action(), runtime: rt('Python', '/usr/bin/python3'),
    config: {
      packsBaseDir: '/opt/attune/packs', runtimeEnvsDir: '/opt/attune/runtime_envs', artifactsDir: '/opt/attune/artifacts',
      apiUrl: 'http://api:8080', defaultExecutionTimeoutMs: 600_000, security: { jwtSecret: '' },
    },
    detected: [{ name: 'shell', path: '/bin/bash' }, { name: 'python', path: '/usr/local/bin/python3' }],
    baselineEnv: { PATH: '/usr/local/bin:/usr/bin:/bin', HOME: '/root' },
    source: fileSource(), enforcement: null, tempDir: '/tmp/attune-exec-7-abc',
    facts: facts(['/usr/bin/python3', '/bin/bash']), nowSeconds: 1_700_000_000, ...over,
  };
}

function plan(over: Partial<PlanInput> = {}) {
  const r = planExecution(input(over));
  if (!r.ok) assert.fail(`unexpected plan error: ${r.error.message}`);
  return r.plan;
}
function planError(over: Partial<PlanInput> = {}) {
  const r = planExecution(input(over));
  if (r.ok) assert.fail('expected a plan error');
  return r.error;
}

test('file action: <interpreter> <args> <file>, cwd = pack dir, params on stdin with newline', () => {
  const p = plan({ runtime: rt('Python', '/usr/bin/python3', { execution_config: { interpreter: { binary: '/usr/bin/python3', args: ['-u'] } } }) });
  assert.deepEqual(p.argv, ['/usr/bin/python3', '-u', `${PACK_DIR}/actions/hello.py`]);
  assert.equal(p.cwd, PACK_DIR);
  assert.equal(p.stdin, '{"name":"x"}\n');
  assert.equal(p.paramFile, null);
  assert.equal(p.runtimeName, 'python');
  assert.equal(p.timeoutMs, 600_000);
  assert.equal(p.env.ATTUNE_PARAMETER_DELIVERY, 'stdin');
  assert.equal(p.env.ATTUNE_PARAMETER_FORMAT, 'json');
  assert.equal(p.env.ATTUNE_PARAMETER_FILE, undefined);
});

test('cwd is null when the pack dir does not exist', () => {
  assert.equal(plan({ source: { ...fileSource(), packDirExists: false } as ActionSource }).cwd, null);
});

test('file delivery: mode 0400 file in the temp dir, no trailing newline, stdin closed', () => {
  const p = plan({ action: action({ parameter_delivery: 'file', parameter_format: 'dotenv' }) });
  assert.deepEqual(p.paramFile, { path: '/tmp/attune-exec-7-abc/parameters.env', content: "name='x'", mode: 0o400 });
  assert.equal(p.stdin, null);
  assert.equal(p.env.ATTUNE_PARAMETER_DELIVERY, 'file');
  assert.equal(p.env.ATTUNE_PARAMETER_FORMAT, 'dotenv');
  assert.equal(p.env.ATTUNE_PARAMETER_FILE, '/tmp/attune-exec-7-abc/parameters.env');
});

test('interpreter: absolute binary missing here → the detected interpreter of the same runtime', () => {
  const p = plan({ facts: facts(['/bin/bash']) });
  assert.equal(p.argv[0], '/usr/local/bin/python3');
  assert.match(p.warnings.join('\n'), /'\/usr\/bin\/python3' is not in this image; using the detected python interpreter/);
});

test('interpreter: a bare binary name is looked up on the baseline PATH', () => {
  assert.equal(plan({ runtime: rt('Python', 'python3') }).argv[0], '/usr/bin/python3');
});

test('interpreter: runtime names are normalised (Node.js, aliases)', () => {
  const p = plan({
    runtime: rt('Node.js', '/usr/bin/node', { aliases: ['node', 'nodejs'] }),
    detected: [{ name: 'node', path: '/opt/node/bin/node' }],
    source: fileSource('hello.js'),
  });
  assert.equal(p.argv[0], '/opt/node/bin/node');
  assert.equal(p.runtimeName, 'node.js');
  assert.equal(p.runtimeKind, 'node');
});

test('no interpreter: error names runtime, action, binary and what was detected', () => {
  const e = planError({ facts: facts([]), detected: [{ name: 'shell', path: '/bin/bash' }, { name: 'perl', path: '/usr/bin/perl' }] });
  assert.equal(e.code, 'no-interpreter');
  assert.equal(e.stage, 'execute');
  assert.match(e.message, /^python action demo\.hello: no interpreter 'python3' in this image; detected: shell, perl/);
  assert.match(planError({ facts: facts([]), detected: [] }).message, /detected: none/);
});

test('native runtime: runs the file itself, which must be executable', () => {
  const native = rt('Native', '', { execution_config: {} });
  const src = fileSource('tool');
  const p = plan({ runtime: native, source: src, facts: facts([`${PACK_DIR}/actions/tool`]) });
  assert.deepEqual(p.argv, [`${PACK_DIR}/actions/tool`]);
  assert.equal(p.interpreter, null);
  assert.equal(p.cwd, PACK_DIR);
  const e = planError({ runtime: native, source: src, facts: facts([]) });
  assert.equal(e.code, 'not-executable');
  assert.match(e.message, /native action demo\.hello: .*tool is not an executable file \(chmod \+x/);
});

test('no runtime row: chosen from the file extension, else native', () => {
  assert.equal(runtimeKind(null, fileSource('a.sh')), 'shell');
  assert.equal(runtimeKind(null, fileSource('a.py')), 'python');
  assert.equal(runtimeKind(null, fileSource('a.js')), 'node');
  assert.equal(runtimeKind(null, fileSource('a.pl')), 'perl');
  assert.equal(runtimeKind(null, fileSource('tool')), 'native');
  const p = plan({ runtime: null, source: fileSource('a.sh') });
  assert.deepEqual(p.argv, ['/bin/bash', `${PACK_DIR}/actions/a.sh`]);
});

test('inline adhoc code: direct strategy uses the interpreter\'s code flag', () => {
  const src: ActionSource = { kind: 'inline', code: 'print(1)', packDir: PACK_DIR, packDirExists: false };
  assert.deepEqual(plan({ source: src }).argv, ['/usr/bin/python3', '-c', 'print(1)']);
  const node = plan({
    runtime: rt('Node.js', '/usr/bin/node'), detected: [{ name: 'node', path: '/usr/bin/node' }],
    facts: facts(['/usr/bin/node']), source: { ...src, code: 'console.log(1)' },
  });
  assert.deepEqual(node.argv, ['/usr/bin/node', '-e', 'console.log(1)']);
});

test('inline temp_file strategy with shell helpers: wrapper file, parameters not on stdin', () => {
  const shell = rt('Shell', '/bin/bash', {
    execution_config: { interpreter: { binary: '/bin/bash', args: [] }, inline_execution: { strategy: 'temp_file', extension: 'sh', inject_shell_helpers: true } },
  });
  const p = plan({
    runtime: shell, execution: execution({ config: { name: "it's", 'dash-key': 2 } }),
    source: { kind: 'inline', code: 'echo "$name"', packDir: PACK_DIR, packDirExists: true },
  });
  assert.deepEqual(p.argv, ['/bin/bash', '/tmp/attune-exec-7-abc/inline_7.sh']);
  assert.equal(p.stdin, null);
  assert.equal(p.inlineFile?.content, shellHelperWrapper({ name: "it's", 'dash-key': 2 }, 'echo "$name"'));
  assert.equal(
    p.inlineFile?.content,
    "#!/bin/bash\nset -e\n\n# Action parameters\nPARAM_NAME='it'\\''s'\nname='it'\\''s'\nPARAM_DASH_KEY='2'\ndash_key='2'\n\n# Action code\necho \"$name\"",
  );
});

test('timeout precedence: execution → workflow task → action → default; non-positive skipped', () => {
  const a = { timeout_seconds: 30 };
  assert.equal(effectiveTimeoutMs({ timeout_seconds: 5, workflow_task: { timeout_seconds: 10 } }, a, 600_000), 5_000);
  assert.equal(effectiveTimeoutMs({ timeout_seconds: null, workflow_task: { timeout_seconds: 10 } }, a, 600_000), 10_000);
  assert.equal(effectiveTimeoutMs({ timeout_seconds: 0, workflow_task: { timeout_seconds: -1 } }, a, 600_000), 30_000);
  assert.equal(effectiveTimeoutMs({ timeout_seconds: null, workflow_task: null }, { timeout_seconds: 0 }, 120_000), 120_000);
  assert.equal(plan({ execution: execution({ timeout_seconds: 3 }) }).timeoutMs, 3_000);
});

test('environment: baseline + ATTUNE_* context in order, runtime env_vars templated, reserved names ignored', () => {
  const runtime = rt('Python', '/usr/bin/python3', {
    execution_config: {
      interpreter: { binary: '/usr/bin/python3' },
      dependencies: { manifest_file: 'requirements.txt' },
      env_vars: {
        PYTHONPATH: { value: '{pack_dir}/lib', operation: 'prepend' },
        PATH: { value: '{env_dir}/bin', operation: 'prepend' },
        EXTRA: { value: 'tail', operation: 'append', separator: ';' },
        MANIFEST: '{manifest_path}',
        INTERP: '{interpreter}',
        ATTUNE_API_URL: 'http://evil',
      },
    },
  });
  const p = plan({
    runtime,
    execution: execution({
      pack_release_digest: 'a'.repeat(64), trace_tag: 'trace-1',
      config: { context: { user: 'bob', n: 3, flag: true, obj: { a: 1 } }, x: 1 },
      env_vars: { MY_VAR: 'v', PATH: '/custom', ATTUNE_EXEC_ID: '999' },
    }),
    enforcement: { rule_ref: 'demo.rule', trigger_ref: 'core.timer' },
  });
  const env = p.env;
  assert.equal(env.HOME, '/root');
  assert.equal(env.ATTUNE_EXEC_ID, '7');
  assert.equal(env.ATTUNE_ACTION, 'demo.hello');
  assert.equal(env.ATTUNE_API_URL, 'http://api:8080');
  assert.equal(env.ATTUNE_ARTIFACTS_DIR, '/opt/attune/artifacts');
  assert.equal(env.ATTUNE_RUNTIME_ENVS_DIR, '/opt/attune/runtime_envs');
  assert.equal(env.ATTUNE_PACK_REF, 'demo');
  assert.equal(env.ATTUNE_PACK_RELEASE_DIGEST, 'a'.repeat(64));
  assert.equal(env.ATTUNE_TRACE_TAG, 'trace-1');
  assert.equal(env.ATTUNE_RULE, 'demo.rule');
  assert.equal(env.ATTUNE_TRIGGER, 'core.timer');
  assert.equal(env.ATTUNE_CONTEXT_USER, 'bob');
  assert.equal(env.ATTUNE_CONTEXT_N, '3');
  assert.equal(env.ATTUNE_CONTEXT_FLAG, 'true');
  assert.equal(env.ATTUNE_CONTEXT_OBJ, '{"a":1}');
  assert.equal(env.ATTUNE_API_TOKEN, undefined);
  assert.equal(env.PYTHONPATH, `${PACK_DIR}/lib`);
  assert.equal(env.EXTRA, 'tail');
  assert.equal(env.MANIFEST, `${PACK_DIR}/requirements.txt`);
  assert.equal(env.INTERP, '/usr/bin/python3');
  assert.equal(env.MY_VAR, 'v');
  assert.equal(env.PATH, '/custom', 'execution env_vars come last');
  assert.match(p.warnings.join('\n'), /ignoring ATTUNE_API_URL/);
  assert.match(p.warnings.join('\n'), /ignoring ATTUNE_EXEC_ID/);
  // Runtime PATH prepend saw the baseline PATH (then execution env_vars replaced it).
  const p2 = plan({ runtime });
  assert.equal(p2.env.PATH, '/opt/attune/runtime_envs/demo/python/bin:/usr/local/bin:/usr/bin:/bin');
  assert.equal(p2.env.ATTUNE_PACK_RELEASE_DIGEST, undefined);
  assert.equal(p2.env.ATTUNE_TRACE_TAG, undefined);
  assert.equal(p2.env.ATTUNE_RULE, undefined);
});

test('execution env_vars must be an object of strings (preparation failure)', () => {
  for (const bad of [['a'], 'x', 5, { A: 1 }, { A: null }]) {
    const e = planError({ execution: execution({ env_vars: bad }) });
    assert.equal(e.code, 'bad-env-vars');
    assert.equal(e.stage, 'prepare');
    assert.match(e.message, /^execution 7: env_vars/);
  }
});

test('ATTUNE_API_TOKEN: HS256 JWT only with permission sets and a secret; no executor is an error', () => {
  const secret = 'test-secret';
  const cfg = { ...input().config, security: { jwtSecret: secret } };
  const p = plan({ config: cfg, execution: execution({ permission_set_refs: ['ps.read'], executor: 42, timeout_seconds: 100 }) });
  const [h, b, s] = p.env.ATTUNE_API_TOKEN.split('.');
  assert.equal(s, createHmac('sha256', secret).update(`${h}.${b}`).digest('base64url'));
  assert.deepEqual(JSON.parse(Buffer.from(h, 'base64url').toString()), { typ: 'JWT', alg: 'HS256' });
  assert.deepEqual(JSON.parse(Buffer.from(b, 'base64url').toString()), {
    sub: '42', login: 'execution:7', iat: 1_700_000_000, exp: 1_700_000_160, token_type: 'execution', scope: 'execution',
    metadata: {
      execution_id: 7, action_ref: 'demo.hello', permission_set_refs: ['ps.read'],
      standard_access_action_refs: ['demo.hello'], standard_access_pack_refs: ['demo'],
    },
  });
  assert.equal(plan({ execution: execution({ permission_set_refs: ['ps.read'], executor: 42 }) }).env.ATTUNE_API_TOKEN, undefined);
  assert.equal(plan({ config: cfg, execution: execution({ executor: 42 }) }).env.ATTUNE_API_TOKEN, undefined);
  const e = planError({ config: cfg, execution: execution({ permission_set_refs: ['ps.read'] }) });
  assert.equal(e.code, 'no-executor');
});

test('parameters must be an object', () => {
  assert.equal(planError({ execution: execution({ config: [1, 2] as unknown as Record<string, unknown> }) }).code, 'bad-parameters');
  assert.equal(plan({ execution: execution({ config: null }) }).stdin, '{}\n');
});

test('runtime version: its interpreter when present here, else the runtime default', () => {
  const v: RuntimeVersionRow = {
    id: 1, runtime: 1, runtime_ref: 'core.python', version: '3.12.1', is_default: false, available: true,
    execution_config: { interpreter: { binary: '/usr/bin/python3.12', args: ['-X', 'utf8'] } },
  };
  const p = plan({ runtimeVersion: v, facts: facts(['/usr/bin/python3', '/usr/bin/python3.12']) });
  assert.deepEqual(p.argv, ['/usr/bin/python3.12', '-X', 'utf8', `${PACK_DIR}/actions/hello.py`]);
  assert.equal(p.runtimeVersion, '3.12.1');
  const q = plan({ runtimeVersion: v });
  assert.equal(q.argv[0], '/usr/bin/python3');
  assert.equal(q.runtimeVersion, null);
  assert.match(q.warnings.join('\n'), /runtime version 3\.12\.1/);
});

test('runtime version choice: narrowed to the versions this worker detected, then the constraint, then the default', () => {
  const row = (version: string, is_default = false, available: boolean | null = true): RuntimeVersionRow => ({
    id: 1, runtime: 1, runtime_ref: 'core.python', version, is_default, available, execution_config: {},
  });
  // Attune's core.python catalog: 3.11, 3.12 (default), 3.13.
  const catalog = [row('3.11'), row('3.12', true), row('3.13')];
  const runtime = { ref: 'core.python', name: 'Python', aliases: ['python', 'python3'] };
  const image = (version: string | null, name = 'python') => [{ name: 'shell', path: '/bin/bash', version: '5.2.15' }, { name, path: '/usr/bin/python3', version }];
  const choose = (rows: RuntimeVersionRow[], constraint: string | null, detected: ReturnType<typeof image>) =>
    chooseRuntimeVersion(rows, constraint, { actionRef: 'acme.hello', runtime, detected });
  const chosen = (c: ReturnType<typeof choose>) => (c.ok ? c.version?.version ?? null : `error: ${c.error}`);

  assert.equal(chosen(choose(catalog, null, image('3.11.2'))), '3.11', 'image with 3.11 only: 3.11, not the default 3.12');
  assert.equal(chosen(choose(catalog, null, image('3.12.7'))), '3.12');
  assert.equal(chosen(choose(catalog, null, image('3.10.1'))), null, 'no catalog version here: the runtime itself runs, with the detected interpreter');
  assert.equal(chosen(choose(catalog, null, image(null))), null, 'unknown detected version: no version row');
  assert.equal(chosen(choose(catalog, null, [])), null);
  assert.equal(chosen(choose(catalog, '>=3.11', image('3.13.0'))), '3.13');
  assert.equal(chosen(choose(catalog, '3.11', image('3.11.2'))), '3.11');
  const refused = choose(catalog, '>=3.12', image('3.11.2'));
  assert.equal(refused.ok, false);
  if (!refused.ok) {
    assert.match(refused.error, /acme\.hello/);
    assert.match(refused.error, />=3\.12/);
    assert.match(refused.error, /3\.13, 3\.12 \(default\), 3\.11/);
    assert.match(refused.error, /python 3\.11\.2 at \/usr\/bin\/python3/);
  }
  const none = choose(catalog, '>=3.12', [{ name: 'shell', path: '/bin/bash', version: '5.2.15' }]);
  assert.ok(!none.ok && /no python interpreter/.test(none.error));
  // Detected under an alias name; a node-style major-only row matches its minor releases.
  assert.equal(chosen(choose(catalog, null, image('3.13.1', 'python3'))), '3.13');
  const node = [row('18'), row('20', true), row('22')];
  assert.equal(chosen(chooseRuntimeVersion(node, null, { actionRef: 'a.b', runtime: { ref: 'core.nodejs', name: 'Node.js', aliases: ['node', 'nodejs', 'node.js'] }, detected: [{ name: 'node', path: '/usr/bin/node', version: '22.11.0' }] })), '22');
  // Unavailable rows are never chosen; several candidates without a default: the highest.
  assert.equal(chosen(choose([row('3.11', false, false), row('3.12', true)], null, image('3.11.4'))), null);
  assert.equal(chosen(choose([row('3.11'), row('3.11.4')], null, image('3.11.4'))), '3.11.4');
  assert.equal(chosen(choose([], '>=3', image('3.11.2'))), null);
  assert.ok(rowMatchesDetected('3.11', '3.11.7') && rowMatchesDetected('20', '20.11.0') && !rowMatchesDetected('3.1', '3.11.0') && !rowMatchesDetected('3.11.7', '3.11'));
  assert.ok(satisfies('3.11.2', '^3.10'));
  assert.ok(!satisfies('4.0.0', '^3.10'));
  assert.ok(satisfies('3.11.2', '!=3.12'));
  assert.ok(satisfies('3.11.2', '*'));
});

test('environment: legacy layout {pack}/{runtime}-{version}; the environment\'s interpreter once it exists, the image\'s for create_command', () => {
  const cfg = (minor: string) => ({
    interpreter: { binary: `python3.${minor}`, args: ['-u'] },
    environment: { env_type: 'virtualenv', create_command: [`python3.${minor}`, '-m', 'venv', '{env_dir}'], interpreter_path: `{env_dir}/bin/python3.${minor}` },
    dependencies: { manifest_file: 'requirements.txt', install_command: ['{interpreter}', '-m', 'pip', 'install', '-r', '{manifest_path}'] },
  });
  const v: RuntimeVersionRow = { id: 1, runtime: 1, runtime_ref: 'core.python', version: '3.11', is_default: false, available: true, execution_config: cfg('11') };
  const before = plan({ runtimeVersion: v, facts: facts(['/usr/bin/python3', '/usr/bin/python3.11']) });
  assert.equal(before.argv[0], '/usr/bin/python3.11');
  assert.deepEqual(before.environment, {
    packRef: 'demo', packDir: PACK_DIR, runtimeName: 'python', runtimeVersion: '3.11', runtimeEnvsDir: '/opt/attune/runtime_envs',
    parentDir: 'demo', dirName: 'python-3.11', envDir: '/opt/attune/runtime_envs/demo/python-3.11', cacheKey: null,
    createCommand: ['python3.11', '-m', 'venv', '{env_dir}'], interpreterPath: '{env_dir}/bin/python3.11',
    manifestFile: 'requirements.txt', installCommand: ['{interpreter}', '-m', 'pip', 'install', '-r', '{manifest_path}'],
    envVars: null, baseInterpreter: '/usr/bin/python3.11', interpreterBinary: 'python3.11',
  });
  const after = plan({ runtimeVersion: v, facts: facts(['/usr/bin/python3', '/usr/bin/python3.11', '/opt/attune/runtime_envs/demo/python-3.11/bin/python3.11']) });
  assert.equal(after.argv[0], '/opt/attune/runtime_envs/demo/python-3.11/bin/python3.11');
  assert.equal(after.environment?.baseInterpreter, '/usr/bin/python3.11', 'create_command never runs the environment\'s own python');
  assert.equal(plan().environment, null, 'a runtime without environment or dependencies');
  const none = { ...cfg('11'), environment: { env_type: 'none' } };
  assert.equal(plan({ runtime: rt('Python', '/usr/bin/python3', { execution_config: none }) }).environment, null, 'env_type none: no set-up, as in Attune');
});

test('environment: a pinned release uses Attune\'s sha256/{key} layout, for the chosen version and its fallback alike', () => {
  const digest = '0123456789abcdef'.repeat(4);
  const cfg = {
    interpreter: { binary: 'python3', args: ['-u'] },
    environment: { env_type: 'virtualenv', create_command: ['python3', '-m', 'venv', '{env_dir}'], interpreter_path: '{env_dir}/bin/python3' },
    dependencies: { manifest_file: 'requirements.txt', install_command: ['{interpreter}', '-m', 'pip', 'install', '-r', '{manifest_path}'] },
  };
  const req = `${PACK_DIR}/requirements.txt`;
  const hashing = (files: Record<string, string>): PlanFacts => ({ ...facts(['/usr/bin/python3']), sha256OfFile: (p) => files[p] ?? null });
  const id = { platform: 'linux:x86_64:musl', workerImageFormat: '0.6.0', usizeBytes: 8 as const };
  const pinned = execution({ pack_release: 3, pack_release_digest: digest });
  const runtime = rt('Python', '/usr/bin/python3', { execution_config: cfg });
  // requirements.txt = "requests==2.31.0\n": sha256 1d277ef3…883f; key derived in runtime-cache-key.test.ts.
  const p = plan({ execution: pinned, runtime, cacheIdentity: id, facts: hashing({ [req]: '1d277ef3981a3e49b02912a0f03fe1ab563539d7e4e1b5c1e6404a57b19d883f' }) });
  const key = 'bfbae73f094823477edbcb043f4cd7a18769bf0c3913f41507e28064f233454b';
  assert.equal(p.environment?.cacheKey, key);
  assert.equal(p.environment?.parentDir, 'sha256');
  assert.equal(p.environment?.dirName, key);
  assert.equal(p.environment?.envDir, `/opt/attune/runtime_envs/sha256/${key}`);
  // Not pinned, or a digest that is not lowercase SHA-256: the legacy layout, as Attune.
  assert.equal(plan({ runtime, cacheIdentity: id }).environment?.envDir, '/opt/attune/runtime_envs/demo/python');
  assert.equal(plan({ execution: execution({ pack_release_digest: digest.toUpperCase() }), runtime, cacheIdentity: id }).environment?.cacheKey, null);
  // The version Attune's executor chose is in the key even when its interpreter is missing here (the base runtime runs, same directory).
  const v: RuntimeVersionRow = { id: 1, runtime: 1, runtime_ref: 'core.python', version: '3.12', is_default: true, available: true,
    execution_config: { ...cfg, interpreter: { binary: 'python3.12' } } };
  const fallback = plan({ execution: pinned, runtime, runtimeVersion: v, cacheIdentity: id, facts: hashing({}) });
  assert.equal(fallback.runtimeVersion, null);
  assert.equal(fallback.environment?.cacheKey, '669fd4762e2d85f46fe6632fde66c7d49a52f2edc47a03ea05a8969d20dfe59e', 'version 3.12, the manifest unreadable: sha256 of no bytes');
  assert.equal(fallback.environment?.envDir, `/opt/attune/runtime_envs/sha256/${fallback.environment?.cacheKey}`);
});
