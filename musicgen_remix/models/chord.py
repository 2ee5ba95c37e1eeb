"""MusicGen-Chord (sakemin's fine-tunes of MusicGen-Melody) on audiocraft 1.3.0: conditioner, loader, conditions.

sakemin's checkpoints are single torch files ``{'xp.cfg': <pickled OmegaConf training config>, 'model':
<LM state dict>}`` (the fine-tuner's format) whose config names a ``self_wav`` conditioner of model
``chroma_chord``, which audiocraft does not have. In his fork (``audiocraft/modules/conditioners.py``,
class ``ChromaChordConditioner``, a ``ChromaStemConditioner`` subclass) that conditioner replaces the
melody's STFT chroma extractor with a BTC chord recogniser (``chord_chroma.py``, ``ChordExtractor``) and
feeds the LM a *multi-hot* chord chroma ``[B, frames, 12]``, projected by the same
``output_proj = Linear(12, dim)`` as the melody model and prepended to the text. Nothing is argmaxed or
normalised (the ``argmax`` key of the config is ignored by his conditioner). His predictors set a
``chroma_coefficient`` that only his text-chord path read (the remixer's audio path never did); here it
multiplies every chord chroma, as the remix schema promises. Null conditions (classifier-free guidance) have
length 0 and are masked to zero embeddings.

What this module provides:

- :class:`ChordChromaConditioner`, a ``ChromaStemConditioner`` that takes the chord chroma directly
  (the project recognises chords itself), so neither demucs nor BTC ever runs, with a state dict
  identical to sakemin's: ``output_proj.weight/bias`` plus, under ``chroma.model.``, the BTC
  recogniser's weights that his checkpoints carry (his ``ChordExtractor`` registered BTC as a
  submodule, and his loader loads strictly). Those weights are loaded and kept, never used.
- :func:`map_chord_config` and :func:`load_chord_model`. Building route, chosen as the least invasive:
  the ``self_wav`` entry is removed from a copy of the config, audiocraft's own
  ``builders.get_lm_model`` builds everything else (transformer, T5, fuser, CFG, stereo pattern), and
  the one conditioner audiocraft lacks is put in its place. Swapping ``chroma_chord`` for
  ``chroma_stem`` would load demucs for nothing and create an extractor whose window buffer is not in
  the checkpoint; building the LM with a custom provider would duplicate ``get_lm_model``.
- :func:`chord_condition`, :func:`chord_attributes` and :func:`chroma_window`: how a chord chroma
  reaches the LM. audiocraft's ``ConditioningProvider`` mono-mixes and flattens every wav condition, so
  the chroma travels in a ``WavCondition`` as ``[1, 1, frames * 12]`` (frame-major) with
  ``sample_rate = [CHROMA_SAMPLE_RATE]`` marking it as chroma, not audio. audiocraft's CFG nullifying
  and batching work on it unchanged.

Chroma frame rate: one frame per ``2 ** radix2_exp / 4`` samples of the melody STFT, i.e. 235 frames
per 30 s window at 32 kHz with ``radix2_exp: 14`` (``chroma_len``). sakemin's training chroma placed
chords at ``duration / chroma_len`` seconds per frame (235 / 30 = 7.83 frames/s,
:attr:`ChordSpec.frame_rate`); his text-chord path used ``sample_rate / hop`` (7.8125 frames/s), a 0.3 %
difference. Each generation window is conditioned on exactly ``chroma_len`` frames starting at the
window's offset (:func:`chroma_window`), as audiocraft advances a melody with its windows.

Importing this module imports audiocraft (the conditioner subclasses audiocraft's).
"""

from __future__ import annotations

import copy
import logging
import math
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import torch
from audiocraft.modules.conditioners import (
    ChromaStemConditioner,
    ConditioningAttributes,
    WavCondition,
    WaveformConditioner,
)
from torch import nn

from musicgen_remix.errors import WeightsError, contract_error
from musicgen_remix.models.loading import (
    assemble_musicgen,
    load_encodec,
    load_exact_state,
    prepare_lm_config,
    read_finetune_package,
)

if TYPE_CHECKING:
    from audiocraft.models import MusicGen
    from audiocraft.models.lm import LMModel
    from omegaconf import DictConfig

logger = logging.getLogger(__name__)

CONDITIONER = "self_wav"
CHORD_MODEL = "chroma_chord"
N_CHROMA = 12
CHROMA_SAMPLE_RATE = 0
"""``WavCondition.sample_rate`` of a chord chroma condition: 0 Hz, i.e. not a waveform."""
RECOGNIZER_PREFIX = f"condition_provider.conditioners.{CONDITIONER}.chroma."
"""State-dict prefix of the BTC chord-recogniser weights that sakemin's checkpoints carry."""

# BTC large-vocabulary model as sakemin's fork configures it (audiocraft/modules/btc/run_config.yaml):
# 144 CQT bins in, 8 bidirectional self-attention layers of width 128, 170 chord classes out.
BTC_FEATURES, BTC_HIDDEN, BTC_LAYERS, BTC_CHORDS, BTC_KERNEL = 144, 128, 8, 170, 3


@dataclass(frozen=True)
class ChordSpec:
    """The chord conditioner's settings, read from the ``chroma_chord`` entry of a training config."""

    sample_rate: int
    n_chroma: int
    radix2_exp: int
    duration: float  # the training window (``dataset.segment_duration``), seconds
    match_len_on_eval: bool  # as trained; loaders switch it on for inference, as audiocraft does for melody

    @property
    def hop(self) -> int:
        """Samples per chroma frame (the melody STFT hop, a quarter of its window)."""
        return 2 ** self.radix2_exp // 4

    @property
    def frames(self) -> int:
        """Chroma frames per window (``chroma_len``): centred STFT frames over ``duration``."""
        return 1 + int(self.sample_rate * self.duration) // self.hop

    @property
    def frame_rate(self) -> float:
        """Chroma frames per second, as the training chroma was laid out (``frames / duration``)."""
        return self.frames / self.duration


# --- sakemin's conditioner, fed chroma --------------------------------------------------------------


class ChordChromaConditioner(ChromaStemConditioner):
    """sakemin's ``chroma_chord`` conditioner taking chord chroma instead of audio.

    Input: a ``WavCondition`` made by :func:`chord_condition` (or a null one, length 0). Output:
    ``output_proj(chroma)`` ``[B, T, dim]`` and its mask ``[B, T]``; with ``match_len_on_eval`` (set at
    load, as audiocraft does for melody) every real chroma is cycled or cut to ``spec.frames`` frames.
    Null conditions give zero embeddings with a zero mask, as in sakemin's forward.

    Args:
        output_dim: the LM's model dimension.
        spec: settings from the training config.
        device: torch device.
        recognizer_weights: also hold the BTC recogniser's parameters (under ``chroma.model.``) so a
            checkpoint that carries them loads strictly.
    """

    def __init__(self, output_dim: int, spec: ChordSpec, device: str | torch.device = "cpu", *,
                 recognizer_weights: bool = True) -> None:
        # ChromaStemConditioner.__init__ would load demucs and build an STFT chroma extractor; the chord
        # path needs neither, and sakemin's conditioner replaced that extractor (its buffer is not in
        # the checkpoint). Initialise as the waveform conditioner it is, then set what the parent reads.
        WaveformConditioner.__init__(self, dim=spec.n_chroma, output_dim=output_dim, device=device)
        self.spec = spec
        self.sample_rate = spec.sample_rate
        self.duration = spec.duration
        self.match_len_on_eval = spec.match_len_on_eval
        self.chroma_len = spec.frames
        self.eval_wavs = None
        self.cache = None
        if recognizer_weights:
            self.chroma = _RecognizerWeights()  # type: ignore[assignment]  # sakemin's attribute name

    def _downsampling_factor(self) -> int:
        return self.spec.hop

    def tokenize(self, x: WavCondition) -> WavCondition:
        wav, length, sample_rate, path, seek_time = x
        for row, (n, rate) in enumerate(zip(length.tolist(), sample_rate, strict=False)):
            if n > 0 and (rate != CHROMA_SAMPLE_RATE or n % self.dim):
                raise ValueError(f"the chord conditioner takes chord chroma made by chord_condition(), not audio "
                                 f"(batch row {row}: sample_rate={rate}, length={n})")
        return WavCondition(wav.to(self.device), length.to(self.device), sample_rate, path, seek_time)

    def _frames(self, x: WavCondition) -> list[int]:
        return [int(n) // self.dim for n in x.length.tolist()]

    @torch.no_grad()
    def _get_wav_embedding(self, x: WavCondition) -> torch.Tensor:
        """The chord chroma ``[B, T, n_chroma]`` carried by ``x`` (zeros for null rows)."""
        frames = self._frames(x)
        flat = x.wav.reshape(x.wav.shape[0], -1)
        length = self.spec.frames if self.match_len_on_eval else max(1, *frames)
        out = flat.new_zeros(len(frames), length, self.dim)
        for row, n in enumerate(frames):
            if n == 0:
                continue
            chroma = flat[row, : n * self.dim].reshape(n, self.dim)
            if self.match_len_on_eval:  # periodic completion, as audiocraft does for melody chroma
                chroma = chroma.repeat(math.ceil(length / n), 1)[:length]
            out[row, : chroma.shape[0]] = chroma
        return out

    def forward(self, x: WavCondition) -> tuple[torch.Tensor, torch.Tensor]:
        chroma = self._get_wav_embedding(x)
        embeds = self.output_proj(chroma.to(self.output_proj.weight))
        frames = self._frames(x)
        valid = torch.tensor([chroma.shape[1] if n and self.match_len_on_eval else n for n in frames],
                             device=embeds.device)
        mask = (torch.arange(chroma.shape[1], device=embeds.device)[None, :] < valid[:, None]).int()
        return embeds * mask.unsqueeze(-1), mask


class _RecognizerWeights(nn.Module):
    """Holds sakemin's ``ChordExtractor`` parameters (only its BTC ``model``) so the state dict matches.

    Parameter names and shapes follow BTC (Park et al., ISMIR 2019) as configured in his fork; the
    network is never run here, so no forward is defined.
    """

    def __init__(self) -> None:
        super().__init__()
        self.model = nn.Module()
        encoder = nn.Module()
        encoder.embedding_proj = nn.Linear(BTC_FEATURES, BTC_HIDDEN, bias=False)
        encoder.self_attn_layers = nn.Sequential(*[_btc_layer() for _ in range(BTC_LAYERS)])
        encoder.layer_norm = _btc_norm()
        output = nn.Module()
        output.output_projection = nn.Linear(BTC_HIDDEN, BTC_CHORDS)
        output.lstm = nn.LSTM(BTC_HIDDEN, BTC_HIDDEN // 2, batch_first=True, bidirectional=True)
        self.model.self_attn_layers = encoder
        self.model.output_layer = output


def _btc_norm() -> nn.Module:
    norm = nn.Module()
    norm.gamma = nn.Parameter(torch.ones(BTC_HIDDEN))
    norm.beta = nn.Parameter(torch.zeros(BTC_HIDDEN))
    return norm


def _btc_block() -> nn.Module:
    attention = nn.Module()
    for name in ("query_linear", "key_linear", "value_linear", "output_linear"):
        setattr(attention, name, nn.Linear(BTC_HIDDEN, BTC_HIDDEN, bias=False))
    convs = []
    for _ in range(2):
        unit = nn.Module()
        unit.conv = nn.Conv1d(BTC_HIDDEN, BTC_HIDDEN, BTC_KERNEL)
        convs.append(unit)
    feed_forward = nn.Module()
    feed_forward.layers = nn.ModuleList(convs)
    block = nn.Module()
    block.multi_head_attention = attention
    block.positionwise_convolution = feed_forward
    block.layer_norm_mha = _btc_norm()
    block.layer_norm_ffn = _btc_norm()
    return block


def _btc_layer() -> nn.Module:
    layer = nn.Module()
    layer.attn_block = _btc_block()
    layer.backward_attn_block = _btc_block()
    layer.linear = nn.Linear(2 * BTC_HIDDEN, BTC_HIDDEN)
    return layer


# --- config and loading -----------------------------------------------------------------------------


def map_chord_config(cfg: DictConfig) -> tuple[DictConfig, ChordSpec]:
    """Split a chord training config into what audiocraft builds and what this module builds.

    Returns:
        A copy of ``cfg`` without the ``self_wav`` conditioner (``builders.get_lm_model`` builds it;
        the fuser and attribute dropout still name ``self_wav``), and the chord conditioner's settings.

    Raises:
        WeightsError: ``self_wav`` is not a ``chroma_chord`` conditioner with 12 chroma bins.
    """
    from omegaconf import DictConfig, OmegaConf, open_dict

    node = OmegaConf.select(cfg, f"conditioners.{CONDITIONER}")
    model = node.get("model") if isinstance(node, DictConfig) else None
    if model != CHORD_MODEL:
        raise WeightsError(f"not a MusicGen-Chord config: conditioners.{CONDITIONER}.model={model!r} "
                           f"(expected {CHORD_MODEL!r})")
    args_node = node.get(CHORD_MODEL)
    if not isinstance(args_node, DictConfig):
        raise WeightsError(f"conditioners.{CONDITIONER}.{CHORD_MODEL} is not a mapping")
    try:
        args = cast(dict[str, Any], OmegaConf.to_container(args_node, resolve=True))
        spec = ChordSpec(sample_rate=int(args["sample_rate"]), n_chroma=int(args["n_chroma"]),
                         radix2_exp=int(args["radix2_exp"]), duration=float(cfg.dataset.segment_duration),
                         match_len_on_eval=bool(args.get("match_len_on_eval", False)))
    except (KeyError, AttributeError, TypeError, ValueError) as exc:  # omegaconf's errors derive from these
        raise WeightsError(f"conditioners.{CONDITIONER}.{CHORD_MODEL} is incomplete: {exc!r}") from None
    if spec.n_chroma != N_CHROMA:
        raise WeightsError(f"conditioners.{CONDITIONER}.{CHORD_MODEL}.n_chroma={spec.n_chroma} (expected {N_CHROMA})")
    if spec.sample_rate <= 0 or not 4 <= spec.radix2_exp <= 20 or spec.duration <= 0:
        raise WeightsError(f"conditioners.{CONDITIONER}.{CHORD_MODEL} has unusable settings: {args}")
    built = copy.deepcopy(cfg)
    with open_dict(built):
        del built.conditioners[CONDITIONER]
    return built, spec


def build_chord_lm(cfg: DictConfig, *, recognizer_weights: bool = True) -> LMModel:
    """A MusicGen-Chord LM (random weights) from its training config, ``cfg.device`` already set.

    Raises:
        WeightsError: the config is not a chord config or does not build.
    """
    from audiocraft.models import builders

    built_cfg, spec = map_chord_config(cfg)
    try:
        lm = builders.get_lm_model(built_cfg)
    except Exception as exc:  # the config is user data: any failure to build is a format error
        raise WeightsError(f"the chord model's config does not build a MusicGen LM: {exc}") from None
    conditioner = ChordChromaConditioner(int(built_cfg.transformer_lm.dim), spec, device=cfg.device,
                                         recognizer_weights=recognizer_weights).to(cfg.device)
    provider = lm.condition_provider
    others = dict(provider.conditioners.items())
    # In the config's order, as sakemin's builder registered them (so state dicts list keys alike).
    order = [name for name in cfg.conditioners if name != "args"]
    provider.conditioners = nn.ModuleDict(
        {name: conditioner if name == CONDITIONER else others[name] for name in order})
    return lm


def load_chord_model(path: Path, encodec_dir: Path, device: str) -> MusicGen:
    """One of sakemin's MusicGen-Chord checkpoints as an audiocraft ``MusicGen``.

    Loaded with the safe allow-list only and checked like any fine-tune (format, architecture, exact
    state-dict keys and shapes). Checkpoints with and without the BTC recogniser's weights are both
    accepted (sakemin's training code saves them; they are kept but unused); each must match its own
    layout exactly. The compression model is the local 32 kHz EnCodec.

    Raises:
        WeightsError: unsafe, unreadable or not a chord checkpoint, or keys/shapes that do not match.
    """
    from audiocraft.models.loaders import _delete_param

    cfg, state = read_finetune_package(path, conditioning=CHORD_MODEL)
    prepare_lm_config(cfg, device)
    _delete_param(cfg, f"conditioners.{CONDITIONER}.{CHORD_MODEL}.cache_path")
    recognizer = any(key.startswith(RECOGNIZER_PREFIX) for key in state)
    try:
        lm = build_chord_lm(cfg, recognizer_weights=recognizer)
    except WeightsError as exc:
        raise WeightsError(f"{path.name}: {exc}") from None
    load_exact_state(lm, state, path.name)
    lm.eval()
    lm.cfg = cfg  # as audiocraft's loaders do; MusicGen reads it (window length, stereo interleaving)
    logger.info("loaded chord model %s (%s, BTC recogniser weights %s)", path.name,
                "stereo" if cfg.get("channels") == 2 else "mono", "kept" if recognizer else "absent")
    return assemble_musicgen(path.stem, load_encodec(encodec_dir, device), lm)


def chord_conditioner(model: MusicGen) -> ChordChromaConditioner:
    """The chord conditioner of a loaded chord model (its ``spec`` gives frame rate and window frames).

    Raises:
        WeightsError: the model is not a MusicGen-Chord model.
    """
    conditioner = dict(model.lm.condition_provider.conditioners.items()).get(CONDITIONER)
    if not isinstance(conditioner, ChordChromaConditioner):
        raise WeightsError(f"model {model.name} is not a MusicGen-Chord model")
    return conditioner


# --- chord conditions ---------------------------------------------------------------------------------


def chroma_window(chroma: torch.Tensor, offset_s: float, spec: ChordSpec) -> torch.Tensor:
    """The chroma that conditions a generation window starting ``offset_s`` seconds into the output.

    Args:
        chroma: the whole song's chord chroma ``[frames, 12]`` at ``spec.frame_rate``.
        offset_s: the window's start in the output, seconds (audiocraft's ``time_offset``).
        spec: the chord conditioner's settings.

    Returns:
        ``[spec.frames, 12]`` starting at frame ``round(offset_s * spec.frame_rate)``, cycling past the
        end of ``chroma`` as audiocraft cycles a melody shorter than the output.
    """
    _check_chroma(chroma)
    if not math.isfinite(offset_s) or offset_s < 0:
        raise contract_error("offset_s", offset_s, "a finite number of seconds >= 0")
    start = round(offset_s * spec.frame_rate)
    positions = torch.arange(start, start + spec.frames, device=chroma.device) % chroma.shape[0]
    return chroma[positions]


def chord_condition(chroma: torch.Tensor, coefficient: float = 1.0) -> WavCondition:
    """The ``self_wav`` condition for a chord chroma ``[frames, 12]`` (multi-hot, or any weights).

    ``coefficient`` multiplies the chroma (the Replicate models' ``chroma_coefficient``). The result
    is flattened to ``[1, 1, frames * 12]`` because audiocraft's provider flattens wav conditions.
    """
    _check_chroma(chroma)
    if not math.isfinite(coefficient) or coefficient <= 0:
        raise contract_error("chroma_coefficient", coefficient, "a finite number > 0")
    flat = (chroma.float() * coefficient).reshape(1, 1, -1)
    return WavCondition(flat, torch.tensor([flat.shape[-1]], device=chroma.device), [CHROMA_SAMPLE_RATE],
                        [None], [0.0])


def chord_attributes(description: str | None, chroma: torch.Tensor, coefficient: float = 1.0) -> ConditioningAttributes:
    """Conditions of one generation window: the text and the window's chord chroma ``[frames, 12]``.

    Pass the result (one per batch item) to ``model.lm.generate(prompt, [attributes], ...)``; for long
    outputs build one per window from :func:`chroma_window`.
    """
    return ConditioningAttributes(text={"description": description},
                                  wav={CONDITIONER: chord_condition(chroma, coefficient)})


def _check_chroma(chroma: Any) -> None:
    if not isinstance(chroma, torch.Tensor) or chroma.dim() != 2 or chroma.shape[-1] != N_CHROMA \
            or chroma.shape[0] == 0:
        shape = tuple(chroma.shape) if isinstance(chroma, torch.Tensor) else type(chroma).__name__
        raise contract_error("chroma", shape, f"a tensor [frames >= 1, {N_CHROMA}]")
    if not bool(torch.isfinite(chroma).all()):
        raise contract_error("chroma", "non-finite values", "finite chroma values")
