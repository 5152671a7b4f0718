import { addAbortSignal, Readable } from 'node:stream';
import {
  AbortMultipartUploadCommand, CompleteMultipartUploadCommand, CreateBucketCommand, CreateMultipartUploadCommand, DeleteObjectCommand,
  GetObjectCommand, HeadBucketCommand, HeadObjectCommand, ListMultipartUploadsCommand, ListObjectsV2Command, PutObjectCommand, S3Client,
  S3ServiceException, UploadPartCommand, type CompletedPart,
} from '@aws-sdk/client-s3';
import { NotFoundError, ServiceUnavailableError } from '../../core/errors.ts';
import { describeError } from '../../core/describe-error.ts';
import type { BlobDriver, BlobStat, BlobWriter, GetOptions, IoOptions } from '../../core/ports.ts';
import { checkBlobKey, isBlobKey } from '../blob-key.ts';

const MiB = 1 << 20;
/** S3's smallest part (every part but the last) and largest part. */
export const S3_MIN_PART_SIZE = 5 * MiB;
const S3_MAX_PART_SIZE = 5 * 1024 * MiB;

export interface S3BlobDriverOptions {
  id: string;
  bucket: string;
  /** Objects are named `PREFIX/KEY` ('' or undefined: `KEY` at the top of the bucket). No leading or trailing '/'. */
  prefix?: string;
  /** The S3 API's base URL (Ceph RGW, Swift s3api, MinIO ...); undefined: AWS, from the region. */
  endpoint?: string;
  /** Signing region; undefined: the SDK's (AWS_REGION, the profile), or us-east-1 with an endpoint. */
  region?: string;
  /** Path-style URLs (`ENDPOINT/BUCKET/KEY`), which most S3 servers other than AWS want. */
  pathStyle?: boolean;
  /**
   * Credentials: by default the SDK's standard chain (AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY,
   * the shared credentials file with `profile` or AWS_PROFILE, ...). Given here by tests only.
   */
  credentials?: { accessKeyId: string; secretAccessKey: string; sessionToken?: string };
  /** A profile of the shared credentials and config files, for this store only. */
  profile?: string;
  /** Size of the first parts of a multipart upload (≥ 5 MiB; default 8 MiB); see partSizeFor(). */
  partSize?: number;
  /** Most parts the server takes in one upload (AWS and Ceph RGW: 10,000, the default; Swift s3api: 1,000). */
  maxParts?: number;
  /** Parts of one upload sent at the same time (default 4): each costs a part of memory. */
  partsInFlight?: number;
  /**
   * removePartial() leaves alone an upload it does not know to be dead until it is this old
   * (default 1 h; 0: no grace, for a bucket prefix only this object writes to).
   */
  partialGraceMs?: number;
  /** Time to establish a connection (default 5 s). */
  connectTimeoutMs?: number;
  /** A request on which nothing moves for this long fails (default 30 s). */
  idleTimeoutMs?: number;
  /** Attempts of each request, the first included, with the SDK's backoff between them (default 3). */
  maxAttempts?: number;
  /** Keys and incomplete uploads asked per listing request (S3's maximum and default: 1000). */
  listPageSize?: number;
}

/**
 * Size of part `n` (1-based) of an upload whose size is not known in advance: `partSize`, doubled
 * every tenth of `maxParts` parts (at most 5 GiB), so that the `maxParts` parts hold about 1023 ×
 * maxParts/10 × partSize bytes (8 MiB, 10,000 parts: ~8 TiB; 1,000 parts: ~800 GiB) while a
 * small blob's parts, and the memory they take, stay small.
 */
export function partSizeFor(n: number, partSize: number, maxParts: number): number {
  const step = Math.max(1, Math.floor(maxParts / 10));
  return Math.min(S3_MAX_PART_SIZE, partSize * 2 ** Math.floor((n - 1) / step));
}

/** Node's and the SDK's names of a connection that failed or went silent. */
const NETWORK_CODES = new Set([
  'ECONNREFUSED', 'ECONNRESET', 'ECONNABORTED', 'EPIPE', 'ETIMEDOUT', 'ENOTFOUND', 'EAI_AGAIN', 'EHOSTUNREACH',
  'ENETUNREACH', 'EHOSTDOWN', 'ENETDOWN', 'ERR_STREAM_PREMATURE_CLOSE', 'UND_ERR_SOCKET',
]);

/** What the writers of one driver share with it: the client, and the driver's bookkeeping of uploads. */
interface UploadContext {
  /** "the S3 store ID at ENDPOINT", for messages. */
  readonly store: string;
  readonly client: S3Client;
  readonly bucket: string;
  readonly partSize: number;
  readonly maxParts: number;
  readonly partsInFlight: number;
  /** How long cancel() tries to abort a multipart upload before leaving it to removePartial(). */
  readonly cancelTimeoutMs: number;
  fail(error: unknown, what: string, signal: AbortSignal | undefined): unknown;
  /** An upload of this object's writers: removePartial() leaves it alone until `untrack`. */
  track(uploadId: string): void;
  untrack(uploadId: string): void;
  /** An upload cancel() could not abort: removePartial() aborts it whatever its age. */
  abandon(uploadId: string): void;
  /** A CreateMultipartUpload of `objectKey` under way (+1) or settled (-1): its id is not known yet. */
  creating(objectKey: string, delta: 1 | -1): void;
}

/**
 * Bytes in an S3 bucket (AWS, Ceph RGW, Swift's s3api, ...), under `PREFIX/KEY`. A write is a
 * multipart upload streamed part by part (nothing is visible under the key before its
 * CompleteMultipartUpload; a blob smaller than one part is one PutObject at the commit); what a
 * writer that died left is an incomplete multipart upload, which removePartial() aborts. Every
 * request has a connection and an idle timeout and a bounded number of attempts, so a cut link
 * fails the call with ServiceUnavailableError ("... is unreachable: ...") instead of hanging.
 */
export class S3BlobDriver implements BlobDriver {
  readonly id: string;
  readonly #client: S3Client;
  readonly #bucket: string;
  /** '' or 'a/b/': what object names start with. */
  readonly #prefix: string;
  /** The endpoint as messages name it. */
  readonly #where: string;
  readonly #partialGraceMs: number;
  readonly #listPageSize: number;
  /** Upload ids of this object's running writes. */
  readonly #running = new Set<string>();
  /** Upload ids this object's writers gave up but could not abort (a cut link). */
  readonly #abandoned = new Set<string>();
  /** Object names with a CreateMultipartUpload under way, and how many. */
  readonly #creating = new Map<string, number>();
  readonly #context: UploadContext;

  private constructor(opts: S3BlobDriverOptions) {
    this.id = opts.id;
    this.#bucket = opts.bucket;
    const prefix = (opts.prefix ?? '').replace(/^\/+|\/+$/g, '');
    this.#prefix = prefix === '' ? '' : `${prefix}/`;
    this.#where = opts.endpoint ?? `AWS S3${opts.region === undefined ? '' : ` (${opts.region})`}`;
    this.#partialGraceMs = opts.partialGraceMs ?? 3600_000;
    this.#listPageSize = opts.listPageSize ?? 1000;
    const partSize = opts.partSize ?? 8 * MiB;
    if (!Number.isSafeInteger(partSize) || partSize < S3_MIN_PART_SIZE || partSize > S3_MAX_PART_SIZE) {
      throw new RangeError(`S3 store ${opts.id}: the part size must be 5 MiB to 5 GiB, not ${partSize} bytes`);
    }
    const maxParts = opts.maxParts ?? 10_000;
    const partsInFlight = opts.partsInFlight ?? 4;
    if (!Number.isSafeInteger(partsInFlight) || partsInFlight < 1) throw new RangeError(`S3 store ${opts.id}: parts in flight must be 1 or more, not ${partsInFlight}`);
    const connectTimeoutMs = opts.connectTimeoutMs ?? 5000;
    const idleTimeoutMs = opts.idleTimeoutMs ?? 30_000;
    this.#client = new S3Client({
      region: opts.region ?? (opts.endpoint === undefined ? undefined : 'us-east-1'),
      ...(opts.endpoint === undefined ? {} : { endpoint: opts.endpoint }),
      forcePathStyle: opts.pathStyle ?? false,
      ...(opts.credentials === undefined ? {} : { credentials: opts.credentials }),
      ...(opts.profile === undefined ? {} : { profile: opts.profile }),
      maxAttempts: opts.maxAttempts ?? 3,
      // Checksums only where S3 requires them: S3 servers other than AWS (Swift 2.30, older Ceph)
      // refuse the SDK's default trailing CRC checksums. The bytes are verified by their md5 and
      // sha512 above the driver, and travel signed (http) or over TLS (https).
      requestChecksumCalculation: 'WHEN_REQUIRED',
      responseChecksumValidation: 'WHEN_REQUIRED',
      requestHandler: { connectionTimeout: connectTimeoutMs, socketTimeout: idleTimeoutMs },
    });
    this.#context = {
      store: `the S3 store ${this.id} at ${this.#where}`,
      client: this.#client,
      bucket: this.#bucket,
      partSize,
      maxParts,
      partsInFlight,
      cancelTimeoutMs: Math.min(connectTimeoutMs + idleTimeoutMs, 15_000),
      fail: (error, what, signal) => this.#fail(error, what, signal),
      track: (uploadId) => this.#running.add(uploadId),
      untrack: (uploadId) => this.#running.delete(uploadId),
      abandon: (uploadId) => this.#abandoned.add(uploadId),
      creating: (objectKey, delta) => {
        const n = (this.#creating.get(objectKey) ?? 0) + delta;
        if (n > 0) this.#creating.set(objectKey, n);
        else this.#creating.delete(objectKey);
      },
    };
  }

  /**
   * A driver of the bucket, which is created if it is missing. Fails with ServiceUnavailableError
   * saying why when the endpoint cannot be reached, refuses the credentials, or the bucket is
   * another account's.
   */
  static async create(opts: S3BlobDriverOptions, io: IoOptions = {}): Promise<S3BlobDriver> {
    const driver = new S3BlobDriver(opts);
    try {
      await driver.#ensureBucket(opts.region, io);
      return driver;
    } catch (error) {
      await driver.close();
      throw error;
    }
  }

  /** Closes the client's connections; the driver is not used afterwards. */
  async close(): Promise<void> {
    this.#client.destroy();
  }

  async #ensureBucket(region: string | undefined, io: IoOptions): Promise<void> {
    const Bucket = this.#bucket;
    try {
      await this.#client.send(new HeadBucketCommand({ Bucket }), { abortSignal: io.signal });
      return;
    } catch (error) {
      if (statusOf(error) !== 404) throw this.#fail(error, `reach bucket ${Bucket}`, io.signal);
    }
    try {
      // us-east-1 is S3's default location, which may not be named.
      const location = region === undefined || region === 'us-east-1' ? undefined : region;
      await this.#client.send(new CreateBucketCommand({
        Bucket, ...(location === undefined ? {} : { CreateBucketConfiguration: { LocationConstraint: location as never } }),
      }), { abortSignal: io.signal });
    } catch (error) {
      if (nameOf(error) === 'BucketAlreadyOwnedByYou') return;
      throw this.#fail(error, `create bucket ${Bucket}`, io.signal);
    }
  }

  #objectKey(key: string): string {
    return this.#prefix + checkBlobKey(key);
  }

  urlFor(key: string): string {
    return `s3://${this.#bucket}/${this.#objectKey(key)}`;
  }

  async openWriter(key: string, opts: IoOptions = {}): Promise<BlobWriter> {
    const objectKey = this.#objectKey(key);
    opts.signal?.throwIfAborted();
    return new S3BlobWriter(this.#context, key, objectKey);
  }

  async get(key: string, opts: GetOptions = {}): Promise<Readable> {
    const Key = this.#objectKey(key);
    opts.signal?.throwIfAborted();
    const start = opts.start ?? 0;
    const Range = start === 0 && opts.end === undefined ? undefined : `bytes=${start}-${opts.end ?? ''}`;
    try {
      const out = await this.#client.send(new GetObjectCommand({ Bucket: this.#bucket, Key, Range }), { abortSignal: opts.signal });
      const body = out.Body;
      if (!(body instanceof Readable)) throw new Error('the S3 client gave no stream for the object');
      return opts.signal === undefined ? body : addAbortSignal(opts.signal, body);
    } catch (error) {
      if (isNotFound(error)) throw new NotFoundError(`Image data for ${key} not found in store ${this.id}`);
      // A range that starts at or past the end: no bytes (as the other drivers answer).
      if (statusOf(error) === 416 || nameOf(error) === 'InvalidRange') return Readable.from([]);
      throw this.#fail(error, `read ${key}`, opts.signal);
    }
  }

  async stat(key: string, opts: IoOptions = {}): Promise<BlobStat | undefined> {
    const Key = this.#objectKey(key);
    opts.signal?.throwIfAborted();
    try {
      const out = await this.#client.send(new HeadObjectCommand({ Bucket: this.#bucket, Key }), { abortSignal: opts.signal });
      return { size: out.ContentLength ?? 0 };
    } catch (error) {
      if (isNotFound(error)) return undefined;
      throw this.#fail(error, `look up ${key}`, opts.signal);
    }
  }

  async delete(key: string, opts: IoOptions = {}): Promise<void> {
    const Key = this.#objectKey(key);
    opts.signal?.throwIfAborted();
    try {
      await this.#client.send(new DeleteObjectCommand({ Bucket: this.#bucket, Key }), { abortSignal: opts.signal });
    } catch (error) {
      if (isNotFound(error)) return;
      throw this.#fail(error, `delete ${key}`, opts.signal);
    }
  }

  /** The keys under the prefix (objects whose rest of the name is not a valid key are not blobs of this store). */
  async *list(opts: IoOptions = {}): AsyncIterable<string> {
    let ContinuationToken: string | undefined;
    do {
      opts.signal?.throwIfAborted();
      let page;
      try {
        page = await this.#client.send(new ListObjectsV2Command({
          Bucket: this.#bucket, Prefix: this.#prefix, Delimiter: '/', ContinuationToken, MaxKeys: this.#listPageSize,
        }), { abortSignal: opts.signal });
      } catch (error) {
        throw this.#fail(error, 'list the blobs', opts.signal);
      }
      for (const object of page.Contents ?? []) {
        const key = object.Key?.slice(this.#prefix.length);
        if (key !== undefined && isBlobKey(key)) yield key;
      }
      ContinuationToken = page.IsTruncated === true ? page.NextContinuationToken : undefined;
    } while (ContinuationToken !== undefined);
  }

  /**
   * Aborts the incomplete multipart uploads under the prefix that no write of this object is
   * running: those its writers gave up but could not abort, and any other older than the grace
   * period. Several nodes may share a bucket, so a younger upload may be another node's running
   * write and is left alone. Returns how many were aborted.
   */
  async removePartial(opts: IoOptions = {}): Promise<number> {
    let removed = 0;
    let KeyMarker: string | undefined;
    let UploadIdMarker: string | undefined;
    const now = Date.now();
    do {
      opts.signal?.throwIfAborted();
      let page;
      try {
        page = await this.#client.send(new ListMultipartUploadsCommand({
          Bucket: this.#bucket, Prefix: this.#prefix, KeyMarker, UploadIdMarker, MaxUploads: this.#listPageSize,
        }), { abortSignal: opts.signal });
      } catch (error) {
        throw this.#fail(error, 'list the incomplete uploads', opts.signal);
      }
      for (const upload of page.Uploads ?? []) {
        const { Key, UploadId } = upload;
        if (Key === undefined || UploadId === undefined) continue;
        if (this.#running.has(UploadId) || this.#creating.has(Key)) continue;
        // (Initiated may be rounded up to the second, so "no grace" does not compare it with now.)
        const old = this.#partialGraceMs <= 0 || (upload.Initiated !== undefined && now - upload.Initiated.getTime() >= this.#partialGraceMs);
        if (!this.#abandoned.has(UploadId) && !old) continue;
        try {
          await this.#client.send(new AbortMultipartUploadCommand({ Bucket: this.#bucket, Key, UploadId }), { abortSignal: opts.signal });
          removed++;
        } catch (error) {
          if (!isNotFound(error)) throw this.#fail(error, `abort the incomplete upload of ${Key}`, opts.signal);
        }
        this.#abandoned.delete(UploadId);
      }
      const more = page.IsTruncated === true;
      KeyMarker = more ? page.NextKeyMarker : undefined;
      UploadIdMarker = more ? page.NextUploadIdMarker : undefined;
    } while (KeyMarker !== undefined);
    return removed;
  }

  /**
   * The error to throw for a failed request: the signal's reason when the caller aborted; else
   * ServiceUnavailableError saying which store at which endpoint failed to do `what`, and why.
   */
  #fail(error: unknown, what: string, signal: AbortSignal | undefined): unknown {
    if (signal?.aborted === true) return signal.reason;
    const store = this.#context.store;
    const status = statusOf(error);
    const name = nameOf(error);
    if (name === 'CredentialsProviderError') {
      return unavailable(`${store} has no credentials (AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or a profile of the shared credentials file): ${describeError(error)}`, error);
    }
    if (status === undefined && error instanceof Error && /region is missing/i.test(error.message)) {
      return unavailable(`${store} has no region: set the store's region (or AWS_REGION)`, error);
    }
    if (status === undefined || isNetworkError(error)) {
      return unavailable(`${store} is unreachable: could not ${what}: ${describeError(error)}`, error);
    }
    const code = name === undefined || /^\d+$/.test(name) || name === 'UnknownError' ? `HTTP ${status}` : `${name} (HTTP ${status})`;
    const message = error instanceof Error && error.message !== '' && error.message !== name && error.message !== 'UnknownError' ? `: ${error.message}` : '';
    if (status === 403 || name === 'InvalidAccessKeyId' || name === 'SignatureDoesNotMatch' || name === 'AccessDenied') {
      return unavailable(`${store} refused the credentials or access to bucket ${this.#bucket}: could not ${what}: ${code}${message}`, error);
    }
    if (status === 301 || name === 'PermanentRedirect' || name === 'AuthorizationHeaderMalformed') {
      return unavailable(`${store}: bucket ${this.#bucket} is in another region than the one configured: could not ${what}: ${code}${message}`, error);
    }
    if (name === 'NoSuchBucket') return unavailable(`${store} has no bucket ${this.#bucket}: could not ${what}`, error);
    if (name === 'BucketAlreadyExists') {
      return unavailable(`${store}: the bucket name ${this.#bucket} is taken by another account: choose another bucket`, error);
    }
    return unavailable(`${store} could not ${what}: ${code}${message}`, error);
  }
}

/**
 * One multipart upload, streamed: write() copies bytes into the part being filled and, when it is
 * full, starts its UploadPart, first waiting until fewer than `partsInFlight` parts are being
 * sent (each part's round trip — the server writes and syncs it before it answers — is what
 * limits one part at a time; memory: partsInFlight + 1 parts). The upload itself is created with
 * the first full part, so a blob smaller than a part is one PutObject at the commit and a cancel
 * before then costs no request.
 */
class S3BlobWriter implements BlobWriter {
  readonly #c: UploadContext;
  readonly #key: string;
  readonly #objectKey: string;
  /** Aborts this writer's requests in flight (cancel). */
  readonly #controller = new AbortController();
  #written = 0;
  #part: Buffer | undefined;
  #filled = 0;
  /** Parts' memory back from their uploads, for the next parts of that size. */
  #spares: Buffer[] = [];
  #partNumber = 0;
  readonly #parts: CompletedPart[] = [];
  #uploadId: string | undefined;
  /** The part uploads in flight; they never reject: a failure goes to #failure. */
  readonly #inFlight = new Set<Promise<void>>();
  /** The CreateMultipartUpload in flight, for cancel() to wait for. */
  #starting: Promise<unknown> | undefined;
  #failure: { error: unknown } | undefined;
  #state: 'open' | 'committed' | 'cancelled' = 'open';

  constructor(context: UploadContext, key: string, objectKey: string) {
    this.#c = context;
    this.#key = key;
    this.#objectKey = objectKey;
  }

  get written(): number {
    return this.#written;
  }

  async write(bytes: Uint8Array, opts: IoOptions = {}): Promise<void> {
    opts.signal?.throwIfAborted();
    this.#checkOpen();
    const source = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
    for (let offset = 0; offset < source.length;) {
      this.#part ??= this.#buffer(partSizeFor(this.#partNumber + 1, this.#c.partSize, this.#c.maxParts));
      const n = Math.min(this.#part.length - this.#filled, source.length - offset);
      // Buffer#fill with a buffer exactly as long as the range is one memcpy, also from shared memory.
      this.#part.fill(source.subarray(offset, offset + n), this.#filled, this.#filled + n);
      this.#filled += n;
      offset += n;
      this.#written += n;
      if (this.#filled === this.#part.length) await this.#sendPart(opts.signal);
    }
  }

  /** Makes the blob visible: PutObject of the one part, or the last part and CompleteMultipartUpload. */
  async commit(opts: IoOptions = {}): Promise<void> {
    opts.signal?.throwIfAborted();
    this.#checkOpen();
    const Bucket = this.#c.bucket;
    const Key = this.#objectKey;
    const signal = this.#signal(opts.signal);
    await this.#settle();
    if (this.#uploadId === undefined) {
      const Body = this.#part?.subarray(0, this.#filled) ?? Buffer.alloc(0);
      try {
        await this.#c.client.send(new PutObjectCommand({ Bucket, Key, Body, ContentLength: Body.length }), { abortSignal: signal });
      } catch (error) {
        throw this.#c.fail(error, `store ${this.#key}`, opts.signal);
      }
    } else {
      if (this.#filled > 0) await this.#sendPart(opts.signal);
      await this.#settle();
      const Parts = [...this.#parts].sort((a, b) => a.PartNumber! - b.PartNumber!);
      try {
        await this.#c.client.send(new CompleteMultipartUploadCommand({
          Bucket, Key, UploadId: this.#uploadId, MultipartUpload: { Parts },
        }), { abortSignal: signal });
      } catch (error) {
        throw this.#c.fail(error, `complete the upload of ${this.#key}`, opts.signal);
      }
      this.#c.untrack(this.#uploadId);
    }
    this.#state = 'committed';
    this.#release();
  }

  /**
   * Stops the requests in flight and aborts the multipart upload. If the abort cannot be done
   * within the context's cancel time (a cut link), the upload is left to removePartial(). Idempotent;
   * nothing to do after a commit.
   */
  async cancel(): Promise<void> {
    if (this.#state !== 'open') return;
    this.#state = 'cancelled';
    this.#controller.abort();
    await this.#starting;
    await Promise.all(this.#inFlight);
    this.#release();
    const UploadId = this.#uploadId;
    if (UploadId === undefined) return;
    this.#c.untrack(UploadId);
    try {
      await this.#c.client.send(new AbortMultipartUploadCommand({ Bucket: this.#c.bucket, Key: this.#objectKey, UploadId }), {
        abortSignal: AbortSignal.timeout(this.#c.cancelTimeoutMs),
      });
    } catch (error) {
      if (!isNotFound(error)) this.#c.abandon(UploadId);
    }
  }

  #checkOpen(): void {
    if (this.#state !== 'open') throw new Error(`the write of ${this.#key} has ended`);
    if (this.#failure !== undefined) throw this.#failure.error;
  }

  /** The caller's signal and cancel's, as one. */
  #signal(signal: AbortSignal | undefined): AbortSignal {
    return signal === undefined ? this.#controller.signal : AbortSignal.any([this.#controller.signal, signal]);
  }

  /** Waits for the parts in flight; throws the first failure. */
  async #settle(): Promise<void> {
    await Promise.all(this.#inFlight);
    if (this.#failure !== undefined) throw this.#failure.error;
  }

  /** Starts the upload of the part filled so far, once fewer than partsInFlight are being sent (creating the upload first). */
  async #sendPart(callerSignal: AbortSignal | undefined): Promise<void> {
    while (this.#inFlight.size >= this.#c.partsInFlight) await Promise.race(this.#inFlight);
    if (this.#failure !== undefined) throw this.#failure.error;
    const signal = this.#signal(callerSignal);
    const Bucket = this.#c.bucket;
    const Key = this.#objectKey;
    if (this.#uploadId === undefined) {
      this.#c.creating(Key, 1);
      const starting = this.#c.client.send(new CreateMultipartUploadCommand({ Bucket, Key }), { abortSignal: signal });
      this.#starting = starting.catch(() => undefined);
      try {
        const out = await starting;
        if (out.UploadId === undefined) throw new Error('CreateMultipartUpload answered no UploadId');
        this.#uploadId = out.UploadId;
        this.#c.track(out.UploadId);
      } catch (error) {
        throw this.#c.fail(error, `start the upload of ${this.#key}`, callerSignal);
      } finally {
        this.#c.creating(Key, -1);
      }
      if (this.#state !== 'open') throw new Error(`the write of ${this.#key} has ended`);
    }
    const part = this.#part!;
    const Body = part.subarray(0, this.#filled);
    const PartNumber = ++this.#partNumber;
    if (PartNumber > this.#c.maxParts) {
      throw new ServiceUnavailableError(`${this.#c.store} cannot take ${this.#key}: it needs more than ${this.#c.maxParts} parts (raise part_size or max_parts)`);
    }
    this.#part = undefined;
    this.#filled = 0;
    const UploadId = this.#uploadId;
    const sending: Promise<void> = this.#c.client.send(new UploadPartCommand({
      Bucket, Key, UploadId, PartNumber, Body, ContentLength: Body.length,
    }), { abortSignal: signal }).then((out) => {
      this.#parts.push({ PartNumber, ETag: out.ETag });
      if (this.#state === 'open') this.#spares.push(part);
    }, (error: unknown) => {
      this.#failure ??= { error: this.#c.fail(error, `upload part ${PartNumber} of ${this.#key}`, callerSignal) };
      // The parts still in flight are of no use now.
      this.#controller.abort();
    }).finally(() => this.#inFlight.delete(sending));
    this.#inFlight.add(sending);
  }

  /** Memory for a part of `size` bytes: a spare one if one is that size. */
  #buffer(size: number): Buffer {
    const i = this.#spares.findIndex((b) => b.length === size);
    return i < 0 ? Buffer.allocUnsafeSlow(size) : this.#spares.splice(i, 1)[0]!;
  }

  #release(): void {
    this.#part = undefined;
    this.#spares = [];
  }
}

/** ServiceUnavailableError (503) with the failure as its cause. */
function unavailable(message: string, cause: unknown): ServiceUnavailableError {
  const error = new ServiceUnavailableError(message);
  error.cause = cause;
  return error;
}

function statusOf(error: unknown): number | undefined {
  const status = (error as { $metadata?: { httpStatusCode?: number } } | undefined)?.$metadata?.httpStatusCode;
  return typeof status === 'number' ? status : undefined;
}

function nameOf(error: unknown): string | undefined {
  return error instanceof S3ServiceException || error instanceof Error ? error.name : undefined;
}

/** A missing object or upload (not a missing bucket, which is the store's failure). */
function isNotFound(error: unknown): boolean {
  const name = nameOf(error);
  if (name === 'NoSuchBucket') return false;
  return statusOf(error) === 404 || name === 'NoSuchKey' || name === 'NotFound' || name === 'NoSuchUpload';
}

function isNetworkError(error: unknown): boolean {
  for (let e: unknown = error, depth = 0; e instanceof Error && depth < 5; e = e.cause, depth++) {
    const code = (e as NodeJS.ErrnoException).code;
    if (e.name === 'TimeoutError' || (code !== undefined && NETWORK_CODES.has(code)) || /socket hang up/.test(e.message)) return true;
  }
  return false;
}
