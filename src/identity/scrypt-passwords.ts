import { randomBytes, scrypt, timingSafeEqual, type ScryptOptions } from 'node:crypto';
import type { PasswordHasher } from '../core/ports.ts';

/** scrypt parameters: N=2^15, r=8, p=1 (32 MiB, the OWASP minimum for scrypt). */
const PARAMS = { N: 1 << 15, r: 8, p: 1, maxmem: 64 << 20 } as const;
const KEY_LENGTH = 32;

function derive(password: string, salt: Buffer, params: ScryptOptions): Promise<Buffer> {
  return new Promise((resolve, reject) => scrypt(password, salt, KEY_LENGTH, params, (err, key) => (err === null ? resolve(key) : reject(err))));
}

/**
 * Password hashes with scrypt (memory-hard, in Node's crypto; run on the thread pool), stored as
 * `scrypt$N$r$p$salt$hash` (base64url) so that parameters can be raised without breaking old hashes.
 */
export class ScryptPasswords implements PasswordHasher {
  async hash(password: string): Promise<string> {
    const salt = randomBytes(16);
    const key = await derive(password, salt, PARAMS);
    return ['scrypt', PARAMS.N, PARAMS.r, PARAMS.p, salt.toString('base64url'), key.toString('base64url')].join('$');
  }

  async verify(password: string, stored: string): Promise<boolean> {
    const [scheme, n, r, p, salt, hash] = stored.split('$');
    if (scheme !== 'scrypt' || hash === undefined) return false;
    const expected = Buffer.from(hash, 'base64url');
    const key = await derive(password, Buffer.from(salt, 'base64url'), { N: Number(n), r: Number(r), p: Number(p), maxmem: PARAMS.maxmem });
    return key.length === expected.length && timingSafeEqual(key, expected);
  }
}
