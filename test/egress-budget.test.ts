import assert from 'node:assert/strict';
import { Readable } from 'node:stream';
import { describe, it } from 'node:test';
import { EgressBudget, egressWeight } from '../src/transfer/egress-budget.ts';

const source = () => Readable.from([Buffer.alloc(1000, 1), Buffer.alloc(1000, 2), Buffer.alloc(1000, 3)]);

describe('EgressBudget', () => {
  it('shares the budget among the children receiving now by weight, again whenever one starts or stops', async () => {
    const budget = new EgressBudget({ bytesPerSecond: 20_000_000, weightOf: async (site) => (site === 'b' ? 3 : 1) });
    const a = budget.throttle('a', source());
    const b = budget.throttle('b', source());
    const readA = a[Symbol.asyncIterator]();
    const readB = b[Symbol.asyncIterator]();
    await readA.next();
    assert.deepEqual(budget.shares(), new Map([['a', 20_000_000]]), 'alone, a child has it all');
    await readB.next();
    assert.deepEqual(budget.shares(), new Map([['a', 5_000_000], ['b', 15_000_000]]));
    const rest: Buffer[] = [];
    for (let r = await readA.next(); r.done !== true; r = await readA.next()) rest.push(r.value as Buffer);
    assert.deepEqual(rest.map((x) => x[0]), [2, 3], 'the bytes pass unchanged, in order');
    assert.deepEqual(budget.shares(), new Map([['b', 20_000_000]]), 'a finished: b has it all');
    b.destroy();
    await new Promise((resolve) => setImmediate(resolve));
    assert.deepEqual(budget.shares(), new Map(), 'a destroyed stream gives its share back');
  });

  it('reads a child\'s weight from its egress-weight label: a positive number, else 1', () => {
    assert.equal(egressWeight({ 'egress-weight': '3' }), 3);
    assert.equal(egressWeight({ 'egress-weight': '0.5' }), 0.5);
    for (const bad of ['0', '-2', 'heavy', '']) assert.equal(egressWeight({ 'egress-weight': bad }), 1, bad);
    assert.equal(egressWeight(undefined), 1);
    assert.throws(() => new EgressBudget({ bytesPerSecond: 0, weightOf: async () => 1 }), RangeError);
  });
});
