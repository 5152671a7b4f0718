// What a site reports up to central besides its copies: its transfers of image bytes and its
// replica's audits (with its inventory; the fleet view and the dashboard show them region-wide).

/** What one transfer of an image's bytes to this site did, as GET /outpost/v1/transfers shows it. */
export interface TransferRecord {
  image_id: string;
  /** Where the bytes came from: the parent's URL (or the sites holding a copy), then `, from site X, site Y` naming the sites that sent them when they are not the parent (peers, holders). */
  source: string;
  /** `manifest`: planned from the image's chunk manifest; `stream`: one stream (no manifest). */
  method: 'manifest' | 'stream';
  state: 'running' | 'done' | 'failed';
  /** Bytes of the image (0 for one stream of a length not known ahead). */
  planned: number;
  /** Bytes copied from copies this site holds. */
  reused: number;
  /** Bytes of all-zero chunks, made here. */
  zeros: number;
  /** Bytes fetched from the source and kept. */
  fetched: number;
  /** Bytes fetched again (a chunk that failed its check, a range cut off part-way). */
  refetched: number;
  /** Ranges asked again after the source broke off. */
  resumes: number;
  /** Bytes of the image given out so far (reused, zeros and fetched) per second since the start. */
  bytes_per_second: number;
  started_at: string;
  ended_at: string | null;
  error: string | null;
}

/** What an edge's audits of its replica against its parent found since the site started. */
export interface AuditCounts {
  /** When the last audit ran (ISO 8601); null before the first. */
  last_at: string | null;
  /** Entity kinds that differed at the last audit and were repaired (empty: none); null before the first. */
  last_mismatch: string[] | null;
  /** Audits that found a difference and repaired it. */
  repairs: number;
}

/**
 * The most transfers one report carries: a site sends its running ones first, then the recent
 * ones (TransferLog keeps 50 ended), up to this many; central refuses a longer list.
 */
export const MAX_REPORTED_TRANSFERS = 200;

export const TRANSFER_STATES: readonly TransferRecord['state'][] = ['running', 'done', 'failed'];
