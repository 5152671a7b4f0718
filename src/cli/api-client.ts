import { Command, Option } from 'commander';
import { CliError } from './cli-error.ts';

/**
 * How an `outpost` command reaches a site's API, as the openstack CLI would: the same `OS_*`
 * variables (a Keystone password or a token), or on an `auth: none` site a project and roles.
 */
export interface ApiOptions {
  url?: string;
  token?: string;
  project?: string;
  roles?: string;
  quiet?: boolean;
  osAuthUrl?: string;
  osUsername?: string;
  osPassword?: string;
  osProjectName?: string;
  osProjectId?: string;
  osUserDomainName?: string;
  osUserDomainId?: string;
  osProjectDomainName?: string;
  osProjectDomainId?: string;
  osRegionName?: string;
  osInterface?: string;
}

const DEFAULT_URL = 'http://127.0.0.1:9292';

export interface ImageBody {
  id: string;
  name: string | null;
  status: string;
  size: number | null;
  stores?: string;
  [key: string]: unknown;
}

export interface TaskBody {
  id: string;
  status: string;
  message: string;
  request_id: string;
}

/**
 * A client of one site's API. Where to send and what to authenticate with, first given first:
 * `--url` / `OUTPOST_URL`, else `OS_ENDPOINT`, else the image endpoint of the token's catalog
 * (`OS_REGION_NAME`'s, or the first; `OS_INTERFACE`, default public), else the local default;
 * `--token` / `OS_AUTH_TOKEN` / `OS_TOKEN`, else a token issued for `OS_USERNAME` and `OS_PASSWORD`
 * scoped to `OS_PROJECT_NAME` (or `OS_PROJECT_ID`) by `OS_AUTH_URL`'s Keystone (v3), once.
 */
export class OutpostClient {
  readonly #o: ApiOptions;
  #session: Promise<{ url: string; token?: string }> | undefined;

  constructor(o: ApiOptions) {
    this.#o = o;
  }

  /** The base URL the calls go to (after authenticating, when the catalog decides it). */
  async url(): Promise<string> {
    return (await this.#connect()).url;
  }

  #connect(): Promise<{ url: string; token?: string }> {
    this.#session ??= this.#open();
    return this.#session;
  }

  async #open(): Promise<{ url: string; token?: string }> {
    const o = this.#o;
    const explicit = o.url ?? process.env.OS_ENDPOINT;
    const token = o.token ?? process.env.OS_TOKEN;
    if (token !== undefined || o.osAuthUrl === undefined || o.osPassword === undefined) {
      return { url: trim(explicit ?? DEFAULT_URL), ...(token === undefined ? {} : { token }) };
    }
    const issued = await passwordToken(o);
    return { url: trim(explicit ?? issued.imageUrl ?? DEFAULT_URL), token: issued.token };
  }

  async call(method: string, path: string, init: { json?: unknown; body?: RequestInit['body']; headers?: Record<string, string> } = {}): Promise<Response> {
    const { url, token } = await this.#connect();
    const headers: Record<string, string> = { accept: 'application/json', ...init.headers };
    if (token !== undefined) headers['x-auth-token'] = token;
    if (this.#o.project !== undefined) headers['x-project-id'] = this.#o.project;
    if (this.#o.roles !== undefined) headers['x-roles'] = this.#o.roles;
    let body = init.body;
    if (init.json !== undefined) {
      headers['content-type'] = 'application/json';
      body = JSON.stringify(init.json);
    }
    const res = await request(`${url}${path}`, { method, headers, body, duplex: 'half' } as RequestInit, url);
    if (!res.ok) throw new CliError(`${method} ${path}: ${res.status} ${res.statusText}: ${await errorMessage(res)}`, res.status === 404 ? 'not-found' : 'failure');
    return res;
  }

  async json<T>(method: string, path: string, init: { json?: unknown; headers?: Record<string, string> } = {}): Promise<T> {
    return (await this.call(method, path, init)).json() as Promise<T>;
  }

  /** An image by id, or by name when exactly one image has it. */
  async image(ref: string): Promise<ImageBody> {
    if (/^[0-9a-f-]{36}$/i.test(ref)) return this.json<ImageBody>('GET', `/v2/images/${ref}`);
    const list = await this.json<{ images: ImageBody[] }>('GET', `/v2/images?name=${encodeURIComponent(ref)}`);
    if (list.images.length === 0) throw new CliError(`no image named or with id "${ref}"`, 'not-found');
    if (list.images.length > 1) throw new CliError(`several images are named "${ref}": give its id`);
    return list.images[0];
  }

  async tasks(id: string): Promise<TaskBody[]> {
    return (await this.json<{ tasks: TaskBody[] }>('GET', `/v2/images/${id}/tasks`)).tasks;
  }
}

/** A client built from a command's options (its own and its parents'). */
export function clientOf(cmd: Command): OutpostClient {
  return new OutpostClient(apiOptions(cmd));
}

export function apiOptions(cmd: Command): ApiOptions {
  return cmd.optsWithGlobals() as ApiOptions;
}

/** The options every command that talks to a site takes, with the openstack CLI's names and variables. */
export function withApiOptions(cmd: Command): Command {
  const os = (flag: string, variable: string, what: string) => new Option(`--${flag} <value>`, what).env(variable);
  return cmd
    .addOption(new Option('--url <url>', `Outpost site (Glance v2 endpoint; default: OS_ENDPOINT, the catalog's, or ${DEFAULT_URL})`).env('OUTPOST_URL'))
    .addOption(new Option('--token <token>', 'X-Auth-Token to send (also OS_TOKEN)').env('OS_AUTH_TOKEN'))
    .addOption(os('os-auth-url', 'OS_AUTH_URL', 'Keystone to get a token from (e.g. https://central:9292/identity)'))
    .addOption(os('os-username', 'OS_USERNAME', 'user name'))
    .addOption(os('os-password', 'OS_PASSWORD', 'password'))
    .addOption(os('os-project-name', 'OS_PROJECT_NAME', 'project to scope the token to'))
    .addOption(os('os-project-id', 'OS_PROJECT_ID', 'project id to scope the token to'))
    .addOption(os('os-user-domain-name', 'OS_USER_DOMAIN_NAME', 'the user\'s domain (default: Default)'))
    .addOption(os('os-user-domain-id', 'OS_USER_DOMAIN_ID', 'the user\'s domain id'))
    .addOption(os('os-project-domain-name', 'OS_PROJECT_DOMAIN_NAME', 'the project\'s domain (default: Default)'))
    .addOption(os('os-project-domain-id', 'OS_PROJECT_DOMAIN_ID', 'the project\'s domain id'))
    .addOption(os('os-region-name', 'OS_REGION_NAME', 'the site whose image endpoint to use (its region in the catalog)'))
    .addOption(os('os-interface', 'OS_INTERFACE', 'endpoint interface (default: public)'))
    .option('--project <id>', 'act as this project (auth: none sites)')
    .option('--roles <roles>', 'with these roles (auth: none sites)')
    .option('-q, --quiet', 'no progress bar');
}

function trim(url: string): string {
  return url.replace(/\/+$/, '');
}

async function request(url: string, init: RequestInit, site: string): Promise<Response> {
  try {
    return await fetch(url, init);
  } catch (e) {
    throw new CliError(`cannot reach ${site}: ${(e as Error).cause instanceof Error ? ((e as Error).cause as Error).message : (e as Error).message}`, 'unreachable');
  }
}

/** The message of an error response: Glance's and Keystone's JSON shapes, or the text. */
async function errorMessage(res: Response): Promise<string> {
  const text = await res.text();
  try {
    const parsed = JSON.parse(text) as { message?: string; error?: { message?: string } };
    return (parsed.message ?? parsed.error?.message ?? text).replace(/<br \/>[\s\S]*$/, '').trim();
  } catch {
    return text.trim();
  }
}

/** POST {OS_AUTH_URL}/v3/auth/tokens with a password, scoped to a project: the token and the catalog's image endpoint. */
async function passwordToken(o: ApiOptions): Promise<{ token: string; imageUrl?: string }> {
  if (o.osUsername === undefined) throw new CliError('OS_PASSWORD is set but OS_USERNAME is not', 'usage');
  const base = trim(o.osAuthUrl!);
  const url = `${/\/v3$/.test(base) ? base : `${base}/v3`}/auth/tokens`;
  const domain = (id: string | undefined, name: string | undefined) => (id !== undefined ? { id } : { name: name ?? 'Default' });
  const project = o.osProjectId !== undefined ? { id: o.osProjectId }
    : o.osProjectName !== undefined ? { name: o.osProjectName, domain: domain(o.osProjectDomainId, o.osProjectDomainName) } : undefined;
  const res = await request(url, {
    method: 'POST',
    headers: { 'content-type': 'application/json', accept: 'application/json' },
    body: JSON.stringify({
      auth: {
        identity: { methods: ['password'], password: { user: { name: o.osUsername, domain: domain(o.osUserDomainId, o.osUserDomainName), password: o.osPassword } } },
        ...(project === undefined ? {} : { scope: { project } }),
      },
    }),
  }, base);
  if (!res.ok) throw new CliError(`cannot get a token from ${base}: ${res.status} ${res.statusText}: ${await errorMessage(res)}`, res.status === 401 ? 'unauthorized' : 'failure');
  const token = res.headers.get('x-subject-token');
  if (token === null) throw new CliError(`${base} issued no token (no X-Subject-Token header)`);
  const body = await res.json() as { token?: { catalog?: { type: string; endpoints: { interface: string; region_id?: string; region?: string; url: string }[] }[] } };
  const endpoints = (body.token?.catalog ?? []).filter((s) => s.type === 'image').flatMap((s) => s.endpoints)
    .filter((e) => e.interface === (o.osInterface ?? 'public'));
  const chosen = o.osRegionName === undefined ? endpoints[0] : endpoints.find((e) => (e.region_id ?? e.region) === o.osRegionName);
  if (o.osRegionName !== undefined && chosen === undefined) throw new CliError(`the catalog has no ${o.osInterface ?? 'public'} image endpoint in region ${o.osRegionName}`, 'not-found');
  return { token, ...(chosen === undefined ? {} : { imageUrl: chosen.url }) };
}
