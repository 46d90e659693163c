"""The ``POST /tasks/`` body schema, built from the handler registry.

``SubmitTask`` decodes any JSON as ``input_data`` and any string as ``type``;
the registry then refuses an unknown type, or an input its handler does not
take, with a 422. So that the OpenAPI document says exactly what is accepted,
this Litestar schema plugin publishes the body as one object per registered
type (``oneOf``): ``type`` is a constant, ``input_data`` the JSON Schema
msgspec derives from the handler's input type (msgspec also does the
validation, so the two agree), and the other fields as ``SubmitTask`` declares
them. Named input types (Structs, dataclasses, ...) become components. The
registry is fixed when the app is created, and so is the schema.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

import msgspec
from litestar.openapi.spec import OpenAPIFormat, OpenAPIType, Reference, Schema
from litestar.params import KwargDefinition
from litestar.plugins import OpenAPISchemaPlugin
from litestar.typing import FieldDefinition

from taskcore.entrypoints.http.schemas import SubmitTask
from taskcore.handlers.registry import HandlerRegistry

if TYPE_CHECKING:
    from litestar._openapi.schema_generation import SchemaCreator

JSONSchema = dict[str, Any]

DEFS = "#/$defs/"
COMPONENT_PREFIX = "TaskInput."
METADATA = "TaskMetadata"

BOTH_SCHEDULES = {
    "required": ["run_at", "delay_s"],
    "properties": {"run_at": {"type": "string"}, "delay_s": {"type": "number"}},
}


def _default_type() -> str | None:
    for field in msgspec.structs.fields(SubmitTask):
        if field.name == "type" and isinstance(field.default, str):
            return field.default
    return None


def submit_body_json_schema(registry: HandlerRegistry) -> tuple[JSONSchema, dict[str, JSONSchema]]:
    """The body as JSON Schema, and the named schemas it refers to as ``#/$defs/<name>``."""
    handlers = sorted(registry, key=lambda handler: handler.name)
    inputs, components = msgspec.json.schema_components(
        [handler.input_type for handler in handlers], ref_template=DEFS + "{name}"
    )
    envelope = msgspec.json.schema_components([SubmitTask])[1]["SubmitTask"]
    # One named schema for every variant's metadata: client generators name an
    # inline object after its variant and property, and refuse the repeats.
    components = {**components, METADATA: envelope["properties"]["metadata"]}
    envelope["properties"]["metadata"] = {"$ref": DEFS + METADATA}
    default_type = _default_type()
    variants = []
    for handler, input_schema in zip(handlers, inputs, strict=True):
        described = f"The input of `{handler.name}`: its handler's parameter type."
        type_schema: JSONSchema = {"const": handler.name, "description": "The task type."}
        required = ["input_data"]
        if handler.name == default_type:
            type_schema["default"] = default_type
        else:
            required.append("type")
        queue_schema: JSONSchema = {
            "enum": registry.queues(),
            "default": handler.queue,
            "description": f"The queue to wait in; `{handler.name}`'s own is `{handler.queue}`.",
        }
        properties = {
            **envelope["properties"],
            "type": type_schema,
            "queue": queue_schema,
            # A $ref takes no siblings in OpenAPI 3.0 tools: wrap it to describe it.
            "input_data": {"allOf": [input_schema], "description": described}
            if "$ref" in input_schema
            else {**input_schema, "description": described},
        }
        variants.append(
            {
                "title": handler.name,
                "type": "object",
                "properties": properties,
                "required": required,
                "additionalProperties": False,
            }
        )
    description = (
        "One object per registered task type. `type` may be left out for "
        f"`{default_type}`. `run_at` or `delay_s` (not both) schedule the task; a `run_at` "
        "that has passed means now. `priority` (0 to 9, default 0): of the tasks waiting "
        "for a worker, higher ones start first."
    )
    body: JSONSchema = {"title": "SubmitTask", "type": "object", "description": description}
    if variants:
        body |= {"oneOf": variants, "not": BOTH_SCHEDULES}
    else:
        body |= {"not": {}, "description": "No task type is registered: nothing can be submitted."}
    return body, components


class SubmitBodySchemaPlugin(OpenAPISchemaPlugin):
    """Describes ``SubmitTask`` in the OpenAPI document from ``registry``."""

    def __init__(self, registry: HandlerRegistry) -> None:
        self._registry = registry

    def is_plugin_supported_field(self, field_definition: FieldDefinition) -> bool:
        return field_definition.annotation is SubmitTask

    def to_openapi_schema(self, field_definition: FieldDefinition, schema_creator: SchemaCreator) -> Schema:
        body, components = submit_body_json_schema(self._registry)
        registry = schema_creator.schema_registry
        fields = {name: _component_field(name) for name in components}
        # Registered before they are filled, so recursive input types can refer to themselves.
        slots = {name: registry.get_schema_for_field_definition(field) for name, field in fields.items()}

        def refer(pointer: str) -> Reference:
            reference = registry.get_reference_for_field_definition(fields[pointer.removeprefix(DEFS)])
            assert reference is not None, pointer
            return reference

        for name, component in components.items():
            _fill(slots[name], to_litestar_schema(component, refer))
        # Filled in place and returned with a title: Litestar publishes it as a component.
        schema = registry.get_schema_for_field_definition(field_definition)
        _fill(schema, to_litestar_schema(body, refer))
        return schema


def _component_field(name: str) -> FieldDefinition:
    key = COMPONENT_PREFIX + re.sub(r"[^A-Za-z0-9._-]", "_", name)
    return FieldDefinition.from_kwarg(
        annotation=Any, name=key, kwarg_definition=KwargDefinition(schema_component_key=key)
    )


def _fill(target: Schema, source: Schema | Reference) -> None:
    if isinstance(source, Reference):
        target.all_of = [source]
        return
    for field in dataclasses.fields(Schema):
        setattr(target, field.name, getattr(source, field.name))


# JSON Schema keyword -> Schema field, as Schema.to_schema() names them.
def _keyword(field: dataclasses.Field[Any]) -> str:
    alias = field.metadata.get("alias")
    if isinstance(alias, str):
        return alias
    head, *rest = field.name.removeprefix("schema_").split("_")
    return head + "".join(part.title() for part in rest)


_FIELDS = {_keyword(field): field.name for field in dataclasses.fields(Schema)}
_ONE = {
    "schema_not",
    "schema_if",
    "then",
    "schema_else",
    "items",
    "contains",
    "property_names",
    "unevaluated_items",
    "unevaluated_properties",
    "content_schema",
    "additional_properties",
}
_MANY = {"all_of", "any_of", "one_of", "prefix_items"}
_MAPPED = {"properties", "pattern_properties", "dependent_schemas"}
# A discriminator's mapping names component paths Litestar only settles at the
# end; it is a hint, and the tag constants in each variant validate the same.
_DROPPED = {"discriminator"}
_FORMATS = {member.value for member in OpenAPIFormat}


def to_litestar_schema(node: Mapping[str, Any], refer: Callable[[str], Reference]) -> Schema | Reference:
    """A JSON Schema (as msgspec writes it) as Litestar's spec objects; ``refer``
    turns a ``$ref`` into a ``Reference``."""
    if "$ref" in node:
        rest = {key: value for key, value in node.items() if key != "$ref"}
        if not rest:
            return refer(node["$ref"])
        node = {**rest, "allOf": [{"$ref": node["$ref"]}]}
    arguments: dict[str, Any] = {}
    for keyword, value in node.items():
        name = _FIELDS.get(keyword)
        if name is None or name in _DROPPED:
            continue
        arguments[name] = _value(name, value, refer)
    return Schema(**arguments)


def _value(name: str, value: Any, refer: Callable[[str], Reference]) -> Any:
    def convert(item: Any) -> Any:
        return to_litestar_schema(item, refer) if isinstance(item, Mapping) else item

    if name in _ONE:
        return convert(value)
    if name in _MANY:
        return [convert(item) for item in value]
    if name in _MAPPED:
        return {key: convert(item) for key, item in value.items()}
    if name == "type":
        return [OpenAPIType(item) for item in value] if isinstance(value, list) else OpenAPIType(value)
    if name == "format" and value in _FORMATS:
        return OpenAPIFormat(value)
    return value
