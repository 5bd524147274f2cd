"""The JSON Schemas of the queue config and the queue item (docs/schemas/), generated here.

Regenerate them with `python -m launchq.spec.schemas --write-schemas`; a test fails when the
files in docs/schemas are stale. Kept apart from the models: generating a schema needs every model
(config, item, the spec/run mapping), and no model needs the schemas.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pydantic.json_schema import GenerateJsonSchema, JsonSchemaValue
from pydantic_core import core_schema

from launchq.spec.config import WRAPPERS, QueueConfig
from launchq.spec.item import queue_item_json_schema
from launchq.spec.mapping.models import RunInput, SpecInput

TEMPLATE_STRING = {"type": "string", "pattern": r"^\{\{\s*\w+\s*\}\}$"}


class _TemplatedSchema(GenerateJsonSchema):
    """In `spec`/`run`, any non-string value may also be a `{{var}}` template string."""

    def _relax(self, schema: JsonSchemaValue) -> JsonSchemaValue:
        return {"anyOf": [schema, TEMPLATE_STRING]}

    def int_schema(self, schema: core_schema.IntSchema) -> JsonSchemaValue:
        return self._relax(super().int_schema(schema))

    def float_schema(self, schema: core_schema.FloatSchema) -> JsonSchemaValue:
        return self._relax(super().float_schema(schema))

    def bool_schema(self, schema: core_schema.BoolSchema) -> JsonSchemaValue:
        return self._relax(super().bool_schema(schema))

    def literal_schema(self, schema: core_schema.LiteralSchema) -> JsonSchemaValue:
        return self._relax(super().literal_schema(schema))


def queue_config_json_schema() -> dict[str, Any]:
    """The queue config's JSON Schema (docs/schemas/queue-config.schema.json)."""
    schema = QueueConfig.model_json_schema()
    defs = schema.setdefault("$defs", {})
    for key, model in (("spec", SpecInput), ("run", RunInput)):
        sub = model.model_json_schema(schema_generator=_TemplatedSchema)
        defs.update(sub.pop("$defs", {}))
        defs[model.__name__] = sub
        description = schema["properties"][key].get("description")
        schema["properties"][key] = {"$ref": f"#/$defs/{model.__name__}"}
        if description:
            schema["properties"][key]["description"] = description
    wrapper = {
        "type": "object",
        "additionalProperties": False,
        "properties": {"spec": {"$ref": "#/$defs/SpecInput"}, "run": {"$ref": "#/$defs/RunInput"}},
        "description": "W&B resource-args wrapper; use instead of top-level spec/run.",
    }
    for key in WRAPPERS:
        schema["properties"][key] = wrapper
    schema.pop("required", None)
    schema["anyOf"] = [{"required": ["spec"]}, *({"required": [key]} for key in WRAPPERS)]
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "launchq queue config"
    return schema


def write_schemas(directory: Path) -> list[Path]:
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for filename, schema in (
        ("queue-config.schema.json", queue_config_json_schema()),
        ("queue-item.schema.json", queue_item_json_schema()),
    ):
        path = directory / filename
        path.write_text(schema_text(schema), encoding="utf-8")
        written.append(path)
    return written


def schema_text(schema: Mapping[str, Any]) -> str:
    return json.dumps(schema, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m launchq.spec.schemas")
    parser.add_argument("--schema", action="store_true", help="print the queue config schema")
    parser.add_argument("--write-schemas", metavar="DIR", nargs="?", const="docs/schemas")
    args = parser.parse_args(argv)
    if args.write_schemas:
        for path in write_schemas(Path(args.write_schemas)):
            sys.stderr.write(f"wrote {path}\n")
    else:
        sys.stdout.write(schema_text(queue_config_json_schema()))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
