/**
 * The eight runtimes Attune knows (docs/attune-compat.md §2.1–2.4, §5.4–5.7), in one table: how each is probed,
 * the names that mean it, what an auto-registered row of it looks like, and how an action of it
 * is run when the runtime row does not say. Pure.
 */
export type VersionStyle = 'semver' | 'java';

export interface RuntimeSpec {
  /** Canonical name: what `normalize_runtime_name` gives for every alias. */
  name: string;
  /** Names that mean this runtime (docs/attune-compat.md §2.3); also the aliases of its auto-registered row (§2.4). */
  aliases: readonly string[];
  /** Probed in this order (§2.1); the first is the interpreter of an action without a runtime row. */
  binaries: readonly string[];
  versionArgs: readonly string[];
  versionStyle: VersionStyle;
  /** File extension of an auto-registered row, and of an inline-code file (§2.4, §5.7). */
  fileExtension: string;
  /** Action files with these extensions (lowercase) belong to this runtime when the action has no runtime row. */
  actionExtensions: readonly string[];
  /** The flag that runs code given on the command line (Attune passes `-c` to all; node/perl/ruby/R need -e); none: a file. */
  inlineFlag: string | null;
  /** Interpreter arguments before the file when the action has no runtime row (`go run file.go`). */
  interpreterArgs: readonly string[];
  /** Its version probe starts slowly (a JVM, R): launched before the others, see detect/detect.ts. */
  slowProbe?: true;
}

export const RUNTIMES: readonly RuntimeSpec[] = [
  { name: 'shell', aliases: ['shell', 'bash', 'sh'], binaries: ['bash', 'sh'], versionArgs: ['--version'], versionStyle: 'semver', fileExtension: '.sh', actionExtensions: ['.sh', '.bash'], inlineFlag: '-c', interpreterArgs: [] },
  { name: 'python', aliases: ['python', 'python3'], binaries: ['python3', 'python'], versionArgs: ['--version'], versionStyle: 'semver', fileExtension: '.py', actionExtensions: ['.py'], inlineFlag: '-c', interpreterArgs: [] },
  { name: 'node', aliases: ['node', 'nodejs', 'node.js'], binaries: ['node', 'nodejs'], versionArgs: ['--version'], versionStyle: 'semver', fileExtension: '.js', actionExtensions: ['.js', '.mjs', '.cjs'], inlineFlag: '-e', interpreterArgs: [] },
  { name: 'ruby', aliases: ['ruby', 'rb'], binaries: ['ruby'], versionArgs: ['--version'], versionStyle: 'semver', fileExtension: '.rb', actionExtensions: ['.rb'], inlineFlag: '-e', interpreterArgs: [] },
  { name: 'go', aliases: ['go', 'golang'], binaries: ['go'], versionArgs: ['version'], versionStyle: 'semver', fileExtension: '.go', actionExtensions: ['.go'], inlineFlag: null, interpreterArgs: ['run'] },
  { name: 'java', aliases: ['java', 'jdk', 'openjdk'], binaries: ['java'], versionArgs: ['-version'], versionStyle: 'java', fileExtension: '.java', actionExtensions: ['.java'], inlineFlag: null, interpreterArgs: [], slowProbe: true },
  { name: 'r', aliases: ['r', 'rscript'], binaries: ['Rscript'], versionArgs: ['--version'], versionStyle: 'semver', fileExtension: '.R', actionExtensions: ['.r'], inlineFlag: '-e', interpreterArgs: [], slowProbe: true },
  { name: 'perl', aliases: ['perl', 'perl5'], binaries: ['perl'], versionArgs: ['--version'], versionStyle: 'semver', fileExtension: '.pl', actionExtensions: ['.pl'], inlineFlag: '-e', interpreterArgs: [] },
];

/** Actions that run their own file (no interpreter), and the names that mean that. */
export const NATIVE = 'native';
const NATIVE_ALIASES = ['native', 'builtin', 'standalone'];

const BY_NAME = new Map(RUNTIMES.map((r) => [r.name, r]));
const CANONICAL = new Map<string, string>([...RUNTIMES.flatMap((r) => r.aliases.map((a) => [a, r.name] as const)), ...NATIVE_ALIASES.map((a) => [a, NATIVE] as const)]);

/** Attune's `normalize_runtime_name` (docs/attune-compat.md §2.3): an alias → its canonical name; anything else lowercased. */
export function normalizeRuntimeName(name: string): string {
  const n = name.trim().toLowerCase();
  return CANONICAL.get(n) ?? n;
}

/** The spec of a canonical name (one of the eight), else undefined (native, or a runtime this agent does not know). */
export function runtimeSpec(canonical: string): RuntimeSpec | undefined {
  return BY_NAME.get(canonical);
}

/** The runtime an action file belongs to by its extension (lowercased), else undefined. */
export function runtimeOfExtension(ext: string): RuntimeSpec | undefined {
  const e = ext.toLowerCase();
  return RUNTIMES.find((r) => r.actionExtensions.includes(e));
}
