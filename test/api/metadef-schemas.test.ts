import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { metadefSchemaDocuments, METADEF_SCHEMA_NAMES } from '../../src/api/glance/metadef-schemas.ts';
import { checkReadOnly, metadefValidator, pythonRepr, type MetadefBodySchema } from '../../src/api/glance/metadef-validation.ts';
import { BadRequestError, ReadOnlyAttributeError, SchemaViolationError } from '../../src/core/errors.ts';
import { call, expectStatus } from '../helpers/glance-client.ts';
import { startTestSite, type TestSite } from '../helpers/site.ts';

type Doc = Record<string, any>;

/** The `name` inside each document: Glance names the resource type schemas after associations. */
const DOCUMENT_NAMES: Record<string, string> = {
  namespace: 'namespace',
  namespaces: 'namespaces',
  resource_type: 'resource_type_association',
  resource_types: 'resource_type_associations',
  property: 'property',
  properties: 'properties',
  object: 'object',
  objects: 'objects',
  tag: 'tag',
  tags: 'tags',
};

const PROPERTY_TYPES = ['array', 'boolean', 'integer', 'number', 'object', 'string', null];

describe('GET /v2/schemas/metadefs/{name}', () => {
  let site: TestSite;
  const served: Record<string, Doc> = {};
  before(async () => {
    site = await startTestSite();
    for (const name of METADEF_SCHEMA_NAMES) {
      const res = await call<Doc>(site, 'GET', `/v2/schemas/metadefs/${name}`);
      expectStatus(res, 200);
      assert.match(res.headers.get('content-type') ?? '', /^application\/json/);
      served[name] = res.body;
    }
  });
  after(async () => { await site.close(); });

  it('serves all ten documents, each with its Glance name', () => {
    assert.deepEqual(Object.keys(served).sort(), Object.keys(DOCUMENT_NAMES).sort());
    for (const [name, doc] of Object.entries(served)) assert.equal(doc.name, DOCUMENT_NAMES[name], name);
    // What is served is exactly what the validator compiles.
    assert.deepEqual(served, JSON.parse(JSON.stringify(metadefSchemaDocuments())));
  });

  it('namespace: namespace required, at most 80 characters; no additional properties; definitions', () => {
    const ns = served.namespace!;
    assert.equal(ns.additionalProperties, false);
    assert.deepEqual(ns.required, ['namespace']);
    assert.deepEqual(ns.properties.namespace, { type: 'string', description: 'The unique namespace text.', maxLength: 80 });
    assert.equal(ns.properties.display_name.maxLength, 80);
    assert.equal(ns.properties.description.maxLength, 500);
    assert.equal(ns.properties.owner.maxLength, 255);
    assert.deepEqual(ns.properties.visibility.enum, ['public', 'private']);
    assert.equal(ns.properties.protected.type, 'boolean');
    for (const key of ['created_at', 'updated_at', 'self', 'schema']) assert.equal(ns.properties[key].readOnly, true, key);
    assert.equal(ns.properties.created_at.format, 'date-time');
    assert.deepEqual(ns.properties.properties, { $ref: '#/definitions/property' });
    assert.deepEqual(ns.properties.objects.items.properties.required, { $ref: '#/definitions/stringArray' });
    assert.deepEqual(Object.keys(ns.definitions), ['positiveInteger', 'positiveIntegerDefault0', 'stringArray', 'property']);
    assert.deepEqual(ns.definitions.stringArray, { type: 'array', items: { type: 'string' }, uniqueItems: true });
    const propertyType = ns.definitions.property.additionalProperties;
    assert.deepEqual(propertyType.required, ['title', 'type']);
    assert.deepEqual(propertyType.properties.type.enum, PROPERTY_TYPES);
    assert.equal(propertyType.properties.name.maxLength, 80);
    assert.deepEqual(propertyType.properties.pattern, { type: 'string', format: 'regex' });
    assert.equal(ns.links, undefined);
  });

  it('property: type enum with null, type/title/name required, stringArray of at least one', () => {
    const p = served.property!;
    assert.deepEqual(p.properties.type, { type: 'string', enum: PROPERTY_TYPES });
    assert.deepEqual(p.properties.items.properties.type.enum, PROPERTY_TYPES);
    assert.deepEqual(p.required, ['type', 'title', 'name']);
    assert.equal(p.additionalProperties, false);
    assert.equal(p.properties.name.maxLength, 80);
    assert.deepEqual(p.properties.minLength, { $ref: '#/definitions/positiveIntegerDefault0' });
    assert.deepEqual(p.properties.uniqueItems, { type: 'boolean', default: false });
    assert.deepEqual(p.properties.default, {});
    assert.equal(p.definitions.stringArray.minItems, 1);
    assert.deepEqual(p.definitions.positiveIntegerDefault0, { allOf: [{ $ref: '#/definitions/positiveInteger' }, { default: 0 }] });
    assert.equal(p.properties.created_at, undefined);
  });

  it('object, tag and resource_type: name required, at most 80 characters', () => {
    assert.deepEqual(served.object!.required, ['name']);
    assert.equal(served.object!.properties.name.maxLength, 80);
    assert.deepEqual(served.object!.properties.properties, { $ref: '#/definitions/property' });
    assert.ok(served.object!.definitions.property);
    assert.deepEqual(served.tag!.required, ['name']);
    assert.deepEqual(served.tag!.properties.name, { type: 'string', maxLength: 80 });
    assert.equal(served.tag!.definitions, undefined);
    const rt = served.resource_type!;
    assert.deepEqual(rt.required, ['name']);
    assert.deepEqual(Object.keys(rt.properties), ['name', 'prefix', 'properties_target', 'created_at', 'updated_at']);
    for (const key of ['name', 'prefix', 'properties_target']) assert.equal(rt.properties[key].maxLength, 80, key);
    assert.match(rt.properties.name.description, /^Resource type names should be aligned with Heat resource types/);
    assert.equal(rt.additionalProperties, false);
    assert.equal(rt.definitions, undefined);
  });

  it('collections: first/next/schema, the three links, the item schema without its definitions', () => {
    // [served as, key of the list, item schema's name, served name of the item schema, list kind]
    const cases: [string, string, string, string, 'array' | 'object'][] = [
      ['namespaces', 'namespaces', 'namespace', 'namespace', 'array'],
      ['resource_types', 'resource_type_associations', 'resource_type_association', 'resource_type', 'array'],
      ['objects', 'objects', 'object', 'object', 'array'],
      ['properties', 'properties', 'property', 'property', 'object'],
      ['tags', 'tags', 'tag', 'tag', 'array'],
    ];
    for (const [served_as, key, itemName, single, kind] of cases) {
      const doc = served[served_as]!;
      assert.deepEqual(Object.keys(doc.properties), [key, 'first', 'next', 'schema'], served_as);
      for (const k of ['first', 'next', 'schema']) assert.deepEqual(doc.properties[k], { type: 'string' });
      assert.deepEqual(doc.links, [
        { rel: 'first', href: '{first}' },
        { rel: 'next', href: '{next}' },
        { rel: 'describedby', href: '{schema}' },
      ], served_as);
      assert.equal(doc.properties[key].type, kind, served_as);
      const item = kind === 'array' ? doc.properties[key].items : doc.properties[key].additionalProperties;
      assert.equal(item.name, itemName, served_as);
      assert.equal(item.additionalProperties, false, served_as);
      assert.equal(item.definitions, undefined, served_as);
      assert.equal(doc.additionalProperties, undefined, served_as);
      // Definitions move up to the collection, where the items' $refs resolve.
      assert.deepEqual(doc.definitions, served[single]!.definitions, served_as);
    }
    // In the properties map the name is the key, so only type and title are required.
    assert.deepEqual(served.properties!.properties.properties.additionalProperties.required, ['type', 'title']);
  });

  it('an unknown name answers 404 with the Glance error body; other methods 405', async () => {
    for (const name of ['nope', 'image', 'resource_type_association', '']) {
      const res = await call(site, 'GET', `/v2/schemas/metadefs/${name}`, { headers: { accept: 'application/json' } });
      expectStatus(res, 404);
      assert.equal(res.body.code, '404 Not Found');
      assert.equal(res.body.title, 'Not Found');
      assert.equal(typeof res.body.message, 'string');
    }
    const res = await call(site, 'POST', '/v2/schemas/metadefs/namespace', { json: {} });
    expectStatus(res, 405);
    assert.equal(res.headers.get('allow'), 'GET');
  });
});

describe('metadefValidator', () => {
  const validator = metadefValidator();

  /** Runs `check` and returns the error it throws. */
  function refusal(schema: MetadefBodySchema, body: unknown, op?: 'create' | 'update'): Error & { status: number } {
    try {
      validator.check(schema, body, op);
    } catch (e) {
      return e as Error & { status: number };
    }
    assert.fail(`${JSON.stringify(body)} passed the ${schema} schema`);
  }

  function assertViolation(schema: MetadefBodySchema, body: unknown, message: string, op?: 'create' | 'update'): void {
    const e = refusal(schema, body, op);
    assert.ok(e instanceof SchemaViolationError, `${e.name}: ${e.message}`);
    assert.equal(e.status, 400);
    assert.equal(e.message, message);
  }

  it('passes valid bodies of every schema', () => {
    validator.check('namespace', {
      namespace: 'OS::Compute::Quota',
      display_name: 'Flavor Quota',
      description: 'Compute quotas',
      visibility: 'public',
      protected: true,
      owner: 'admin',
      resource_type_associations: [{ name: 'OS::Nova::Flavor', prefix: 'quota_' }],
      properties: {
        cpu_shares: { title: 'Quota: CPU Shares', type: 'integer', minimum: 0, readonly: false },
        hw_rng: { title: 'RNG', type: 'array', items: { type: 'string', enum: ['a', 'b'] }, uniqueItems: true, minItems: 1 },
        pattern: { title: 'P', type: 'string', pattern: '^[a-z]+$', maxLength: 10, minLength: 0, default: 'abc' },
      },
      objects: [{ name: 'CPU Limits', required: [], properties: { x: { title: 'X', type: 'number' } } }],
      tags: [{ name: 'tag1' }],
    });
    validator.check('namespace', { namespace: '😀'.repeat(80) }); // 80 characters, 160 UTF-16 units
    validator.check('object', { name: 'CPU Limits', description: 'd', required: ['quota'], properties: { quota: { title: 'Q', type: 'integer' } } }, 'create');
    validator.check('property', { name: 'hw_disk_bus', title: 'Disk Bus', type: 'string', enum: ['scsi', 'virtio'], operators: ['<or>'] });
    validator.check('tag', { name: 'a'.repeat(80) });
    validator.check('tags', { tags: [{ name: 'a' }, { name: 'b' }] });
    validator.check('resource_type', { name: 'OS::Glance::Image', prefix: 'hw_', properties_target: 'image' });
  });

  it('refuses an over-long namespace, wrong types and missing required attributes, naming the schema', () => {
    const long = 'n'.repeat(81);
    assertViolation('namespace', { namespace: long }, `Provided object does not match schema 'namespace': '${long}' is too long`);
    assertViolation('namespace', { namespace: 5 }, "Provided object does not match schema 'namespace': 5 is not of type 'string'");
    assertViolation('namespace', { display_name: 'x' }, "Provided object does not match schema 'namespace': 'namespace' is a required property");
    assertViolation('namespace', { namespace: 'a', visibility: 'shared' }, "Provided object does not match schema 'namespace': 'shared' is not one of ['public', 'private']");
    assertViolation('namespace', { namespace: 'a', protected: 'yes' }, "Provided object does not match schema 'namespace': 'yes' is not of type 'boolean'");
    assertViolation('namespace', { namespace: 'a', properties: { p: { title: 't', type: 'strin' } } },
      "Provided object does not match schema 'namespace': 'strin' is not one of ['array', 'boolean', 'integer', 'number', 'object', 'string', None]");
    assertViolation('namespace', { namespace: 'a', properties: { p: { title: 't', type: 'integer', maxLength: -1 } } },
      "Provided object does not match schema 'namespace': -1 is less than the minimum of 0");
    assertViolation('property', { name: 'p', title: 't' }, "Provided object does not match schema 'property': 'type' is a required property");
    assertViolation('property', { name: 'p', title: 't', type: null }, "Provided object does not match schema 'property': None is not of type 'string'");
    assertViolation('property', { name: 'p', title: 't', type: 'string', required: [] }, "Provided object does not match schema 'property': [] should be non-empty");
    assertViolation('object', { description: 'd' }, "Provided object does not match schema 'object': 'name' is a required property");
    assertViolation('object', { name: 'o', required: ['a', 'a'] }, "Provided object does not match schema 'object': ['a', 'a'] has non-unique elements");
    assertViolation('tag', { name: 't'.repeat(81) }, `Provided object does not match schema 'tag': '${'t'.repeat(81)}' is too long`);
    assertViolation('tags', { tags: [{ nam: 'a' }] }, "Provided object does not match schema 'tags': 'name' is a required property");
    assertViolation('resource_type', { prefix: 'hw_' }, "Provided object does not match schema 'resource_type_association': 'name' is a required property");
  });

  it('refuses attributes the schema does not declare, naming them all as jsonschema does', () => {
    assertViolation('namespace', { namespace: 'a', zeta: 1, alpha: 2 },
      "Provided object does not match schema 'namespace': Additional properties are not allowed ('alpha', 'zeta' were unexpected)");
    assertViolation('property', { name: 'p', title: 't', type: 'string', confidential: true },
      "Provided object does not match schema 'property': Additional properties are not allowed ('confidential' was unexpected)");
    assertViolation('tags', { tags: [{ name: 'a', x: 1 }] },
      "Provided object does not match schema 'tags': Additional properties are not allowed ('x' was unexpected)");
  });

  it('reports the error python-jsonschema would pick when there are several', () => {
    // Shallowest first; among siblings the greatest path; additionalProperties before required.
    assertViolation('namespace', { foo: 1 }, "Provided object does not match schema 'namespace': Additional properties are not allowed ('foo' was unexpected)");
    assertViolation('namespace', { namespace: 1, visibility: 'x' }, "Provided object does not match schema 'namespace': 'x' is not one of ['public', 'private']");
    assertViolation('property', { title: 1 }, "Provided object does not match schema 'property': 'type' is a required property");
  });

  it("object create also checks each property against the property schema (metadef_objects.py create)", () => {
    const body = { name: 'o', properties: { p: { title: 't', type: 'string', confidential: true } } };
    validator.check('object', body); // an update: the namespace's property definition allows more
    validator.check('object', body, 'update');
    assertViolation('object', body, "Provided object does not match schema 'property': Additional properties are not allowed ('confidential' was unexpected)", 'create');
    assertViolation('object', { name: 'o', properties: { p: { title: 't', type: 'string', required: [] } } },
      "Provided object does not match schema 'property': [] should be non-empty", 'create');
    // The name of a property of an object is its key: not required.
    validator.check('object', { name: 'o', properties: { p: { title: 't', type: 'string' } } }, 'create');
  });

  it('refuses a body that is not a JSON object with 400 "Body expected in request."', () => {
    for (const body of [undefined, null, [], 'namespace', 1]) {
      const e = refusal('namespace', body);
      assert.ok(e instanceof BadRequestError, String(body));
      assert.equal(e.status, 400);
      assert.equal(e.message, 'Body expected in request.');
    }
  });

  it('quotes values as Python does', () => {
    assert.equal(pythonRepr(null), 'None');
    assert.equal(pythonRepr([true, false, 1.5, 'a']), "[True, False, 1.5, 'a']");
    assert.equal(pythonRepr({ k: ["it's"] }), `{'k': ["it's"]}`);
    assert.equal(pythonRepr('a\nb\\c'), "'a\\nb\\\\c'");
    assert.equal(pythonRepr(`'"`), `'\\'"'`);
  });
});

describe('checkReadOnly', () => {
  function forbidden(schema: MetadefBodySchema, body: unknown): Error & { status: number } {
    try {
      checkReadOnly(schema, body);
    } catch (e) {
      return e as Error & { status: number };
    }
    assert.fail(`${JSON.stringify(body)} passed checkReadOnly(${schema})`);
  }

  it("refuses created_at with 403 \"Attribute 'created_at' is read-only.\" for every schema", () => {
    for (const schema of ['namespace', 'object', 'property', 'tag', 'tags', 'resource_type'] as const) {
      const e = forbidden(schema, { name: 'x', namespace: 'x', created_at: '2024-01-01T00:00:00Z' });
      assert.ok(e instanceof ReadOnlyAttributeError, schema);
      assert.equal(e.status, 403);
      assert.equal(e.message, "Attribute 'created_at' is read-only.");
    }
    assert.equal(forbidden('tag', { updated_at: 'x' }).message, "Attribute 'updated_at' is read-only.");
  });

  it('self and schema are read-only for namespaces and objects only', () => {
    assert.equal(forbidden('namespace', { namespace: 'a', self: '/x' }).message, "Attribute 'self' is read-only.");
    assert.equal(forbidden('object', { name: 'a', schema: '/x' }).message, "Attribute 'schema' is read-only.");
    checkReadOnly('property', { name: 'p', self: '/x' });
    checkReadOnly('resource_type', { name: 'r', schema: '/x' });
    // ... where the schema check then refuses them (400), as Glance does.
    assert.throws(() => metadefValidator().check('property', { name: 'p', title: 't', type: 'string', self: '/x' }), SchemaViolationError);
  });

  it('passes bodies without read-only attributes, and non-objects', () => {
    checkReadOnly('namespace', { namespace: 'a', display_name: 'A' });
    checkReadOnly('namespace', ['created_at']);
    checkReadOnly('namespace', null);
  });
});
