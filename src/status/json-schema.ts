/**
 * A small JSON Schema (2020-12) checker, for the keywords docs/status.schema.json
 * uses: type, const, enum, properties, required, additionalProperties: false,
 * items, oneOf, $ref to #/$defs, pattern, minimum, maximum. Unknown keywords
 * (format, description, …) are ignored, as the specification allows. The tests
 * hold `status --json` to the documented schema with it; scripts can do the same
 * without a JSON Schema library.
 */

/** A JSON Schema document or subschema. */
export type JsonSchema = { readonly [keyword: string]: unknown };

function typeOf(v: unknown): string {
  if (v === null) return 'null';
  if (Array.isArray(v)) return 'array';
  return typeof v;
}

function hasType(v: unknown, type: string): boolean {
  if (type === 'integer') return Number.isInteger(v);
  return typeOf(v) === type;
}

function resolve(root: JsonSchema, ref: string): JsonSchema {
  const m = /^#\/\$defs\/([^/]+)$/.exec(ref);
  const target = m ? (root.$defs as Record<string, JsonSchema> | undefined)?.[m[1] as string] : undefined;
  if (!target) throw new Error(`failed to resolve $ref ${ref}: only #/$defs/<name> is supported`);
  return target;
}

function check(root: JsonSchema, schema: JsonSchema, v: unknown, path: string, out: string[]): void {
  if (typeof schema.$ref === 'string') check(root, resolve(root, schema.$ref), v, path, out);
  if (schema.type !== undefined) {
    const types = Array.isArray(schema.type) ? (schema.type as string[]) : [schema.type as string];
    if (!types.some((t) => hasType(v, t))) return void out.push(`${path}: is ${typeOf(v)}, want ${types.join(' or ')}`);
  }
  if ('const' in schema && v !== schema.const) out.push(`${path}: is ${JSON.stringify(v)}, want ${JSON.stringify(schema.const)}`);
  if (Array.isArray(schema.enum) && !schema.enum.includes(v)) out.push(`${path}: ${JSON.stringify(v)} is not one of ${JSON.stringify(schema.enum)}`);
  if (Array.isArray(schema.oneOf)) {
    const passing = (schema.oneOf as JsonSchema[]).filter((s) => {
      const errors: string[] = [];
      check(root, s, v, path, errors);
      return errors.length === 0;
    }).length;
    if (passing !== 1) out.push(`${path}: matches ${passing} of the oneOf alternatives, want exactly 1`);
  }
  if (typeof v === 'string' && typeof schema.pattern === 'string' && !new RegExp(schema.pattern, 'u').test(v)) {
    out.push(`${path}: ${JSON.stringify(v)} does not match /${schema.pattern}/`);
  }
  if (typeof v === 'number') {
    if (typeof schema.minimum === 'number' && v < schema.minimum) out.push(`${path}: ${v} < minimum ${schema.minimum}`);
    if (typeof schema.maximum === 'number' && v > schema.maximum) out.push(`${path}: ${v} > maximum ${schema.maximum}`);
  }
  if (Array.isArray(v) && schema.items) v.forEach((item, i) => check(root, schema.items as JsonSchema, item, `${path}[${i}]`, out));
  if (typeOf(v) === 'object') {
    const obj = v as Record<string, unknown>;
    const props = (schema.properties ?? {}) as Record<string, JsonSchema>;
    for (const name of (schema.required ?? []) as string[]) if (!(name in obj)) out.push(`${path}: missing required property ${name}`);
    for (const [name, value] of Object.entries(obj)) {
      const sub = props[name];
      if (sub) check(root, sub, value, `${path}.${name}`, out);
      else if (schema.additionalProperties === false) out.push(`${path}: unexpected property ${name}`);
    }
  }
}

/** Where `value` breaks `schema` ("$.leases[2].subnet: is number, want string or null"); [] when it conforms. */
export function schemaErrors(schema: JsonSchema, value: unknown): string[] {
  const out: string[] = [];
  check(schema, schema, value, '$', out);
  return out;
}
