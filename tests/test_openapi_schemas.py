"""``openapi/<entrypoint>.json`` is what ``cog build`` writes to ``.cog/openapi_schema.json`` for each entrypoint.

Two checks, neither reading the committed files' own claims:

- Cog's schema writer itself (the Go code of ``cog build``, built from Cog's source by
  ``scripts/openapi_schemas.py``) regenerates every schema into a temp dir, compared byte for byte. It needs
  that generator built (a Go toolchain and Cog's source: see the script); where it is not, those tests skip
  and say how to build it.
- Cog's Python SDK reads the runners from the imported ``predict.py`` (``cog._inspector``: types, defaults,
  ranges, choices as the runtime objects hold them) and every committed input and output schema must say
  the same, under the writer's rules (``pkg/schema/openapi_spec.go`` ``buildInputSchema``). This runs
  everywhere; it is not the writer, so it cannot see what the writer alone decides (titles, enum schemas,
  the document around the inputs), which the first check covers.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import re
import sys
from pathlib import Path
from typing import Any

import pytest
from cog import __version__ as COG_VERSION  # noqa: N812
from cog import _adt, _inspector

REPO = Path(__file__).resolve().parents[1]
_spec = importlib.util.spec_from_file_location("openapi_schemas", REPO / "scripts" / "openapi_schemas.py")
assert _spec and _spec.loader
openapi_schemas = importlib.util.module_from_spec(_spec)
sys.modules["openapi_schemas"] = openapi_schemas
_spec.loader.exec_module(openapi_schemas)

ENTRYPOINTS = list(openapi_schemas.CONFIGS)
GENERATOR = Path(os.environ.get("COG_SCHEMA_GEN") or openapi_schemas.generator_path())
needs_generator = pytest.mark.skipif(
    not GENERATOR.is_file(),
    reason=f"Cog's schema writer is not built at {GENERATOR}: run `python scripts/openapi_schemas.py --check` "
           "(Go toolchain, C compiler and Cog's source; see the script), or set COG_SCHEMA_GEN")


def committed(entrypoint: str) -> dict[str, Any]:
    return json.loads((REPO / "openapi" / f"{entrypoint}.json").read_bytes())


def differences(want: Any, got: Any, at: str = "") -> list[str]:
    """Where two JSON values differ, as paths (for a readable failure)."""
    if isinstance(want, dict) and isinstance(got, dict):
        return [d for k in dict.fromkeys([*want, *got])
                for d in differences(want.get(k, "<absent>"), got.get(k, "<absent>"), f"{at}/{k}")]
    return [] if want == got and type(want) is type(got) else [f"{at}: committed {want!r}, writer {got!r}"]


@needs_generator
@pytest.mark.parametrize("entrypoint", ENTRYPOINTS)
def test_cogs_writer_regenerates_the_committed_schema(entrypoint: str, tmp_path: Path) -> None:
    written = tmp_path / ".cog" / "openapi_schema.json"
    written.parent.mkdir()
    written.write_bytes(openapi_schemas.generate(GENERATOR, entrypoint))
    target = REPO / "openapi" / f"{entrypoint}.json"
    assert written.read_bytes() == target.read_bytes(), (
        f"{target.name} is not what Cog's writer makes from predict.py (run scripts/openapi_schemas.py): "
        + "; ".join(differences(json.loads(target.read_bytes()), json.loads(written.read_bytes())))[:3000])


@needs_generator
def test_cogs_writer_reads_this_predict_py(tmp_path: Path) -> None:
    """The comparison above is not vacuous: a changed literal in predict.py changes what the writer makes."""
    source = (REPO / "predict.py").read_text(encoding="utf-8")
    changed, count = re.subn(r"default=8, ge=1, le=300\)", "default=9, ge=1, le=300)", source)
    assert count == 1
    (tmp_path / "predict.py").write_text(changed, encoding="utf-8")
    schema = json.loads(openapi_schemas.generate(GENERATOR, "generate", source_dir=tmp_path))
    assert schema["components"]["schemas"]["Input"]["properties"]["duration"]["default"] == 9
    schema["components"]["schemas"]["Input"]["properties"]["duration"]["default"] = 8
    assert schema == committed("generate")


@pytest.mark.parametrize("entrypoint", ENTRYPOINTS)
def test_committed_schema_is_from_the_installed_cog(entrypoint: str) -> None:
    """info.version is the CLI's version in a released `cog build` (pkg/global.Version): the SDK pinned here."""
    schema = committed(entrypoint)
    assert schema["openapi"] == "3.0.2"
    assert schema["info"] == {"title": "Cog", "version": COG_VERSION}


def _title(name: str) -> str:
    return name.replace("_", " ").title()  # Cog's TitleCase for these snake_case names (pkg/schema)


@pytest.mark.parametrize("entrypoint", ENTRYPOINTS)
def test_committed_inputs_are_what_cogs_sdk_reads_from_predict_py(entrypoint: str) -> None:
    runner = openapi_schemas.run_ref(entrypoint).split(":")[1]
    info = _inspector.create_predictor("predict", runner)  # imports predict.py: the runtime's own objects
    schemas = committed(entrypoint)["components"]["schemas"]
    properties = schemas["Input"]["properties"]
    assert list(properties) == list(info.inputs)
    required = []
    for name, field in info.inputs.items():
        prop = dict(properties[name])
        nullable = field.type.repetition in (_adt.Repetition.OPTIONAL, _adt.Repetition.OPTIONAL_REPEATED)
        want: dict[str, Any] = {"x-order": field.order}
        if field.choices:
            want["allOf"] = [{"$ref": f"#/components/schemas/{name}"}]
            assert schemas[name] == {"title": name, "description": "An enumeration.", "enum": field.choices,
                                     **field.type.primitive.json_type()}, name
        else:
            want.update(title=_title(name), **field.type.json_type())
        # A None default counts only on a nullable input (buildInputSchema); otherwise the input is required.
        if field.default is not None or nullable:
            want["default"] = field.default
        else:
            required.append(name)
        if nullable:
            want["nullable"] = True
        if field.description is not None:
            want["description"] = field.description
        if field.ge is not None:
            want["minimum"] = field.ge
        if field.le is not None:
            want["maximum"] = field.le
        assert prop == want, name
    assert schemas["Input"].get("required", []) == required
    assert schemas["Output"] == info.output.json_type()


CONFIG_SCHEMA = REPO / "tests" / "data" / "cog" / "config_schema_v1.0.json"
CONFIG_SCHEMA_SHA256 = "e1e5beb83c3a525dc9cf647adae553f0d4b85829f7ec178dfbdc4d2b4c51f811"  # tests/data/cog/README.md


def test_config_schema_is_the_copy_from_cog() -> None:
    assert hashlib.sha256(CONFIG_SCHEMA.read_bytes()).hexdigest() == CONFIG_SCHEMA_SHA256


@pytest.mark.parametrize("config", sorted(set(openapi_schemas.CONFIGS.values())))
def test_cog_config_passes_the_clis_config_schema(config: str) -> None:
    """What pkg/config/validate.go validateSchema checks (the YAML as data against Cog's Draft 7 schema)."""
    jsonschema = pytest.importorskip("jsonschema", reason="the jsonschema package is not installed")
    yaml = pytest.importorskip("yaml")
    validator = jsonschema.Draft7Validator(json.loads(CONFIG_SCHEMA.read_bytes()))
    data = yaml.safe_load((REPO / config).read_text(encoding="utf-8"))
    assert [e.message for e in validator.iter_errors(data)] == []
    data["build"]["pyhton_version"] = "3.11"  # the schema is strict: a misspelt key fails
    assert list(validator.iter_errors(data))
