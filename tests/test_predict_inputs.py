"""predict.py's ``Input()`` literals agree with the package and with the committed schemas.

The Cog CLI writes each entrypoint's schema from predict.py's text alone (tree-sitter, nothing imported):
any argument that is not a literal is dropped or misread without an error. The package stays the source of
truth for defaults, choices and ranges; these tests make any drift between the two a failure, and check
``openapi/*.json`` (what the CLI wrote from this predict.py) against the same literals.
"""

from __future__ import annotations

import ast
import dataclasses
import io
import json
import tokenize
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from musicgen_remix.analysis.chroma import CHROMA_COEFFICIENT_RANGE
from musicgen_remix.audio import OUTPUT_FORMATS, STRATEGIES
from musicgen_remix.engine.sampling import CFG_MIN, TEMPERATURE_MIN, TOP_K_MIN, TOP_P_RANGE
from musicgen_remix.generate import DURATION_MAX_S, MODEL_VERSIONS, GenerateRequest
from musicgen_remix.remix.request import CHORD_VERSIONS, RemixRequest
from musicgen_remix.serve import ENTRYPOINTS, schema_path

REPO = Path(__file__).resolve().parents[1]
SOURCE = (REPO / "predict.py").read_text(encoding="utf-8")
TREE = ast.parse(SOURCE)
REQUESTS = {"generate": GenerateRequest, "remix": RemixRequest, "remix-detailed": RemixRequest}
# The package's choices and ranges, by input (what each literal must equal).
CHOICES = {"normalization_strategy": STRATEGIES, "output_format": OUTPUT_FORMATS}
MODEL_CHOICES = {"generate": MODEL_VERSIONS, "remix": CHORD_VERSIONS, "remix-detailed": CHORD_VERSIONS}
BOUNDS: dict[str, tuple[float | None, float | None]] = {
    "duration": (1, DURATION_MAX_S), "continuation_start": (0, None), "top_k": (TOP_K_MIN, None),
    "top_p": TOP_P_RANGE, "temperature": (TEMPERATURE_MIN, None), "classifier_free_guidance": (CFG_MIN, None),
    "chroma_coefficient": CHROMA_COEFFICIENT_RANGE,
}
SCHEMA_TYPES = {"str": "string", "int": "integer", "float": "number", "bool": "boolean", "Path": "string"}


@dataclass(frozen=True)
class Declared:
    """One run() parameter as predict.py declares it."""

    name: str
    annotation: str
    arguments: dict[str, Any]
    argument_sources: dict[str, str]


def _classes() -> dict[str, ast.ClassDef]:
    return {node.name: node for node in TREE.body if isinstance(node, ast.ClassDef)}


def _input_call(node: ast.expr) -> ast.Call:
    """The ``Input(...)`` a default is, directly or through ``RemixInputs.<name>``."""
    if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name):
        holder = _classes()[node.value.id]
        for statement in holder.body:
            if isinstance(statement, ast.Assign) and statement.targets[0].id == node.attr:  # type: ignore[attr-defined]
                node = statement.value
                break
    assert isinstance(node, ast.Call) and getattr(node.func, "id", None) == "Input", ast.unparse(node)
    return node


def declared(entrypoint: str) -> list[Declared]:
    run = next(n for n in _classes()[ENTRYPOINTS[entrypoint].runner].body
               if isinstance(n, ast.FunctionDef) and n.name == "run")
    params = run.args.args[1:]
    out = []
    for param, default in zip(params, run.args.defaults, strict=True):
        call = _input_call(default)
        assert not call.args, f"{param.arg}: positional Input() arguments are ignored by the CLI"
        arguments, sources = {}, {}
        for keyword in call.keywords:
            try:
                arguments[keyword.arg] = ast.literal_eval(keyword.value)
            except ValueError:
                pytest.fail(f"{entrypoint}.{param.arg}: {keyword.arg}={ast.unparse(keyword.value)} is not a literal")
            sources[keyword.arg] = ast.get_source_segment(SOURCE, keyword.value) or ""
        out.append(Declared(param.arg, ast.unparse(param.annotation), arguments, sources))
    return out


@pytest.mark.parametrize("entrypoint", ENTRYPOINTS)
def test_inputs_are_the_request_fields_with_their_defaults(entrypoint: str) -> None:
    fields = {f.name: f.default for f in dataclasses.fields(REQUESTS[entrypoint])}
    inputs = {d.name: d.arguments.get("default") for d in declared(entrypoint)}
    assert inputs == fields


@pytest.mark.parametrize("entrypoint", ENTRYPOINTS)
def test_choices_and_ranges_are_the_packages(entrypoint: str) -> None:
    for item in declared(entrypoint):
        choices = MODEL_CHOICES[entrypoint] if item.name == "model_version" else CHOICES.get(item.name)
        assert set(item.arguments.get("choices", ())) == set(choices or ()), item.name
        low, high = BOUNDS.get(item.name, (None, None))
        assert (item.arguments.get("ge"), item.arguments.get("le")) == (low, high), item.name


@pytest.mark.parametrize("entrypoint", ENTRYPOINTS)
def test_optional_exactly_when_the_default_is_none(entrypoint: str) -> None:
    for item in declared(entrypoint):
        optional = item.annotation.endswith("| None")
        assert optional == (item.arguments.get("default") is None) or item.name == "beat_sync_threshold", item
        assert item.name != "beat_sync_threshold" or optional  # None/-1 mean "from the tempo": nullable


@pytest.mark.parametrize("entrypoint", ENTRYPOINTS)
def test_each_description_is_one_string_literal(entrypoint: str) -> None:
    """Implicit concatenation or an f-string would reach the schema garbled or not at all."""
    for item in declared(entrypoint):
        tokens = [t for t in tokenize.generate_tokens(io.StringIO(item.argument_sources["description"]).readline)
                  if t.type not in (tokenize.NEWLINE, tokenize.NL, tokenize.ENDMARKER)]
        assert len(tokens) == 1 and tokens[0].type == tokenize.STRING, (item.name, tokens)
        assert not tokens[0].string.lower().startswith(("f", "rf", "fr")), item.name
        assert "\\" not in tokens[0].string, f"{item.name}: escapes reach the schema raw"


@pytest.mark.parametrize("entrypoint", ENTRYPOINTS)
def test_committed_schema_is_what_predict_py_declares(entrypoint: str) -> None:
    schemas = json.loads(schema_path(entrypoint).read_text(encoding="utf-8"))["components"]["schemas"]
    properties = schemas["Input"]["properties"]
    items = declared(entrypoint)
    assert list(properties) == [] or set(properties) == {d.name for d in items}
    assert "required" not in schemas["Input"]  # every input has a default
    for order, item in enumerate(items):
        prop = properties[item.name]
        assert prop["x-order"] == order, item.name
        assert prop["description"] == item.arguments["description"], item.name
        assert prop["default"] == item.arguments.get("default"), item.name
        if "choices" in item.arguments:
            enum = schemas[prop["allOf"][0]["$ref"].rsplit("/", 1)[-1]]
            assert enum["enum"] == item.arguments["choices"], item.name
        else:
            base = item.annotation.removesuffix(" | None")
            assert prop["type"] == SCHEMA_TYPES[base], item.name
            assert (prop.get("format") == "uri") == (base == "Path"), item.name
            assert prop.get("nullable", False) == item.annotation.endswith("| None"), item.name
        assert (prop.get("minimum"), prop.get("maximum")) == (item.arguments.get("ge"), item.arguments.get("le"))
