import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { IngressBudget } from '../src/transfer/ingress-budget.ts';

describe('IngressBudget', () => {
  it('hands chunks on in priority order once the bucket owes nothing: a client first, then copies for the store, then prefetches', async () => {
    const budget = new IngressBudget({ bytesPerSecond: 1_000_000 });
    await budget.take(200_000, 'prefetch'); // owed now: 0.2 s
    const order: string[] = [];
    const waits = [
      budget.take(50_000, 'prefetch').then(() => order.push('prefetch')),
      budget.take(50_000, 'replicate').then(() => order.push('replicate')),
      budget.take(50_000, 'client').then(() => order.push('client 1')),
      budget.take(50_000, 'client').then(() => order.push('client 2')),
    ];
    assert.deepEqual(budget.waiting(), { client: 2, replicate: 1, prefetch: 1 });
    await Promise.all(waits);
    assert.deepEqual(order, ['client 1', 'client 2', 'replicate', 'prefetch']);
    assert.deepEqual(budget.waiting(), { client: 0, replicate: 0, prefetch: 0 });
  });

  it('a waiting chunk whose transfer is aborted leaves the queue with the abort\'s reason', async () => {
    const budget = new IngressBudget({ bytesPerSecond: 100_000 });
    await budget.take(100_000, 'client'); // owed now: 1 s
    const stop = new AbortController();
    const waiting = budget.take(10, 'replicate', stop.signal);
    assert.equal(budget.waiting().replicate, 1);
    stop.abort(new Error('the fill was stopped'));
    await assert.rejects(waiting, /the fill was stopped/);
    assert.equal(budget.waiting().replicate, 0);
    await assert.rejects(budget.take(10, 'client', AbortSignal.abort()), { name: 'AbortError' });
    assert.throws(() => new IngressBudget({ bytesPerSecond: 0 }), RangeError);
  });
});
