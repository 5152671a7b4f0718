import type { FastifyBaseLogger } from 'fastify';
import type { PullThroughImages } from '../cache/pull-through-images.ts';
import type { Authenticator } from '../core/context.ts';
import type { IdentityService } from '../core/identity/identity-service.ts';
import type { ImageService } from '../core/image-service.ts';
import type { ImportService } from '../core/import-service.ts';
import type { LocationService } from '../core/location-service.ts';
import type { MetadefService } from '../core/metadef-service.ts';
import type { PlacementPolicies } from '../core/placement-policies.ts';
import type { OfflineReconciliation } from '../core/offline-writes.ts';
import type { Fleet } from '../placement/fleet.ts';
import type { EgressBudget } from '../transfer/egress-budget.ts';
import type { StoreDescription } from '../core/ports.ts';
import type { StoreRegistry } from '../core/stores.ts';
import type { ReplicationDeps } from './outpost/replication-routes.ts';
import type { TransferLog } from '../transfer/transfer-log.ts';
import type { ParentLink } from './parent-forwarding.ts';
import type { SiteMetrics } from './metrics-route.ts';
import type { RegionLinks } from '../links/region-links.ts';
import type { DashboardFiles } from './dashboard-routes.ts';

/** What the HTTP application of a site is built from (createApp); the composition root provides it. */
export interface AppDeps {
  logger: FastifyBaseLogger;
  authenticator: Authenticator;
  images: ImageService;
  imports: ImportService;
  /** The locations API's POST and GET /v2/images/{id}/locations (absent: those routes are not served). */
  locations?: LocationService;
  stores: StoreRegistry;
  /** GET /v2/info/stores: the site's own stores, then the other sites' (which copy-image and stores-delete may name). */
  storeDescriptions(): Promise<StoreDescription[]>;
  /** `api_limit_max`, for the task list. */
  maxLimit: number;
  replication: ReplicationDeps;
  /** Metadata definitions (/v2/metadefs). */
  metadefs: MetadefService;
  /** `limit_param_default`, for the metadef namespace list (`maxLimit` caps it). */
  defaultLimit: number;
  /** The region's placement policies (/outpost/v1/policies). */
  policies: PlacementPolicies;
  /** Central: the fleet view (/outpost/v1/fleet; an edge forwards it up). */
  fleet?: Fleet;
  /** Central: edges' writes made while cut off, reconciled (/outpost/v1/images/{id}/reconcile; an edge forwards it up). */
  reconciliation?: OfflineReconciliation;
  /** `egress_max_bytes_per_s`: image bytes sent to child sites are paced by it. */
  egress?: EgressBudget;
  /**
   * Per image, stores holding a cached verified copy, added to its `stores` after its locations':
   * at central every site's (their inventories), at an edge its own cache's.
   */
  heldStores?(imageIds: readonly string[]): Promise<Map<string, string[]>>;
  /** Every store's weight in the region, for the order of an image's `stores` (default: this site's stores'). */
  storeWeights?(): Promise<(storeId: string) => number>;
  /** The site's image cache, with the Glance cache API (every site keeps one). */
  cache?: PullThroughImages;
  /** The dashboard's files (/dashboard). */
  dashboard: DashboardFiles;
  /** Central: clients for the other sites of the region (pins at a site, from the dashboard). */
  regionLinks?: RegionLinks;
  /** Set on an edge: writes go to this parent (the composition root decides). */
  parent?: ParentLink;
  /** With `auth: keystone`: the Keystone v3 subset at /identity/v3. */
  identity?: IdentityService;
  /** Base URL of this site as clients reach it, without a trailing slash. */
  publicUrl: string;
  showLocations: boolean;
  showDirectUrl: boolean;
  /** The transfers of image bytes to this site (GET /outpost/v1/transfers). */
  transfers: Pick<TransferLog, 'list'>;
  /** The site's metrics: requests and token checks are counted by the app; GET /metrics exposes them all. */
  metrics?: SiteMetrics;
  /** Serve https with this certificate and key (the server is then a node https.Server). */
  tls?: { cert: Buffer; key: Buffer };
}
