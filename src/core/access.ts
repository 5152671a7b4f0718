import { ForbiddenError } from './errors.ts';
import type { RequestContext } from './context.ts';
import type { Image } from './image.ts';

/**
 * Glance's default policy rules (glance/policies/*.py, "secure RBAC" defaults), applied the same
 * way at every site:
 *   - admin may do anything;
 *   - a reader may read what its project can see;
 *   - a member of the owning project may modify the image ("role:member and project_id:%(owner)s").
 */
export class AccessRules {
  /**
   * `get_image`: public and community images are visible to all; private ones to their owner;
   * shared ones to their owner and to projects that are members (in any member status, as
   * glance.db.is_image_visible does).
   */
  canSee(ctx: RequestContext, image: Image, isMember: boolean): boolean {
    // Sites (the `service` role) replicate and pull every image for their own clients.
    if (ctx.isAdmin || ctx.roles.includes('service')) return true;
    if (image.visibility === 'public' || image.visibility === 'community') return true;
    if (ctx.projectId !== null && image.owner === ctx.projectId) return true;
    return image.visibility === 'shared' && isMember;
  }

  isOwner(ctx: RequestContext, image: Image): boolean {
    return ctx.projectId !== null && image.owner === ctx.projectId;
  }

  canWrite(ctx: RequestContext): boolean {
    return ctx.isAdmin || ctx.roles.includes('member') || ctx.roles.includes('_member_');
  }

  /** `modify_image`, `delete_image`, `add_member`, `deactivate`...: owner with a writing role, or admin. */
  assertCanModify(ctx: RequestContext, image: Image, action: string): void {
    if (ctx.isAdmin) return;
    if (!this.isOwner(ctx, image) || !this.canWrite(ctx)) {
      throw new ForbiddenError(`You are not authorized to complete ${action} action.`);
    }
  }

  /** `add_image`: a reader cannot create images. */
  assertCanCreate(ctx: RequestContext): void {
    if (!this.canWrite(ctx)) throw new ForbiddenError('You are not authorized to complete add_image action.');
  }

  /** `publicize_image` is admin-only by default. */
  assertCanSetVisibility(ctx: RequestContext, visibility: string): void {
    if (visibility === 'public' && !ctx.isAdmin) {
      throw new ForbiddenError('You are not authorized to complete publicize_image action.');
    }
  }

  /** Only an admin may give an image to another project. */
  assertCanSetOwner(ctx: RequestContext, owner: string | null): void {
    if (!ctx.isAdmin && owner !== ctx.projectId) {
      throw new ForbiddenError("You are not permitted to create images owned by '" + String(owner) + "'.");
    }
  }
}
