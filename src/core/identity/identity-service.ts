import { randomBytes } from 'node:crypto';
import type { RequestContext } from '../context.ts';
import { BadRequestError, ConflictError, ForbiddenError, NotFoundError, UnauthorizedError } from '../errors.ts';
import type {
  ExternalIdentity, ExternalTokenVerifier, IdentityKind, IdentityStore, IoOptions, PasswordHasher, SigningKeys, Site, TokenClaims, TokenSigner,
  TokenVerifier,
} from '../ports.ts';
import { DEFAULT_DOMAIN_ID, predictableId } from './ids.ts';

export interface Domain { id: string; name: string; enabled: boolean; description: string }
export interface Project { id: string; name: string; domain_id: string; enabled: boolean; description: string }
export interface User { id: string; name: string; domain_id: string; enabled: boolean; default_project_id: string | null }
export interface Role { id: string; name: string }
export interface Assignment { user_id: string; project_id: string; role_id: string }
/** What bootstrapAdminPassword did: generated a password (to show once), or ignored the one given. */
export interface AdminPasswordOutcome { generatedPassword?: string; ignored: boolean }
/** The service catalog's records (keystone/api/regions.py, services.py, endpoints.py): one region per site. */
export interface Region { id: string; description: string; parent_region_id: string | null }
export interface Service { id: string; type: string; name: string; description: string; enabled: boolean }
export interface Endpoint { id: string; interface: 'public' | 'internal' | 'admin'; region: string; region_id: string; service_id: string; url: string; enabled: boolean }
/** What the catalog discovery calls filter on (Keystone's query parameters). */
export interface CatalogFilters { parent_region_id?: string; type?: string; name?: string; interface?: string; service_id?: string; region_id?: string }
/** A revocation: of one token (audit_id), or of every token of a user or project issued before `issued_before`. */
export interface Revocation { id: string; audit_id?: string; user_id?: string; project_id?: string; issued_before: string; expires_at: string }

/** How many checked tokens are remembered. */
const CHECKED_TOKENS_MAX = 10_000;

/** Keystone's default roles; a role implies those after it (admin ⇒ member ⇒ reader). */
const DEFAULT_ROLES = ['admin', 'member', 'reader'] as const;
/** The role sites act with (feed, registration, inventory, recording copies). */
const SERVICE_ROLE = 'service';

export interface IdentityServiceOptions {
  store: IdentityStore;
  verifier: TokenVerifier;
  /** Central only: issues tokens and keeps password hashes. */
  signer?: TokenSigner;
  passwords?: PasswordHasher;
  /** Central: rotation and removal of the signing keys. */
  keys?: SigningKeys;
  /** Central: tokens of trusted external issuers, whose users, projects and assignments are created on first use. */
  federation?: ExternalTokenVerifier;
  /** Token lifetime, seconds. */
  tokenTtlSeconds: number;
  /** The region's sites, for the service catalog (one image endpoint per site). */
  sites(opts?: IoOptions): Promise<Site[]>;
  now?: () => Date;
}

type TokenBody = Record<string, unknown>;

/**
 * The Keystone v3 subset Outpost serves (keystone/api/auth.py, users.py, projects.py, roles.py):
 * password authentication to a token, token validation and revocation, and the projects, users,
 * roles and role assignments an operator manages. Tokens are JWS signed by central; every site
 * checks them itself against its replica (signature, expiry, revocations, and that the user,
 * project and role assignments still exist), so a cut-off edge keeps authenticating.
 */
export class IdentityService {
  readonly #o: IdentityServiceOptions;
  readonly #now: () => Date;
  /**
   * Tokens already checked, with the identity version they were checked at: while no identity
   * record changed and the token has not expired, the same answer holds (a request with a known
   * token costs a map lookup). Bounded; the oldest entries go first.
   */
  readonly #checked = new Map<string, { ctx: RequestContext; version: number; exp: number }>();

  constructor(opts: IdentityServiceOptions) {
    this.#o = opts;
    this.#now = opts.now ?? (() => new Date());
  }

  // -- bootstrap ------------------------------------------------------------------------------

  /**
   * Central's first start (and every start, idempotently): the records of bootstrapRecords, then
   * the admin's password as bootstrapAdminPassword sets it.
   */
  async bootstrap(adminPassword: string | undefined, opts: IoOptions = {}): Promise<AdminPasswordOutcome> {
    await this.bootstrapRecords(opts);
    return this.bootstrapAdminPassword(adminPassword, opts);
  }

  /**
   * The default domain, the default and service roles, the `admin` project and user with the
   * admin role (idempotently).
   */
  async bootstrapRecords(opts: IoOptions = {}): Promise<void> {
    const { store } = this.#o;
    if (await store.getIdentity('domain', DEFAULT_DOMAIN_ID, opts) === undefined) {
      await this.#put('domain', { id: DEFAULT_DOMAIN_ID, name: 'Default', enabled: true, description: 'The default domain' }, opts);
    }
    for (const name of [...DEFAULT_ROLES, SERVICE_ROLE]) await this.ensureRole(name, opts);
    const project = await this.ensureProject('admin', DEFAULT_DOMAIN_ID, opts);
    const admin = await this.#ensureUser('admin', project.id, opts);
    await this.assign(admin.id, project.id, predictableId('role', '', 'admin'), opts);
  }

  /**
   * The user of this name in the default domain, made if there is none — also when another node
   * of the site, sharing the database, makes it at the same moment (its record is then the one).
   */
  async #ensureUser(name: string, projectId: string, opts: IoOptions): Promise<User> {
    const existing = await this.#findByName<User>('user', name, DEFAULT_DOMAIN_ID, opts);
    if (existing !== undefined) return existing;
    try {
      return await this.createUser(null, { name, domain_id: DEFAULT_DOMAIN_ID, default_project_id: projectId }, opts);
    } catch (error) {
      const made = error instanceof ConflictError ? await this.#findByName<User>('user', name, DEFAULT_DOMAIN_ID, opts) : undefined;
      if (made === undefined) throw error;
      return made;
    }
  }

  /**
   * The bootstrap admin's password, set only while the admin has none (after bootstrapRecords):
   * `adminPassword` when given (OUTPOST_ADMIN_PASSWORD), else a generated one, returned to be shown
   * once. Once the admin has a password, a different one given is ignored (`ignored`), never a
   * reset: the password is changed through the API (PATCH /identity/v3/users/{id}).
   */
  async bootstrapAdminPassword(adminPassword: string | undefined, opts: IoOptions = {}): Promise<AdminPasswordOutcome> {
    const admin = await this.#findByName<User>('user', 'admin', DEFAULT_DOMAIN_ID, opts);
    if (admin === undefined) throw new NotFoundError('The admin user does not exist yet (bootstrapRecords makes it).');
    const hash = await this.#o.store.getSecret(`password:${admin.id}`, opts);
    if (hash !== undefined) {
      return { ignored: adminPassword !== undefined && !(await this.#o.passwords?.verify(adminPassword, hash)) };
    }
    const password = adminPassword ?? randomBytes(18).toString('base64url');
    await this.setPassword(admin.id, password);
    return { generatedPassword: adminPassword === undefined ? password : undefined, ignored: false };
  }

  async setPassword(userId: string, password: string): Promise<void> {
    if (this.#o.passwords === undefined) throw new ForbiddenError('Passwords are kept at central only.');
    if (password.length < 1) throw new BadRequestError('A password cannot be empty.');
    await this.#o.store.setSecret(`password:${userId}`, await this.#o.passwords.hash(password));
  }

  // -- tokens ---------------------------------------------------------------------------------

  /**
   * A site's credential (central): a token of the site's own user (`site-NAME`, created once) with
   * the service role on the `service` project, valid for `ttlSeconds`. Deleting the user revokes it.
   * The user record notes which key signed the site's latest credential (`credential_kid`), so that
   * removing that key is refused while the credential is valid. `record: false` is for central's
   * own short-lived credential, which it renews itself.
   */
  async siteToken(ctx: RequestContext | null, site: string, ttlSeconds: number, opts: IoOptions & { record?: boolean } = {}): Promise<string> {
    assertAdmin(ctx);
    if (this.#o.signer === undefined) throw new ForbiddenError('Site credentials are issued by central.');
    const project = await this.ensureProject('service', DEFAULT_DOMAIN_ID, opts);
    const role = await this.ensureRole(SERVICE_ROLE, opts);
    const name = `site-${site}`;
    const user = await this.#ensureUser(name, project.id, opts);
    await this.assign(user.id, project.id, role.id, opts);
    const iat = Math.floor(this.#now().getTime() / 1000);
    const token = await this.#o.signer.sign({
      sub: user.id, project: project.id, roles: [role.id], methods: ['site'], audit_id: randomBytes(16).toString('base64url').slice(0, 22),
      iat, exp: iat + ttlSeconds,
    }, opts);
    if (opts.record !== false) {
      const kid = String((JSON.parse(Buffer.from(token.split('.')[0], 'base64url').toString()) as { kid?: unknown }).kid);
      await this.#put('user', { ...user, credential_kid: kid, credential_expires_at: new Date((iat + ttlSeconds) * 1000).toISOString() }, opts);
    }
    return token;
  }

  /**
   * Revokes site `site`'s credentials (central, a removed site): deletes its user, which revokes
   * every token of it at every site once the change arrives. False when the site never had one.
   * A later `siteToken` for the same name makes the user again, and only tokens issued from then
   * on are accepted.
   */
  async revokeSiteCredentials(ctx: RequestContext, site: string, opts: IoOptions = {}): Promise<boolean> {
    assertAdmin(ctx);
    const user = await this.#findByName<User>('user', `site-${site}`, DEFAULT_DOMAIN_ID, opts);
    if (user === undefined) return false;
    await this.delete(ctx, 'user', user.id, opts);
    return true;
  }

  /**
   * POST /identity/v3/auth/tokens: the `password` method, or the `token` method with a token of
   * this region (rescoping it) or of a trusted external issuer (federation: its user, project and
   * role assignments are created on first use). Returns the new token and its body.
   */
  async authenticate(body: unknown, opts: IoOptions = {}): Promise<{ token: string; body: TokenBody }> {
    const { signer, passwords } = this.#o;
    if (signer === undefined || passwords === undefined) throw new ForbiddenError('Tokens are issued by central.');
    const auth = object(object(body, 'body').auth, 'auth');
    const identity = object(auth.identity, 'auth.identity');
    const methods = Array.isArray(identity.methods) ? identity.methods : [];
    let user: User | undefined;
    let asserted: string | null = null;
    if (methods.includes('password')) {
      const given = object(object(identity.password, 'auth.identity.password').user, 'auth.identity.password.user');
      user = await this.#resolve<User>('user', given, opts);
      const hash = user === undefined ? undefined : await this.#o.store.getSecret(`password:${user.id}`, opts);
      // One answer for an unknown user, a disabled one and a wrong password (as Keystone).
      if (user === undefined || !user.enabled || hash === undefined || typeof given.password !== 'string'
        || !(await passwords.verify(given.password, hash))) {
        throw new UnauthorizedError('The request you have made requires authentication.');
      }
    } else if (methods.includes('token')) {
      const presented = object(identity.token, 'auth.identity.token').id;
      if (typeof presented !== 'string') throw new BadRequestError('The token method needs auth.identity.token.id.');
      if (this.#o.federation?.accepts(presented) === true) {
        const federated = await this.#federate(await this.#o.federation.verify(presented, opts), opts);
        user = federated.user;
        asserted = federated.project?.id ?? null;
      } else {
        const claims = await this.check(presented, opts);
        user = await this.#o.store.getIdentity('user', claims.sub, opts) as unknown as User;
        asserted = claims.project ?? null;
      }
    } else {
      throw new UnauthorizedError('The request you have made requires authentication: the password and token methods are supported.');
    }
    let project: Project | undefined;
    let roles: string[] = [];
    if ((auth.scope !== undefined && auth.scope !== null) || asserted !== null) {
      const scope = auth.scope === undefined || auth.scope === null ? { project: { id: asserted } } : object(auth.scope, 'auth.scope');
      if (scope.project === undefined) throw new BadRequestError('Only project scope is supported.');
      project = await this.#resolve<Project>('project', object(scope.project, 'auth.scope.project'), opts);
      if (project === undefined || !project.enabled) throw new UnauthorizedError(`User ${user.id} has no access to that project.`);
      roles = await this.#roleIds(user.id, project.id, opts);
      if (roles.length === 0) throw new UnauthorizedError(`User ${user.id} has no access to project ${project.id}.`);
    }
    const iat = Math.floor(this.#now().getTime() / 1000);
    const claims: TokenClaims = {
      sub: user.id, ...(project === undefined ? {} : { project: project.id }), roles, methods: methods.includes('password') ? ['password'] : ['token'],
      audit_id: randomBytes(16).toString('base64url').slice(0, 22), iat, exp: iat + this.#o.tokenTtlSeconds,
    };
    const token = await signer.sign(claims, opts);
    return { token, body: await this.#tokenBody(claims, opts) };
  }

  /** GET /identity/v3/auth/tokens: the subject token's body, if it is valid here. */
  async validate(ctx: RequestContext, subjectToken: string | undefined, opts: IoOptions = {}): Promise<TokenBody> {
    const claims = await this.check(subjectToken ?? '', opts);
    if (!ctx.isAdmin && !ctx.roles.includes(SERVICE_ROLE) && ctx.userId !== claims.sub) {
      throw new ForbiddenError('You are not authorized to validate that token.');
    }
    return this.#tokenBody(claims, opts);
  }

  /** DELETE /identity/v3/auth/tokens: revokes the subject token (its owner or an administrator). */
  async revoke(ctx: RequestContext, subjectToken: string | undefined, opts: IoOptions = {}): Promise<void> {
    const claims = await this.check(subjectToken ?? '', opts);
    if (!ctx.isAdmin && ctx.userId !== claims.sub) throw new ForbiddenError('You are not authorized to revoke that token.');
    await this.#revoke({ audit_id: claims.audit_id }, new Date(claims.exp * 1000), opts);
  }

  /**
   * Every site's check of a token: signature and expiry (TokenVerifier), then against this site's
   * replica: not revoked, the user and project still there and enabled, and of the roles it
   * carries only those still assigned. Returns the claims with the roles that remain.
   */
  async check(token: string, opts: IoOptions = {}): Promise<TokenClaims> {
    if (token === '') throw new UnauthorizedError('The request you have made requires authentication.');
    const claims = await this.#o.verifier.verify(token, opts);
    const { store } = this.#o;
    for (const r of await store.listIdentity('revocation', opts) as unknown as Revocation[]) {
      const hit = (r.audit_id !== undefined && r.audit_id === claims.audit_id)
        || (r.user_id !== undefined && r.user_id === claims.sub && claims.iat <= Date.parse(r.issued_before) / 1000)
        || (r.project_id !== undefined && r.project_id === claims.project && claims.iat <= Date.parse(r.issued_before) / 1000);
      if (hit) throw new UnauthorizedError('The token has been revoked.');
    }
    const user = await store.getIdentity('user', claims.sub, opts) as unknown as User | undefined;
    if (user === undefined || !user.enabled) throw new UnauthorizedError('The token\'s user no longer exists or is disabled.');
    if (claims.project === undefined) return { ...claims, roles: [] };
    const project = await store.getIdentity('project', claims.project, opts) as unknown as Project | undefined;
    if (project === undefined || !project.enabled) throw new UnauthorizedError('The token\'s project no longer exists or is disabled.');
    const assigned = new Set(await this.#roleIds(claims.sub, claims.project, opts));
    const roles = claims.roles.filter((r) => assigned.has(r));
    if (roles.length === 0) throw new UnauthorizedError('The token\'s user no longer has a role on its project.');
    return { ...claims, roles };
  }

  /**
   * The request context a valid token gives (roles by name, with the roles they imply): a token
   * of this region, or at central one of a trusted external issuer.
   */
  async contextFor(token: string, opts: IoOptions = {}): Promise<RequestContext> {
    const known = this.#checked.get(token);
    if (known !== undefined && known.version === this.#o.store.identityVersion() && known.exp * 1000 > this.#now().getTime()) return known.ctx;
    if (this.#o.federation?.accepts(token) === true) {
      const asserted = await this.#o.federation.verify(token, opts);
      const { user, project } = await this.#federate(asserted, opts);
      if (project === undefined) throw new UnauthorizedError('The token names no project.');
      const version = this.#o.store.identityVersion();
      return this.#remember(token, { sub: user.id, project: project.id, roles: await this.#roleIds(user.id, project.id, opts), exp: asserted.exp }, opts, version);
    }
    const version = this.#o.store.identityVersion();
    const claims = await this.check(token, opts);
    return this.#remember(token, claims, opts, version);
  }

  /** The context of checked claims, remembered with the identity version read before the check. */
  async #remember(token: string, claims: Pick<TokenClaims, 'sub' | 'project' | 'roles' | 'exp'>, opts: IoOptions, version: number): Promise<RequestContext> {
    const names = new Set<string>();
    for (const id of claims.roles) {
      const role = await this.#o.store.getIdentity('role', id, opts) as unknown as Role | undefined;
      if (role === undefined) continue;
      const implied = DEFAULT_ROLES.indexOf(role.name as (typeof DEFAULT_ROLES)[number]);
      for (const name of implied < 0 ? [role.name] : DEFAULT_ROLES.slice(implied)) names.add(name);
    }
    const roles = [...names];
    const ctx: RequestContext = Object.freeze({ projectId: claims.project ?? null, userId: claims.sub, roles: Object.freeze(roles), isAdmin: roles.includes('admin') });
    if (this.#checked.size >= CHECKED_TOKENS_MAX) this.#checked.delete(this.#checked.keys().next().value!);
    this.#checked.set(token, { ctx, version, exp: claims.exp });
    return ctx;
  }

  /**
   * Federation: the user, project and role assignments a trusted issuer asserts, created once
   * (predictable ids in the issuer's domain; only roles that exist here are assigned). A second
   * use of the same assertion writes nothing.
   */
  async #federate(a: ExternalIdentity, opts: IoOptions): Promise<{ user: User; project: Project | undefined }> {
    const { store } = this.#o;
    const domainId = predictableId('domain', '', a.domain);
    if (await store.getIdentity('domain', domainId, opts) === undefined) {
      await this.#put('domain', { id: domainId, name: a.domain, enabled: true, description: `Users and projects asserted by ${a.issuer}` }, opts);
    }
    const user = await this.#findByName<User>('user', a.user, domainId, opts)
      ?? await this.createUser(null, { name: a.user, domain_id: domainId }, opts);
    if (!user.enabled) throw new UnauthorizedError(`User ${user.id} is disabled.`);
    const project = a.project === null ? undefined : await this.ensureProject(a.project, domainId, opts);
    if (project !== undefined) {
      for (const name of a.roles) {
        const role = await store.getIdentity('role', predictableId('role', '', name), opts) as unknown as Role | undefined;
        if (role !== undefined) await this.assign(user.id, project.id, role.id, opts);
      }
    }
    return { user, project };
  }

  // -- signing keys (administrators, central) -------------------------------------------------

  /** GET /outpost/v1/signing-keys: the public keys every site verifies with. */
  async listKeys(ctx: RequestContext, opts: IoOptions = {}): Promise<Record<string, unknown>[]> {
    assertAdmin(ctx);
    return this.#o.store.listIdentity('signing_key', opts);
  }

  /** POST /outpost/v1/signing-keys/rotate. */
  async rotateKey(ctx: RequestContext, opts: IoOptions = {}): Promise<string> {
    assertAdmin(ctx);
    if (this.#o.keys === undefined) throw new ForbiddenError('Signing keys are central\'s.');
    return this.#o.keys.rotate(opts);
  }

  /**
   * DELETE /outpost/v1/signing-keys/{kid}: a retired key; its tokens are refused everywhere.
   * Refused while a site's valid credential was signed with it (the site would be locked out):
   * issue the site a new credential first (`outpost site add NAME`) and restart it with it.
   */
  async removeKey(ctx: RequestContext, kid: string, opts: IoOptions = {}): Promise<void> {
    assertAdmin(ctx);
    if (this.#o.keys === undefined) throw new ForbiddenError('Signing keys are central\'s.');
    const now = this.#now().toISOString();
    const sites = (await this.#o.store.listIdentity('user', opts))
      .filter((u) => u.credential_kid === kid && typeof u.credential_expires_at === 'string' && u.credential_expires_at > now)
      .map((u) => String(u.name).replace(/^site-/, ''));
    if (sites.length > 0) {
      throw new ConflictError(`Key ${kid} signed the credentials of sites ${sites.join(', ')}: issue them new ones (outpost site add NAME) `
        + 'and restart them with those before removing it.');
    }
    if (!(await this.#o.keys.remove(kid, opts))) throw new NotFoundError(`No signing key ${kid}.`);
  }

  // -- projects, users, roles, assignments (administrators) -----------------------------------

  async ensureRole(name: string, opts: IoOptions = {}): Promise<Role> {
    const id = predictableId('role', '', name);
    const existing = await this.#o.store.getIdentity('role', id, opts) as unknown as Role | undefined;
    return existing ?? this.#put('role', { id, name }, opts);
  }

  async ensureProject(name: string, domainId: string, opts: IoOptions = {}): Promise<Project> {
    return (await this.#findByName<Project>('project', name, domainId, opts))
      ?? this.#put('project', { id: predictableId('project', domainId, name), name, domain_id: domainId, enabled: true, description: '' }, opts);
  }

  async createProject(ctx: RequestContext | null, body: unknown, opts: IoOptions = {}): Promise<Project> {
    assertAdmin(ctx);
    const b = object(body, 'project');
    const name = nameOf(b);
    const domainId = typeof b.domain_id === 'string' ? b.domain_id : DEFAULT_DOMAIN_ID;
    await this.#domain(domainId, opts);
    if (await this.#findByName('project', name, domainId, opts) !== undefined) throw new ConflictError(`Duplicate entry: a project named ${name} exists in domain ${domainId}.`);
    const id = typeof b.id === 'string' && b.id !== '' ? b.id : predictableId('project', domainId, name);
    if (await this.#o.store.getIdentity('project', id, opts) !== undefined) throw new ConflictError(`Duplicate entry: project ${id} exists.`);
    return this.#put('project', { id, name, domain_id: domainId, enabled: b.enabled !== false, description: typeof b.description === 'string' ? b.description : '' }, opts);
  }

  async createUser(ctx: RequestContext | null, body: unknown, opts: IoOptions = {}): Promise<User> {
    if (ctx !== null) assertAdmin(ctx);
    const b = object(body, 'user');
    const name = nameOf(b);
    const domainId = typeof b.domain_id === 'string' ? b.domain_id : DEFAULT_DOMAIN_ID;
    await this.#domain(domainId, opts);
    if (await this.#findByName('user', name, domainId, opts) !== undefined) throw new ConflictError(`Duplicate entry: a user named ${name} exists in domain ${domainId}.`);
    const id = typeof b.id === 'string' && b.id !== '' ? b.id : predictableId('user', domainId, name);
    if (await this.#o.store.getIdentity('user', id, opts) !== undefined) throw new ConflictError(`Duplicate entry: user ${id} exists.`);
    const user = await this.#put('user', {
      id, name, domain_id: domainId, enabled: b.enabled !== false,
      default_project_id: typeof b.default_project_id === 'string' ? b.default_project_id : null,
    }, opts);
    if (typeof b.password === 'string') await this.setPassword(id, b.password);
    return user;
  }

  async createRole(ctx: RequestContext, body: unknown, opts: IoOptions = {}): Promise<Role> {
    assertAdmin(ctx);
    const name = nameOf(object(body, 'role'));
    if (await this.#o.store.getIdentity('role', predictableId('role', '', name), opts) !== undefined) throw new ConflictError(`Duplicate entry: role ${name} exists.`);
    return this.ensureRole(name, opts);
  }

  async list(ctx: RequestContext, kind: 'project' | 'user' | 'role' | 'domain', filters: { name?: string; domain_id?: string } = {}, opts: IoOptions = {}): Promise<Record<string, unknown>[]> {
    assertAdmin(ctx);
    return (await this.#o.store.listIdentity(kind, opts)).filter((r) =>
      (filters.name === undefined || r.name === filters.name) && (filters.domain_id === undefined || r.domain_id === filters.domain_id));
  }

  /**
   * PATCH /identity/v3/users/{id} and /projects/{id}: `enabled`, `description`, a user's
   * `default_project_id` and `password`. Disabling a user or project refuses its tokens at every
   * site as soon as the change arrives.
   */
  async update(ctx: RequestContext, kind: 'project' | 'user', id: string, body: unknown, opts: IoOptions = {}): Promise<Record<string, unknown>> {
    assertAdmin(ctx);
    const b = object(body, kind);
    const current = await this.#o.store.getIdentity(kind, id, opts);
    if (current === undefined) throw new NotFoundError(`Could not find ${kind}: ${id}.`);
    const allowed = kind === 'user' ? ['enabled', 'description', 'default_project_id', 'password'] : ['enabled', 'description'];
    const next = { ...current };
    for (const [k, v] of Object.entries(b)) {
      if (!allowed.includes(k)) throw new BadRequestError(`${kind} attribute '${k}' cannot be changed here (only ${allowed.join(', ')}).`);
      if (k === 'enabled' && typeof v !== 'boolean') throw new BadRequestError('enabled must be true or false.');
      if (k === 'password') continue;
      next[k] = v;
    }
    if (kind === 'user' && typeof b.password === 'string') await this.setPassword(id, b.password);
    await this.#o.store.putIdentity({ kind, id, body: next }, opts);
    return next;
  }

  async get(ctx: RequestContext, kind: 'project' | 'user' | 'role' | 'domain', id: string, opts: IoOptions = {}): Promise<Record<string, unknown>> {
    if (!(kind === 'user' && ctx.userId === id) && !(kind === 'project' && ctx.projectId === id)) assertAdmin(ctx);
    const record = await this.#o.store.getIdentity(kind, id, opts);
    if (record === undefined) throw new NotFoundError(`Could not find ${kind}: ${id}.`);
    return record;
  }

  /** Deleting a user or project revokes its tokens and drops its role assignments. */
  async delete(ctx: RequestContext, kind: 'project' | 'user' | 'role', id: string, opts: IoOptions = {}): Promise<void> {
    assertAdmin(ctx);
    if (!(await this.#o.store.deleteIdentity(kind, id, opts))) throw new NotFoundError(`Could not find ${kind}: ${id}.`);
    const field = ({ project: 'project_id', user: 'user_id', role: 'role_id' } as const)[kind];
    for (const a of await this.#assignments(opts)) {
      if (a[field] === id) await this.#o.store.deleteIdentity('assignment', assignmentId(a), opts);
    }
    if (kind !== 'role') await this.#revoke(kind === 'user' ? { user_id: id } : { project_id: id }, new Date(this.#now().getTime() + this.#o.tokenTtlSeconds * 1000), opts);
    if (kind === 'user') await this.#o.store.setSecret(`password:${id}`, null, opts);
  }

  /** PUT /identity/v3/projects/{p}/users/{u}/roles/{r} (idempotent). */
  async grant(ctx: RequestContext, projectId: string, userId: string, roleId: string, opts: IoOptions = {}): Promise<void> {
    assertAdmin(ctx);
    for (const [kind, id] of [['project', projectId], ['user', userId], ['role', roleId]] as const) {
      if (await this.#o.store.getIdentity(kind, id, opts) === undefined) throw new NotFoundError(`Could not find ${kind}: ${id}.`);
    }
    await this.assign(userId, projectId, roleId, opts);
  }

  /** DELETE …/roles/{r}: the user's tokens on that project lose the role at once, everywhere. */
  async ungrant(ctx: RequestContext, projectId: string, userId: string, roleId: string, opts: IoOptions = {}): Promise<void> {
    assertAdmin(ctx);
    if (!(await this.#o.store.deleteIdentity('assignment', assignmentId({ user_id: userId, project_id: projectId, role_id: roleId }), opts))) {
      throw new NotFoundError(`Could not find role assignment of ${roleId} to ${userId} on ${projectId}.`);
    }
  }

  async assign(userId: string, projectId: string, roleId: string, opts: IoOptions = {}): Promise<void> {
    const a: Assignment = { user_id: userId, project_id: projectId, role_id: roleId };
    if (await this.#o.store.getIdentity('assignment', assignmentId(a), opts) === undefined) {
      await this.#o.store.putIdentity({ kind: 'assignment', id: assignmentId(a), body: { ...a } }, opts);
    }
  }

  /** GET /identity/v3/role_assignments (optionally for one user or project). */
  async listAssignments(ctx: RequestContext, filters: { user_id?: string; project_id?: string }, opts: IoOptions = {}): Promise<Assignment[]> {
    assertAdmin(ctx);
    return (await this.#assignments(opts)).filter((a) =>
      (filters.user_id === undefined || a.user_id === filters.user_id) && (filters.project_id === undefined || a.project_id === filters.project_id));
  }

  // -- internals ------------------------------------------------------------------------------

  async #put<T extends object>(kind: IdentityKind, record: T & { id: string }, opts: IoOptions): Promise<T> {
    await this.#o.store.putIdentity({ kind, id: record.id, body: { ...record } }, opts);
    return record;
  }

  /** Records a revocation, and drops those that outlived every token they could refuse. */
  async #revoke(what: Partial<Revocation>, expiresAt: Date, opts: IoOptions): Promise<void> {
    const now = this.#now().toISOString();
    for (const r of await this.#o.store.listIdentity('revocation', opts) as unknown as Revocation[]) {
      if (r.expires_at < now) await this.#o.store.deleteIdentity('revocation', r.id, opts);
    }
    const id = what.audit_id !== undefined ? `audit:${what.audit_id}` : `${what.user_id !== undefined ? `user:${what.user_id}` : `project:${what.project_id}`}:${now}`;
    await this.#put('revocation', { id, ...what, issued_before: now, expires_at: expiresAt.toISOString() }, opts);
  }

  async #assignments(opts: IoOptions): Promise<Assignment[]> {
    return await this.#o.store.listIdentity('assignment', opts) as unknown as Assignment[];
  }

  async #roleIds(userId: string, projectId: string, opts: IoOptions): Promise<string[]> {
    return (await this.#assignments(opts)).filter((a) => a.user_id === userId && a.project_id === projectId).map((a) => a.role_id);
  }

  async #domain(id: string, opts: IoOptions): Promise<Domain> {
    const d = await this.#o.store.getIdentity('domain', id, opts) as unknown as Domain | undefined;
    if (d === undefined) throw new NotFoundError(`Could not find domain: ${id}.`);
    return d;
  }

  async #findByName<T extends { name: string; domain_id: string }>(kind: 'project' | 'user', name: string, domainId: string, opts: IoOptions): Promise<T | undefined> {
    return (await this.#o.store.listIdentity(kind, opts) as unknown as T[]).find((r) => r.name === name && r.domain_id === domainId);
  }

  /** A user or project named by id, or by name with its domain (by id or name). */
  async #resolve<T extends { name: string; domain_id: string }>(kind: 'project' | 'user', given: Record<string, unknown>, opts: IoOptions): Promise<T | undefined> {
    if (typeof given.id === 'string') return await this.#o.store.getIdentity(kind, given.id, opts) as unknown as T | undefined;
    if (typeof given.name !== 'string') throw new BadRequestError(`A ${kind} needs an id, or a name and a domain.`);
    const d = object(given.domain ?? {}, `${kind}.domain`);
    let domainId: string | undefined;
    if (typeof d.id === 'string') domainId = d.id;
    else if (typeof d.name === 'string') domainId = (await this.#o.store.listIdentity('domain', opts)).find((x) => x.name === d.name)?.id as string | undefined;
    else throw new BadRequestError(`A ${kind} named by name needs its domain (id or name).`);
    return domainId === undefined ? undefined : this.#findByName<T>(kind, given.name, domainId, opts);
  }

  /** Keystone's token body (keystone/models/token_model.py as rendered by the v3 API). */
  async #tokenBody(claims: TokenClaims, opts: IoOptions): Promise<TokenBody> {
    const { store } = this.#o;
    const domainRef = async (id: string) => ({ id, name: (await store.getIdentity('domain', id, opts))?.name ?? id });
    const user = await store.getIdentity('user', claims.sub, opts) as unknown as User;
    const token: TokenBody = {
      methods: claims.methods,
      user: { domain: await domainRef(user.domain_id), id: user.id, name: user.name, password_expires_at: null },
      audit_ids: [claims.audit_id],
      expires_at: keystoneTime(claims.exp),
      issued_at: keystoneTime(claims.iat),
    };
    if (claims.project !== undefined) {
      const project = await store.getIdentity('project', claims.project, opts) as unknown as Project;
      token.project = { domain: await domainRef(project.domain_id), id: project.id, name: project.name };
      token.is_domain = false;
      token.roles = (await Promise.all(claims.roles.map((id) => store.getIdentity('role', id, opts))))
        .filter((r) => r !== undefined).map((r) => ({ id: r.id, name: r.name }));
      token.catalog = await this.#catalog(opts);
    }
    return { token };
  }

  /** A token's service catalog: each service with its endpoints (as in the discovery calls, without their links). */
  async #catalog(opts: IoOptions): Promise<unknown[]> {
    const { services, endpoints } = await this.#catalogRecords(opts);
    return services.map((s) => ({
      id: s.id, type: s.type, name: s.name,
      endpoints: endpoints.filter((e) => e.service_id === s.id).map(({ id, interface: iface, region, region_id, url }) => ({ id, interface: iface, region, region_id, url })),
    }));
  }

  /**
   * The region's service catalog, from its sites (replicated, so every site answers it, cut off
   * too): a region per site (its parent site the parent region), the image service with public,
   * internal and admin endpoints at each site, central first, and central's identity service.
   */
  async #catalogRecords(opts: IoOptions): Promise<{ regions: Region[]; services: Service[]; endpoints: Endpoint[] }> {
    const sites = (await this.#o.sites(opts)).filter((s) => s.public_url !== '');
    const central = sites.find((s) => s.parent === null);
    const ordered = central === undefined ? sites : [central, ...sites.filter((s) => s !== central)];
    const endpoints = (service: string, list: { region: string; url: string }[]): Endpoint[] => list.flatMap(({ region, url }) =>
      (['public', 'internal', 'admin'] as const).map((iface) => ({
        id: `${service}-${region}-${iface}`, interface: iface, region, region_id: region, service_id: service, url, enabled: true,
      })));
    const image: Service = { id: 'image', type: 'image', name: 'glance', description: 'Outpost image service (Glance v2)', enabled: true };
    const identity: Service = { id: 'identity', type: 'identity', name: 'keystone', description: 'Outpost identity service (Keystone v3)', enabled: true };
    return {
      regions: ordered.map((s) => ({ id: s.id, description: `Outpost site ${s.id}`, parent_region_id: s.parent })),
      services: central === undefined ? [image] : [image, identity],
      endpoints: [
        ...endpoints('image', ordered.map((s) => ({ region: s.id, url: s.public_url }))),
        ...(central === undefined ? [] : endpoints('identity', [{ region: central.id, url: `${central.public_url}/identity/v3` }])),
      ],
    };
  }

  // -- catalog discovery (GET /identity/v3/regions, services, endpoints) ------------------------

  /** Regions: any authenticated caller (Keystone's identity:list_regions / get_region are ""). */
  async listRegions(filters: CatalogFilters = {}, opts: IoOptions = {}): Promise<Region[]> {
    return (await this.#catalogRecords(opts)).regions.filter((r) => filters.parent_region_id === undefined || r.parent_region_id === filters.parent_region_id);
  }

  async getRegion(id: string, opts: IoOptions = {}): Promise<Region> {
    const region = (await this.#catalogRecords(opts)).regions.find((r) => r.id === id);
    if (region === undefined) throw new NotFoundError(`Could not find region: ${id}.`);
    return region;
  }

  /** Services and endpoints: administrators (Keystone's system readers). */
  async listServices(ctx: RequestContext, filters: CatalogFilters = {}, opts: IoOptions = {}): Promise<Service[]> {
    assertAdmin(ctx);
    return (await this.#catalogRecords(opts)).services
      .filter((s) => (filters.type === undefined || s.type === filters.type) && (filters.name === undefined || s.name === filters.name));
  }

  async getService(ctx: RequestContext, id: string, opts: IoOptions = {}): Promise<Service> {
    assertAdmin(ctx);
    const service = (await this.#catalogRecords(opts)).services.find((s) => s.id === id);
    if (service === undefined) throw new NotFoundError(`Could not find service: ${id}.`);
    return service;
  }

  async listEndpoints(ctx: RequestContext, filters: CatalogFilters = {}, opts: IoOptions = {}): Promise<Endpoint[]> {
    assertAdmin(ctx);
    return (await this.#catalogRecords(opts)).endpoints.filter((e) => (filters.interface === undefined || e.interface === filters.interface)
      && (filters.service_id === undefined || e.service_id === filters.service_id) && (filters.region_id === undefined || e.region_id === filters.region_id));
  }

  async getEndpoint(ctx: RequestContext, id: string, opts: IoOptions = {}): Promise<Endpoint> {
    assertAdmin(ctx);
    const endpoint = (await this.#catalogRecords(opts)).endpoints.find((e) => e.id === id);
    if (endpoint === undefined) throw new NotFoundError(`Could not find endpoint: ${id}.`);
    return endpoint;
  }
}

function assignmentId(a: Assignment): string {
  return `${a.user_id}/${a.project_id}/${a.role_id}`;
}

function assertAdmin(ctx: RequestContext | null): void {
  if (ctx !== null && !ctx.isAdmin) throw new ForbiddenError('You are not authorized to perform the requested action: admin required.');
}

function object(value: unknown, what: string): Record<string, unknown> {
  if (value === null || typeof value !== 'object' || Array.isArray(value)) throw new BadRequestError(`Invalid input for field '${what}': expected an object.`);
  return value as Record<string, unknown>;
}

function nameOf(b: Record<string, unknown>): string {
  if (typeof b.name !== 'string' || b.name.trim() === '' || b.name.length > 255) throw new BadRequestError('A name of 1-255 characters is required.');
  return b.name;
}

/** Keystone's time format: `2015-11-05T22:00:11.000000Z`. */
function keystoneTime(seconds: number): string {
  return new Date(seconds * 1000).toISOString().replace(/\.(\d{3})Z$/, '.$1000Z');
}
