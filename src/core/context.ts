/**
 * Who is calling. The API builds one per request through the `Authenticator` port; the policy
 * rules in access.ts read nothing else.
 */
export interface RequestContext {
  readonly projectId: string | null;
  readonly userId: string | null;
  readonly roles: readonly string[];
  readonly isAdmin: boolean;
}

/** Header names are lower-case, as Node gives them. */
export type RequestHeaders = Readonly<Record<string, string | string[] | undefined>>;

/** Port: turns a request's headers into a context, or throws UnauthorizedError. */
export interface Authenticator {
  authenticate(headers: RequestHeaders, signal: AbortSignal): Promise<RequestContext>;
}

export const ADMIN_CONTEXT: RequestContext = Object.freeze({
  projectId: null,
  userId: null,
  roles: Object.freeze(['admin']),
  isAdmin: true,
});
