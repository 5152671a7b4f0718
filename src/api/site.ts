import { mkdir } from 'node:fs/promises';
import { isAbsolute, join, resolve } from 'node:path';
import type { AddressInfo } from 'node:net';
import type { FastifyBaseLogger } from 'fastify';
import { SqlCatalog } from '../catalog/sql-catalog.ts';
import type { OutpostConfig } from '../core/config.ts';
import { ImageService } from '../core/image-service.ts';
import { ImportTaskRunner, type GlanceRegion } from '../core/import-runner.ts';
import { ImportService } from '../core/import-service.ts';
import { StoreRegistry } from '../core/stores.ts';
import { HeaderAuthenticator } from '../identity/header-authenticator.ts';
import { JoseTokens } from '../identity/jose-tokens.ts';
import { KeystoneAuthenticator } from '../identity/keystone-authenticator.ts';
import { RemoteKeystoneAuthenticator } from '../identity/remote-keystone-authenticator.ts';
import { ScryptPasswords } from '../identity/scrypt-passwords.ts';
import { TrustedIssuers } from '../identity/trusted-issuers.ts';
import { IdentityService } from '../core/identity/identity-service.ts';
import { FileBlobStore } from '../storage/file-blob-store.ts';
import { WorkerHasherFactory } from '../storage/worker-hasher.ts';
import { HttpRemoteSource } from '../transfer/http-remote-source.ts';
import { Follower } from '../replication/follower.ts';
import { ParentReachability } from '../links/parent-reachability.ts';
import { SiteRegistration } from '../replication/site-registration.ts';
import { ChangeLogRetention } from '../replication/change-log-retention.ts';
import { CacheInvalidation } from '../cache/cache-invalidation.ts';
import { PullThroughImages } from '../cache/pull-through-images.ts';
import { HttpParentImageSource } from '../transfer/parent-image-source.ts';
import { SiteImageSource } from '../transfer/site-image-source.ts';
import { ParentCopyRegistry } from '../replication/parent-copy-registry.ts';
import { SiteRegistry } from '../core/site-registry.ts';
import { SiteInventories } from '../core/site-inventory.ts';
import { InventoryReporter, parentInventorySink } from '../replication/inventory-reporter.ts';
import packageJson from '../../package.json' with { type: 'json' };

const VERSION = packageJson.version;
import { createApp } from './create-app.ts';

export interface RunningSite {
  /** The URL the site answers at (with the real port when 0 was asked for). */
  url: string;
  /** Set when this start generated the bootstrap admin's password (to be shown once). */
  generatedAdminPassword?: string;
  close(): Promise<void>;
}

export interface StartOptions {
  /** auth keystone, central: the bootstrap admin's password (OUTPOST_ADMIN_PASSWORD); generated if unset and none exists yet. */
  adminPassword?: string;
}

/**
 * The composition root: wires a site's adapters (catalog, stores, identity) to the core and the
 * HTTP app according to the configuration, and starts listening. The role decides the wiring here
 * and nowhere else.
 */
export async function startSite(config: OutpostConfig, logger: FastifyBaseLogger, options: StartOptions = {}): Promise<RunningSite> {
  const dataDir = resolve(config.data);
  await mkdir(dataDir, { recursive: true });
  const hashers = new WorkerHasherFactory();
  const catalog = await SqlCatalog.openSqlite(join(dataDir, 'catalog.sqlite'));
  const stores = new StoreRegistry(await Promise.all(config.stores.map(async (s) => {
    const root = isAbsolute(s.path) ? s.path : resolve(s.path);
    return {
      info: { id: s.id, type: s.type, description: s.description, weight: s.weight, readOnly: s.read_only, properties: { data_dir: root } },
      blobs: await FileBlobStore.create({ id: s.id, root, hashers, sync: config.storage_sync }),
    };
  })));
  // Import: a node-local staging area (Glance's reserved os_glance_staging_store), the task
  // runner, and the filtered HTTP client for web-download and glance-download.
  const staging = await FileBlobStore.create({ id: 'os_glance_staging_store', root: join(dataDir, 'staging'), hashers, sync: false });
  // Identity: central issues tokens (and keeps password hashes and the private signing key);
  // every site verifies them against its own replica of identity's public records.
  const keystone = config.auth === 'keystone';
  // With keystone_url, an existing Keystone issues and validates the tokens; Outpost's own identity stays off.
  const remoteKeystone = keystone && config.keystone_url !== null;
  const isCentral = config.role === 'central';
  const tokens = new JoseTokens(catalog);
  const identity = new IdentityService({
    store: catalog, verifier: tokens, signer: isCentral ? tokens : undefined, keys: isCentral ? tokens : undefined, passwords: isCentral ? new ScryptPasswords() : undefined,
    federation: isCentral && Object.keys(config.trusted_issuers).length > 0 ? new TrustedIssuers(config.trusted_issuers) : undefined,
    tokenTtlSeconds: config.token_ttl_seconds, sites: (o) => catalog.listSites(o),
  });
  let generatedAdminPassword: string | undefined;
  if (keystone && isCentral && !remoteKeystone) {
    await tokens.ensureSigningKey();
    ({ generatedPassword: generatedAdminPassword } = await identity.bootstrap(options.adminPassword));
  }
  // What this site presents to its parent: its site credential (auth keystone).
  const siteHeaders: Record<string, string> = config.site_token === null ? {} : { 'x-auth-token': config.site_token };
  // What central presents to the sites it reads images from: a credential of its own, renewed.
  let centralCredential: { token: string; renewAt: number } | undefined;
  const centralHeaders = async (): Promise<Record<string, string>> => {
    if (!keystone || remoteKeystone) return {};
    if (centralCredential === undefined || Date.now() > centralCredential.renewAt) {
      centralCredential = { token: await identity.siteToken(null, config.site, 3600, { record: false }), renewAt: Date.now() + 600_000 };
    }
    return { 'x-auth-token': centralCredential.token };
  };
  // Central's own site user and role assignment are made now, so that they have reached every
  // site's replica by the time central first reads from one.
  if (keystone && isCentral && !remoteKeystone) await centralHeaders();

  // The edge role: the catalog is a replica that follows the parent's change feed, and writes go
  // to the parent. Everything else is wired the same for every role.
  const reachability = config.role === 'edge'
    ? new ParentReachability({ parentUrl: config.parent!, headers: siteHeaders, timeoutMs: config.parent_timeout_ms, log: logger })
    : undefined;
  const follower = config.role === 'edge'
    ? new Follower({ replica: catalog, parentUrl: config.parent!, headers: siteHeaders, log: logger, waitSeconds: config.feed_wait_seconds,
      auditIntervalSeconds: config.audit_interval_seconds, reachability })
    : undefined;
  await follower?.start();
  const parentLink = follower === undefined ? undefined : {
    site: config.site,
    url: config.parent!,
    timeoutMs: config.parent_timeout_ms,
    waitForReplica: (seq: number, timeoutMs: number) => follower.waitFor(seq, timeoutMs),
    maxStalenessMs: config.metadata_max_staleness === null ? undefined : config.metadata_max_staleness * 1000,
    lastContact: () => follower.status().lastContact,
    reachability: reachability!,
  };
  // Image bytes the site's stores do not hold: a cache in the site's default store, filled from
  // the parent at an edge and from the sites holding a copy at central (pull-through, single
  // flight), and invalidated through the site's change log.
  const cache = await PullThroughImages.create({
    site: config.site,
    index: catalog,
    blobs: stores.blobs(stores.defaultId),
    source: config.role === 'edge'
      ? new HttpParentImageSource({ parentUrl: config.parent!, headers: siteHeaders, timeoutMs: config.parent_timeout_ms })
      : new SiteImageSource({ catalog, self: config.site, headers: centralHeaders, timeoutMs: config.parent_timeout_ms }),
    spoolDir: join(dataDir, 'cache-spool'),
    budgetBytes: config.cache_max_bytes,
    log: logger,
  });
  const invalidation = new CacheInvalidation({
    catalog, changeLog: catalog, log: logger,
    held: () => cache.entries().map((e) => e.image_id),
    drop: async (id) => {
      await cache.invalidate(id);
      for (const s of stores.list()) await stores.blobs(s.id).delete(id);
    },
  });
  invalidation.start();
  const images = new ImageService({
    catalog,
    elsewhere: cache,
    copies: parentLink === undefined ? undefined : new ParentCopyRegistry({ parentUrl: parentLink.url, headers: siteHeaders, timeoutMs: parentLink.timeoutMs, waitForReplica: parentLink.waitForReplica, log: logger }),
    stores,
    limits: { defaultLimit: config.limit_param_default, maxLimit: config.api_limit_max },
    imageSizeCap: config.image_size_cap,
    staging,
  });

  const remote = new HttpRemoteSource(config.import_filter);
  const runner = new ImportTaskRunner({
    catalog, stores, staging, remote,
    regions: (name): GlanceRegion | undefined => {
      const entry = Object.entries(config.glance_download_regions).find(([n]) => n.toLowerCase() === name.toLowerCase())?.[1];
      if (entry === undefined) return undefined;
      return { url: entry.url, headers: entry.token === null ? {} : { 'x-auth-token': entry.token } };
    },
    imageSizeCap: config.image_size_cap,
    log: logger,
  });
  // Tasks are run (and recovered) where they were created: an edge's replicated tasks are central's.
  if (config.role === 'central') await runner.recover();
  const imports = new ImportService({
    catalog, stores, images, staging, runner,
    methods: config.import_methods,
    checkUri: (uri) => remote.check(uri),
    imageSizeCap: config.image_size_cap,
  });

  // Every site serves its change log to children, so every site trims it.
  const retention = new ChangeLogRetention({ changeLog: catalog, keep: config.change_log_retain, log: logger });
  retention.start();
  const sites = new SiteRegistry(catalog);
  // Every site tells central what it holds; central keeps the reports (its own included).
  const inventories = new SiteInventories(catalog, catalog);
  const reporter = new InventoryReporter({
    catalog, storeIds: stores.list().map((s) => s.id), cacheStore: stores.defaultId, cache, log: logger,
    reportLocated: parentLink !== undefined,
    send: parentLink === undefined
      ? (images, opts) => catalog.putInventory({ site: config.site, reported_at: new Date().toISOString(), images }, opts)
      : parentInventorySink(parentLink.url, config.site, parentLink.timeoutMs, siteHeaders),
  });

  const [host, port] = splitListen(config.listen);
  let publicUrl = config.public_url?.replace(/\/+$/, '') ?? '';
  const app = createApp({
    logger,
    authenticator: remoteKeystone
      ? new RemoteKeystoneAuthenticator({ url: config.keystone_url!, serviceToken: config.keystone_service_token, timeoutMs: config.parent_timeout_ms })
      : keystone ? new KeystoneAuthenticator(identity) : new HeaderAuthenticator(),
    identity: keystone && !remoteKeystone ? identity : undefined,
    images,
    imports,
    stores,
    // Glance's cache API is an edge's (central's cache only holds copies other sites own).
    cache: follower === undefined ? undefined : cache,
    storeDescriptions: follower === undefined
      ? async () => stores.describe()
      : async () => (await catalog.listSites()).find((s) => s.parent === null)?.store_details ?? stores.describe(),
    maxLimit: config.api_limit_max,
    replication: {
      catalog, changeLog: catalog, sites, site: { id: config.site, role: config.role, parent: config.parent }, follower,
      inventories, localInventory: () => reporter.current(),
      siteCredential: keystone && isCentral && !remoteKeystone ? (ctx, site, ttl) => identity.siteToken(ctx, site, ttl) : undefined,
    },
    heldStores: follower === undefined ? (ids) => inventories.storesHolding(ids) : undefined,
    parent: parentLink,
    get publicUrl() { return publicUrl; },
    showLocations: config.show_multiple_locations,
    showDirectUrl: config.show_image_direct_url,
  });
  await app.listen({ host, port });
  const address = app.server.address() as AddressInfo;
  const url = `http://${address.family === 'IPv6' ? `[${address.address}]` : address.address}:${address.port}`;
  if (publicUrl === '') publicUrl = url;
  // Central records itself; an edge registers with its parent (forwarded up to central) and
  // refreshes that registration as a heartbeat.
  const self = { id: config.site, labels: { ...config.labels }, public_url: publicUrl, stores: stores.list().map((s) => s.id), store_details: stores.describe(), version: VERSION };
  if (follower === undefined) await sites.registerSelf(self);
  const registration = follower === undefined ? undefined : new SiteRegistration({
    parentUrl: config.parent!, headers: siteHeaders, site: self, follower, log: logger,
  });
  registration?.start();
  reporter.start();
  logger.info({ url, role: config.role, site: config.site, stores: stores.list().map((s) => s.id) }, 'outpost site listening');

  return {
    url,
    generatedAdminPassword,
    async close() {
      await app.close();
      registration?.close();
      await reporter.close();
      await follower?.close();
      reachability?.close();
      await retention.close();
      await invalidation.close();
      await cache.close();
      await runner.close();
      await catalog.close();
      await hashers.close();
    },
  };
}

function splitListen(listen: string): [string, number] {
  const i = listen.lastIndexOf(':');
  return [listen.slice(0, i).replace(/^\[(.*)\]$/, '$1'), Number(listen.slice(i + 1))];
}
