// Conveniences for Handoff plugins in JavaScript (componentize-js).
//
// The same conveniences the Rust SDK (`handoff-plugin`) gives: a descriptor
// with defaults and the lead declaration, the node's config and the item
// parsed, items emitted as JSON, and capability errors turned into node
// errors (an outage is retried, a refusal is not). Vendored into each
// project by `handoff plugin new --lang js`; edit freely.

export const LEAD_ANNOTATION = 'x-handoff-lead';

// The plugin's descriptor. `lead` maps an output port (or '*') to what an
// item there means for its lead: {state, detail, phase, owner, crm_id}; it
// travels in the config schema as an annotation.
export function describe({ name, version, description, inputs = ['main'], outputs = ['main'],
  capabilities = [], configSchema = { type: 'object' }, lead }) {
  const schema = { ...configSchema };
  if (lead) schema[LEAD_ANNOTATION] = lead;
  return { name, version, description, inputs, outputs, capabilities, configSchema: JSON.stringify(schema) };
}

// {config, item} as JavaScript values; a bad item is `invalid-input`.
export function parse(ctx, item) {
  try {
    return { config: JSON.parse(ctx.config), item: JSON.parse(item) };
  } catch (error) {
    throw { tag: 'invalid-input', val: `item is not JSON: ${error}` };
  }
}

// `item` (any JSON value) on `port`.
export function emit(port, item) {
  return { port, item: JSON.stringify(item) };
}

// A capability error (thrown with `.payload = {tag, val}`) as the node error
// to throw: outages retried, refusals and missing grants not.
export function nodeError(error) {
  const { tag, val } = error?.payload ?? { tag: 'unavailable', val: String(error) };
  switch (tag) {
    case 'invalid': return { tag: 'invalid-input', val };
    case 'not-found': return { tag: 'fatal', val: `not found: ${val}` };
    case 'denied': return { tag: 'fatal', val: `denied: ${val}` };
    default: return { tag: 'retryable', val };
  }
}

// Calls a capability; its error, if any, becomes the node's error.
export function call(capability, ...args) {
  try {
    return capability(...args);
  } catch (error) {
    throw nodeError(error);
  }
}
