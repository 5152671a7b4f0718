import { CONTAINER_FORMATS, DISK_FORMATS, IMAGE_STATUSES, MEMBER_STATUSES, VISIBILITIES } from '../../core/image.ts';

/**
 * JSON-Schema documents of GET /v2/schemas/{name}, shaped as Glance's (glance/api/v2/images.py
 * `get_schema`, image_members.py, tasks.py). glanceclient builds its models from the image schema.
 */
const uuidPattern = '^([0-9a-fA-F]){8}-([0-9a-fA-F]){4}-([0-9a-fA-F]){4}-([0-9a-fA-F]){4}-([0-9a-fA-F]){12}$';

const str = (description: string, extra: Record<string, unknown> = {}) => ({ type: 'string', description, ...extra });
const nullableStr = (description: string, extra: Record<string, unknown> = {}) => ({ type: ['null', 'string'], description, ...extra });
const custom = (description: string, extra: Record<string, unknown> = {}) => ({ type: 'string', description, is_base: false, ...extra });

function imageProperties(): Record<string, unknown> {
  return {
    id: str('An identifier for the image', { pattern: uuidPattern }),
    name: nullableStr('Descriptive name for the image', { maxLength: 255 }),
    status: str('Status of the image', { readOnly: true, enum: [...IMAGE_STATUSES] }),
    visibility: str('Scope of image accessibility', { enum: [...VISIBILITIES] }),
    protected: { type: 'boolean', description: 'If true, image will not be deletable.' },
    os_hidden: { type: 'boolean', description: 'If true, image will not appear in default image list response.' },
    checksum: nullableStr('md5 hash of image contents.', { readOnly: true, maxLength: 32 }),
    os_hash_algo: nullableStr('Algorithm to calculate the os_hash_value', { readOnly: true, maxLength: 64 }),
    os_hash_value: nullableStr('Hexdigest of the image contents using the algorithm specified by the os_hash_algo', { readOnly: true, maxLength: 128 }),
    owner: nullableStr('Owner of the image', { maxLength: 255 }),
    size: { type: ['null', 'integer'], readOnly: true, description: 'Size of image file in bytes' },
    virtual_size: { type: ['null', 'integer'], readOnly: true, description: 'Virtual size of image in bytes' },
    container_format: nullableStr('Format of the container', { enum: [null, ...CONTAINER_FORMATS] }),
    disk_format: nullableStr('Format of the disk', { enum: [null, ...DISK_FORMATS] }),
    created_at: str('Date and time of image registration', { readOnly: true }),
    updated_at: str('Date and time of the last image modification', { readOnly: true }),
    tags: { type: 'array', description: 'List of strings related to the image', items: { type: 'string', maxLength: 255 } },
    direct_url: str('URL to access the image file kept in external store', { readOnly: true }),
    min_ram: { type: 'integer', description: 'Amount of ram (in MB) required to boot image.' },
    min_disk: { type: 'integer', description: 'Amount of disk space (in GB) required to boot image.' },
    self: str('An image self url', { readOnly: true }),
    file: str('An image file url', { readOnly: true }),
    stores: str('Store in which image data resides.  Only present when the operator has enabled multiple stores.  May be a comma-separated list of store identifiers.', { readOnly: true }),
    schema: str('An image schema url', { readOnly: true }),
    locations: {
      type: 'array',
      items: {
        type: 'object',
        properties: {
          url: { type: 'string', maxLength: 255 },
          metadata: { type: 'object' },
          validation_data: {
            description: "Values to be used to populate the corresponding image properties. If the image status is not 'queued', values must exactly match those already contained in the image properties.",
            type: 'object',
            writeOnly: true,
            additionalProperties: false,
            properties: {
              checksum: { type: 'string', minLength: 32, maxLength: 32 },
              os_hash_algo: { type: 'string', maxLength: 64 },
              os_hash_value: { type: 'string', maxLength: 128 },
            },
            required: ['os_hash_algo', 'os_hash_value'],
          },
        },
        required: ['url', 'metadata'],
      },
      description: 'A set of URLs to access the image file kept in external store',
    },
    kernel_id: { ...nullableStr('ID of image stored in Glance that should be used as the kernel when booting an AMI-style image.', { pattern: uuidPattern }), is_base: false },
    ramdisk_id: { ...nullableStr('ID of image stored in Glance that should be used as the ramdisk when booting an AMI-style image.', { pattern: uuidPattern }), is_base: false },
    instance_uuid: custom('Metadata which can be used to record which instance this image is associated with. (Informational only, does not create an instance snapshot.)'),
    architecture: custom('Operating system architecture as specified in https://docs.openstack.org/python-glanceclient/latest/cli/property-keys.html'),
    os_distro: custom('Common name of operating system distribution as specified in https://docs.openstack.org/python-glanceclient/latest/cli/property-keys.html'),
    os_version: custom('Operating system version as specified by the distributor.'),
    description: custom('A human-readable string describing this image.'),
    cinder_encryption_key_id: custom('Identifier in the OpenStack Key Management Service for the encryption key for the Block Storage Service to use when mounting a volume created from this image'),
    cinder_encryption_key_deletion_policy: custom("States the condition under which the Image Service will delete the object associated with the 'cinder_encryption_key_id' image property.  If this property is missing, the Image Service will take no action", { enum: ['on_image_deletion', 'do_not_delete'] }),
  };
}

function imageSchema(): Record<string, unknown> {
  return {
    name: 'image',
    properties: imageProperties(),
    additionalProperties: { type: 'string' },
    links: [{ rel: 'self', href: '{self}' }, { rel: 'enclosure', href: '{file}' }, { rel: 'describedby', href: '{schema}' }],
  };
}

function memberSchema(): Record<string, unknown> {
  return {
    name: 'member',
    properties: {
      created_at: { type: 'string', description: 'Date and time of image member creation' },
      image_id: { type: 'string', description: 'An identifier for the image', pattern: uuidPattern },
      member_id: { type: 'string', description: 'An identifier for the image member (tenantId)' },
      status: { type: 'string', description: 'The status of this image member', enum: [...MEMBER_STATUSES] },
      updated_at: { type: 'string', description: 'Date and time of last modification of image member' },
      schema: { readOnly: true, type: 'string' },
    },
  };
}

function taskSchema(): Record<string, unknown> {
  return {
    name: 'task',
    properties: {
      id: { type: 'string', description: 'An identifier for the task', pattern: uuidPattern },
      type: { type: 'string', description: 'The type of task represented by this content', enum: ['import', 'api_image_import', 'location_import'] },
      status: { type: 'string', description: 'The current status of this task', enum: ['pending', 'processing', 'success', 'failure'] },
      input: { type: ['null', 'object'], description: 'The parameters required by task, JSON blob' },
      result: { type: ['null', 'object'], description: 'The result of current task, JSON blob' },
      owner: { type: ['null', 'string'], description: 'An identifier for the owner of this task' },
      message: { type: 'string', description: 'Human-readable informative message only included when appropriate (usually on failure)' },
      image_id: { type: 'string', description: 'Image associated with the task', readOnly: true },
      request_id: { type: 'string', description: 'Human-readable informative request-id', readOnly: true },
      user_id: { type: 'string', description: 'User associated with the task', readOnly: true },
      expires_at: { type: ['null', 'string'], description: 'Datetime when this resource would be subject to removal' },
      created_at: { type: 'string', description: 'Datetime when this resource was created' },
      updated_at: { type: 'string', description: 'Datetime when this resource was updated' },
      self: { readOnly: true, type: 'string' },
      schema: { readOnly: true, type: 'string' },
    },
  };
}

function collection(name: string, item: Record<string, unknown>, key: string): Record<string, unknown> {
  const paged = key === 'images' || key === 'tasks';
  return {
    name,
    properties: {
      [key]: { type: 'array', items: item },
      schema: { type: 'string' },
      ...(paged ? { first: { type: 'string' }, next: { type: 'string' } } : {}),
    },
    links: paged
      ? [{ rel: 'first', href: '{first}' }, { rel: 'next', href: '{next}' }, { rel: 'describedby', href: '{schema}' }]
      : [{ rel: 'describedby', href: '{schema}' }],
  };
}

/** Every schema document by name. */
export function schemaDocuments(): Record<string, Record<string, unknown>> {
  const image = imageSchema();
  const member = memberSchema();
  const task = taskSchema();
  return {
    image,
    images: collection('images', image, 'images'),
    member,
    members: collection('members', member, 'members'),
    task,
    tasks: collection('tasks', task, 'tasks'),
  };
}
