import { readFile } from 'node:fs/promises';
import { createSecureContext } from 'node:tls';
import { ConfigError, type OutpostConfig } from '../core/config.ts';

/** The site's own certificate chain and private key (PEM), as https.Server takes them. */
export interface ServerTls {
  cert: Buffer;
  key: Buffer;
}

/**
 * `tls_cert` + `tls_key`: read and checked (parsable, and the key matches the certificate), or
 * undefined when TLS is off. Throws ConfigError naming the file and what is wrong with it; read
 * at start and again at each SIGHUP, so a bad file on disk never replaces a good certificate.
 */
export async function readServerTls(config: Pick<OutpostConfig, 'tls_cert' | 'tls_key'>): Promise<ServerTls | undefined> {
  if (config.tls_cert === null || config.tls_key === null) return undefined;
  const [cert, key] = await Promise.all([readPem('tls_cert', config.tls_cert), readPem('tls_key', config.tls_key)]);
  try {
    createSecureContext({ cert, key });
  } catch (error) {
    throw new ConfigError([`tls_cert ${config.tls_cert} and tls_key ${config.tls_key}: not a usable certificate and key (${(error as Error).message})`]);
  }
  return { cert, key };
}

/** A CA bundle (PEM) named by the configuration key `key`, or undefined when the key is unset. */
export async function readCaBundle(key: 'parent_ca' | 'sites_ca', path: string | null): Promise<Buffer | undefined> {
  if (path === null) return undefined;
  const pem = await readPem(key, path);
  try {
    createSecureContext({ ca: pem });
  } catch (error) {
    throw new ConfigError([`${key} ${path}: not a PEM bundle of CA certificates (${(error as Error).message})`]);
  }
  return pem;
}

async function readPem(key: string, path: string): Promise<Buffer> {
  let pem: Buffer;
  try {
    pem = await readFile(path);
  } catch (error) {
    throw new ConfigError([`${key}: cannot read ${path} (${(error as Error).message})`]);
  }
  if (!pem.includes('-----BEGIN ')) throw new ConfigError([`${key} ${path}: not a PEM file (no -----BEGIN line)`]);
  return pem;
}
