"""``benchmarks.requirements`` builds the real architectures on the meta device; where the manifest knows a file's
size, the figures computed from those architectures must reproduce it (which also checks the manifest)."""

from __future__ import annotations

from types import ModuleType

import pytest

from musicgen_remix.weights import load_manifest


@pytest.fixture(scope="module")
def requirements() -> ModuleType:
    from benchmarks import requirements

    return requirements


def test_release_file_is_its_fp16_tensors(requirements: ModuleType) -> None:
    manifest = load_manifest()
    with requirements.meta_builders():
        lm = requirements.release_lm("text", "small", False)
    computed = requirements.fp16_tensor_bytes(lm)
    on_hub = manifest["musicgen-small"].files[0].size
    assert on_hub is not None and 0 < on_hub - computed < 200_000  # the rest: zip records and the YAML config
    assert len(lm.transformer.layers) == 24 and lm.dim == 1024


def test_support_assets_match_their_files(requirements: ModuleType) -> None:
    manifest = load_manifest()
    support = requirements.support_assets(manifest)
    assert 0 < support["t5"]["file"] - support["t5"]["whole_model_fp32"] < 3_000_000  # + tokenizer files
    assert 0 < support["encodec"]["file"] - support["encodec"]["computed_fp32"] < 100_000
    assert support["t5"]["params"] == 109_628_544  # t5-base's encoder


def test_a_window_is_planned_as_the_engine_plans_it(requirements: ModuleType) -> None:
    with requirements.meta_builders():
        lm = requirements.release_lm("text", "small", False)
    steps, total = requirements.generation_bytes(lm, 30.0, step_bytes=1, kv_per_token=0)
    assert steps == 1503 and total == 1503  # 1500 frames + the delay pattern's 3
    steps, total = requirements.generation_bytes(lm, 48.0, step_bytes=1, kv_per_token=0)
    assert steps == 1503 + 903 and total == steps + 1  # a second window, 18 s on, and its prompt's pass
