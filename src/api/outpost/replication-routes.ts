import type { FastifyInstance, FastifyRequest } from 'fastify';
import { BadRequestError, ForbiddenError, GoneError } from '../../core/errors.ts';
import type { RequestContext } from '../../core/context.ts';
import type { ChangeLog, Catalog } from '../../core/ports.ts';
import type { InventoryReport } from '../../replication/inventory-reporter.ts';
import type { SiteInventories } from '../../core/site-inventory.ts';
import { TRANSFER_STATES, type TransferRecord } from '../../core/site-report.ts';
import { auditCounts, type AuditResult, type FollowerStatus } from '../../replication/follower.ts';
import type { SiteRegistry } from '../../core/site-registry.ts';
import type { SiteRemoval } from '../../core/site-removal.ts';
import { jsonBody } from '../http/json-body.ts';
import { resource } from '../resource.ts';
import { queryParams } from '../glance/request-helpers.ts';

export interface ReplicationDeps {
  catalog: Catalog;
  sites: SiteRegistry;
  changeLog: ChangeLog;
  site: { id: string; role: 'central' | 'edge'; parent: string | null };
  /** An edge's follower of its parent's feed. */
  follower?: { status(): FollowerStatus; audit(): Promise<AuditResult> };
  /** The inventories sites reported (meaningful at central, where they arrive). */
  inventories: SiteInventories;
  /** What this site holds now. */
  localInventory(): Promise<InventoryReport>;
  /** This site's transfers of image bytes, running then recent (without reading its whole inventory). */
  localTransfers(): TransferRecord[];
  /** Central: removes a site (DELETE /outpost/v1/sites/{id}; an edge forwards it up). */
  removal?: SiteRemoval;
  /** Central with auth keystone: a new site's credential (`outpost site add`). */
  siteCredential?(ctx: RequestContext, site: string, ttlSeconds: number): Promise<string>;
}

const MAX_LIMIT = 5000;
const MAX_WAIT_S = 60;

function intParam(value: string | undefined, name: string, fallback: number, max: number): number {
  if (value === undefined) return fallback;
  if (!/^\d+$/.test(value)) throw new BadRequestError(`${name} must be a whole number`);
  return Math.min(Number(value), max);
}

/**
 * The change feed every site serves (central and edge alike, so that sites cascade):
 *   GET /outpost/v1/changes?since=SEQ&limit=N&wait=S → {changes, last_seq}; long-polls up to S
 *     seconds when nothing is newer than SEQ; 410 when SEQ is older than the retained log;
 *   GET /outpost/v1/snapshot → every entity and the seq it is consistent at.
 * Both are for sites (and operators), not for projects.
 */
export function registerReplicationRoutes(app: FastifyInstance, deps: ReplicationDeps, stopping: AbortSignal): void {
  /** `what` names the resource in the refusal, e.g. "The change feed is for sites and administrators." */
  const assertSite = (ctx: { isAdmin: boolean; roles: readonly string[] }, what: string) => {
    if (!ctx.isAdmin && !ctx.roles.includes('service')) throw new ForbiddenError(`${what} for sites and administrators.`);
  };

  resource(app, '/outpost/v1/changes', {
    GET: async (req, reply) => {
      assertSite(req.ctx, 'The change feed is');
      const { map } = queryParams(req);
      const since = intParam(map.get('since')?.at(-1), 'since', 0, Number.MAX_SAFE_INTEGER);
      const limit = Math.max(1, intParam(map.get('limit')?.at(-1), 'limit', 500, MAX_LIMIT));
      const wait = intParam(map.get('wait')?.at(-1), 'wait', 0, MAX_WAIT_S);
      const first = await deps.changeLog.firstSeq();
      if (since < first - 1) {
        throw new GoneError(`Changes after ${since} are no longer retained (oldest is ${first}); reload from /outpost/v1/snapshot.`);
      }
      let changes = await deps.catalog.changesSince(since, limit, { signal: req.clientSignal });
      if (changes.length === 0 && wait > 0) {
        await deps.changeLog.waitForChange(since, wait * 1000, { signal: AbortSignal.any([req.clientSignal, stopping]) });
        changes = await deps.catalog.changesSince(since, limit, { signal: req.clientSignal });
      }
      reply.header('cache-control', 'no-store');
      return { changes, last_seq: await deps.changeLog.lastSeq() };
    },
  });

  // POST registers (or refreshes) a site at central — an edge forwards it up; GET lists them all.
  resource(app, '/outpost/v1/sites', {
    GET: async () => ({ sites: await deps.sites.list() }),
    POST: async (req) => deps.sites.register(req.ctx, await jsonBody(req), { signal: req.clientSignal }),
  });

  // GET /outpost/v1/sites/{id} → 200 the site, 404 if none is registered by that id;
  // DELETE (central, admin) → 200 with what the removal changed.
  const removal = deps.removal;
  resource(app, '/outpost/v1/sites/:id', {
    GET: async (req) => deps.sites.get((req.params as { id: string }).id, { signal: req.clientSignal }),
    ...(removal === undefined ? {} : { DELETE: async (req: FastifyRequest) => removal.remove(req.ctx, (req.params as { id: string }).id, { signal: req.clientSignal }) }),
  });

  // POST /outpost/v1/sites/{id}/credential (central, admin): the token site {id} presents to its
  // parent (config site_token). Body: optional {"ttl_seconds": N}, default one year.
  if (deps.siteCredential !== undefined) {
    const issue = deps.siteCredential;
    resource(app, '/outpost/v1/sites/:id/credential', {
      POST: async (req, reply) => {
        const { id } = req.params as { id: string };
        if (!/^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$/.test(id)) throw new BadRequestError('A site id is 1-64 letters, digits, \'_\' or \'-\'.');
        const ttl = ((await jsonBody(req)) as { ttl_seconds?: unknown } | undefined)?.ttl_seconds ?? 365 * 86400;
        if (!Number.isSafeInteger(ttl) || (ttl as number) < 60) throw new BadRequestError('ttl_seconds must be a whole number ≥ 60.');
        const token = await issue(req.ctx, id, ttl as number);
        return reply.code(201).send({ site: id, token, expires_at: new Date(Date.now() + (ttl as number) * 1000).toISOString() });
      },
    });
  }

  // A site's inventory: PUT by the site (an edge's parent forwards it up to central); GET answers
  // for this site from what it holds, for another from its last report (an edge forwards it).
  resource(app, '/outpost/v1/sites/:id/inventory', {
    GET: async (req) => {
      assertSite(req.ctx, 'Site inventories are');
      const { id } = req.params as { id: string };
      if (id === deps.site.id) return { site: id, reported_at: new Date().toISOString(), ...await deps.localInventory() };
      return deps.inventories.get(id, { signal: req.clientSignal });
    },
    PUT: async (req, reply) => {
      await deps.inventories.report(req.ctx, (req.params as { id: string }).id, await jsonBody(req), { signal: req.clientSignal });
      return reply.code(204).send();
    },
  });

  // Every site's holdings in numbers, in one answer (the dashboard's site tree); central's, which an
  // edge forwards to it.
  resource(app, '/outpost/v1/inventory-summaries', {
    GET: async (req) => {
      assertSite(req.ctx, 'Inventory summaries are');
      const local = { site: deps.site.id, reported_at: new Date().toISOString(), ...await deps.localInventory() };
      return { summaries: await deps.inventories.summaries(local, { signal: req.clientSignal }) };
    },
  });

  // GET /outpost/v1/fleet/transfers?image=&site=&state= → {transfers: [SiteTransfer]}: every site's
  // transfers of image bytes as it last reported them (central's; an edge forwards it to central).
  resource(app, '/outpost/v1/fleet/transfers', {
    GET: async (req) => {
      assertSite(req.ctx, 'The region\'s transfers are');
      const { map } = queryParams(req);
      const one = (name: string) => {
        const values = map.get(name);
        if (values !== undefined && values.length > 1) throw new BadRequestError(`${name} may be given once.`);
        return values?.[0];
      };
      const state = one('state');
      if (state !== undefined && !TRANSFER_STATES.includes(state as TransferRecord['state'])) throw new BadRequestError(`state must be one of ${TRANSFER_STATES.join(', ')}.`);
      const local = { site: deps.site.id, reported_at: new Date().toISOString(), images: [], transfers: deps.localTransfers() };
      const filter = { image: one('image'), site: one('site'), state: state as TransferRecord['state'] | undefined };
      return { transfers: await deps.inventories.transfers(local, filter, { signal: req.clientSignal }) };
    },
  });

  // GET /outpost/v1/status: the site's role, its parent, and how far its replica is behind.
  resource(app, '/outpost/v1/status', {
    GET: async () => {
      const f = deps.follower?.status();
      return {
        site: deps.site.id,
        role: deps.site.role,
        parent: deps.site.parent,
        last_seq: await deps.changeLog.lastSeq(),
        replication: f === undefined ? null : {
          position: f.position,
          parent_seq: f.parentSeq,
          lag_changes: f.parentSeq === null ? null : Math.max(0, f.parentSeq - f.position),
          seconds_since_contact: f.lastContact === null ? null : (Date.now() - f.lastContact.getTime()) / 1000,
          last_error: f.lastError,
          audit: auditCounts(f.audit),
        },
      };
    },
  });

  // The audit: GET /outpost/v1/digest on every site; POST /outpost/v1/audit runs one now at an edge.
  resource(app, '/outpost/v1/digest', {
    GET: async (req) => {
      assertSite(req.ctx, 'The catalog digest is');
      return deps.changeLog.digest({ signal: req.clientSignal });
    },
  });
  resource(app, '/outpost/v1/audit', {
    POST: async (req) => {
      assertSite(req.ctx, 'The audit is');
      if (deps.follower === undefined) throw new BadRequestError('Central has no parent to audit against.');
      return deps.follower.audit();
    },
  });

  resource(app, '/outpost/v1/snapshot', {
    GET: async (req, reply) => {
      assertSite(req.ctx, 'The snapshot is');
      reply.header('cache-control', 'no-store');
      return deps.changeLog.snapshot({ signal: req.clientSignal });
    },
  });
}
