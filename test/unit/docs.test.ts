/** README.md stays a short page for users, and no relative link in README.md or docs/ points nowhere. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '../..');
const README = join(ROOT, 'README.md');
const README_MAX_BYTES = 15 * 1024;

const markdownFiles = (): string[] => [
  README,
  ...readdirSync(join(ROOT, 'docs')).filter((f) => f.endsWith('.md')).map((f) => join(ROOT, 'docs', f)),
];

/** The text outside fenced code blocks and inline code spans (links there are examples, not links). */
function proseOf(markdown: string): string {
  return markdown.replace(/^(```|~~~)[^\n]*\n[\s\S]*?^\1[ \t]*$/gm, '').replace(/`[^`\n]*`/g, '');
}

/** GitHub's heading anchor: lower case, punctuation dropped (not `-` or `_`), spaces → `-`. */
function headingSlug(heading: string): string {
  const text = heading
    .replace(/\[([^\]]*)\]\([^)]*\)/g, '$1') // [text](url) → text
    .replace(/[`*]/g, '')
    .trim()
    .toLowerCase();
  return text.replace(/[^\p{L}\p{M}\p{N}\p{Pc} -]/gu, '').replace(/ /g, '-');
}

/** Every anchor a markdown file offers: its headings (duplicates numbered as GitHub does) and `<a id|name>`. */
function anchorsOf(markdown: string): Set<string> {
  const anchors = new Set<string>();
  const seen = new Map<string, number>();
  const withoutFences = markdown.replace(/^(```|~~~)[^\n]*\n[\s\S]*?^\1[ \t]*$/gm, '');
  for (const m of withoutFences.matchAll(/^#{1,6}[ \t]+(.+?)[ \t#]*$/gm)) {
    const slug = headingSlug(m[1]);
    const n = seen.get(slug) ?? 0;
    seen.set(slug, n + 1);
    anchors.add(n === 0 ? slug : `${slug}-${n}`);
  }
  for (const m of markdown.matchAll(/<a\s+(?:id|name)="([^"]+)"/g)) anchors.add(m[1]);
  return anchors;
}

/** Targets of inline links and images, `[text](target)`, in the prose. */
function linkTargets(markdown: string): string[] {
  return [...proseOf(markdown).matchAll(/!?\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+"[^"]*")?\s*\)/g)].map((m) => m[1]);
}

/** What is wrong with a relative link from `file`, or null when it resolves (file and anchor). */
function brokenLink(file: string, target: string): string | null {
  if (/^[a-z][a-z0-9+.-]*:/i.test(target)) return null; // https:, mailto: …
  const [pathPart, fragment] = target.split('#', 2) as [string, string | undefined];
  const dest = pathPart === '' ? file : resolve(dirname(file), decodeURIComponent(pathPart));
  if (!existsSync(dest)) return `${target}: no such file ${relative(ROOT, dest)}`;
  if (fragment === undefined || fragment === '') return null;
  if (statSync(dest).isDirectory() || !dest.endsWith('.md')) return `${target}: an anchor into a file that is not markdown`;
  const anchors = anchorsOf(readFileSync(dest, 'utf8'));
  return anchors.has(decodeURIComponent(fragment)) ? null : `${target}: ${relative(ROOT, dest)} has no heading or anchor "${fragment}"`;
}

test(`README.md stays at most ${README_MAX_BYTES} bytes (details belong in docs/)`, () => {
  const bytes = statSync(README).size;
  assert.ok(bytes <= README_MAX_BYTES, `README.md is ${bytes} bytes, over ${README_MAX_BYTES}: move details to docs/ and link them`);
});

test('README.md does not point outside the repository (../shared)', () => {
  const readme = readFileSync(README, 'utf8');
  assert.ok(!readme.includes('../shared'), 'README.md mentions ../shared, which is not in this repository: link docs/attune-compat.md instead');
});

test('every relative link in README.md and docs/*.md resolves to a file and, with #, to an anchor in it', () => {
  const files = markdownFiles();
  assert.ok(files.length >= 2, 'docs/*.md not found');
  const broken: string[] = [];
  let checked = 0;
  for (const file of files) {
    for (const target of linkTargets(readFileSync(file, 'utf8'))) {
      checked++;
      const why = brokenLink(file, target);
      if (why) broken.push(`${relative(ROOT, file)}: ${why}`);
    }
  }
  assert.ok(checked > 20, `only ${checked} links found: is the link pattern still right?`);
  assert.deepEqual(broken, []);
});

test('the link checker itself: slugs, anchors, code spans and broken targets', () => {
  assert.equal(headingSlug('Stack, and where it departs from the plan'), 'stack-and-where-it-departs-from-the-plan');
  assert.equal(headingSlug('Interpreter detection and `--detect-only`'), 'interpreter-detection-and---detect-only');
  assert.equal(headingSlug('Runtime execution_config'), 'runtime-execution_config');
  assert.equal(headingSlug('Log artifacts (§5.10)'), 'log-artifacts-510');
  const md = '# A\n## A\n<a id="x.y"></a>\n```md\n# Not a heading\n[no](missing.md)\n```\nSee `[no](gone.md)` and [yes](other.md#a-1).\n';
  assert.deepEqual([...anchorsOf(md)].sort(), ['a', 'a-1', 'x.y']);
  assert.deepEqual(linkTargets(md), ['other.md#a-1']);
  assert.match(brokenLink(README, 'docs/no-such-page.md') ?? '', /no such file/);
  assert.match(brokenLink(README, '#no-such-section') ?? '', /no heading or anchor/);
  assert.equal(brokenLink(README, '#configuration'), null);
  assert.equal(brokenLink(README, 'https://example.org/x#y'), null);
});
