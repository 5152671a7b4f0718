// The benchmarks' reporting rules (bench/rounds.ts): medians of all rounds with their spread and
// load, PASS/FAIL only against a reference measured in the same run, quiet-machine targets marked.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { compare } from '../bench/report.ts';
import { compareRow, EXIT_NOT_MEASURED, fmtSpread, median, outcome, spread, withLoad, type Series } from '../bench/rounds.ts';

const quietLoad = { start: 0.5, end: 0.8 };
const series = (values: number[], load = quietLoad): Series => ({ values, loads: values.map(() => load) });
const atLeast = (k: number) => ({ text: `≥ ${k}×`, met: (x: number) => x >= k });

describe('benchmark rounds', () => {
  it('reports the median of all rounds, not the best, with min–max', () => {
    assert.equal(median([468, 202, 313, 484, 259]), 313);
    assert.equal(median([1, 2, 3, 10]), 2.5);
    assert.deepEqual(spread([468, 202, 313]), { median: 313, min: 202, max: 468, n: 3 });
    assert.equal(fmtSpread([468, 202, 313]), '313 [202–468]');
    assert.equal(fmtSpread([5]), '5');
  });

  it('judges the ratio of the medians and shows the per-round ratios', () => {
    const row = compareRow({
      measure: 'Upload', subject: series([300, 500, 200]), reference: { label: 'Glance', series: series([250, 250, 250]) }, target: atLeast(1.5),
    }, 2);
    // Best round 2.00×; the median of Outpost's rounds is 300, so 1.20× — FAIL.
    assert.equal(row.ratio, '1.20× [0.80×–2.00× per round]');
    assert.equal(row.verdict, 'FAIL');
    assert.equal(row.subject, '300 [200–500]');
    assert.equal(row.reference, '250 (Glance)');
    assert.equal(row.load, '0.5–0.8');
  });

  it('reference missing → "not measured (reason)", no PASS, distinct exit code', () => {
    const row = compareRow({
      measure: 'Upload', subject: series([900, 900]), reference: { label: 'Glance', missing: 'could not be started: glance-api not installed' }, target: atLeast(1.5),
    }, 2);
    assert.equal(row.ratio, 'not measured (could not be started: glance-api not installed)');
    assert.equal(row.verdict, 'not measured');
    assert.doesNotMatch(`${row.result} ${row.ratio} ${row.reference}`, /PASS|FAIL/);
    const pass = compareRow({ measure: 'GET p99', subject: series([3]), target: { text: '≤ 10 ms', met: (x) => x <= 10 } }, 2);
    assert.equal(pass.verdict, 'PASS');
    const end = outcome([pass, row]);
    assert.equal(end.code, EXIT_NOT_MEASURED);
    assert.match(end.message, /NOT MEASURED: "Upload" \(Glance could not be started: glance-api not installed\): no PASS or FAIL/);
    assert.equal(outcome([pass]).code, 0);
  });

  it('judges a correctness check on every round when asked', () => {
    const target = { text: 'all 20', met: (x: number) => x === 20 };
    assert.equal(compareRow({ measure: 'whole', subject: series([20, 19, 20]), target }, 2).verdict, 'PASS'); // the median hides a round
    assert.equal(compareRow({ measure: 'whole', subject: series([20, 19, 20]), target, everyRound: true }, 2).verdict, 'FAIL');
  });

  it('marks a quiet-machine target and says when the machine was busy', () => {
    const target = { ...atLeast(1.5), quietOnly: 'two hashing threads need a free core' };
    const busy = compareRow({ measure: 'Upload', subject: series([400], { start: 3.1, end: 4.6 }), reference: { label: 'Glance', series: series([250]) }, target }, 2);
    assert.equal(busy.target, '≥ 1.5× (quiet machine only)');
    assert.equal(busy.result, 'PASS (busy machine: load up to 4.6 on 2 CPUs)');
    assert.equal(busy.load, '0.5–4.6');
    const quiet = compareRow({ measure: 'Upload', subject: series([400]), reference: { label: 'Glance', series: series([250]) }, target }, 2);
    assert.equal(quiet.result, 'PASS');
  });

  it('samples the 1-minute load average at the start and end of a measurement', async () => {
    const loads = [1.25, 3.5];
    const { value, load } = await withLoad(async () => 42, () => loads.shift()!);
    assert.equal(value, 42);
    assert.deepEqual(load, { start: 1.25, end: 3.5 });
  });

  it("bench/run.ts's table: Glance missing → its lines not measured, no PASS for them, no CPU comparison with nginx", () => {
    const load = quietLoad;
    const outpost = {
      name: 'Outpost', upload: [{ mbps: 400, cpuS: 4, load }], download: [{ mbps: 2000, cpuS: 0.4, load }],
      get: [{ rps: 9000, p50ms: 1.5, p99ms: 4, requests: 90_000, non2xx: 0, socketErrors: '', load }],
    };
    const nginx = { result: { name: 'nginx', download: [{ mbps: 2100, cpuS: Number.NaN, load }] } };
    const cat = { name: 'cat', download: [{ mbps: 9000, cpuS: Number.NaN, load }] };
    const rows = compare(outpost, { name: 'Glance', missing: 'could not be started: no glance-api' }, nginx, cat, 2 ** 30);
    const glanceRows = rows.filter((r) => r.reference.startsWith('Glance'));
    assert.ok(glanceRows.length >= 5);
    for (const r of glanceRows) {
      assert.equal(r.ratio, 'not measured (could not be started: no glance-api)');
      assert.doesNotMatch(r.result, /PASS|FAIL/);
    }
    assert.deepEqual(rows.filter((r) => r.verdict === 'not measured').map((r) => r.measure), ['Upload 1 image, MB/s', 'GET /v2/images/{id}, req/s']);
    assert.ok(rows.every((r) => !(r.measure.includes('CPU') && r.reference.includes('nginx'))));
    assert.equal(outcome(rows).code, EXIT_NOT_MEASURED);
  });
});
