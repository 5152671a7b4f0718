import assert from 'node:assert/strict';
import { it } from 'node:test';
import { describeError } from '../../src/core/describe-error.ts';

it('describes an error with the chain of its causes, each AggregateError member once', () => {
  const refused = Object.assign(new Error('connect ECONNREFUSED 127.0.0.1:9292'), { code: 'ECONNREFUSED' });
  assert.equal(describeError(new TypeError('fetch failed', { cause: refused })), 'fetch failed: connect ECONNREFUSED 127.0.0.1:9292');
  const both = new AggregateError([new Error('connect ECONNREFUSED ::1:9292'), new Error('connect ECONNREFUSED 127.0.0.1:9292'), new Error('connect ECONNREFUSED ::1:9292')], '');
  assert.equal(describeError(new TypeError('fetch failed', { cause: both })), 'fetch failed: connect ECONNREFUSED ::1:9292; connect ECONNREFUSED 127.0.0.1:9292');
  assert.equal(describeError(new Error('same', { cause: new Error('same') })), 'same');
  assert.equal(describeError('a string'), 'a string');
});
