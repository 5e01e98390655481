/**
 * The JSON Schema checker and docs/status.schema.json itself: the checker must
 * catch each way a document can break the schema, or the schema tests of the
 * analysis and the integration run would prove nothing.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { JsonSchema, schemaErrors } from '../../src/status/json-schema';
import { STATUS_SCHEMA_VERSION } from '../../src/status/report';

const STATUS_SCHEMA = JSON.parse(readFileSync(join(__dirname, '../../docs/status.schema.json'), 'utf8')) as JsonSchema;

const schema: JsonSchema = {
  type: 'object',
  required: ['name', 'port', 'tags', 'peer'],
  additionalProperties: false,
  properties: {
    name: { type: 'string', pattern: '^flannel\\.\\d+$' },
    port: { type: 'integer', minimum: 1, maximum: 65535 },
    tags: { type: 'array', items: { enum: ['a', 'b'] } },
    peer: { oneOf: [{ type: 'null' }, { $ref: '#/$defs/peer' }] },
    version: { const: 1 },
    note: { type: ['string', 'null'] },
  },
  $defs: { peer: { type: 'object', required: ['ip'], properties: { ip: { type: 'string' } } } },
};
const good = { name: 'flannel.1', port: 8472, tags: ['a'], peer: { ip: '10.65.154.12' }, version: 1, note: null };

describe('schemaErrors', () => {
  it('accepts a conforming document', () => {
    expect(schemaErrors(schema, good)).toEqual([]);
    expect(schemaErrors(schema, { ...good, peer: null, note: 'x' })).toEqual([]);
  });

  it.each([
    [{ ...good, name: undefined }, '$: missing required property name'],
    [{ ...good, port: '8472' }, '$.port: is string, want integer'],
    [{ ...good, port: 1.5 }, '$.port: is number, want integer'],
    [{ ...good, port: 70000 }, '$.port: 70000 > maximum 65535'],
    [{ ...good, port: 0 }, '$.port: 0 < minimum 1'],
    [{ ...good, name: 'eth0' }, '$.name: "eth0" does not match /^flannel\\.\\d+$/'],
    [{ ...good, tags: ['a', 'c'] }, '$.tags[1]: "c" is not one of ["a","b"]'],
    [{ ...good, extra: true }, '$: unexpected property extra'],
    [{ ...good, version: 2 }, '$.version: is 2, want 1'],
    [{ ...good, note: 3 }, '$.note: is number, want string or null'],
    [{ ...good, peer: {} }, '$.peer: matches 0 of the oneOf alternatives, want exactly 1'],
  ])('rejects %j', (doc, error) => {
    expect(schemaErrors(schema, JSON.parse(JSON.stringify(doc)))).toContain(error);
  });

  it('names an unresolvable $ref', () => {
    expect(() => schemaErrors({ $ref: '#/definitions/x' }, 1)).toThrow('failed to resolve $ref #/definitions/x');
  });
});

describe('docs/status.schema.json', () => {
  it('is the version the code writes, and every $ref in it resolves', () => {
    expect((STATUS_SCHEMA.properties as Record<string, JsonSchema>).schemaVersion).toEqual({ const: STATUS_SCHEMA_VERSION });
    const refs = JSON.stringify(STATUS_SCHEMA).match(/"\$ref":"[^"]+"/g) ?? [];
    expect(refs.length).toBeGreaterThan(5);
    for (const ref of refs) expect(() => schemaErrors({ ...STATUS_SCHEMA, $ref: JSON.parse(`{${ref}}`).$ref }, null)).not.toThrow();
  });

  it('rejects a report with a misspelt field', () => {
    const errors = schemaErrors(STATUS_SCHEMA, { schemaVersion: 1, generatedAt: '2025-06-01T12:00:00.000Z', healthy: true, exitcode: 0 });
    expect(errors).toContain('$: missing required property exitCode');
    expect(errors).toContain('$: unexpected property exitcode');
  });
});
