import { randomBytes } from 'node:crypto';
import {
  AbortMultipartUploadCommand, CreateBucketCommand, CreateMultipartUploadCommand, DeleteBucketCommand, DeleteObjectCommand,
  ListMultipartUploadsCommand, ListObjectsV2Command, PutObjectCommand, S3Client, UploadPartCommand,
} from '@aws-sdk/client-s3';
import type { S3BlobDriverOptions } from '../../src/storage/drivers/s3-blob-driver.ts';

/**
 * The S3 server the production-backend tests use: scripts/test-servers.sh starts OpenStack Swift
 * with its s3api on loopback and prints TEST_S3_ENDPOINT, TEST_S3_ACCESS_KEY and
 * TEST_S3_SECRET_KEY (CI does both). Without them those tests skip, saying why.
 */
const endpoint = process.env.TEST_S3_ENDPOINT;
const accessKeyId = process.env.TEST_S3_ACCESS_KEY;
const secretAccessKey = process.env.TEST_S3_SECRET_KEY;

export const s3Skip: string | false = endpoint === undefined || accessKeyId === undefined || secretAccessKey === undefined
  ? 'no S3 server: run `eval "$(scripts/test-servers.sh start)"` first (CI does; it starts Swift with s3api and sets TEST_S3_ENDPOINT)'
  : false;
// CI starts every server (.ci/run): there, a missing one is a failure, not a skip.
if (s3Skip !== false && process.env.TEST_SERVERS_REQUIRED === '1') throw new Error(`TEST_SERVERS_REQUIRED: ${s3Skip}`);

/** An incomplete multipart upload, as ListMultipartUploads shows it. */
export interface PendingUpload {
  key: string;
  uploadId: string;
}

/** A new, empty bucket on the test server, a client of its own to look into it, and how to remove it. */
export interface TestBucket {
  readonly bucket: string;
  readonly endpoint: string;
  readonly credentials: { accessKeyId: string; secretAccessKey: string };
  /** A client independent of any driver under test (its own connections). */
  readonly client: S3Client;
  /** Options of an S3BlobDriver of this bucket on the test server (`overrides` win). */
  driverOptions(id: string, overrides?: Partial<S3BlobDriverOptions>): S3BlobDriverOptions;
  /** The names of every object in the bucket (under `prefix`), sorted. */
  objects(prefix?: string): Promise<string[]>;
  /** The incomplete multipart uploads in the bucket (under `prefix`), sorted by key. */
  uploads(prefix?: string): Promise<PendingUpload[]>;
  /** Starts a multipart upload of `objectKey` with one part and leaves it, as a writer that died would. */
  leavePartial(objectKey: string): Promise<PendingUpload>;
  put(objectKey: string, body: string | Uint8Array): Promise<void>;
  /** Aborts every upload, deletes every object and the bucket. */
  remove(): Promise<void>;
}

export async function createTestBucket(): Promise<TestBucket> {
  if (endpoint === undefined || accessKeyId === undefined || secretAccessKey === undefined) throw new Error(String(s3Skip));
  const credentials = { accessKeyId, secretAccessKey };
  const client = new S3Client({
    endpoint, region: 'us-east-1', forcePathStyle: true, credentials,
    requestChecksumCalculation: 'WHEN_REQUIRED', responseChecksumValidation: 'WHEN_REQUIRED',
  });
  const Bucket = `outpost-test-${randomBytes(6).toString('hex')}`;
  await client.send(new CreateBucketCommand({ Bucket }));
  const objects = async (prefix = '') => {
    const names: string[] = [];
    let ContinuationToken: string | undefined;
    do {
      const page = await client.send(new ListObjectsV2Command({ Bucket, Prefix: prefix, ContinuationToken }));
      for (const o of page.Contents ?? []) names.push(o.Key!);
      ContinuationToken = page.IsTruncated === true ? page.NextContinuationToken : undefined;
    } while (ContinuationToken !== undefined);
    return names.sort();
  };
  const uploads = async (prefix = '') => {
    const found: PendingUpload[] = [];
    let KeyMarker: string | undefined;
    let UploadIdMarker: string | undefined;
    do {
      const page = await client.send(new ListMultipartUploadsCommand({ Bucket, Prefix: prefix, KeyMarker, UploadIdMarker }));
      for (const u of page.Uploads ?? []) found.push({ key: u.Key!, uploadId: u.UploadId! });
      KeyMarker = page.IsTruncated === true ? page.NextKeyMarker : undefined;
      UploadIdMarker = page.IsTruncated === true ? page.NextUploadIdMarker : undefined;
    } while (KeyMarker !== undefined);
    return found.sort((a, b) => a.key.localeCompare(b.key) || a.uploadId.localeCompare(b.uploadId));
  };
  return {
    bucket: Bucket,
    endpoint,
    credentials,
    client,
    driverOptions: (id, overrides = {}) => ({ id, bucket: Bucket, endpoint, region: 'us-east-1', pathStyle: true, credentials, ...overrides }),
    objects,
    uploads,
    async leavePartial(Key) {
      const { UploadId } = await client.send(new CreateMultipartUploadCommand({ Bucket, Key }));
      await client.send(new UploadPartCommand({ Bucket, Key, UploadId, PartNumber: 1, Body: Buffer.from('half of it') }));
      return { key: Key, uploadId: UploadId! };
    },
    async put(Key, Body) {
      await client.send(new PutObjectCommand({ Bucket, Key, Body }));
    },
    async remove() {
      try {
        for (const u of await uploads()) await client.send(new AbortMultipartUploadCommand({ Bucket, Key: u.key, UploadId: u.uploadId }));
        for (const Key of await objects()) await client.send(new DeleteObjectCommand({ Bucket, Key }));
        await client.send(new DeleteBucketCommand({ Bucket }));
      } finally {
        client.destroy();
      }
    },
  };
}
