"""Tests for musicgen_remix.engine: sampling checks, seeds, window planning, progress and cancellation,
and token generation compared token for token with audiocraft's own ``MusicGen.generate*``."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
import torch

from musicgen_remix.engine.sampling import CFG_MAX, TEMPERATURE_MAX, Sampling
from musicgen_remix.engine.seeding import SEED_MAX, apply_seed, resolve_seed
from musicgen_remix.engine.tokens import EXTEND_STRIDE_S, Window, generate_tokens, plan_windows
from musicgen_remix.errors import Canceled, InputError
from musicgen_remix.progress import Progress

SR = 32000
FRAME_RATE = 50
CARD = 256  # the tiny models' codebook size

GREEDY = Sampling(top_k=1, top_p=0.0, temperature=0.0, classifier_free_guidance=3)
SAMPLED = Sampling(top_k=250, top_p=0.0, temperature=1.0, classifier_free_guidance=3)
NUCLEUS = Sampling(top_k=0, top_p=0.9, temperature=0.8, classifier_free_guidance=5)


# ----------------------------------------------------------------------------------------------------
# Sampling.check


@pytest.mark.parametrize(
    ("sampling", "field"),
    [
        (Sampling(top_k=CARD + 1), "top_k"),
        (Sampling(top_k=1000), "top_k"),
        (Sampling(top_k=-1), "top_k"),
        (Sampling(top_p=-0.01), "top_p"),
        (Sampling(top_p=1.01), "top_p"),
        (Sampling(temperature=-0.1), "temperature"),
        (Sampling(temperature=TEMPERATURE_MAX + 0.1), "temperature"),
        (Sampling(classifier_free_guidance=-1), "classifier_free_guidance"),
        (Sampling(classifier_free_guidance=CFG_MAX + 1), "classifier_free_guidance"),
    ],
)
def test_sampling_check_rejects_out_of_range(sampling: Sampling, field: str) -> None:
    with pytest.raises(InputError) as info:
        sampling.check(CARD)
    assert info.value.field == field
    assert field in str(info.value)
    assert info.value.value == getattr(sampling, field)


@pytest.mark.parametrize(
    "sampling",
    [
        Sampling(),
        Sampling(top_k=0),
        Sampling(top_k=CARD),
        Sampling(top_p=1.0),
        Sampling(temperature=0.0),
        Sampling(temperature=TEMPERATURE_MAX),
        Sampling(classifier_free_guidance=0),
        Sampling(classifier_free_guidance=CFG_MAX),
    ],
)
def test_sampling_check_accepts_bounds(sampling: Sampling) -> None:
    sampling.check(CARD)


def test_top_k_bound_is_the_models_card() -> None:
    Sampling(top_k=2048).check(2048)
    with pytest.raises(InputError, match="256"):
        Sampling(top_k=2048).check(256)


def test_top_k_beyond_every_codebook_is_refused_before_any_model() -> None:
    """No model is needed to know that 5000 exceeds every released codebook (2048)."""
    Sampling(top_k=2048).check_ranges()
    with pytest.raises(InputError, match=r"top_k=5000 .*from 0 to 2048"):
        Sampling(top_k=5000).check_ranges()


def test_lm_kwargs_temperature_zero_is_greedy() -> None:
    assert GREEDY.lm_kwargs()["use_sampling"] is False
    kwargs = NUCLEUS.lm_kwargs()
    assert kwargs == {"use_sampling": True, "temp": 0.8, "top_k": 0, "top_p": 0.9, "cfg_coef": 5.0,
                      "two_step_cfg": False}


# ----------------------------------------------------------------------------------------------------
# seeds


def test_resolve_seed_none_and_minus_one_draw_random_seeds() -> None:
    for given in (None, -1):
        seeds = {resolve_seed(given) for _ in range(8)}
        assert len(seeds) > 1
        assert all(0 <= s <= SEED_MAX for s in seeds)


@pytest.mark.parametrize("seed", [0, 1, 42, SEED_MAX])
def test_resolve_seed_keeps_given_seed(seed: int) -> None:
    assert resolve_seed(seed) == seed


@pytest.mark.parametrize("seed", [-2, SEED_MAX + 1, True])
def test_resolve_seed_rejects_out_of_range(seed: int) -> None:
    with pytest.raises(InputError) as info:
        resolve_seed(seed)
    assert info.value.field == "seed"


def test_apply_seed_makes_draws_repeatable() -> None:
    apply_seed(0)
    first = torch.rand(4)
    apply_seed(0)
    assert torch.equal(first, torch.rand(4))
    apply_seed(1)
    assert not torch.equal(first, torch.rand(4))


# ----------------------------------------------------------------------------------------------------
# window planning


def audiocraft_windows(duration: float, prompt_s: float, max_duration: float = 30.0,
                       extend_stride: float = EXTEND_STRIDE_S) -> list[Window]:
    """audiocraft 1.3.0 ``MusicGen._generate_tokens``'s loop, in its own (seconds-based) terms."""
    total = int(duration * FRAME_RATE)
    prompt_length = int(prompt_s * FRAME_RATE)
    if duration <= max_duration:
        return [Window(prompt_length, total, 0)]
    stride_tokens = int(FRAME_RATE * extend_stride)
    offset, windows = 0, []
    while offset + prompt_length < total:
        time_offset = offset / FRAME_RATE
        chunk_duration = min(duration - time_offset, max_duration)
        max_gen_len = int(chunk_duration * FRAME_RATE)
        windows.append(Window(prompt_length, max_gen_len, offset))
        prompt_length = max_gen_len - stride_tokens  # prompt_tokens = gen_tokens[:, :, stride_tokens:]
        offset += stride_tokens
    return windows


def plan(duration: float, prompt_s: float = 0.0) -> list[Window]:
    return plan_windows(int(duration * FRAME_RATE), int(prompt_s * FRAME_RATE), 30 * FRAME_RATE,
                        int(EXTEND_STRIDE_S * FRAME_RATE))


@pytest.mark.parametrize("duration", [1, 8, 29, 30])
def test_no_windowing_up_to_the_window(duration: int) -> None:
    assert plan(duration) == [Window(0, duration * FRAME_RATE, 0)]
    assert plan(duration, prompt_s=2) == [Window(100, duration * FRAME_RATE, 0)]


def test_35_seconds_takes_two_windows() -> None:
    assert plan(35) == [Window(0, 1500, 0), Window(600, 850, 900)]
    assert plan(35) == audiocraft_windows(35, 0)


def test_35_seconds_with_prompt() -> None:
    assert plan(35, prompt_s=2) == [Window(100, 1500, 0), Window(600, 850, 900)]
    assert plan(35, prompt_s=2) == audiocraft_windows(35, 2)


@pytest.mark.parametrize("duration", [30.5, 31, 35, 47, 48, 49, 60, 66, 120, 300])
@pytest.mark.parametrize("prompt_s", [0.0, 1.0, 12.0, 29.0])
def test_windows_match_audiocraft(duration: float, prompt_s: float) -> None:
    windows = plan(duration, prompt_s)
    assert windows == audiocraft_windows(duration, prompt_s)
    # Every window fits the model, and together they produce exactly the requested frames.
    assert all(w.end_frames <= 1500 and w.prompt_frames < w.end_frames for w in windows)
    produced = int(prompt_s * FRAME_RATE) + sum(w.end_frames - w.prompt_frames for w in windows)
    assert produced == int(duration * FRAME_RATE)


# ----------------------------------------------------------------------------------------------------
# progress and cancellation


def test_progress_reports_and_cancels_at_next_step() -> None:
    seen: list[tuple[str, int, int]] = []
    progress = Progress(report=lambda *args: seen.append(args))
    progress.step("generate", 1, 10)
    progress.check()
    progress.cancel.set()
    with pytest.raises(Canceled, match="2/10"):
        progress.step("generate", 2, 10)
    with pytest.raises(Canceled):
        progress.check()
    assert seen == [("generate", 1, 10)]


def test_cancel_from_another_thread_stops_generation(generate_service) -> None:
    model = generate_service.default.model
    seen: list[int] = []
    progress = Progress()

    def report(stage: str, done: int, total: int) -> None:
        seen.append(done)
        if done == 5:
            worker = threading.Thread(target=progress.cancel.set)
            worker.start()
            worker.join()

    progress.report = report
    with pytest.raises(Canceled):
        generate_tokens(model, description="calm piano", duration=3.0, sampling=SAMPLED, progress=progress)
    assert seen == [1, 2, 3, 4, 5]


def test_progress_counts_steps_across_windows(generate_service) -> None:
    """35 s: two windows; the reported count runs on from the first window to one common total."""
    model = generate_service.default.model
    seen: list[tuple[int, int]] = []
    apply_seed(5)
    tokens = generate_tokens(model, description="calm piano", duration=35.0, sampling=GREEDY,
                             progress=Progress(report=lambda _stage, done, total: seen.append((done, total))))
    assert tokens.shape == (1, 4, 35 * FRAME_RATE)
    totals = {total for _, total in seen}
    assert len(totals) == 1
    done = [d for d, _ in seen]
    assert done == list(range(1, len(done) + 1))
    assert done[-1] == totals.pop()
    # First window: 1500 frames + 3 delay steps; second: 250 new frames + 3.
    assert done[-1] == (1500 + 3) + (850 - 600 + 3)


# ----------------------------------------------------------------------------------------------------
# generate_tokens == audiocraft's MusicGen.generate / generate_continuation / generate_with_chroma


def melody_wav(seconds: float = 3.0) -> torch.Tensor:
    """A [1, T] tune at 32 kHz: six different notes of 0.5 s each (so any time shift changes its chroma)."""
    freqs = [261.6, 329.6, 392.0, 493.9, 293.7, 370.0]
    t = torch.arange(SR // 2) / SR
    tune = torch.cat([0.3 * torch.sin(2 * torch.pi * f * t) for f in freqs])
    return tune.repeat(int(seconds / 3.0 + 1))[: int(seconds * SR)][None]


def prompt_wav(seconds: float = 2.0) -> torch.Tensor:
    t = torch.arange(int(seconds * SR)) / SR
    return (0.2 * torch.sin(2 * torch.pi * 220 * t) * (1 + torch.sin(2 * torch.pi * 3 * t)) / 2)[None]


@pytest.fixture(scope="module")
def audiocraft_model(tiny_weights: Path):
    """A second instance of the melody release, loaded by audiocraft itself (its generation settings
    are per-instance state, so the shared service model stays untouched)."""
    from audiocraft.models import MusicGen

    return MusicGen.get_pretrained(str(tiny_weights / "facebook" / "musicgen-melody"), device="cpu")


def audiocraft_tokens(model, kind: str, duration: float, sampling: Sampling, seed: int,
                      extend_stride: float = EXTEND_STRIDE_S) -> torch.Tensor:
    model.set_generation_params(use_sampling=sampling.temperature > 0, top_k=sampling.top_k, top_p=sampling.top_p,
                                temperature=sampling.temperature, duration=duration,
                                cfg_coef=float(sampling.classifier_free_guidance), extend_stride=extend_stride)
    apply_seed(seed)
    if kind == "text":
        _, tokens = model.generate(["calm piano"], return_tokens=True)
    elif kind == "melody":
        _, tokens = model.generate_with_chroma(["calm piano"], melody_wav()[None], SR, return_tokens=True)
    else:
        _, tokens = model.generate_continuation(prompt_wav()[None], SR, ["calm piano"], return_tokens=True)
    return tokens


def our_tokens(model, kind: str, duration: float, sampling: Sampling, seed: int,
               extend_stride: float = EXTEND_STRIDE_S) -> torch.Tensor:
    extra = {"melody": melody_wav()} if kind == "melody" else {"prompt": prompt_wav()} if kind == "cont" else {}
    apply_seed(seed)
    return generate_tokens(model, description="calm piano", duration=duration, sampling=sampling,
                           progress=Progress(), extend_stride=extend_stride, **extra)


@pytest.mark.parametrize("kind", ["text", "melody", "cont"])
@pytest.mark.parametrize("sampling", [GREEDY, SAMPLED], ids=["greedy", "sampled"])
def test_tokens_equal_audiocraft(generate_service, audiocraft_model, kind: str, sampling: Sampling) -> None:
    ours = our_tokens(generate_service.default.model, kind, 3.0, sampling, seed=11)
    theirs = audiocraft_tokens(audiocraft_model, kind, 3.0, sampling, seed=11)
    assert ours.shape == (1, 4, 3 * FRAME_RATE)
    assert torch.equal(ours, theirs)


def test_tokens_equal_audiocraft_nucleus(generate_service, audiocraft_model) -> None:
    ours = our_tokens(generate_service.default.model, "text", 3.0, NUCLEUS, seed=0)
    theirs = audiocraft_tokens(audiocraft_model, "text", 3.0, NUCLEUS, seed=0)
    assert torch.equal(ours, theirs)
    # The seed matters when sampling: another seed gives other tokens.
    assert not torch.equal(ours, our_tokens(generate_service.default.model, "text", 3.0, NUCLEUS, seed=1))


def test_generation_settings_are_not_left_on_the_model(generate_service) -> None:
    model = generate_service.default.model
    before = (dict(model.generation_params), model.duration)
    our_tokens(model, "text", 3.0, NUCLEUS, seed=0)
    assert (dict(model.generation_params), model.duration) == before


def test_long_form_35s_equals_audiocraft(generate_service, audiocraft_model) -> None:
    ours = our_tokens(generate_service.default.model, "text", 35.0, SAMPLED, seed=3)
    theirs = audiocraft_tokens(audiocraft_model, "text", 35.0, SAMPLED, seed=3)
    assert ours.shape == (1, 4, 35 * FRAME_RATE)
    assert torch.equal(ours, theirs)


@pytest.fixture()
def short_window_models(tiny_weights: Path):
    """Fresh instances (ours and audiocraft's) with a 4 s window, so that long-form generation with a
    melody (the chroma window advancing and wrapping) runs on demucs in seconds rather than minutes."""
    from audiocraft.models import MusicGen

    from musicgen_remix.models.loading import load_release

    repo = tiny_weights / "facebook" / "musicgen-melody"
    ours = load_release(repo, tiny_weights / "audiocraft" / "encodec-32khz", "cpu")
    theirs = MusicGen.get_pretrained(str(repo), device="cpu")
    ours.max_duration = theirs.max_duration = 4.0
    return ours, theirs


def test_long_form_melody_equals_audiocraft(short_window_models) -> None:
    ours_model, theirs_model = short_window_models
    # 6 s with a 4 s window and a 2.5 s stride: two windows, the second one's melody starts at 2.5 s.
    ours = our_tokens(ours_model, "melody", 6.0, SAMPLED, seed=3, extend_stride=2.5)
    theirs = audiocraft_tokens(theirs_model, "melody", 6.0, SAMPLED, seed=3, extend_stride=2.5)
    assert ours.shape == (1, 4, 6 * FRAME_RATE)
    assert torch.equal(ours, theirs)
