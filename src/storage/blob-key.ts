import { BadRequestError } from '../core/errors.ts';

const KEY_RE = /^[A-Za-z0-9][A-Za-z0-9._-]{0,254}$/;

/** Whether `name` is a valid blob key (what list() yields of a driver's names). */
export function isBlobKey(name: string): boolean {
  return KEY_RE.test(name) && !name.includes('..');
}

/** `key` if it is a valid blob key: [A-Za-z0-9._-], 1-255 characters, not starting with a dot or containing '..'; else BadRequestError. */
export function checkBlobKey(key: string): string {
  if (!isBlobKey(key)) throw new BadRequestError(`Invalid blob key: ${JSON.stringify(key)}`);
  return key;
}
