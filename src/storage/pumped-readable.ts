import { ServerResponse } from 'node:http';
import { Readable, type ReadableOptions, type Writable } from 'node:stream';

/** Bytes a source hands out: its own memory (`release` given: call it once done with them) or the buffer it was given. */
export interface Lent {
  bytes: Buffer;
  release?: () => void;
}

/** Writes given to the response and not yet done with, at most. */
const MAX_SENDS = 2;

/**
 * A Readable of bytes that are sent into an HTTP response without copies: piped into an
 * http.ServerResponse (what fastify's reply.send does with a stream) before anything was read, it
 * writes the bytes next() lends as they are, keeping each from reuse until the response's write
 * callback says the socket is done with it — a source's own memory (released then) or one of a
 * few buffers of `sendBuffer` bytes cycled between reads: no allocation, page faults or garbage
 * per chunk sent. Any other consumer gets buffers of its own (fresh reads, or copies).
 */
export abstract class PumpedReadable extends Readable {
  readonly #sendBuffer: number;
  #pumping = false;

  constructor(sendBuffer: number, opts: ReadableOptions) {
    super(opts);
    this.#sendBuffer = sendBuffer;
  }

  /**
   * The next bytes (waiting for them if need be), null at the end. A source that reads bytes
   * into memory of its own asks `buffer(size)` for it, and may read fewer than the buffer holds.
   */
  protected abstract next(buffer: (size: number) => Buffer): Promise<Lent | null>;

  override _read(): void {
    if (this.#pumping) return;
    this.next((size) => Buffer.allocUnsafeSlow(size)).then((got) => {
      if (got === null) return this.push(null);
      if (got.release === undefined) return this.push(got.bytes);
      const copy = Buffer.from(got.bytes);
      got.release();
      return this.push(copy);
    }, (error: Error) => this.destroy(error));
  }

  override pipe<T extends NodeJS.WritableStream>(destination: T, options?: { end?: boolean }): T {
    const untouched = !this.#pumping && this.readableFlowing === null && this.readableLength === 0;
    if (!untouched || !(destination instanceof ServerResponse)) return super.pipe(destination, options);
    this.#pumping = true;
    void this.#pump(destination, options?.end !== false);
    return destination;
  }

  async #pump(destination: ServerResponse, end: boolean): Promise<void> {
    const dest = destination as ServerResponse & Writable;
    const free: Buffer[] = [];
    let sending = 0;
    let wake: (() => void) | undefined;
    const wakeUp = () => {
      const w = wake;
      wake = undefined;
      w?.();
    };
    const until = async (ready: () => boolean) => {
      while (!ready() && !this.destroyed) await new Promise<void>((resolve) => { wake = resolve; });
    };
    const onClose = () => {
      if (!dest.writableFinished) this.destroy();
      wakeUp();
    };
    dest.once('close', onClose);
    dest.on('drain', wakeUp);
    try {
      for (;;) {
        await until(() => sending < MAX_SENDS);
        if (this.destroyed) return;
        // Fewer than MAX_SENDS buffers are being sent, so one is free once MAX_SENDS exist.
        let used: Buffer | undefined;
        const got = await this.next((size) => (used = free.pop() ?? Buffer.allocUnsafeSlow(Math.min(size, this.#sendBuffer))));
        if (this.destroyed) {
          got?.release?.();
          return;
        }
        if (got === null) break;
        const done = got.release ?? (() => free.push(used!));
        await until(() => !dest.writableNeedDrain || sending === 0);
        if (this.destroyed) {
          done();
          return;
        }
        sending++;
        dest.write(got.bytes, () => {
          done();
          sending--;
          wakeUp();
        });
      }
      if (end) dest.end();
      this.push(null);
      this.resume();
    } catch (error) {
      if (!this.destroyed) this.destroy(error as Error);
    } finally {
      dest.off('close', onClose);
      dest.off('drain', wakeUp);
    }
  }
}
