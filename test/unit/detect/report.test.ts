import { test } from 'node:test';
import assert from 'node:assert/strict';
import { formatTextReport, jsonReport } from '../../../src/detect/report.ts';
import type { DetectionResult } from '../../../src/detect/detect.ts';

const found: DetectionResult = {
  detected: [
    { name: 'shell', path: '/bin/bash', version: '5.2.15', binary: 'bash' },
    { name: 'python', path: '/usr/local/bin/python3', version: '3.12.1', binary: 'python3' },
    { name: 'ruby', path: '/usr/bin/ruby', version: null, binary: 'ruby', note: 'version probe timed out after 5000 ms' },
  ],
  unusable: [],
  filter: [],
  selected: [],
};
found.selected = found.detected;

test('text report has Attune\'s layout', () => {
  assert.equal(
    formatTextReport(found, undefined),
    [
      '=== Attune Agent Runtime Detection Report ===',
      '',
      'Detected 3 runtime(s):',
      '',
      '  ✓ shell      /bin/bash (5.2.15)',
      '  ✓ python     /usr/local/bin/python3 (3.12.1)',
      '  ✓ ruby       /usr/bin/ruby (unknown version)',
      '',
      'Notes:',
      '  ! ruby       /usr/bin/ruby: version probe timed out after 5000 ms',
      '',
      'ATTUNE_WORKER_RUNTIMES=shell,python,ruby',
      '',
    ].join('\n'),
  );
});

test('no runtimes: help lists the eight interpreters to install', () => {
  const text = formatTextReport({ detected: [], unusable: [], filter: [], selected: [] }, undefined);
  assert.match(text, /No runtimes detected!/);
  for (const b of ['bash', 'sh', 'python3', 'python', 'node', 'nodejs', 'ruby', 'go', 'java', 'Rscript', 'perl']) assert.match(text, new RegExp(`  - ${b}\\n`));
  assert.match(text, /\nATTUNE_WORKER_RUNTIMES=\n/);
});

test('preamble when ATTUNE_WORKER_RUNTIMES is set; JSON shows the filtered selection', () => {
  const filtered: DetectionResult = { ...found, filter: ['python3'], selected: [found.detected[1]] };
  const text = formatTextReport(filtered, 'python3');
  assert.ok(text.startsWith('ATTUNE_WORKER_RUNTIMES is set to: python3\n'));
  assert.match(text, /Detected 3 runtime\(s\)/, 'the report lists everything detected');
  assert.deepEqual(jsonReport(filtered), {
    runtimes: [{ name: 'python', path: '/usr/local/bin/python3', version: '3.12.1', binary: 'python3' }],
    unusable: [],
    filter: ['python3'],
    attune_worker_runtimes: 'python',
  });
});
