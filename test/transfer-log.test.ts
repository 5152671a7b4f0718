import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { TransferLog } from '../src/transfer/transfer-log.ts';

describe('TransferLog', () => {
  it('lists running transfers first, then ended ones newest first, with their rate and outcome; keeps 50 ended', () => {
    let now = 1_000_000;
    const log = new TransferLog(() => now);
    const a = log.start('image-a', 'parent', 'manifest', 1000);
    a.counts.fetched = 400;
    a.counts.reused = 100;
    now += 1000;
    const b = log.start('image-b', 'parent', 'stream', 0);
    now += 1000;
    assert.deepEqual(log.list().map((t) => [t.image_id, t.state, t.bytes_per_second]), [['image-a', 'running', 250], ['image-b', 'running', 0]]);
    assert.deepEqual(log.progress('image-a'), { bytes_done: 500, bytes_per_second: 250 });
    assert.equal(log.progress('image-c'), undefined);
    a.end();
    b.end(new Error('the parent went away'));
    b.end(); // a second end changes nothing
    assert.equal(log.progress('image-a'), undefined, 'an ended transfer has no progress');
    const ended = log.list();
    assert.deepEqual(ended.map((t) => [t.image_id, t.state, t.error]), [['image-b', 'failed', 'the parent went away'], ['image-a', 'done', null]]);
    assert.notEqual(ended[1]!.ended_at, null);
    for (let i = 0; i < 60; i++) log.start(`image-${i}`, 'parent', 'manifest', 1).end();
    assert.equal(log.list().length, 50);
    assert.equal(log.list()[0]!.image_id, 'image-59');
  });

  it('totals: what every transfer did, running ones as they stand, so the counts only grow', () => {
    const log = new TransferLog();
    assert.deepEqual(log.totals(), { fetched: 0, refetched: 0, reused: 0, zeros: 0, resumes: 0, done: 0, failed: 0, running: 0 });
    const a = log.start('image-a', 'parent', 'manifest', 1000);
    a.counts.fetched = 300;
    a.counts.zeros = 100;
    assert.deepEqual(log.totals(), { fetched: 300, refetched: 0, reused: 0, zeros: 100, resumes: 0, done: 0, failed: 0, running: 1 });
    a.counts.fetched = 900;
    a.end();
    const b = log.start('image-b', 'parent', 'manifest', 1000);
    b.counts.reused = 50;
    b.counts.refetched = 10;
    b.counts.resumes = 1;
    b.end(new Error('cut'));
    for (let i = 0; i < 60; i++) log.start(`image-${i}`, 'parent', 'manifest', 1).end(); // beyond the 50 listed: still counted
    assert.deepEqual(log.totals(), { fetched: 900, refetched: 10, reused: 50, zeros: 100, resumes: 1, done: 61, failed: 1, running: 0 });
  });

  it('names the sites that sent bytes of a transfer after its source', () => {
    const log = new TransferLog();
    const t = log.start('image-a', 'http://parent.test', 'manifest', 1000);
    t.sentBy('metro-b');
    t.sentBy('metro-b');
    t.sentBy('metro-c');
    assert.equal(log.list()[0]!.source, 'http://parent.test, from site metro-b, site metro-c');
  });

  it('linkRate: what the transfers fetched per second over the last 10 s (reused bytes do not cross the link); a stalled link reads 0', () => {
    const t0 = 1_000_000;
    let now = t0;
    const log = new TransferLog(() => now);
    assert.equal(log.linkRate(), 0);
    const a = log.start('image-a', 'parent', 'manifest', 1000);
    const b = log.start('image-b', 'parent', 'manifest', 1000);
    now = t0 + 2000;
    a.counts.fetched = 300;
    a.counts.refetched = 100;
    a.counts.reused = 500;
    b.counts.fetched = 1000;
    assert.equal(log.linkRate(), 1400 / 2);
    now = t0 + 3000;
    b.counts.fetched = 1100;
    assert.equal(log.linkRate(), 1500 / 3, 'since the oldest look of the last 10 s');
    a.end();
    b.end(new Error('cut'));
    now = t0 + 14_000;
    assert.equal(log.linkRate(), 0, 'nothing running, no look in the last 10 s');
    const c = log.start('image-c', 'parent', 'manifest', 1000);
    c.counts.fetched = 600;
    now = t0 + 20_000;
    assert.equal(log.linkRate(), 600 / 6);
    now = t0 + 26_000;
    assert.equal(log.linkRate(), 0, 'c stalled: nothing fetched since the look 6 s ago');
    // A first look: each running transfer's rate since it began.
    const fresh = new TransferLog(() => now);
    const d = fresh.start('image-d', 'parent', 'manifest', 1000);
    d.counts.fetched = 800;
    now += 4000;
    assert.equal(fresh.linkRate(), 200);
  });
});
