import { join, resolve } from 'node:path';
import type { AddressInfo } from 'node:net';
import type { Server as HttpsServer } from 'node:https';
import type { FastifyBaseLogger } from 'fastify';
import { openCatalog, type SqlCatalog } from '../catalog/open-catalog.ts';
import { imageCacheDirectory, PARTIAL_GRACE, type OutpostConfig } from '../core/config.ts';
import { ImageService } from '../core/image-service.ts';
import { ImportTaskRunner, type GlanceRegion } from '../core/import-runner.ts';
import { ImportService } from '../core/import-service.ts';
import { LocationProber } from '../core/location-probe.ts';
import { LocationService } from '../core/location-service.ts';
import { StartupRecovery } from '../core/startup-recovery.ts';
import { NodeWork } from '../core/node-work.ts';
import { StoreRegistry } from '../core/stores.ts';
import { RegionStores } from '../core/region-stores.ts';
import { HeaderAuthenticator } from '../identity/header-authenticator.ts';
import { JoseTokens } from '../identity/jose-tokens.ts';
import { KeystoneAuthenticator } from '../identity/keystone-authenticator.ts';
import { RemoteKeystoneAuthenticator } from '../identity/remote-keystone-authenticator.ts';
import { ScryptPasswords } from '../identity/scrypt-passwords.ts';
import { TrustedIssuers } from '../identity/trusted-issuers.ts';
import { IdentityService } from '../core/identity/identity-service.ts';
import { ImageManifests } from '../core/image-manifests.ts';
import { DataDirectory } from '../storage/data-directory.ts';
import { StartupError } from '../core/startup-error.ts';
import { FileBlobDriver } from '../storage/drivers/file-blob-driver.ts';
import { openStoreDriver } from '../storage/store-drivers.ts';
import { VerifyingBlobStore } from '../storage/verifying-blob-store.ts';
import { openImageCacheStore } from '../storage/image-cache-store.ts';
import { WorkerHasherFactory } from '../storage/worker-hasher.ts';
import { HttpRemoteSource } from '../transfer/http-remote-source.ts';
import { auditCounts, Follower } from '../replication/follower.ts';
import { OfflineReplayer } from '../replication/offline-replayer.ts';
import { withOfflineWrites } from '../replication/offline-writes-catalog.ts';
import { OfflineReconciliation } from '../core/offline-writes.ts';
import { SiteRegistration } from '../replication/site-registration.ts';
import { ChangeLogRetention } from '../replication/change-log-retention.ts';
import { CacheInvalidation } from '../cache/cache-invalidation.ts';
import { PullThroughImages } from '../cache/pull-through-images.ts';
import { DeltaImageSource } from '../transfer/delta-image-source.ts';
import { TransferLog } from '../transfer/transfer-log.ts';
import { HttpParentImageSource } from '../transfer/parent-image-source.ts';
import { SiteImageSource } from '../transfer/site-image-source.ts';
import { PeerFallbackSource } from '../transfer/peer-fallback-source.ts';
import { StoreImageSource } from '../transfer/store-image-source.ts';
import { UrlLocationSource } from '../transfer/url-location-source.ts';
import { ParentCopyRegistry } from '../replication/parent-copy-registry.ts';
import { Fleet } from '../placement/fleet.ts';
import { PlacementCatalog } from '../placement/placement-catalog.ts';
import { LocalCopyRegistry } from '../placement/local-copy-registry.ts';
import { SiteAgent } from '../placement/site-agent.ts';
import { ImageFills } from '../transfer/image-fills.ts';
import { EgressBudget, egressWeight, SITE_HEADER } from '../transfer/egress-budget.ts';
import { IngressBudget } from '../transfer/ingress-budget.ts';
import { SiteRegistry } from '../core/site-registry.ts';
import { SiteInventories } from '../core/site-inventory.ts';
import { SiteRemoval } from '../core/site-removal.ts';
import { MetadefService } from '../core/metadef-service.ts';
import { PlacementPolicies } from '../core/placement-policies.ts';
import { InventoryReporter, parentInventorySink } from '../replication/inventory-reporter.ts';
import { ParentClient, TrustedConnections } from '../links/parent-client.ts';
import { RegionLinks } from '../links/region-links.ts';
import { loadDashboardFiles } from './dashboard-routes.ts';
import { PrometheusMetrics } from '../observability/prometheus-metrics.ts';
import { parentLinkReading } from '../core/metrics.ts';
import { readCaBundle, readServerTls, type ServerTls } from './tls-files.ts';
import packageJson from '../../package.json' with { type: 'json' };

const VERSION = packageJson.version;
/** Copies a site's placement agent fetches at the same time. */
const PLACEMENT_CONCURRENCY = 2;
/** How soon a placement agent tries a pending copy again when nothing changes, ms. */
const PLACEMENT_RETRY_MS = 5000;
import { createApp, type ServedRoute } from './create-app.ts';

export interface RunningSite {
  /** The URL the site answers at (with the real port when 0 was asked for). */
  url: string;
  /** Set when this start generated the bootstrap admin's password (to be shown once), which it does only once listening. */
  generatedAdminPassword?: string;
  /**
   * With TLS on: reads tls_cert and tls_key again and serves them to new connections (the
   * listener and open connections stay). Throws ConfigError, keeping the current certificate,
   * when the files are not usable. False when TLS is off.
   */
  reloadTls(): Promise<boolean>;
  /** What the site serves (docs/api-compatibility.md is checked against it). */
  routes(): ServedRoute[];
  close(): Promise<void>;
}

export interface StartOptions {
  /**
   * auth keystone, central: the bootstrap admin's password (OUTPOST_ADMIN_PASSWORD), used only while
   * the admin has none (else ignored, with a warning); generated if unset.
   */
  adminPassword?: string;
}

/**
 * The composition root: wires a site's adapters (catalog, stores, identity) to the core and the
 * HTTP app according to the configuration, and starts listening. The role decides the wiring here
 * and nowhere else.
 */
export async function startSite(config: OutpostConfig, logger: FastifyBaseLogger, options: StartOptions = {}): Promise<RunningSite> {
  // TLS: the site's certificate, and whom its links to other sites trust (read first: a bad file
  // stops the start before the data directory is touched).
  const serverTls = await readServerTls(config);
  const links = new TrustedConnections(config.role === 'edge' ? await readCaBundle('parent_ca', config.parent_ca) : await readCaBundle('sites_ca', config.sites_ca));
  // The data directory next: private, this site's, and held by this process alone (or a refusal).
  let directory: DataDirectory;
  try {
    directory = await DataDirectory.open({ path: config.data, site: config.site, role: config.role, log: logger });
  } catch (error) {
    await links.close();
    throw error;
  }
  try {
    const site = await startSiteIn(directory, { serverTls, links }, config, logger, options);
    return { ...site, async close() { await site.close(); await directory.close(); } };
  } catch (error) {
    await directory.close();
    throw error;
  }
}

/** What startSite reads before the data directory: the site's certificate and whom its links trust. */
interface SiteTls {
  serverTls: ServerTls | undefined;
  links: TrustedConnections;
}

async function startSiteIn(directory: DataDirectory, { serverTls, links }: SiteTls, config: OutpostConfig, logger: FastifyBaseLogger, options: StartOptions): Promise<RunningSite> {
  const dataDir = directory.path;
  const hashers = new WorkerHasherFactory();
  // The catalog: the SQLite file in the data directory, or PostgreSQL shared by several nodes.
  const catalog = await openCatalog(config.database_url ?? directory.catalogPath, { migrate: config.migrate_at_start, log: logger });
  // Other nodes serve this site from the same catalog (PostgreSQL), and its stores with it.
  const shared = catalog.dialect !== 'sqlite';
  const stores = new StoreRegistry(await Promise.all(config.stores.map(async (s) => {
    // A directory (FileBlobDriver) or an S3 bucket (S3BlobDriver), verified the same way.
    const { driver, properties } = await openStoreDriver(s, { sync: config.storage_sync, shared });
    return {
      info: { id: s.id, type: s.type, description: s.description, weight: s.weight, readOnly: s.read_only, properties },
      blobs: new VerifyingBlobStore(driver, hashers),
    };
  })));
  // Import: a node-local staging area (Glance's reserved os_glance_staging_store), the task
  // runner, and the filtered HTTP client for web-download and glance-download.
  // A staging_path is shared by the nodes (a network filesystem), the data directory's is this node's.
  const staging = new VerifyingBlobStore(await FileBlobDriver.create({
    id: 'os_glance_staging_store', root: config.staging_path === null ? join(dataDir, 'staging') : resolve(config.staging_path), sync: false,
    partialGraceMs: shared && config.staging_path !== null ? PARTIAL_GRACE.default * 1000 : 0,
  }), hashers);
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
  const bootstrapping = keystone && isCentral && !remoteKeystone;
  if (bootstrapping) {
    await tokens.ensureSigningKey();
    await identity.bootstrapRecords();
  }
  // What this site presents to its parent: its site credential (auth keystone).
  // Its credential (auth keystone), and who it is, which a parent's egress budget shares by (SITE_HEADER).
  const siteHeaders: Record<string, string> = { [SITE_HEADER]: config.site, ...(config.site_token === null ? {} : { 'x-auth-token': config.site_token }) };
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
  // to the parent, all through the one link to it. Everything else is wired the same for every role.
  const parent = config.role === 'edge'
    ? new ParentClient({ url: config.parent!, headers: siteHeaders, timeoutMs: config.parent_timeout_ms, connections: links, trustKey: 'parent_ca', reachability: { log: logger } })
    : undefined;
  const follower = parent !== undefined
    ? new Follower({ replica: catalog, parent, log: logger, waitSeconds: config.feed_wait_seconds, auditIntervalSeconds: config.audit_interval_seconds })
    : undefined;
  await follower?.start();
  const parentLink = parent === undefined || follower === undefined ? undefined : {
    site: config.site,
    url: parent.url,
    client: parent,
    timeoutMs: config.parent_timeout_ms,
    waitForReplica: (seq: number, timeoutMs: number) => follower.waitFor(seq, timeoutMs),
    maxStalenessMs: config.metadata_max_staleness === null ? undefined : config.metadata_max_staleness * 1000,
    lastContact: () => follower.status().lastContact,
    reachability: parent.reachability!,
  };
  // Where image bytes this site does not hold come from: the parent at an edge, the sites holding
  // a copy at central. Transfers are planned from the image's chunk manifest (what is held here
  // is copied, only the rest is fetched), and pulled through the site's cache (single flight),
  // invalidated through the site's change log. The cache keeps its copies in a directory of its
  // own (image_cache_dir; central's default) or in the default store (an edge's default).
  const cacheDir = imageCacheDirectory(config, dataDir, shared);
  const cacheBlobs = cacheDir === undefined ? stores.blobs(stores.defaultId) : await openImageCacheStore({
    root: cacheDir, hashers, sync: config.storage_sync, partialGraceMs: shared ? PARTIAL_GRACE.default * 1000 : 0,
  });
  // web-download, glance-download and http(s) locations are fetched through the import filter.
  const remote = new HttpRemoteSource(config.import_filter);
  const fromParent = parent === undefined ? undefined : new HttpParentImageSource({
    parent, timeoutMs: config.parent_timeout_ms,
    ingress: config.ingress_max_bytes_per_s === null ? undefined : new IngressBudget({ bytesPerSecond: config.ingress_max_bytes_per_s }),
  });
  const upstream = parent !== undefined && fromParent !== undefined
    // An edge: its parent, and while the parent is away its peers (the same credential).
    ? config.peers.length === 0 ? fromParent : new PeerFallbackSource({
      parent: fromParent,
      peers: new SiteImageSource({
        catalog, self: config.site, only: config.peers, headers: async () => siteHeaders, timeoutMs: config.parent_timeout_ms,
        connections: links, trustKey: 'parent_ca', log: logger,
      }),
      parentReachable: () => parent.reachability!.reachable,
      log: logger,
    })
    // Central: the sites holding a copy; an image located only at http(s) URLs, from those (verified).
    : new UrlLocationSource({
      catalog, remote,
      next: new SiteImageSource({ catalog, self: config.site, headers: centralHeaders, timeoutMs: config.parent_timeout_ms, connections: links }),
    });
  const transfers = new TransferLog();
  // The site's metrics (GET /metrics): a registry of its own, counted where things happen.
  const metrics = new PrometheusMetrics({ site: config.site });
  const manifests = new ImageManifests({ catalog, index: catalog, chunks: catalog, stores, hashers, elsewhere: upstream, whileStoring: config.chunk_manifests });
  const planned = new DeltaImageSource({
    upstream,
    transfers,
    sourceName: parent !== undefined ? parent.url : 'the sites holding a copy',
    manifestOf: (id, o) => manifests.forTransfer(id, o),
    chunks: catalog,
    blobs: (id) => (id === cacheBlobs.id ? cacheBlobs : stores.has(id) ? stores.blobs(id) : undefined),
    log: logger,
  });
  // One fill per image at a time, whoever asks: a client's miss (the cache) or a placement policy
  // (the agent). Central reads the images its own stores hold from there.
  const fills = await ImageFills.create({
    source: parent !== undefined ? planned : new StoreImageSource({ catalog, stores, manifests: catalog, elsewhere: planned, transfers }),
    spoolDir: join(dataDir, 'cache-spool'),
    log: logger,
    metrics,
    onManifestMismatch: (id) => manifests.manifestMismatched(id),
  });
  const cache = await PullThroughImages.create({
    site: config.site,
    index: catalog,
    manifests: catalog,
    chunks: catalog,
    buildManifests: config.chunk_manifests,
    blobs: cacheBlobs,
    shownAs: stores.defaultId,
    former: stores.blobs(stores.defaultId),
    // Central's cache serves the images of its own stores too; a miss keeps those of remote
    // stores (S3) where the cache has a directory of its own (docs/architecture.md).
    located: parent !== undefined ? undefined
      : { direct: new Set(stores.list().filter((s) => cacheDir === undefined || s.type === 'file').map((s) => s.id)) },
    fills,
    budgetBytes: config.cache_max_bytes,
    log: logger,
    metrics,
  });
  const invalidation = new CacheInvalidation({
    catalog, changeLog: catalog, log: logger,
    held: () => cache.entries().map((e) => e.image_id),
    drop: async (id) => {
      await cache.invalidate(id);
      await manifests.forget(id, stores.list().map((s) => s.id));
      for (const s of stores.list()) await stores.blobs(s.id).delete(id);
    },
    revalidate: (image) => cache.revalidate(image),
  });
  invalidation.start();
  // Where an edge records the copies it holds: central's catalog, through the parent.
  const copies = parentLink === undefined ? undefined
    : new ParentCopyRegistry({ parent: parentLink.client, timeoutMs: parentLink.timeoutMs, waitForReplica: parentLink.waitForReplica, log: logger });
  const region = new RegionStores({ site: config.site, local: stores, sites: (o) => catalog.listSites(o) });
  // This node among the nodes serving the site from one catalog (PostgreSQL: any number; SQLite:
  // this one alone): its uploads, staging and import tasks are claimed, and another node takes
  // them over if it dies.
  const work = await NodeWork.start({ claims: catalog, site: config.site, exclusive: !shared, log: logger });
  // The locations API: what is at a location's URL (a store's copy, or an http(s) URL through the filter).
  const prober = new LocationProber({ stores, remote, hashers, imageSizeCap: config.image_size_cap });
  // An edge's own catalog takes the writes it makes while cut off (passed to its parent otherwise).
  const imageCatalog = parent === undefined ? catalog : withOfflineWrites(catalog, { site: config.site, parent: parent.url, marks: catalog });
  const images = new ImageService({
    catalog: imageCatalog, region, manifests, work,
    locations: { show: config.show_multiple_locations, probe: (image, url, o) => prober.probe(image, url, o) },
    elsewhere: cache,
    copies,
    offline: parent === undefined ? undefined : catalog,
    stores,
    limits: { defaultLimit: config.limit_param_default, maxLimit: config.api_limit_max },
    imageSizeCap: config.image_size_cap,
    staging,
    metrics,
  });
  // Every site keeps the copies placement policies want in its stores: an edge records them at
  // central through its parent, central in its own catalog (where its import runner makes
  // copy-image's copies, and its stores' bytes are checked at start rather than for drift).
  const agent = new SiteAgent({
    site: { id: config.site, labels: config.labels, stores: stores.list().map((s) => s.id) }, stores, catalog, changeLog: catalog, fills,
    copies: copies ?? new LocalCopyRegistry(images), copyImage: copies !== undefined, work: shared ? work : undefined,
    manifests: catalog, chunks: catalog, buildManifests: config.chunk_manifests, cache,
    concurrency: PLACEMENT_CONCURRENCY, retryMs: PLACEMENT_RETRY_MS, driftCheckMs: copies === undefined ? null : config.drift_check_seconds * 1000,
    progress: (id) => transfers.progress(id), log: logger,
  });
  agent.start();

  const locations = new LocationService({ catalog, images, stores, prober, region, work, log: logger });
  const inventories = new SiteInventories(catalog, catalog);
  const runner = new ImportTaskRunner({
    catalog, stores, staging, remote, manifests,
    // Tasks run at central, which has the sites' reports of the copies copy-image asked them for.
    copyFailures: inventories.copyFailures.bind(inventories),
    regions: (name): GlanceRegion | undefined => {
      const entry = Object.entries(config.glance_download_regions).find(([n]) => n.toLowerCase() === name.toLowerCase())?.[1];
      if (entry === undefined) return undefined;
      return { url: entry.url, headers: entry.token === null ? {} : { 'x-auth-token': entry.token } };
    },
    imageSizeCap: config.image_size_cap,
    work,
    log: logger,
  });
  // What a stopped process (or node) left: partial writes; interrupted tasks and uploads where
  // the catalog is authoritative (an edge's replicated images and tasks are central's, but for
  // those it wrote while cut off).
  const recovery = new StartupRecovery({
    catalog, stores, staging, ownsCatalog: config.role === 'central', offline: parent === undefined ? undefined : catalog, work, log: logger,
    tasks: { recover: async () => (await runner.recover()) + (await locations.recover()) },
    shared: shared ? {} : undefined,
  });
  await recovery.recover();
  const imports = new ImportService({
    catalog, stores, region, images, staging, runner, work,
    methods: config.import_methods,
    checkUri: (uri) => remote.check(uri),
    imageSizeCap: config.image_size_cap,
  });

  // Every site serves its change log to children, so every site trims it.
  const retention = new ChangeLogRetention({ changeLog: catalog, keep: config.change_log_retain, log: logger });
  retention.start();
  const sites = new SiteRegistry(catalog, catalog);
  // What the metrics read when scraped: transfers, the cache, an edge's link to its parent, and at
  // central every site's last heartbeat.
  metrics.readFrom({
    transfers: () => transfers.totals(),
    cache: () => cache.usage(),
    parent: follower === undefined || parent === undefined ? undefined : () => parentLinkReading(follower.status(), parent.reachability!.reachable),
    children: isCentral ? (signal) => sites.list({ signal }) : undefined,
  });
  // Every site tells central what it holds; central keeps the reports (its own included).
  const reporter = new InventoryReporter({
    catalog, storeIds: stores.list().map((s) => s.id), cacheStore: stores.defaultId, cache, log: logger,
    reportLocated: parentLink !== undefined,
    placements: () => agent.states(),
    drift: copies === undefined ? undefined : () => agent.drift(),
    transfers: () => transfers.list(),
    audit: follower === undefined ? undefined : () => auditCounts(follower.status().audit),
    gauges: () => ({ cache_budget_bytes: cache.usage().budgetBytes, link_bytes_per_second: transfers.linkRate() }),
    send: parent === undefined
      ? (report, opts) => catalog.putInventory({ site: config.site, reported_at: new Date().toISOString(), ...report }, opts)
      : parentInventorySink(parent, config.site),
  });

  const [host, port] = splitListen(config.listen);
  let publicUrl = config.public_url?.replace(/\/+$/, '') ?? '';
  const app = createApp({
    logger,
    transfers,
    metrics,
    authenticator: remoteKeystone
      ? new RemoteKeystoneAuthenticator({ url: config.keystone_url!, serviceToken: config.keystone_service_token, timeoutMs: config.parent_timeout_ms })
      : keystone ? new KeystoneAuthenticator(identity) : new HeaderAuthenticator(),
    identity: keystone && !remoteKeystone ? identity : undefined,
    images,
    imports,
    locations,
    stores,
    // Glance's cache API, at every site (each keeps a cache).
    cache,
    storeDescriptions: () => region.describe(),
    maxLimit: config.api_limit_max,
    replication: {
      catalog, changeLog: catalog, sites, site: { id: config.site, role: config.role, parent: config.parent }, follower,
      inventories, localInventory: () => reporter.report(), localTransfers: () => transfers.list(),
      siteCredential: keystone && isCentral && !remoteKeystone ? (ctx, site, ttl) => identity.siteToken(ctx, site, ttl) : undefined,
      removal: isCentral ? new SiteRemoval({
        catalog, inventories: catalog, log: logger,
        revokeCredentials: keystone && !remoteKeystone ? (ctx, site, o) => identity.revokeSiteCredentials(ctx, site, o) : undefined,
      }) : undefined,
    },
    metadefs: new MetadefService(catalog),
    dashboard: await loadDashboardFiles(),
    defaultLimit: config.limit_param_default,
    policies: new PlacementPolicies(catalog),
    regionLinks: isCentral ? new RegionLinks({ sites: catalog, connections: links, timeoutMs: config.parent_timeout_ms }) : undefined,
    fleet: isCentral ? new Fleet({ catalog: new PlacementCatalog({ changeLog: catalog }), inventories: catalog }) : undefined,
    reconciliation: isCentral ? new OfflineReconciliation(catalog, logger) : undefined,
    egress: config.egress_max_bytes_per_s === null ? undefined : new EgressBudget({
      bytesPerSecond: config.egress_max_bytes_per_s,
      weightOf: async (site) => egressWeight((await catalog.getSite(site))?.labels),
    }),
    heldStores: follower === undefined ? (ids) => inventories.storesHolding(ids) : (ids) => cache.storesHolding(ids),
    storeWeights: () => region.weights(),
    parent: parentLink,
    get publicUrl() { return publicUrl; },
    showLocations: config.show_multiple_locations,
    showDirectUrl: config.show_image_direct_url,
    tls: serverTls,
  });
  // An edge's writes made while cut off go to central once its parent answers again.
  const replayer = parent === undefined ? undefined : new OfflineReplayer({
    site: config.site, marks: catalog, catalog, parent, parentReachable: () => parent.reachability!.reachable, log: logger,
    audit: follower === undefined ? undefined : () => follower.audit(),
  });
  // What runs before the site listens: stopped when it closes, or when it cannot listen.
  const stopServices = async () => {
    await replayer?.close();
    await follower?.close();
    await retention.close();
    await invalidation.close();
    await agent.close();
    await fills.close();
    await runner.close();
    await locations.close();
    await recovery.close();
    work.close();
    await catalog.close();
    await stores.close();
    await hashers.close();
    parent?.close();
    await links.close();
  };
  try {
    await app.listen({ host, port });
  } catch (error) {
    await app.close();
    await stopServices();
    throw listenRefusal(error, config.listen);
  }
  // The admin's password is set (or generated) only now, so that a start that fails before it
  // listens never loses a generated password the operator has not seen.
  let generatedAdminPassword: string | undefined;
  if (bootstrapping) {
    const outcome = await identity.bootstrapAdminPassword(options.adminPassword);
    generatedAdminPassword = outcome.generatedPassword;
    if (outcome.ignored) {
      logger.warn('OUTPOST_ADMIN_PASSWORD is set but ignored: the admin user already has a password (the variable is only used at bootstrap); '
        + 'change it with `openstack user set --password NEW admin`');
    }
  }
  const address = app.server.address() as AddressInfo;
  const url = `${serverTls === undefined ? 'http' : 'https'}://${address.family === 'IPv6' ? `[${address.address}]` : address.address}:${address.port}`;
  if (publicUrl === '') publicUrl = url;
  // Central records itself; an edge registers with its parent (forwarded up to central) and
  // refreshes that registration as a heartbeat.
  const self = { id: config.site, labels: { ...config.labels }, public_url: publicUrl, stores: stores.list().map((s) => s.id), store_details: stores.describe(), version: VERSION };
  if (follower === undefined) await sites.registerSelf(self);
  const registration = parent === undefined || follower === undefined ? undefined : new SiteRegistration({ parent, site: self, follower, intervalMs: config.heartbeat_seconds * 1000, log: logger });
  registration?.start();
  reporter.start();
  replayer?.start();
  logger.info({ url, role: config.role, site: config.site, stores: stores.list().map((s) => s.id) }, 'outpost site listening');

  return {
    url,
    generatedAdminPassword,
    async reloadTls() {
      const fresh = await readServerTls(config);
      if (fresh === undefined) return false;
      (app.server as unknown as HttpsServer).setSecureContext(fresh);
      logger.info({ cert: config.tls_cert }, 'TLS certificate and key reloaded; new connections get them');
      return true;
    },
    routes: () => app.servedRoutes(),
    async close() {
      await app.close();
      registration?.close();
      await reporter.close();
      await stopServices();
    },
  };
}

/** An address that cannot be listened on, as one line for the operator (StartupError); other errors as they are. */
function listenRefusal(error: unknown, listen: string): unknown {
  const why = {
    EADDRINUSE: 'is already in use; stop what listens there, or choose another address with --listen HOST:PORT (port 0: any free port)',
    EACCES: 'cannot be listened on: permission denied (ports below 1024 need privileges); choose another with --listen HOST:PORT',
    EADDRNOTAVAIL: 'is not an address of this host; choose another with --listen HOST:PORT',
  }[String((error as NodeJS.ErrnoException).code)];
  return why === undefined ? error : new StartupError(`${listen} ${why}`, { cause: error });
}

function splitListen(listen: string): [string, number] {
  const i = listen.lastIndexOf(':');
  return [listen.slice(0, i).replace(/^\[(.*)\]$/, '$1'), Number(listen.slice(i + 1))];
}
