import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { BadRequestError } from '../../src/core/errors.ts';
import { parseLabelSelector, selectorMatches } from '../../src/core/label-selector.ts';

const site = (labels: Record<string, string>) => labels;

describe('label selectors (Kubernetes syntax)', () => {
  const cases: [string, Record<string, string>, boolean][] = [
    ['region=eu', { region: 'eu' }, true],
    ['region=eu', { region: 'us' }, false],
    ['region=eu', {}, false],
    ['region==eu', { region: 'eu' }, true],
    ['tier!=far', { tier: 'edge' }, true],
    ['tier!=far', {}, true],
    ['tier!=far', { tier: 'far' }, false],
    ['region in (eu, us)', { region: 'us' }, true],
    ['region in (eu,us)', { region: 'ap' }, false],
    ['region in (eu,us)', {}, false],
    ['region notin (eu,us)', {}, true],
    ['region notin (eu,us)', { region: 'eu' }, false],
    ['gpu', { gpu: '' }, true],
    ['gpu', {}, false],
    ['!gpu', {}, true],
    ['!gpu', { gpu: 'a100' }, false],
    ['region=eu,tier!=far', { region: 'eu', tier: 'edge' }, true],
    ['region=eu,tier!=far', { region: 'eu', tier: 'far' }, false],
    ['region=eu, tier in (edge,core), !maintenance', { region: 'eu', tier: 'core' }, true],
    ['example.com/rack=r1', { 'example.com/rack': 'r1' }, true],
    ['', { anything: 'x' }, true],
  ];
  for (const [selector, labels, expected] of cases) {
    it(`${JSON.stringify(selector)} ${expected ? 'matches' : 'does not match'} ${JSON.stringify(labels)}`, () => {
      assert.equal(selectorMatches(parseLabelSelector(selector), site(labels)), expected);
    });
  }

  it('normalises: the text of a parsed selector parses to the same selector', () => {
    const parsed = parseLabelSelector(' region in ( us , eu ),tier!=far,  !gpu ');
    assert.equal(parsed.text, 'region in (eu,us),tier!=far,!gpu');
    assert.deepEqual(parseLabelSelector(parsed.text), parsed);
  });

  const bad: [string, RegExp][] = [
    ['region=eu,', /an empty requirement/],
    ['region in (eu', /unbalanced parentheses/],
    ['region in ((eu))', /unbalanced parentheses/],
    ['region=e u', /is not a requirement/],
    ['-region=eu', /is not a label key/],
    ['region=eu!', /is not a requirement|is not a label value/],
    [`k=${'v'.repeat(64)}`, /is not a label value/],
    ['Bad_Prefix/k=v', /is not a label key/],
    ['region >= eu', /is not a requirement/],
  ];
  for (const [selector, message] of bad) {
    it(`refuses ${JSON.stringify(selector)} with a 400 naming the field`, () => {
      assert.throws(() => parseLabelSelector(selector, 'sites.labels'), (e: unknown) => e instanceof BadRequestError && /^sites\.labels: /.test(e.message) && message.test(e.message));
    });
  }

  it('matches as the requirements say, for any labels (property)', () => {
    const key = fc.constantFrom('region', 'tier', 'gpu', 'example.com/rack');
    const value = fc.constantFrom<string>('eu', 'us', 'far', 'edge', '');
    const requirement = fc.oneof(
      fc.record({ key, op: fc.constantFrom('=', '!='), value }),
      fc.record({ key, op: fc.constantFrom('in', 'notin'), values: fc.uniqueArray(value.filter((v) => v !== ''), { minLength: 1, maxLength: 3 }) }),
      fc.record({ key, op: fc.constantFrom('exists', 'absent') }),
    );
    fc.assert(fc.property(fc.array(requirement, { maxLength: 4 }), fc.dictionary(key, value), (reqs, labels) => {
      const text = reqs.map((r) => ('value' in r ? `${r.key}${r.op}${r.value}` : 'values' in r ? `${r.key} ${r.op} (${r.values.join(',')})` : r.op === 'exists' ? r.key : `!${r.key}`)).join(',');
      const expected = reqs.every((r) => {
        const has = Object.hasOwn(labels, r.key);
        if ('value' in r) return r.op === '=' ? has && labels[r.key] === r.value : !has || labels[r.key] !== r.value;
        if ('values' in r) return r.op === 'in' ? has && r.values.includes(labels[r.key]!) : !has || !r.values.includes(labels[r.key]!);
        return r.op === 'exists' ? has : !has;
      });
      assert.equal(selectorMatches(parseLabelSelector(text), labels), expected, text);
    }), { numRuns: 500 });
  });
});
