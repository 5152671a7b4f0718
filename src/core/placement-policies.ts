import { randomUUID } from 'node:crypto';
import type { RequestContext } from './context.ts';
import { BadRequestError, ForbiddenError, NotFoundError } from './errors.ts';
import { policyOf, policyRecord, validatePolicy, type PolicyRecord } from './placement-policy.ts';
import type { Catalog, IoOptions } from './ports.ts';

/**
 * The placement policies of the region (`/outpost/v1/policies`), kept at central and replicated
 * to every site through the change feed like the rest of the catalog (an edge forwards writes up).
 * Administrators write them; any authenticated caller may read them.
 */
export class PlacementPolicies {
  readonly #catalog: Catalog;
  readonly #now: () => Date;

  constructor(catalog: Catalog, now: () => Date = () => new Date()) {
    this.#catalog = catalog;
    this.#now = now;
  }

  list(opts: IoOptions = {}): Promise<PolicyRecord[]> {
    return this.#catalog.listPolicies(opts);
  }

  async get(id: string, opts: IoOptions = {}): Promise<PolicyRecord> {
    const found = await this.#catalog.getPolicy(id, opts);
    if (found === undefined) throw new NotFoundError(`Policy ${id} not found.`);
    return found;
  }

  async create(ctx: RequestContext, body: unknown, opts: IoOptions = {}): Promise<PolicyRecord> {
    this.#assertAdmin(ctx);
    const policy = validatePolicy(body, await this.#siteIds(opts));
    await this.#assertUniqueName(policy.name, undefined, opts);
    const now = this.#now().toISOString();
    const record = policyRecord(randomUUID(), policy, now, now);
    await this.#catalog.upsertPolicy(record, opts);
    return record;
  }

  /** PATCH: the fields given replace the policy's (a JSON merge of the top-level fields), then all is checked again. */
  async update(ctx: RequestContext, id: string, body: unknown, opts: IoOptions = {}): Promise<PolicyRecord> {
    this.#assertAdmin(ctx);
    const current = await this.get(id, opts);
    if (body === null || typeof body !== 'object' || Array.isArray(body)) throw new BadRequestError('policy: must be an object.');
    const { id: _id, created_at: _c, updated_at: _u, ...fields } = current;
    const policy = validatePolicy({ ...fields, ...(body as object) }, await this.#siteIds(opts));
    await this.#assertUniqueName(policy.name, id, opts);
    const record = policyRecord(id, policy, current.created_at, this.#now().toISOString());
    await this.#catalog.upsertPolicy(record, opts);
    return record;
  }

  async delete(ctx: RequestContext, id: string, opts: IoOptions = {}): Promise<void> {
    this.#assertAdmin(ctx);
    if (!(await this.#catalog.deletePolicy(id, opts))) throw new NotFoundError(`Policy ${id} not found.`);
  }

  /** The policies as the domain uses them. */
  async all(opts: IoOptions = {}) {
    return (await this.list(opts)).map((r) => ({ id: r.id, ...policyOf(r) }));
  }

  #assertAdmin(ctx: RequestContext): void {
    if (!ctx.isAdmin) throw new ForbiddenError('Placement policies are written by administrators.');
  }

  async #siteIds(opts: IoOptions): Promise<Set<string>> {
    return new Set((await this.#catalog.listSites(opts)).map((s) => s.id));
  }

  async #assertUniqueName(name: string, except: string | undefined, opts: IoOptions): Promise<void> {
    if ((await this.list(opts)).some((p) => p.name === name && p.id !== except)) throw new BadRequestError(`name: a policy is already named "${name}".`);
  }
}
