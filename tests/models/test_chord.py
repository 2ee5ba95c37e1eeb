"""MusicGen-Chord: sakemin's checkpoint layout loads strictly, chord chroma conditions generation per window."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from musicgen_remix.errors import InputError, WeightsError

CHORD_ASSETS = ["musicgen-chord", "musicgen-stereo-chord", "musicgen-chord-large", "musicgen-stereo-chord-large"]
STEREO = {"musicgen-chord": False, "musicgen-chord-large": False, "musicgen-stereo-chord": True,
          "musicgen-stereo-chord-large": True}


@pytest.fixture(scope="module")
def chord_root(tiny_weights: Path) -> Path:
    """The tiny weights root, whose chord checkpoints were made as sakemin's trainer makes them
    (``fixtures.weights``: a dora-composed config, the LM state with BTC's weights)."""
    from musicgen_remix.models.hub import use_weights_root

    use_weights_root(tiny_weights)
    return tiny_weights


@pytest.fixture(scope="module")
def encodec_dir(tiny_weights: Path) -> Path:
    from musicgen_remix.weights.manifest import asset_path

    return asset_path("encodec-32khz", tiny_weights)


def _path(root: Path, name: str) -> Path:
    from musicgen_remix.weights.manifest import asset_path

    return asset_path(name, root)


def _read(path: Path) -> dict:
    """Trusted test-side read of a checkpoint the fixtures wrote: what the file holds, independently of the
    production loader (safe_load) whose result is being checked."""
    return torch.load(path, map_location="cpu", weights_only=False)


@pytest.fixture(scope="module")
def mono(chord_root: Path, encodec_dir: Path):
    from musicgen_remix.models.chord import load_chord_model

    return load_chord_model(_path(chord_root, "musicgen-chord"), encodec_dir, "cpu")


def _triad(frames: int, notes: list[int]) -> torch.Tensor:
    chroma = torch.zeros(frames, 12)
    chroma[:, notes] = 1.0
    return chroma


# --- layout and loading -------------------------------------------------------------------------------


@pytest.mark.parametrize("name", CHORD_ASSETS)
def test_tiny_checkpoint_is_in_sakemins_layout(chord_root: Path, name: str) -> None:
    from omegaconf import DictConfig

    from musicgen_remix.models.chord import RECOGNIZER_PREFIX

    pkg = _read(_path(chord_root, name))
    assert set(pkg) == {"xp.cfg", "model"}
    cfg = pkg["xp.cfg"]
    assert isinstance(cfg, DictConfig)
    assert cfg._metadata.resolver_cache["now"]  # composed by dora with Hydra, as the real files were
    assert cfg.conditioners.self_wav.model == "chroma_chord"
    assert cfg.conditioners.self_wav.chroma_chord.sample_rate == 32000  # an interpolation, as in training
    assert cfg.transformer_lm.n_q == (8 if STEREO[name] else 4)
    assert bool(cfg.get("interleave_stereo_codebooks", {}).get("use", False)) == STEREO[name]
    conditioner_keys = {k for k in pkg["model"] if k.startswith("condition_provider.conditioners.self_wav.")}
    assert {"condition_provider.conditioners.self_wav.output_proj.weight",
            "condition_provider.conditioners.self_wav.output_proj.bias"} <= conditioner_keys
    assert len([k for k in conditioner_keys if k.startswith(RECOGNIZER_PREFIX)]) == 221
    assert not any(k.endswith("chroma.spec.window") for k in pkg["model"])


@pytest.mark.parametrize("name", ["musicgen-chord", "musicgen-stereo-chord"])
def test_loads_with_exactly_the_checkpoints_keys(chord_root: Path, encodec_dir: Path, name: str) -> None:
    from musicgen_remix.models.chord import ChordChromaConditioner, chord_conditioner, load_chord_model

    path = _path(chord_root, name)
    model = load_chord_model(path, encodec_dir, "cpu")
    state = _read(path)["model"]
    loaded = model.lm.state_dict()
    assert set(loaded) == set(state)
    for key in ("condition_provider.conditioners.self_wav.output_proj.weight",
                "condition_provider.conditioners.self_wav.chroma.model.output_layer.lstm.weight_hh_l0_reverse"):
        assert torch.equal(loaded[key], state[key])
    conditioner = chord_conditioner(model)
    assert isinstance(conditioner, ChordChromaConditioner)
    assert "demucs" not in conditioner.__dict__  # the chord path never loads demucs
    assert model.audio_channels == (2 if STEREO[name] else 1)
    assert model.max_duration == 30.0


def _rewrite(src: Path, dst: Path, edit) -> Path:
    pkg = _read(src)
    edit(pkg["model"])
    torch.save(pkg, dst)
    return dst


@pytest.mark.parametrize("edit", [
    pytest.param(lambda s: s.__setitem__("condition_provider.conditioners.self_wav.extra", torch.zeros(1)),
                 id="extra"),
    pytest.param(lambda s: s.pop("condition_provider.conditioners.self_wav.output_proj.bias"), id="missing"),
    pytest.param(lambda s: s.pop("condition_provider.conditioners.self_wav.chroma.model.output_layer.lstm.bias_ih_l0"),
                 id="missing-recognizer"),
    pytest.param(lambda s: s.__setitem__("condition_provider.conditioners.self_wav.output_proj.weight",
                                         torch.zeros(32, 13)), id="shape"),
])
def test_refuses_a_state_dict_that_does_not_match(chord_root: Path, encodec_dir: Path, tmp_path: Path, edit) -> None:
    from musicgen_remix.models.chord import load_chord_model

    bad = _rewrite(_path(chord_root, "musicgen-chord"), tmp_path / "bad.th", edit)
    with pytest.raises(WeightsError, match="bad.th"):
        load_chord_model(bad, encodec_dir, "cpu")


def test_a_malicious_chord_checkpoint_is_refused_and_not_executed(chord_root: Path, encodec_dir: Path,
                                                                   tmp_path: Path) -> None:
    from fixtures.hostile import shell
    from musicgen_remix.models.chord import load_chord_model

    bad = _rewrite(_path(chord_root, "musicgen-chord"), tmp_path / "evil.th",
                   lambda s: s.__setitem__("emb.0.weight", shell(tmp_path / "pwned")))
    with pytest.raises(WeightsError, match="evil.th"):
        load_chord_model(bad, encodec_dir, "cpu")
    assert not (tmp_path / "pwned").exists()


def test_loads_a_checkpoint_without_recognizer_weights(chord_root: Path, encodec_dir: Path, tmp_path: Path) -> None:
    from musicgen_remix.models.chord import RECOGNIZER_PREFIX, load_chord_model

    def drop(state: dict) -> None:
        for key in [k for k in state if k.startswith(RECOGNIZER_PREFIX)]:
            del state[key]

    path = _rewrite(_path(chord_root, "musicgen-chord"), tmp_path / "no-btc.th", drop)
    model = load_chord_model(path, encodec_dir, "cpu")
    assert not any(k.startswith(RECOGNIZER_PREFIX) for k in model.lm.state_dict())


def test_refuses_a_melody_finetune(tiny_weights: Path, encodec_dir: Path) -> None:
    from fixtures.weights import finetune_path
    from musicgen_remix.models.chord import load_chord_model

    with pytest.raises(WeightsError, match="chroma_chord"):
        load_chord_model(finetune_path(tiny_weights, "melody-a"), encodec_dir, "cpu")


def test_map_chord_config_leaves_its_input_alone() -> None:
    from fixtures.training import chord_overrides, compose
    from musicgen_remix.models.chord import map_chord_config

    cfg = compose(chord_overrides())
    built, spec = map_chord_config(cfg)
    assert "self_wav" not in built.conditioners and "self_wav" in cfg.conditioners
    assert list(built.fuser.prepend) == ["self_wav", "description"]
    assert (spec.sample_rate, spec.n_chroma, spec.radix2_exp, spec.duration) == (32000, 12, 14, 30.0)


def test_chroma_frames_match_audiocrafts_melody_extractor() -> None:
    from audiocraft.modules.chroma import ChromaExtractor

    from musicgen_remix.models.chord import ChordSpec

    spec = ChordSpec(sample_rate=32000, n_chroma=12, radix2_exp=14, duration=30.0, match_len_on_eval=True)
    extractor = ChromaExtractor(sample_rate=32000, n_chroma=12, radix2_exp=14)
    assert spec.frames == extractor(torch.zeros(1, 32000 * 30)).shape[1] == 235
    assert spec.hop == extractor.winhop == 4096
    assert spec.frame_rate == pytest.approx(235 / 30)


# --- conditioning --------------------------------------------------------------------------------------


def test_conditioner_output_is_the_projected_chord_chroma(mono) -> None:
    from musicgen_remix.models.chord import chord_attributes, chord_conditioner

    conditioner = chord_conditioner(mono)
    frames = conditioner.spec.frames
    chroma = _triad(frames, [0, 4, 7])
    chroma[100:, :] = _triad(frames - 100, [2, 5, 9])
    short = _triad(50, [7, 11, 2])
    null = mono._prepare_tokens_and_attributes(["text only"], None)[0][0]  # MusicGen's own null melody
    attrs = [chord_attributes("a", chroma, coefficient=1.5), chord_attributes("b", short), null]
    provider = mono.lm.condition_provider
    with torch.no_grad():
        embeds, mask = provider(provider.tokenize(attrs))["self_wav"]
    weight, bias = conditioner.output_proj.weight, conditioner.output_proj.bias
    assert embeds.shape == (3, frames, weight.shape[0])
    torch.testing.assert_close(embeds[0], torch.nn.functional.linear(1.5 * chroma, weight, bias))
    cycled = short.repeat(5, 1)[:frames]  # shorter chroma is completed periodically to the window
    torch.testing.assert_close(embeds[1], torch.nn.functional.linear(cycled, weight, bias))
    assert torch.equal(embeds[2], torch.zeros_like(embeds[2]))  # null condition: zeros, masked out
    assert mask[:2].all() and not mask[2].any()


def test_conditioner_refuses_audio(mono) -> None:
    from audiocraft.modules.conditioners import ConditioningAttributes, WavCondition

    audio = WavCondition(torch.randn(1, 1, 32000), torch.tensor([32000]), [32000], [None], [0.0])
    attrs = [ConditioningAttributes(text={"description": "x"}, wav={"self_wav": audio})]
    with pytest.raises(ValueError, match="chord chroma"):
        mono.lm.condition_provider.tokenize(attrs)


@pytest.mark.parametrize(("chroma", "coefficient", "field"), [
    (torch.zeros(10, 11), 1.0, "chroma"),
    (torch.zeros(0, 12), 1.0, "chroma"),
    (torch.full((4, 12), float("nan")), 1.0, "chroma"),
    (torch.zeros(4, 12), 0.0, "chroma_coefficient"),
    (torch.zeros(4, 12), float("inf"), "chroma_coefficient"),
])
def test_chord_condition_checks_its_inputs(chroma: torch.Tensor, coefficient: float, field: str) -> None:
    from musicgen_remix.models.chord import chord_condition

    with pytest.raises(ValueError, match=f"^{field}=") as info:  # a bug upstream, not the caller's input
        chord_condition(chroma, coefficient)
    assert not isinstance(info.value, InputError)


def _generate(model, chroma: torch.Tensor, seed: int, frames: int = 20) -> torch.Tensor:
    from musicgen_remix.models.chord import chord_attributes

    torch.manual_seed(seed)
    with torch.no_grad():
        return model.lm.generate(None, [chord_attributes("lofi hip hop beat", chroma)], max_gen_len=frames,
                                 use_sampling=True, top_k=50, cfg_coef=3.0)


def test_generation_follows_the_chord_chroma(mono) -> None:
    frames = mono.lm.condition_provider.conditioners["self_wav"].spec.frames
    c_major, a_minor = _triad(frames, [0, 4, 7]), _triad(frames, [9, 0, 4])
    first, again, other = _generate(mono, c_major, 7), _generate(mono, c_major, 7), _generate(mono, a_minor, 7)
    assert first.shape == (1, 4, 20)
    assert torch.equal(first, again)
    assert not torch.equal(first, other)


def test_stereo_generation_has_interleaved_codebooks(chord_root: Path, encodec_dir: Path) -> None:
    from musicgen_remix.models.chord import load_chord_model

    model = load_chord_model(_path(chord_root, "musicgen-stereo-chord"), encodec_dir, "cpu")
    tokens = _generate(model, _triad(235, [0, 4, 7]), 3, frames=10)
    assert tokens.shape == (1, 8, 10)
    with torch.no_grad():
        audio = model.compression_model.decode(tokens)
    assert audio.shape[:2] == (1, 2)


def test_chroma_advances_with_each_window_beyond_30s(mono) -> None:
    from musicgen_remix.engine.tokens import plan_windows
    from musicgen_remix.models.chord import chord_conditioner, chroma_window

    spec = chord_conditioner(mono).spec
    song = torch.rand(round(70 * spec.frame_rate), 12)  # 70 s of distinct frames
    windows = plan_windows(total_frames=70 * 50, prompt_frames=0, window_frames=30 * 50, stride_frames=18 * 50)
    offsets = [w.offset_frames / 50 for w in windows]
    assert offsets == [0.0, 18.0, 36.0, 54.0]
    for offset in offsets:
        window = chroma_window(song, offset, spec)
        start = round(offset * spec.frame_rate)
        expected = song[torch.arange(start, start + spec.frames) % song.shape[0]]
        assert window.shape == (spec.frames, 12)
        assert torch.equal(window, expected)
    assert torch.equal(chroma_window(song, 18.0, spec)[0], song[141])  # 18 s * 235/30 frames/s
    last = chroma_window(song, 54.0, spec)  # runs past the song's end: cycles to its start
    assert torch.equal(last[song.shape[0] - 423], song[0])
    with pytest.raises(ValueError, match="offset_s"):
        chroma_window(song, -1.0, spec)
