import { setProperty, type Image } from './image.ts';

/** Image properties Glance keeps for the import workflow (visible, read-only to clients). */
export const LOCK_PROPERTY = 'os_glance_import_task';
export const IMPORTING_PROPERTY = 'os_glance_importing_to_stores';
export const FAILED_PROPERTY = 'os_glance_failed_import';

/** A lock held by a task that has not moved for this long may be taken over (Glance: 60 min). */
export const STALE_LOCK_MS = 60 * 60 * 1000;

/** Comma-joined store list property → ids ("" → none). */
export function storeList(image: Image, property: string): string[] {
  const v = image.properties[property];
  return v === undefined || v === '' ? [] : v.split(',');
}

/** Writes a comma-joined store list property; Glance sets "" rather than removing it. */
export function setStoreList(image: Image, property: string, stores: readonly string[]): void {
  setProperty(image.properties, property, [...new Set(stores)].join(','));
}
