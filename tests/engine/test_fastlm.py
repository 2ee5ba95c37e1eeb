"""Tests for musicgen_remix.engine.fastlm: the fast decoder gives audiocraft's ``LMModel.generate`` tokens.

Every comparison runs the stock decoder and the fast one from the same seed on tiny release-format
models: text (cross-attention), melody and chord (prepended conditions), stereo (8 codebooks with
delays), continuation (prompt tokens) and long-form windows, greedy and sampled.
"""

from __future__ import annotations

import copy
import logging
import weakref
from pathlib import Path
from typing import Any

import pytest
import torch

from musicgen_remix.engine import fastlm
from musicgen_remix.engine.fastlm import DECODER_ENV, decoder, fast_generate, supports
from musicgen_remix.engine.sampling import Sampling
from musicgen_remix.engine.seeding import apply_seed
from musicgen_remix.engine.tokens import generate_tokens
from musicgen_remix.progress import Progress

SR = 32000
GREEDY = {"use_sampling": False, "temp": 0.0, "top_k": 1, "top_p": 0.0}
TOP_K = {"use_sampling": True, "temp": 1.0, "top_k": 250, "top_p": 0.0}
TOP_P = {"use_sampling": True, "temp": 0.8, "top_k": 0, "top_p": 0.9}
SAMPLINGS = {"greedy": GREEDY, "top_k": TOP_K, "top_p": TOP_P}
FRAMES = 60


def tune(seconds: float = 3.0) -> torch.Tensor:
    """[1, T] at 32 kHz: notes of 0.5 s, so the chroma changes over time."""
    t = torch.arange(SR // 2) / SR
    notes = torch.cat([0.3 * torch.sin(2 * torch.pi * f * t) for f in (261.6, 329.6, 392.0, 493.9, 293.7, 370.0)])
    return notes.repeat(int(seconds / 3.0 + 1))[: int(seconds * SR)][None]


@pytest.fixture(scope="module")
def models(tiny_weights: Path):
    """Tiny models by kind, loaded once per module through the production loaders."""
    from musicgen_remix.models.chord import load_chord_model
    from musicgen_remix.models.hub import use_weights_root
    from musicgen_remix.models.loading import load_release
    from musicgen_remix.weights.manifest import asset_path

    use_weights_root(tiny_weights)
    encodec = asset_path("encodec-32khz", tiny_weights)
    cache: dict[str, Any] = {}

    def get(kind: str) -> Any:
        if kind not in cache:
            if kind == "chord":
                cache[kind] = load_chord_model(asset_path("musicgen-stereo-chord", tiny_weights), encodec, "cpu")
            else:
                name = {"text": "musicgen-small", "melody": "musicgen-melody", "stereo": "musicgen-stereo-melody"}
                cache[kind] = load_release(asset_path(name[kind], tiny_weights), encodec, "cpu")
        return cache[kind]

    return get


def conditions(model: Any, kind: str) -> list[Any]:
    if kind == "chord":
        from musicgen_remix.models.chord import chord_attributes

        chroma = torch.zeros(40, 12)
        chroma[:20, [0, 4, 7]] = 1.0
        chroma[20:, [2, 5, 9]] = 1.0
        return [chord_attributes("calm piano", chroma)]
    melody = [tune(1.5)] if kind in ("melody", "stereo") else None
    with torch.no_grad():
        attributes, _ = model._prepare_tokens_and_attributes(["calm piano"], None, melody)
    return attributes


def spy_probabilities(monkeypatch: pytest.MonkeyPatch) -> list[torch.Tensor]:
    """Record the probabilities every top-k draw starts from (both decoders call audiocraft's function)."""
    from audiocraft.utils import utils

    seen: list[torch.Tensor] = []
    original = utils.sample_top_k

    def spy(probs: torch.Tensor, k: int) -> torch.Tensor:
        seen.append(probs.clone())
        return original(probs, k)

    monkeypatch.setattr(utils, "sample_top_k", spy)
    return seen


def both(lm: Any, prompt: torch.Tensor | None, attributes: list[Any], seed: int = 7,
         **kwargs: Any) -> tuple[torch.Tensor, torch.Tensor]:
    kwargs = {"max_gen_len": FRAMES, "cfg_coef": 3.0, "two_step_cfg": False, **kwargs}
    apply_seed(seed)  # python's random too: demucs (melody chroma) shifts its input at random
    stock = lm.generate(prompt, attributes, **kwargs)
    apply_seed(seed)
    fast = fast_generate(lm, prompt, attributes, **kwargs)
    return stock, fast


# Every sampling with and without a prompt where conditions are cheap (text, chord chroma); three of
# the six where demucs extracts the melody's chroma at each call.
CASES = [(kind, sampling, continuation) for kind in ("text", "chord") for sampling in SAMPLINGS
         for continuation in (False, True)]
CASES += [(kind, *case) for kind in ("melody", "stereo")
          for case in (("greedy", False), ("top_k", True), ("top_p", False))]


@pytest.mark.parametrize(("kind", "sampling", "continuation"), CASES)
def test_tokens_equal_stock(models, kind: str, sampling: str, continuation: bool) -> None:
    model = models(kind)
    lm = model.lm
    assert supports(lm) is None
    prompt = None
    if continuation:
        prompt = torch.randint(0, lm.card, (1, lm.num_codebooks, 23), generator=torch.Generator().manual_seed(1))
    stock, fast = both(lm, prompt, conditions(model, kind), **SAMPLINGS[sampling])
    assert fast.shape == (1, 8 if kind in ("chord", "stereo") else 4, FRAMES)
    assert torch.equal(stock, fast)


def test_probabilities_bitwise_equal(models, monkeypatch: pytest.MonkeyPatch) -> None:
    """Not just the same draws: the same probabilities at every step, to the bit (CPU, float32)."""
    seen = spy_probabilities(monkeypatch)
    model = models("text")
    torch.manual_seed(0)
    model.lm.generate(None, conditions(model, "text"), max_gen_len=FRAMES, **TOP_K)
    stock, seen[:] = list(seen), []
    torch.manual_seed(0)
    fast_generate(model.lm, None, conditions(model, "text"), max_gen_len=FRAMES, **TOP_K)
    assert len(seen) == len(stock) == FRAMES + 3
    assert all(torch.equal(a, b) for a, b in zip(stock, seen, strict=True))


def test_options_of_generate(models) -> None:
    """num_samples, remove_prompts and unconditional generation behave as in LMModel.generate (on a
    prepend model: a cross-attention model cannot generate without conditions)."""
    lm = models("melody").lm
    prompt = torch.randint(0, lm.card, (2, 4, 10), generator=torch.Generator().manual_seed(2))
    stock, fast = both(lm, prompt, [], remove_prompts=True, **TOP_K)
    assert fast.shape == (2, 4, FRAMES - 10)
    assert torch.equal(stock, fast)
    stock, fast = both(lm, None, [], num_samples=3, **TOP_K)
    assert fast.shape == (3, 4, FRAMES)
    assert torch.equal(stock, fast)


def test_callback_and_result_match_stock(models) -> None:
    lm = models("melody").lm
    attributes = conditions(models("melody"), "melody")
    calls: dict[str, list[tuple[int, int]]] = {"stock": [], "fast": []}
    apply_seed(0)
    stock = lm.generate(None, attributes, max_gen_len=20, callback=lambda *a: calls["stock"].append(a), **TOP_K)
    apply_seed(0)
    out = fast_generate(lm, None, attributes, max_gen_len=20, callback=lambda *a: calls["fast"].append(a), **TOP_K)
    assert calls["fast"] == calls["stock"] == [(i, 23) for i in range(1, 24)]
    assert torch.equal(out, stock)
    out[0, 0, 0] = 1  # an ordinary tensor, not an inference-mode one


def test_long_form_through_generate_tokens(tiny_weights: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Windows with a melody that advances: the engine's tokens are the same with either decoder."""
    from musicgen_remix.models.loading import load_release
    from musicgen_remix.weights.manifest import asset_path

    model = load_release(asset_path("musicgen-melody", tiny_weights), asset_path("encodec-32khz", tiny_weights), "cpu")
    model.max_duration = 4.0
    params = Sampling(top_k=250)
    out = {}
    for choice in ("stock", "fast"):
        monkeypatch.setenv(DECODER_ENV, choice)
        apply_seed(3)
        out[choice] = generate_tokens(model, description="calm piano", duration=6.0, sampling=params,
                                      progress=Progress(), melody=tune(2.0), extend_stride=2.5)
    assert out["fast"].shape == (1, 4, 300)
    assert torch.equal(out["stock"], out["fast"])


def test_decoder_switch(models, monkeypatch: pytest.MonkeyPatch) -> None:
    lm = models("text").lm
    monkeypatch.delenv(DECODER_ENV, raising=False)
    chosen = decoder(lm)
    assert getattr(chosen, "func", None) is fast_generate and chosen.args == (lm,)  # type: ignore[attr-defined]
    monkeypatch.setenv(DECODER_ENV, "stock")
    assert decoder(lm) == lm.generate
    monkeypatch.setenv(DECODER_ENV, "FAST")
    assert getattr(decoder(lm), "func", None) is fast_generate
    monkeypatch.setenv(DECODER_ENV, "turbo")
    with pytest.raises(ValueError, match=DECODER_ENV):
        decoder(lm)


def test_unsupported_call_falls_back_and_logs_once(models, monkeypatch: pytest.MonkeyPatch,
                                                   caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.setattr(fastlm, "_logged", weakref.WeakKeyDictionary())
    model = models("text")
    attributes = conditions(model, "text")
    with caplog.at_level(logging.INFO, logger=fastlm.__name__):
        for _ in range(2):
            stock, fast = both(model.lm, None, attributes, two_step_cfg=True, **TOP_K)
            assert torch.equal(stock, fast)
    lines = [r.getMessage() for r in caplog.records if r.name == fastlm.__name__]
    assert lines == ["fast decoder not used, stock LMModel.generate instead: two_step_cfg=True"]


def test_unsupported_models_are_named(models) -> None:
    lm = copy.deepcopy(models("text").lm)
    lm.transformer.positional_embedding = "sin_rope"
    assert "positional embedding 'sin_rope'" in (supports(lm) or "")
    lm.transformer.positional_embedding = "sin"
    lm.transformer.layers[1].self_attn.past_context = 100
    assert (supports(lm) or "").startswith("layer 1: ")
    lm.transformer.layers[1].self_attn.past_context = None
    lm.fuser.fuse2cond["sum"] = ["description"]
    assert "'sum'" in (supports(lm) or "")
    lm.fuser.fuse2cond["sum"] = []
    assert supports(lm) is None
    lm.train()
    assert supports(lm) == "the model is in training mode"
    assert supports(torch.nn.Linear(2, 2)) is not None


@pytest.mark.parametrize("kind", ["text", "melody"])
def test_graph_step_matches_eager_on_cpu(models, monkeypatch: pytest.MonkeyPatch, kind: str) -> None:
    """The CUDA-graph runner's fixed-shape step (masked cache buckets, padded cross-attention), run
    eagerly on CPU in place of graph replay: the same probabilities up to rounding, the same tokens."""
    from musicgen_remix.engine import fastlm_cuda, fastlm_decode

    class EagerGraph:
        def __init__(self, runner: Any, end: int) -> None:
            self.runner, self.end = runner, end
            self.out = runner._forward(end)

        def replay(self) -> None:
            self.out.copy_(self.runner._forward(self.end))

    def capture(runner: Any, end: int) -> tuple[EagerGraph, torch.Tensor]:
        graph = EagerGraph(runner, end)
        return graph, graph.out

    def graphs(lm: Any, pack: Any, x: torch.Tensor, length: int, cross: Any) -> Any:
        return fastlm_cuda.acquire(lm, pack, batch=x.shape[0], length=length, cross=cross, dtype=x.dtype)

    monkeypatch.setattr(fastlm_cuda, "_runners", weakref.WeakKeyDictionary())
    monkeypatch.setattr(fastlm_cuda, "BUCKET", 16)  # several buckets within a short generation
    monkeypatch.setattr(fastlm_cuda.GraphRunner, "_capture", capture)
    monkeypatch.setattr(fastlm_decode, "_graphs", graphs)
    seen = spy_probabilities(monkeypatch)
    model = models(kind)
    stock_probs: list[torch.Tensor] = []
    for description in ("calm piano", "an upbeat electronic dance track with synths, bass guitar and drums"):
        attributes = conditions(model, kind)
        attributes[0].text["description"] = description
        seen.clear()
        stock, fast = both(model.lm, None, attributes, **TOP_K)
        stock_probs, fast_probs = seen[: len(seen) // 2], seen[len(seen) // 2:]
        assert torch.equal(stock, fast)
        assert max((a - b).abs().max().item() for a, b in zip(stock_probs, fast_probs, strict=True)) < 1e-5
    runner = fastlm_cuda._runners[model.lm]
    assert len(runner.graphs) >= 4
    # A second generation while one holds the runner gets no graphs (it runs eagerly).
    same = {"batch": 2, "length": 8, "cross": runner.cross, "dtype": runner.dtype}
    with torch.inference_mode(), fastlm_cuda.acquire(model.lm, runner.pack, **same) as held, \
            fastlm_cuda.acquire(model.lm, runner.pack, **same) as other:
        assert held is runner and other is None


def test_warm_up_is_a_no_op_on_cpu(models) -> None:
    from musicgen_remix.engine import fastlm_cuda

    fastlm.warm_up(models("text").lm, "cpu")
    assert models("text").lm not in fastlm_cuda._runners
