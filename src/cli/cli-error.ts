/**
 * The exit status of `outpost` for each way a command can end (docs/cli.md lists them; scripts
 * may rely on them).
 */
export const EXIT_CODES = {
  ok: 0,
  /** The site refused the request or the operation failed (an import task, a transfer). */
  failure: 1,
  /** Bad flags or arguments, or a configuration that does not validate. */
  usage: 2,
  /** What was named (image, site, policy, namespace) does not exist. */
  'not-found': 3,
  /** The site or Keystone could not be reached. */
  unreachable: 4,
  /** Keystone or the site refused the credentials. */
  unauthorized: 5,
  /** `outpost status`: the site answers but is cut off from its parent, or its replica lags. */
  degraded: 6,
} as const;

export type ExitKind = keyof typeof EXIT_CODES;

/** An operator-facing failure of a CLI verb: printed as "outpost: MESSAGE", exit status by its kind. */
export class CliError extends Error {
  readonly kind: ExitKind;

  constructor(message: string, kind: ExitKind = 'failure') {
    super(message);
    this.kind = kind;
  }
}
