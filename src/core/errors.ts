/**
 * The one error catalog. Every error the service raises on purpose is one of these classes, each
 * with a stable `code` and the HTTP status Glance answers with. Only the HTTP layer
 * (src/api/error-responses.ts) turns them into Glance-shaped bodies; docs/errors.md lists every
 * code and is kept in step by test/errors-doc.test.ts.
 */
export abstract class OutpostError extends Error {
  abstract readonly status: number;
  abstract readonly code: string;
  /** Extra response headers the HTTP layer must send with this error (e.g. Accept-Patch). */
  readonly headers: Readonly<Record<string, string>>;

  constructor(message: string, headers: Record<string, string> = {}) {
    super(message);
    this.name = new.target.name;
    this.headers = headers;
  }
}

export class BadRequestError extends OutpostError {
  readonly status = 400;
  readonly code = 'bad_request';
}

/** A request body that does not validate against a published schema (image, member, ...). */
export class SchemaViolationError extends OutpostError {
  readonly status = 400;
  readonly code = 'schema_violation';
}

export class UnauthorizedError extends OutpostError {
  readonly status = 401;
  readonly code = 'unauthorized';
}

export class ForbiddenError extends OutpostError {
  readonly status = 403;
  readonly code = 'forbidden';
}

/** A read-only or reserved attribute in a create or PATCH body. */
export class ReadOnlyAttributeError extends OutpostError {
  readonly status = 403;
  readonly code = 'read_only_attribute';
}

export class NotFoundError extends OutpostError {
  readonly status = 404;
  readonly code = 'not_found';
}

export class ImageNotFoundError extends OutpostError {
  readonly status = 404;
  readonly code = 'image_not_found';
  constructor(id: string) {
    super(`No image found with ID ${id}`);
  }
}

export class MethodNotAllowedError extends OutpostError {
  readonly status = 405;
  readonly code = 'method_not_allowed';
}

export class ConflictError extends OutpostError {
  readonly status = 409;
  readonly code = 'conflict';
}

/** glance/domain: "Image status transition from X to Y is not allowed" (409). */
export class InvalidTransitionError extends OutpostError {
  readonly status = 409;
  readonly code = 'invalid_transition';
  constructor(from: string, to: string) {
    super(`Image status transition from ${from} to ${to} is not allowed`);
  }
}

export class GoneError extends OutpostError {
  readonly status = 410;
  readonly code = 'gone';
}

export class PayloadTooLargeError extends OutpostError {
  readonly status = 413;
  readonly code = 'payload_too_large';
}

export class UnsupportedMediaTypeError extends OutpostError {
  readonly status = 415;
  readonly code = 'unsupported_media_type';
}

export class RangeNotSatisfiableError extends OutpostError {
  readonly status = 416;
  readonly code = 'range_not_satisfiable';
}

export class ServiceUnavailableError extends OutpostError {
  readonly status = 503;
  readonly code = 'service_unavailable';
}

/**
 * Bytes that do not match the size, checksum or hash they must have (a copy being verified); as
 * Glance's failed checksum verification, a server-side failure rather than the client's.
 */
export class DataMismatchError extends OutpostError {
  readonly status = 502;
  readonly code = 'data_mismatch';
}

/** Every concrete error class, for the documentation test and the HTTP mapping's self-check. */
export const ERROR_CLASSES = [
  BadRequestError,
  SchemaViolationError,
  UnauthorizedError,
  ForbiddenError,
  ReadOnlyAttributeError,
  NotFoundError,
  ImageNotFoundError,
  MethodNotAllowedError,
  ConflictError,
  InvalidTransitionError,
  GoneError,
  PayloadTooLargeError,
  UnsupportedMediaTypeError,
  RangeNotSatisfiableError,
  ServiceUnavailableError,
  DataMismatchError,
] as const;
