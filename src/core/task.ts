/**
 * Tasks (glance/domain Task): `api_image_import` (POST /v2/images/{id}/import) and
 * `location_import` (POST /v2/images/{id}/locations, glance/async_/flows/location_import.py).
 * States: pending → processing | failure; processing → success | failure. Terminal tasks expire
 * `task_time_to_live` (48 h) after they end.
 */
export const TASK_STATUSES = ['pending', 'processing', 'success', 'failure'] as const;
export type TaskStatus = (typeof TASK_STATUSES)[number];

export const IMPORT_METHODS = ['glance-direct', 'web-download', 'copy-image', 'glance-download'] as const;
export type ImportMethod = (typeof IMPORT_METHODS)[number];

/** The body of POST /v2/images/{id}/import, as recorded in the task's input. */
export interface ImportRequest {
  method: { name: ImportMethod; uri?: string; glance_region?: string; glance_image_id?: string; glance_service_interface?: string };
  stores?: string[];
  all_stores?: boolean;
  all_stores_must_succeed?: boolean;
}

/** `validation_data` of POST /v2/images/{id}/locations: the hash the bytes must have. */
export interface LocationValidationData {
  os_hash_algo?: string;
  os_hash_value?: string;
}

interface TaskFields {
  id: string;
  status: TaskStatus;
  owner: string | null;
  image_id: string;
  request_id: string;
  user_id: string | null;
  result: Record<string, unknown> | null;
  /** Progress ("Copied 15 MiB") while running; the error text after a failure. */
  message: string;
  expires_at: string | null;
  created_at: string;
  updated_at: string;
}

export interface ImportTask extends TaskFields {
  type: 'api_image_import';
  input: { image_id: string; import_req: ImportRequest; backend: string[] };
}

/** Glance's task_input of a location import: the URL and the hash it must have, if given. */
export interface LocationImportTask extends TaskFields {
  type: 'location_import';
  input: { image_id: string; loc_url: string; validation_data: LocationValidationData };
}

export type Task = ImportTask | LocationImportTask;
export type TaskType = Task['type'];
export const TASK_TYPES: readonly TaskType[] = ['api_image_import', 'location_import'];

export const TASK_TIME_TO_LIVE_MS = 48 * 3600 * 1000;

export function isTerminal(status: TaskStatus): boolean {
  return status === 'success' || status === 'failure';
}

/**
 * A task that has ended: terminal status, no result on failure, and — as Glance does — an expiry
 * `task_time_to_live` after now. A task that had already ended is returned unchanged.
 */
export function endTask<T extends Task>(task: T, status: 'success' | 'failure', message: string, result: Task['result'], now: Date): T {
  if (isTerminal(task.status)) return task;
  return {
    ...task, status, message, result: status === 'failure' ? null : result, updated_at: now.toISOString(),
    expires_at: new Date(now.getTime() + TASK_TIME_TO_LIVE_MS).toISOString(),
  };
}
