/** Attune's `normalize_runtime_name` (contract §2.3) and the alias filter built on it. Pure. */
const ALIASES: Record<string, string> = {
  node: 'node', nodejs: 'node', 'node.js': 'node',
  python: 'python', python3: 'python',
  shell: 'shell', bash: 'shell', sh: 'shell',
  native: 'native', builtin: 'native', standalone: 'native',
  ruby: 'ruby', rb: 'ruby',
  go: 'go', golang: 'go',
  java: 'java', jdk: 'java', openjdk: 'java',
  perl: 'perl', perl5: 'perl',
  r: 'r', rscript: 'r',
};

export function normalizeRuntimeName(name: string): string {
  const n = name.trim().toLowerCase();
  return ALIASES[n] ?? n;
}

/** True if any normalised alias equals any normalised filter entry (`runtime_aliases_match_filter`). */
export function runtimeAliasesMatchFilter(aliases: readonly string[], filter: readonly string[]): boolean {
  const f = new Set(filter.map(normalizeRuntimeName));
  return aliases.some((a) => f.has(normalizeRuntimeName(a)));
}

/** Default aliases Attune gives an auto-registered runtime (contract §2.4). */
export const DEFAULT_ALIASES: Record<string, string[]> = {
  shell: ['shell', 'bash', 'sh'],
  python: ['python', 'python3'],
  node: ['node', 'nodejs', 'node.js'],
  ruby: ['ruby', 'rb'],
  go: ['go', 'golang'],
  java: ['java', 'jdk', 'openjdk'],
  perl: ['perl', 'perl5'],
  r: ['r', 'rscript'],
};
