/**
 * Step 1: esbuild bundles src/main.ts and its npm dependencies into ONE CommonJS file, the only
 * script a Node single executable application can start. Dynamic `import()`s stay lazy (esbuild
 * wraps their targets in init functions), so pg/amqplib are not evaluated on `--version`.
 */
import esbuild from 'esbuild';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';

export interface BundledPackage { name: string; version: string; license: string; licenseText: string | null }
export interface BundleResult { outfile: string; bytes: number; packages: BundledPackage[] }

export async function bundleAgent(opts: { root: string; outfile: string; version: string }): Promise<BundleResult> {
  const result = await esbuild.build({
    absWorkingDir: opts.root,
    entryPoints: ['src/main.ts'],
    outfile: opts.outfile,
    bundle: true,
    platform: 'node',
    format: 'cjs',
    target: 'node24',
    define: { __AGENT_VERSION__: JSON.stringify(opts.version) },
    // Not minified: readable stack traces in "internal error" reports; minifying saved < 3 ms of start-up.
    minify: false,
    legalComments: 'none', // licences ship as files in LICENSES/ instead
    metafile: true,
    logLevel: 'warning',
    plugins: [lazyChildProcessForCommander],
  });
  if (result.errors.length > 0) throw new Error(`build: esbuild failed: ${result.errors.map((e) => e.text).join('; ')}`);
  const output = Object.values(result.metafile.outputs)[0];
  const used = Object.entries(output.inputs).filter(([, v]) => v.bytesInOutput > 0).map(([k]) => k);
  return { outfile: opts.outfile, bytes: output.bytes, packages: bundledPackages(opts.root, used) };
}

/**
 * commander imports node:child_process at its top (only for executable subcommands, which the agent
 * has none of); evaluating it loads net, stream, dgram… on every start, `--version` included. Here
 * commander gets a stand-in that loads the real module on first use.
 */
const lazyChildProcessForCommander: esbuild.Plugin = {
  name: 'lazy-child-process-for-commander',
  setup(b) {
    b.onResolve({ filter: /^node:child_process$/ }, (args) =>
      /node_modules[\\/]commander[\\/]/.test(args.importer) ? { path: 'lazy-child-process', namespace: 'attune-lazy' } : undefined);
    b.onLoad({ filter: /.*/, namespace: 'attune-lazy' }, () => ({
      loader: 'js',
      contents: "module.exports = new Proxy({}, { get: (_, key) => require('node:child_process')[key] });",
    }));
  },
};

/** The npm packages whose code ended up in the bundle (their licences must ship with it). */
function bundledPackages(root: string, inputs: readonly string[]): BundledPackage[] {
  const dirs = new Set<string>();
  for (const input of inputs) {
    const m = /^(.*node_modules\/(?:@[^/]+\/)?[^/]+)\//.exec(input);
    if (m) dirs.add(m[1]);
  }
  return [...dirs].sort().map((dir) => {
    const pkg = JSON.parse(readFileSync(join(root, dir, 'package.json'), 'utf8')) as { name: string; version: string; license?: string };
    const licenseFile = existsSync(join(root, dir))
      ? readdirSync(join(root, dir)).sort().find((f) => /^(licen[cs]e|copying)(\.(md|txt))?$/i.test(f))
      : undefined;
    return {
      name: pkg.name,
      version: pkg.version,
      license: pkg.license ?? 'UNKNOWN',
      licenseText: licenseFile ? readFileSync(join(root, dir, licenseFile), 'utf8') : null,
    };
  });
}

export function thirdPartyNotices(pkgs: readonly BundledPackage[]): string {
  const parts = [
    'Third-party npm packages bundled into attune-agent (compiled into the executable by esbuild).',
    '',
    ...pkgs.map((p) => `  ${p.name}@${p.version}  (${p.license})`),
    '',
  ];
  for (const p of pkgs) {
    parts.push('='.repeat(78), `${p.name}@${p.version}  (${p.license})`, '='.repeat(78));
    parts.push(p.licenseText?.trimEnd() ?? `No licence file in the package; package.json declares: ${p.license}`, '');
  }
  return parts.join('\n');
}
