"""Conveniences for Handoff plugins in Python (componentize-py).

The same conveniences the Rust SDK (`handoff-plugin`) gives: a descriptor
with defaults and the lead declaration, the node's config and the item
parsed, items emitted as JSON, and capability errors turned into node
errors (an outage is retried, a refusal is not). Vendored into each
project by `handoff plugin new --lang python`; edit freely.
"""

import json

from componentize_py_types import Err
from wit_world.imports.types import (
    CapabilityError_Denied,
    CapabilityError_Invalid,
    CapabilityError_NotFound,
    Descriptor,
    Emit,
    NodeError_Fatal,
    NodeError_InvalidInput,
    NodeError_Retryable,
)

LEAD_ANNOTATION = "x-handoff-lead"


def describe(name, version, description, *, inputs=("main",), outputs=("main",), capabilities=(),
             config_schema=None, lead=None):
    """The plugin's descriptor. `config_schema` is a JSON Schema (a dict, or
    JSON text). `lead` maps an output port (or "*") to what an item there
    means for its lead: {"state", "detail", "phase", "owner", "crm_id"}; it
    travels in the config schema as an annotation."""
    if isinstance(config_schema, str):
        config_schema = json.loads(config_schema)
    schema = dict(config_schema or {"type": "object"})
    if lead:
        schema[LEAD_ANNOTATION] = lead
    return Descriptor(
        name=name,
        version=version,
        description=description,
        inputs=list(inputs),
        outputs=list(outputs),
        capabilities=list(capabilities),
        config_schema=json.dumps(schema),
    )


def parse(ctx, item):
    """(config, item) as Python values; a bad item is `invalid-input`."""
    try:
        return json.loads(ctx.config), json.loads(item)
    except ValueError as error:
        raise Err(NodeError_InvalidInput(f"item is not JSON: {error}"))


def emit(port, item):
    """`item` (any JSON value) on `port`."""
    return Emit(port=port, item=json.dumps(item))


def node_error(error):
    """A capability error (as raised by a capability call) as the node
    error to raise: outages retried, refusals and missing grants not."""
    value = getattr(error, "value", error)
    message = getattr(value, "value", str(value))
    if isinstance(value, CapabilityError_Invalid):
        return NodeError_InvalidInput(message)
    if isinstance(value, CapabilityError_NotFound):
        return NodeError_Fatal(f"not found: {message}")
    if isinstance(value, CapabilityError_Denied):
        return NodeError_Fatal(f"denied: {message}")
    return NodeError_Retryable(message)


def call(capability, *args):
    """Calls a capability; its error, if any, becomes the node's error."""
    try:
        return capability(*args)
    except Err as error:
        raise Err(node_error(error))
