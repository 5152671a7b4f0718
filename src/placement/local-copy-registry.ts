import type { RequestContext } from '../core/context.ts';
import type { ImageService } from '../core/image-service.ts';
import type { CopyRegistry, IoOptions, VerifiedCopy } from '../core/ports.ts';

/**
 * Central's CopyRegistry: the copies its own placement agent makes are recorded in its own
 * catalog, through the same ImageService calls an edge's records reach there by
 * (PUT/DELETE /outpost/v1/images/{id}/locations/{store}), so the same checks apply.
 */
export class LocalCopyRegistry implements CopyRegistry {
  readonly #images: Pick<ImageService, 'addCopy' | 'removeCopy'>;

  constructor(images: Pick<ImageService, 'addCopy' | 'removeCopy'>) {
    this.#images = images;
  }

  /** The catalog is this site's own: always there. */
  async reachable(opts: IoOptions = {}): Promise<void> {
    opts.signal?.throwIfAborted();
  }

  async record(ctx: RequestContext, imageId: string, copy: VerifiedCopy, opts: IoOptions = {}): Promise<void> {
    await this.#images.addCopy(ctx, imageId, copy, opts);
  }

  async remove(ctx: RequestContext, imageId: string, store: string, opts: IoOptions = {}): Promise<void> {
    await this.#images.removeCopy(ctx, imageId, store, opts);
  }
}
