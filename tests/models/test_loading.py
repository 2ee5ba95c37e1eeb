"""Tests for musicgen_remix.models.loading and safe_load on tiny weights in the real release formats:
every release repo, the fine-tuner's format (good, malformed, wrong architecture, malicious) and MBD."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest
import torch

from fixtures.hostile import path_touch
from musicgen_remix.errors import WeightsError
from musicgen_remix.models.loading import describe, load_finetune, load_mbd, load_release
from musicgen_remix.models.safe_load import safe_torch_load

# repo -> (melody, stereo, ships an EnCodec pointer instead of weights)
RELEASES = {
    "musicgen-melody": (True, False, False),
    "musicgen-stereo-melody": (True, True, True),
    "musicgen-melody-large": (True, False, True),
    "musicgen-stereo-melody-large": (True, True, True),
    "musicgen-small": (False, False, False),
    "musicgen-medium": (False, False, False),
    "musicgen-large": (False, False, False),
}


@pytest.fixture(autouse=True)
def _offline_hub(tiny_weights: Path) -> None:
    """T5 and demucs resolve from the tiny weights root, as the service arranges at start-up."""
    from musicgen_remix.models.hub import use_weights_root

    use_weights_root(tiny_weights)


def encodec_dir(root: Path) -> Path:
    return root / "audiocraft" / "encodec-32khz"


def finetune_file(root: Path, name: str) -> Path:
    return root / "finetunes" / f"{name}.th"


def states_equal(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return set(a) == set(b) and all(torch.equal(a[k].cpu(), b[k].cpu()) for k in a)


def full_load(path: Path) -> Any:
    """Trusted test-side read of a file this test suite wrote itself."""
    return torch.load(path, map_location="cpu", weights_only=False)


# ----------------------------------------------------------------------------------------------------
# release repos


@pytest.mark.parametrize("repo", sorted(RELEASES))
def test_release_loads_and_is_described(tiny_weights: Path, repo: str) -> None:
    melody, stereo, pointer = RELEASES[repo]
    repo_dir = tiny_weights / "facebook" / repo
    model = load_release(repo_dir, encodec_dir(tiny_weights), "cpu")
    info = describe(repo, model)
    assert (info.name, info.melody, info.stereo) == (repo, melody, stereo)
    assert (info.card, info.sample_rate, info.frame_rate, info.max_duration) == (256, 32000, 50.0, 30.0)
    assert model.audio_channels == (2 if stereo else 1)
    # The LM holds exactly the release's weights.
    release = torch.load(repo_dir / "state_dict.bin", map_location="cpu", weights_only=True)
    assert states_equal(model.lm.state_dict(), release["best_state"])
    # A pointer file is served by the local 32 kHz EnCodec; otherwise the repo's own compression model.
    compression = torch.load(repo_dir / "compression_state_dict.bin", map_location="cpu", weights_only=True)
    assert ("pretrained" in compression) == pointer
    codec = torch.load(encodec_dir(tiny_weights) / "compression_state_dict.bin", map_location="cpu",
                       weights_only=True)["best_state"]
    codec_state = model.compression_model.state_dict()
    if stereo:  # InterleaveStereoCompressionModel wraps the mono EnCodec
        codec_state = {k.removeprefix("model."): v for k, v in codec_state.items()}
    assert states_equal(codec_state, codec)


def test_unknown_encodec_pointer_is_refused(tiny_weights: Path, tmp_path: Path) -> None:
    repo = tmp_path / "musicgen-melody-large"
    shutil.copytree(tiny_weights / "facebook" / "musicgen-melody-large", repo)
    torch.save({"pretrained": "facebook/encodec_24khz"}, repo / "compression_state_dict.bin")
    with pytest.raises(WeightsError, match="encodec_24khz"):
        load_release(repo, encodec_dir(tiny_weights), "cpu")


def test_missing_release_file_names_the_fetch_command(tiny_weights: Path, tmp_path: Path) -> None:
    repo = tmp_path / "musicgen-small"
    repo.mkdir()
    shutil.copy(tiny_weights / "facebook" / "musicgen-small" / "compression_state_dict.bin", repo)
    with pytest.raises(WeightsError, match=r"state_dict.bin.*weights fetch|weights fetch") as info:
        load_release(repo, encodec_dir(tiny_weights), "cpu")
    assert "musicgen-small" in str(info.value)


def test_malicious_release_file_is_not_executed(tiny_weights: Path, tmp_path: Path) -> None:
    repo = tmp_path / "musicgen-small"
    shutil.copytree(tiny_weights / "facebook" / "musicgen-small", repo)
    marker = tmp_path / "pwned"
    torch.save({"best_state": path_touch(marker), "xp.cfg": "{}"}, repo / "state_dict.bin")
    with pytest.raises(Exception):  # noqa: B017 - audiocraft's own loader: torch's refusal, whatever its type
        load_release(repo, encodec_dir(tiny_weights), "cpu")
    assert not marker.exists()


# ----------------------------------------------------------------------------------------------------
# fine-tunes


@pytest.mark.parametrize(("name", "melody", "stereo"), [
    ("melody-a", True, False), ("text-a", False, False), ("stereo-melody-a", True, True)])
def test_finetune_loads_exactly(tiny_weights: Path, name: str, melody: bool, stereo: bool) -> None:
    path = finetune_file(tiny_weights, name)
    model = load_finetune(path, encodec_dir(tiny_weights), "cpu")
    info = describe(name, model)
    assert (info.melody, info.stereo, info.card) == (melody, stereo, 256)
    state = full_load(path)["model"]
    # No missing or unexpected keys, every tensor as saved.
    assert set(model.lm.state_dict()) == set(state)
    assert states_equal(model.lm.state_dict(), state)


def lm_logits(lm: Any, compression: Any, seed: int = 0) -> torch.Tensor:
    from audiocraft.models import MusicGen

    wrapper = MusicGen("probe", compression, lm, max_duration=30.0)
    attributes, _ = wrapper._prepare_tokens_and_attributes(["calm piano melody"], None)
    codes = torch.randint(0, lm.card, (1, lm.num_codebooks, 40), generator=torch.Generator().manual_seed(seed))
    with torch.no_grad():
        out = lm.compute_predictions(codes, attributes)
    # Steps the delay pattern leaves invalid are NaN by design; keep the valid ones.
    assert out.mask.sum() > 0.9 * out.mask.numel()
    return out.logits[out.mask]


def test_finetune_outputs_equal_a_model_built_from_its_state_dict(tiny_weights: Path) -> None:
    from audiocraft.models import builders
    from audiocraft.models.loaders import _delete_param

    path = finetune_file(tiny_weights, "melody-a")
    model = load_finetune(path, encodec_dir(tiny_weights), "cpu")
    pkg = full_load(path)
    cfg = pkg["xp.cfg"].copy()
    cfg.device, cfg.dtype = "cpu", "float32"
    _delete_param(cfg, "conditioners.self_wav.chroma_stem.cache_path")
    reference = builders.get_lm_model(cfg)
    reference.load_state_dict(pkg["model"], strict=True)
    reference.eval()
    # As audiocraft's MusicGen.get_pretrained sets them on a melody model.
    reference.condition_provider.conditioners["self_wav"].match_len_on_eval = True
    reference.condition_provider.conditioners["self_wav"]._use_masking = False
    ours = lm_logits(model.lm, model.compression_model)
    theirs = lm_logits(reference, model.compression_model)
    assert ours.shape[-1] == 256
    assert torch.isfinite(ours).all()
    assert torch.equal(ours, theirs)
    # A different fine-tune really is different.
    other = load_finetune(finetune_file(tiny_weights, "melody-b"), encodec_dir(tiny_weights), "cpu")
    assert not torch.allclose(ours, lm_logits(other.lm, other.compression_model))


def test_finetune_text_file_is_refused(tiny_weights: Path, tmp_path: Path) -> None:
    path = tmp_path / "notes.th"
    path.write_text("this is a text file, not a checkpoint\n")
    with pytest.raises(WeightsError, match="not a readable torch checkpoint") as info:
        load_finetune(path, encodec_dir(tiny_weights), "cpu")
    assert "notes.th" in str(info.value)


def test_finetune_empty_file_is_refused(tiny_weights: Path, tmp_path: Path) -> None:
    path = tmp_path / "empty.th"
    path.write_bytes(b"")
    with pytest.raises(WeightsError, match="not a readable torch checkpoint"):
        load_finetune(path, encodec_dir(tiny_weights), "cpu")


@pytest.mark.parametrize(("obj", "expected"), [
    ([1, 2, 3], r"expected a dict with 'xp.cfg' and 'model', got list"),
    ({"xp.cfg": "{}", "state": {}}, r"expected a dict with 'xp.cfg' and 'model', got \['state', 'xp.cfg'\]"),
    ({"model": {"w": torch.zeros(1)}}, r"got \['model'\]"),
    ({"xp.cfg": 3, "model": {"w": torch.zeros(1)}}, r"'xp.cfg' is a int, not a config"),
])
def test_finetune_wrong_format_is_refused(tiny_weights: Path, tmp_path: Path, obj: Any, expected: str) -> None:
    path = tmp_path / "wrong.th"
    torch.save(obj, path)
    with pytest.raises(WeightsError, match=expected):
        load_finetune(path, encodec_dir(tiny_weights), "cpu")


def resaved(tiny_weights: Path, tmp_path: Path, edit: Any, name: str = "melody-a") -> Path:
    pkg = full_load(finetune_file(tiny_weights, name))
    edit(pkg)
    path = tmp_path / f"edited-{name}.th"
    torch.save(pkg, path)
    return path


def test_finetune_empty_state_dict_is_refused(tiny_weights: Path, tmp_path: Path) -> None:
    path = resaved(tiny_weights, tmp_path, lambda pkg: pkg.update(model={}))
    with pytest.raises(WeightsError, match="'model' is not a state dict"):
        load_finetune(path, encodec_dir(tiny_weights), "cpu")


def test_finetune_missing_key_is_refused(tiny_weights: Path, tmp_path: Path) -> None:
    path = resaved(tiny_weights, tmp_path, lambda pkg: pkg["model"].pop("emb.0.weight"))
    with pytest.raises(WeightsError, match=r"1 missing \['emb.0.weight'\], 0 unexpected"):
        load_finetune(path, encodec_dir(tiny_weights), "cpu")


def test_finetune_renamed_key_is_refused(tiny_weights: Path, tmp_path: Path) -> None:
    def rename(pkg: dict[str, Any]) -> None:
        pkg["model"]["embedding.0.weight"] = pkg["model"].pop("emb.0.weight")

    path = resaved(tiny_weights, tmp_path, rename)
    with pytest.raises(WeightsError, match=r"1 missing \['emb.0.weight'\], 1 unexpected \['embedding.0.weight'\]"):
        load_finetune(path, encodec_dir(tiny_weights), "cpu")


def test_finetune_other_size_is_refused(tiny_weights: Path, tmp_path: Path) -> None:
    def widen(pkg: dict[str, Any]) -> None:
        pkg["model"]["linears.0.weight"] = torch.zeros(256, 64)

    path = resaved(tiny_weights, tmp_path, widen)
    with pytest.raises(WeightsError, match=r"1 of another shape \[\('linears.0.weight', \(256, 64\), \(256, 32\)\)"):
        load_finetune(path, encodec_dir(tiny_weights), "cpu")


def test_finetune_conditioner_of_another_size_is_refused(tiny_weights: Path, tmp_path: Path) -> None:
    key = "condition_provider.conditioners.description.output_proj.weight"
    path = resaved(tiny_weights, tmp_path, lambda pkg: pkg["model"].__setitem__(key, torch.zeros(64, 768)))
    with pytest.raises(WeightsError, match="tensor shapes do not match its config") as info:
        load_finetune(path, encodec_dir(tiny_weights), "cpu")
    assert "size mismatch" in str(info.value)


def test_finetune_stereo_weights_with_mono_config_are_refused(tiny_weights: Path, tmp_path: Path) -> None:
    mono_cfg = full_load(finetune_file(tiny_weights, "melody-a"))["xp.cfg"]
    path = resaved(tiny_weights, tmp_path, lambda pkg: pkg.update({"xp.cfg": mono_cfg}), name="stereo-melody-a")
    with pytest.raises(WeightsError, match=r"0 missing \[\], 8 unexpected \['emb.4.weight'"):
        load_finetune(path, encodec_dir(tiny_weights), "cpu")


@pytest.mark.parametrize(("key", "value", "expected"), [
    ("lm_model", "other_lm", "lm_model is not 'transformer_lm'"),
    ("sample_rate", 24000, "sample_rate is not 32000"),
    ("compression_model_checkpoint", "//pretrained/facebook/encodec_24khz", "compression_model_checkpoint is not"),
])
def test_finetune_unsupported_config_is_refused(tiny_weights: Path, tmp_path: Path, key: str, value: Any,
                                                expected: str) -> None:
    path = resaved(tiny_weights, tmp_path, lambda pkg: pkg["xp.cfg"].__setattr__(key, value))
    with pytest.raises(WeightsError, match="not a supported MusicGen checkpoint") as info:
        load_finetune(path, encodec_dir(tiny_weights), "cpu")
    assert expected in str(info.value)


def test_finetune_yaml_config_loads(tiny_weights: Path, tmp_path: Path) -> None:
    """The fine-tuner's checkpoints may carry the config as YAML text, as the release exports do."""
    from omegaconf import OmegaConf

    path = resaved(tiny_weights, tmp_path, lambda pkg: pkg.update({"xp.cfg": OmegaConf.to_yaml(pkg["xp.cfg"])}))
    model = load_finetune(path, encodec_dir(tiny_weights), "cpu")
    assert states_equal(model.lm.state_dict(), full_load(finetune_file(tiny_weights, "melody-a"))["model"])


def test_malicious_finetune_is_refused_and_not_executed(tiny_weights: Path, tmp_path: Path) -> None:
    """The fine-tune loader reads through the restricted unpickler (its hostile cases: test_safe_load)."""

    evil = path_touch(tmp_path / "pwned")
    path = resaved(tiny_weights, tmp_path, lambda pkg: pkg["model"].__setitem__("emb.0.weight", evil))
    with pytest.raises(WeightsError, match="refused to load fine-tuned checkpoint edited-melody-a.th"):
        load_finetune(path, encodec_dir(tiny_weights), "cpu")
    assert not (tmp_path / "pwned").exists()


def test_safe_load_reads_configs_and_tensors(tiny_weights: Path) -> None:
    from omegaconf import DictConfig

    pkg = safe_torch_load(finetune_file(tiny_weights, "melody-a"))
    assert isinstance(pkg["xp.cfg"], DictConfig)
    assert all(isinstance(v, torch.Tensor) for v in pkg["model"].values())


# ----------------------------------------------------------------------------------------------------
# MultiBand Diffusion


def test_mbd_decodes_tokens_to_finite_audio(tiny_weights: Path) -> None:
    mbd = load_mbd(tiny_weights / "facebook" / "multiband-diffusion" / "mbd_musicgen_32khz.th",
                   encodec_dir(tiny_weights), "cpu")
    assert mbd.sample_rate == 32000
    tokens = torch.randint(0, 256, (1, 4, 25), generator=torch.Generator().manual_seed(0))
    torch.manual_seed(0)
    with torch.no_grad():
        wav = mbd.tokens_to_wav(tokens)
    assert wav.shape == (1, 1, 25 * 640)
    assert torch.isfinite(wav).all()
    assert float(wav.abs().max()) > 0


def test_mbd_missing_file_is_reported(tiny_weights: Path, tmp_path: Path) -> None:
    with pytest.raises(WeightsError, match="MultiBand Diffusion"):
        load_mbd(tmp_path / "mbd_musicgen_32khz.th", encodec_dir(tiny_weights), "cpu")


MBD_FILE = ("facebook", "multiband-diffusion", "mbd_musicgen_32khz.th")


def test_mbd_band_configs_are_hydra_composed(tiny_weights: Path) -> None:
    """Each band's cfg carries what dora's Hydra compose leaves (the filled ``now`` resolver cache)."""
    pkg = safe_torch_load(tiny_weights.joinpath(*MBD_FILE))
    assert pkg["n_bands"] >= 1
    for band in range(pkg["n_bands"]):
        assert pkg[band]["cfg"]._metadata.resolver_cache["now"]


def test_mbd_band_config_with_a_resolver_is_refused_unresolved(tiny_weights: Path, tmp_path: Path,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    from omegaconf import OmegaConf

    monkeypatch.setenv("MUSICGEN_REMIX_TEST_SECRET", "s3cr3t")
    pkg = safe_torch_load(tiny_weights.joinpath(*MBD_FILE))
    OmegaConf.update(pkg[0]["cfg"], "diffusion_unet.codec_dim", "${oc.env:MUSICGEN_REMIX_TEST_SECRET}")
    torch.save(pkg, tmp_path / "mbd_musicgen_32khz.th")
    with pytest.raises(WeightsError, match="mbd_musicgen_32khz.th band 0: config key diffusion_unet.codec_dim "
                                           "calls an OmegaConf resolver") as info:
        load_mbd(tmp_path / "mbd_musicgen_32khz.th", encodec_dir(tiny_weights), "cpu")
    assert "s3cr3t" not in str(info.value)


def test_malicious_mbd_is_refused_and_not_executed(tiny_weights: Path, tmp_path: Path) -> None:
    pkg = safe_torch_load(tiny_weights.joinpath(*MBD_FILE))
    pkg[0]["processor_state"] = {"x": path_touch(tmp_path / "pwned")}
    torch.save(pkg, tmp_path / "mbd_musicgen_32khz.th")
    with pytest.raises(WeightsError, match="refused to load MultiBand Diffusion checkpoint mbd_musicgen_32khz.th"):
        load_mbd(tmp_path / "mbd_musicgen_32khz.th", encodec_dir(tiny_weights), "cpu")
    assert not (tmp_path / "pwned").exists()
