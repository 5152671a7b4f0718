import { setTimeout as sleep } from 'node:timers/promises';
import type { ChangeLog } from '../core/ports.ts';
import { describeError } from '../core/describe-error.ts';

export interface ChangeLogRetentionOptions {
  changeLog: ChangeLog;
  /** How many of the newest changes the log keeps (config `change_log_retain`). */
  keep: number;
  log: { info(obj: object, msg: string): void; warn(obj: object, msg: string): void };
}

/**
 * Keeps a site's change log at about `keep` changes: after each commit that takes the log more
 * than a tenth over `keep`, the oldest changes are dropped down to `keep`. A follower further
 * behind than the retained log gets 410 from the feed and reloads from the snapshot, so trimming
 * never loses data; it only bounds the log's size.
 */
export class ChangeLogRetention {
  readonly #o: ChangeLogRetentionOptions;
  readonly #stop = new AbortController();
  #running: Promise<void> | undefined;

  constructor(opts: ChangeLogRetentionOptions) {
    this.#o = opts;
  }

  start(): void {
    this.#running = this.#loop();
  }

  async #loop(): Promise<void> {
    const { changeLog, keep, log } = this.#o;
    const signal = this.#stop.signal;
    const slack = Math.max(1, Math.ceil(keep / 10));
    while (!signal.aborted) {
      try {
        const [first, last] = [await changeLog.firstSeq({ signal }), await changeLog.lastSeq({ signal })];
        if (last - first + 1 > keep + slack) {
          const dropped = await changeLog.truncate(keep, { signal });
          log.info({ dropped, keep }, 'trimmed the change log');
        }
        await changeLog.waitForChange(last, 60_000, { signal });
      } catch (error) {
        if (signal.aborted) return;
        log.warn({ err: describeError(error) }, 'could not trim the change log');
        await sleep(5000, undefined, { signal }).catch(() => {});
      }
    }
  }

  async close(): Promise<void> {
    this.#stop.abort();
    await this.#running;
  }
}
