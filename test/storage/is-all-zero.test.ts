import assert from 'node:assert/strict';
import { it } from 'node:test';
import fc from 'fast-check';
import { isAllZero } from '../../src/storage/hashing/is-all-zero.ts';

it('isAllZero is true exactly when every byte is zero, at any alignment and length', () => {
  const buffer = new Uint8Array(4096 + 64);
  fc.assert(fc.property(fc.nat({ max: 63 }), fc.nat({ max: 4096 }), fc.option(fc.tuple(fc.nat(), fc.integer({ min: 1, max: 255 }))),
    (start, length, nonZero) => {
      buffer.fill(0);
      const bytes = buffer.subarray(start, start + length);
      if (nonZero && length > 0) bytes[nonZero[0] % length] = nonZero[1];
      assert.equal(isAllZero(bytes), bytes.every((b) => b === 0));
    }), { numRuns: 2000 });
  assert.equal(isAllZero(new Uint8Array(0)), true);
  assert.equal(isAllZero(new Uint8Array(1024 * 1024)), true);
  const last = new Uint8Array(1024 * 1024);
  last[last.length - 1] = 1;
  assert.equal(isAllZero(last), false);
});
