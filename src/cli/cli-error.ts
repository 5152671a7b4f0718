/** An operator-facing failure of a CLI verb: printed as "outpost: MESSAGE", exit status 1. */
export class CliError extends Error {}
