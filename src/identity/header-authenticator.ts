import { ADMIN_CONTEXT, type Authenticator, type RequestContext, type RequestHeaders } from '../core/context.ts';

function header(headers: RequestHeaders, name: string): string | undefined {
  const v = headers[name];
  const s = Array.isArray(v) ? v[0] : v;
  return s === undefined || s.trim() === '' ? undefined : s.trim();
}

/**
 * `auth: none` — for development and tests, never for a network that is not trusted. The caller
 * is who the headers say (as Glance's trusted-header "context" middleware without keystone):
 *   X-Project-Id  the project (image owner);      X-User-Id  the user;
 *   X-Roles       comma-separated roles (default "member" when a project is given).
 * A request with none of these headers is an administrator without a project.
 */
export class HeaderAuthenticator implements Authenticator {
  async authenticate(headers: RequestHeaders): Promise<RequestContext> {
    const projectId = header(headers, 'x-project-id') ?? header(headers, 'x-tenant-id');
    const userId = header(headers, 'x-user-id');
    const rolesHeader = header(headers, 'x-roles');
    if (projectId === undefined && userId === undefined && rolesHeader === undefined) return ADMIN_CONTEXT;
    const roles = rolesHeader === undefined ? ['member'] : rolesHeader.split(',').map((r) => r.trim().toLowerCase()).filter(Boolean);
    return Object.freeze({
      projectId: projectId ?? null,
      userId: userId ?? null,
      roles: Object.freeze(roles),
      isAdmin: roles.includes('admin'),
    });
  }
}
