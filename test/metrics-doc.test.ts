import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { it } from 'node:test';
import { METRICS } from '../src/core/metrics.ts';
import { REPO_ROOT } from './helpers/site.ts';

it('docs/operations.md lists every metric with its type and labels (and closed label values), and nothing else', async () => {
  const doc = await readFile(`${REPO_ROOT}/docs/operations.md`, 'utf8');
  const rows = [...doc.matchAll(/^\| `(outpost_[a-z_]+)` \| (counter|gauge|histogram) \| ([^|]*) \|/gm)];
  const documented = new Map(rows.map((m) => [m[1]!, { type: m[2]!, labels: m[3]!.trim() }]));
  assert.deepEqual([...documented.keys()].sort(), Object.keys(METRICS).sort());
  for (const [name, spec] of Object.entries(METRICS)) {
    const row = documented.get(name)!;
    assert.equal(row.type, spec.type, name);
    const labels = [...row.labels.matchAll(/`([a-z_]+)`/g)].map((m) => m[1]!);
    const expected = Object.entries(spec.labels).flatMap(([label, values]) => [label, ...(values ?? [])]);
    // A label whose values are given elsewhere in the table ("`source`, as above") lists only its name.
    if (labels.length < expected.length) assert.deepEqual(labels, Object.keys(spec.labels), name);
    else assert.deepEqual(labels, expected, name);
    if (Object.keys(spec.labels).length === 0) assert.equal(row.labels, '—', name);
  }
});
