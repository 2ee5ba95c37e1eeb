"""The seeds' published input schemas (saved Replicate schema pages in ``tests/data/seeds``) and how a served
OpenAPI schema departs from them."""

from __future__ import annotations

import ast
import re
from dataclasses import dataclass
from pathlib import Path

SEEDS = Path(__file__).resolve().parents[1] / "data" / "seeds"
GENERATE_SEED = SEEDS / "generate-musicgen-mario.txt"
REMIX_SEED = SEEDS / "remix-musicgen-remixer.txt"

# A seed type of "None" is how the seed page shows a `choices` input: a string enum in the schema.
SEED_TYPES = {"string": "string", "integer": "integer", "boolean": "boolean", "number": "number",
              "None": "enum"}
_ROW_START = re.compile(r"^\| (\w+) \|\s*$")
_RANGE = re.compile(r"^(?P<default>.*?)\s*(?:Min: (?P<min>\S+))?\s*(?:Max: (?P<max>\S+))?$")


@dataclass(frozen=True)
class SeedInput:
    kind: str  # the seed page's type (see SEED_TYPES)
    default: str | None  # the default as the page writes it; None when the input has none
    minimum: str | None = None
    maximum: str | None = None


def parse_seed_schema(text: str) -> tuple[dict[str, tuple[str, str | None]], dict]:
    """``({input: (type, default or None)}, output schema)`` from a saved Replicate schema page."""
    inputs, output = parse_seed_inputs(text)
    return {name: (spec.kind, spec.default) for name, spec in inputs.items()}, output


def parse_seed_inputs(text: str) -> tuple[dict[str, SeedInput], dict]:
    """``({input: SeedInput}, output schema)`` from a saved Replicate schema page.

    The page's table rows span several lines: ``| name |``, the type, then either ``| default |
    description |`` or, for inputs without a default, ``| description | |``. A range follows the default
    in the same cell: ``1 Min: 0.5 Max: 2``.
    """
    table, _, after = text.partition("Output schema")
    inputs: dict[str, SeedInput] = {}
    rows: list[tuple[str, list[str]]] = []
    for line in table.splitlines():
        match = _ROW_START.match(line)
        if match:
            rows.append((match.group(1), []))
        elif rows:
            rows[-1][1].append(line)
    for name, body in rows:
        cells = [" ".join(cell.split()) for cell in "\n".join(body).split("|")]
        cells = [cell for cell in cells if cell]
        if len(cells) == 2:  # type, description
            inputs[name] = SeedInput(cells[0], None)
        elif len(cells) == 3:  # type, default (and range), description
            parts = _RANGE.match(cells[1])
            assert parts is not None  # the pattern matches any text
            inputs[name] = SeedInput(cells[0], parts["default"], parts["min"], parts["max"])
        else:
            raise ValueError(f"cannot read the seed schema row for {name!r}: {cells}")
    output = ast.literal_eval(after[after.index("{"): after.rindex("}") + 1])
    return inputs, output


def seed_default(kind: str, text: str) -> object:
    if kind == "integer":
        return int(text)
    if kind == "number":
        return float(text)
    if kind == "boolean":
        return {"True": True, "False": False}[text]
    return text


def schema_problems(openapi: dict, seed_inputs: dict[str, SeedInput], *, file_inputs: tuple[str, ...]) -> list[str]:
    """How the served ``Input`` schema departs from a seed's inputs: type, default, range, file format."""
    schemas = openapi["components"]["schemas"]
    properties = schemas["Input"]["properties"]
    problems: list[str] = []
    for name, spec in seed_inputs.items():
        prop = properties.get(name)
        if prop is None:
            problems.append(f"{name}: missing from the Input schema")
            continue
        kind = SEED_TYPES[spec.kind]
        if kind == "enum":
            ref = prop["allOf"][0]["$ref"].rsplit("/", 1)[-1] if "allOf" in prop else None
            enum = schemas.get(ref, {}) if ref else prop
            if enum.get("type") != "string" or "enum" not in enum:
                problems.append(f"{name}: expected a string enum (choices), got {prop}")
            elif spec.default is not None and spec.default not in enum["enum"]:
                problems.append(f"{name}: default {spec.default!r} is not one of {enum['enum']}")
        elif prop.get("type") != kind:
            problems.append(f"{name}: type {prop.get('type')!r}, seed has {kind!r}")
        if name in file_inputs and prop.get("format") != "uri":
            problems.append(f"{name}: expected format 'uri' (a file input), got {prop}")
        expected = None if spec.default is None else seed_default(kind, spec.default)
        if prop.get("default") != expected:
            problems.append(f"{name}: default {prop.get('default')!r}, seed has {expected!r}")
        for bound, key in ((spec.minimum, "minimum"), (spec.maximum, "maximum")):
            if bound is not None and prop.get(key) != seed_default(kind, bound):
                problems.append(f"{name}: {key} {prop.get(key)!r}, seed has {bound}")
    return problems
