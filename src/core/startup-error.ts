/**
 * Why a site refuses to start, in words for the operator (the data directory belongs to another
 * site, is held by another process, the address is in use, ...). Not an HTTP error: `outpost serve`
 * prints it as one line, "outpost: MESSAGE", with no stack trace, and exits with status 1.
 */
export class StartupError extends Error {
  constructor(message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = 'StartupError';
  }
}
