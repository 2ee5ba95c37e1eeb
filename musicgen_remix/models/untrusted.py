"""Training configs that came inside a checkpoint: made inert, then checked before anything is built.

A fine-tune's ``xp.cfg`` is data its uploader chose (``replicate_weights`` is any URL a caller names).
OmegaConf resolves interpolations whenever a value is read: ``${oc.env:AWS_SECRET_ACCESS_KEY}`` would
read the worker's environment, ``${now:...}`` or any registered resolver would run. And the config
decides the size of the model built from it: a 12 KB file declaring a 2048-wide, 48-layer LM would make
the worker allocate gigabytes before a single tensor is compared.

So, before any builder sees a caller's config:

1. :func:`inert_config` takes the raw tree without resolving anything, drops the launcher nodes
   (:data:`LAUNCHER_KEYS`: ``hydra``, ``dora``, ``slurm``; no model builder reads them), refuses any resolver
   interpolation left anywhere (naming its key, never its text), resolves the node interpolations
   (``${sample_rate}``), which only copy values within the config, and rebuilds the config from plain
   values, so nothing downstream can resolve anything.
2. :func:`check_lm_config` accepts only the architectures that exist: the MusicGen release families
   (:data:`LM_FAMILIES`), their codebooks and delay pattern, the T5 / chroma conditioners they use with
   the released chroma settings, a training segment of at most 30 s, and no settings that make the
   builder read server paths (``eval_wavs``). Every setting a builder sizes a buffer from is pinned: the
   transformer by its family, the chroma extractor's window by ``radix2_exp``, the conditioner's
   length buffer by ``dataset.segment_duration``, the token pattern by its delays.
3. :func:`check_lm_state` compares the state dict's transformer tensors with the declared architecture
   built on the ``meta`` device (no memory), so a model is only built when the file holds its weights.

Errors name keys and expected values, never text read from the file.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any, cast

from musicgen_remix.errors import WeightsError

SAMPLE_RATE = 32000
KNOWN_ENCODECS = frozenset({"//pretrained/facebook/encodec_32khz", "facebook/encodec_32khz"})
# Launcher settings a dora/Hydra training config carries that no model builder reads: Hydra's run
# directories (``${now:...}``), dora's output folder (``${oc.env:USER}`` in audiocraft's stock config.yaml)
# and the SLURM options. Dropped before the config is checked.
LAUNCHER_KEYS = ("hydra", "dora", "slurm")


@dataclass(frozen=True)
class LmFamily:
    """One transformer size MusicGen was released at (audiocraft's ``model/lm/model_scale/*.yaml``)."""

    name: str
    dim: int
    num_heads: int
    num_layers: int
    card: int = 2048


LM_FAMILIES = (
    LmFamily("small", 1024, 16, 24),
    LmFamily("medium", 1536, 24, 48),  # melody, stereo-melody, sakemin's chord models
    LmFamily("large", 2048, 32, 48),
    # The project's own test scale (tests and the offline quick start): 0.16 M parameters.
    LmFamily("tiny", 32, 2, 2, card=256),
)
# The chroma conditioners' settings as every release and sakemin's chord models have them (audiocraft's
# config/conditioner/chroma2music.yaml, sakemin's chord2music.yaml). ``radix2_exp`` sizes the STFT window
# (2**14); ``nfft``/``winlen``/``winhop`` would override it; ``eval_wavs`` names a dataset path on the server.
CHROMA_SETTINGS = {"sample_rate": SAMPLE_RATE, "n_chroma": 12, "radix2_exp": 14}
CHROMA_ABSENT = ("nfft", "winlen", "winhop", "eval_wavs")
# ``dataset.segment_duration``: the generation window and the chroma conditioner's length buffer
# (``sample_rate * duration`` samples at build time). Releases train on 30 s; fine-tunes on at most that.
MAX_SEGMENT_S = 30.0
RELEASE_DELAYS = {1: [0, 1, 2, 3], 2: [0, 0, 1, 1, 2, 2, 3, 3]}
CONDITIONER_MODELS = {"description": frozenset({"t5"}), "self_wav": frozenset({"chroma_stem", "chroma_chord"})}
T5_NAMES = frozenset({"t5-base"})


def inert_config(raw: Any, source: str) -> Any:
    """A plain ``DictConfig`` copy of a checkpoint's config: no resolver calls, no interpolations left.

    Args:
        raw: the ``xp.cfg`` as unpickled (a ``DictConfig``, a dict, or YAML text).
        source: how errors name the file.

    Raises:
        WeightsError: not a mapping, a resolver interpolation anywhere, or a node interpolation that
            does not resolve within the config.
    """
    from omegaconf import DictConfig, OmegaConf
    from omegaconf.errors import OmegaConfBaseException

    try:
        cfg = OmegaConf.create(raw) if not isinstance(raw, DictConfig) else raw
        tree = OmegaConf.to_container(cfg, resolve=False)
    except (OmegaConfBaseException, ValueError, TypeError) as exc:
        raise WeightsError(f"{source}: 'xp.cfg' is not a readable config ({type(exc).__name__})") from None
    if not isinstance(tree, dict):
        raise WeightsError(f"{source}: 'xp.cfg' is not a mapping")
    for key in LAUNCHER_KEYS:
        tree.pop(key, None)
    for key, text in _strings(tree):
        if _calls_resolver(text):
            raise WeightsError(f"{source}: config key {key} calls an OmegaConf resolver (${{name:...}}); a "
                               "checkpoint's config may only refer to its own keys")
    try:
        plain = OmegaConf.to_container(OmegaConf.create(tree), resolve=True)
    except (OmegaConfBaseException, ValueError, TypeError) as exc:
        raise WeightsError(f"{source}: its config has an interpolation that does not resolve within it "
                           f"({type(exc).__name__})") from None
    return OmegaConf.create(plain)


def _strings(node: Any, path: str = "") -> Iterator[tuple[str, str]]:
    if isinstance(node, Mapping):
        for key, value in node.items():
            yield from _strings(value, f"{path}.{key}" if path else str(key))
    elif isinstance(node, list):
        for index, value in enumerate(node):
            yield from _strings(value, f"{path}[{index}]")
    elif isinstance(node, str) and "${" in node:
        yield path, node


def _calls_resolver(text: str) -> bool:
    """True when ``text`` holds a resolver interpolation (or cannot be parsed, so cannot be shown not to)."""
    from omegaconf import grammar_parser
    from omegaconf.errors import GrammarParseError
    from omegaconf.grammar.gen.OmegaConfGrammarParser import OmegaConfGrammarParser

    try:
        tree = grammar_parser.parse(text)
    except GrammarParseError:
        return True
    stack = [tree]
    while stack:
        node = stack.pop()
        if isinstance(node, OmegaConfGrammarParser.InterpolationResolverContext):
            return True
        stack.extend(node.getChild(i) for i in range(node.getChildCount()))
    return False


def check_lm_config(cfg: Any, source: str, *, conditioning: str = "chroma_stem") -> LmFamily:
    """Check an inert LM training config against the architectures that exist; returns its family.

    Args:
        conditioning: the ``self_wav`` conditioner a model of this kind may have (``chroma_stem`` for
            melody fine-tunes, ``chroma_chord`` for MusicGen-Chord); text-only models have none.

    Raises:
        WeightsError: listing every problem found, by key.
    """
    problems: list[str] = []
    if cfg.get("lm_model") != "transformer_lm":
        problems.append("lm_model is not 'transformer_lm'")
    if cfg.get("sample_rate") != SAMPLE_RATE:
        problems.append(f"sample_rate is not {SAMPLE_RATE}")
    channels = cfg.get("channels", 1)
    if channels not in (1, 2):
        problems.append("channels is not 1 or 2")
    if cfg.get("compression_model_checkpoint") not in KNOWN_ENCODECS:
        problems.append(f"compression_model_checkpoint is not one of {sorted(KNOWN_ENCODECS)}")
    lm = cfg.get("transformer_lm")
    family = None
    if not isinstance(lm, Mapping):
        problems.append("transformer_lm is missing")
    else:
        n_q = lm.get("n_q")
        if n_q != (8 if channels == 2 else 4):
            problems.append(f"transformer_lm.n_q is not {8 if channels == 2 else 4} for {channels} channel(s)")
        shape = (lm.get("dim"), lm.get("num_heads"), lm.get("num_layers"))
        family = next((f for f in LM_FAMILIES if (f.dim, f.num_heads, f.num_layers) == shape), None)
        if family is None:
            problems.append("transformer_lm (dim, num_heads, num_layers) is none of the released sizes "
                            + ", ".join(f"{f.name} {(f.dim, f.num_heads, f.num_layers)}" for f in LM_FAMILIES))
        elif lm.get("card") != family.card:
            problems.append(f"transformer_lm.card is not {family.card}")
        if lm.get("hidden_scale", 4) != 4:
            problems.append("transformer_lm.hidden_scale is not 4")
    problems += _conditioner_problems(cfg.get("conditioners"), conditioning)
    problems += _sizing_problems(cfg, channels)
    if problems:
        raise WeightsError(f"{source} is not a supported MusicGen checkpoint: " + "; ".join(problems))
    return cast(LmFamily, family)


def _conditioner_problems(conditioners: Any, conditioning: str) -> list[str]:
    if not isinstance(conditioners, Mapping) or "description" not in conditioners:
        return ["conditioners.description (the T5 text conditioner) is missing"]
    problems = []
    for name, node in conditioners.items():
        if name == "args":
            continue
        model = node.get("model") if isinstance(node, Mapping) else None
        allowed = CONDITIONER_MODELS.get(str(name), frozenset())
        if name == "self_wav":
            allowed = allowed & {conditioning}
        if model not in allowed:
            problems.append(f"conditioners.{name} is not one of {sorted(allowed) or 'nothing'}")
        elif model == "t5" and (node.get("t5") or {}).get("name") not in T5_NAMES:
            problems.append(f"conditioners.{name}.t5.name is not one of {sorted(T5_NAMES)}")
    return problems


def _sizing_problems(cfg: Any, channels: Any) -> list[str]:
    """Settings outside the transformer that the builders size memory from, or that read server files."""
    problems = []
    segment = (cfg.get("dataset") or {}).get("segment_duration")
    if isinstance(segment, bool) or not isinstance(segment, int | float) or not 0 < segment <= MAX_SEGMENT_S:
        problems.append(f"dataset.segment_duration is not a duration in (0, {MAX_SEGMENT_S:g}] s")
    pattern = cfg.get("codebooks_pattern") or {}
    delay = pattern.get("delay") if isinstance(pattern, Mapping) else None
    expected = RELEASE_DELAYS.get(channels if channels in (1, 2) else 1)
    if not isinstance(delay, Mapping) or pattern.get("modeling") != "delay" or list(delay.get("delays") or []) \
            != expected or delay.get("flatten_first", 0) != 0 or delay.get("empty_initial", 0) != 0:
        problems.append(f"codebooks_pattern is not the released delay pattern {expected}")
    self_wav = (cfg.get("conditioners") or {}).get("self_wav")
    if isinstance(self_wav, Mapping):
        settings = self_wav.get(str(self_wav.get("model")))
        if not isinstance(settings, Mapping):
            problems.append("conditioners.self_wav has no settings for its model")
        else:
            problems += [f"conditioners.self_wav.{key} is not {value}" for key, value in CHROMA_SETTINGS.items()
                         if settings.get(key) != value]
            problems += [f"conditioners.self_wav.{key} is set (only the released defaults are accepted)"
                         for key in CHROMA_ABSENT if settings.get(key) is not None]
    return problems


def check_lm_state(cfg: Any, state: Mapping[str, Any], source: str) -> None:
    """The state dict holds every transformer tensor the config declares, with its shape.

    The declared LM is built without its conditioners on the ``meta`` device (shapes only, no memory);
    the conditioners' tensors are compared after the real build, which a passing file has paid for.

    Raises:
        WeightsError: missing, unexpected or differently shaped transformer tensors.
    """
    import torch
    from audiocraft.models import builders
    from omegaconf import open_dict

    skeleton_cfg = copy.deepcopy(cfg)
    with open_dict(skeleton_cfg):
        skeleton_cfg.device = "meta"
        skeleton_cfg.conditioners = {}  # the fuser still says whether the LM has cross-attention
        skeleton_cfg.attribute_dropout = {}
    try:
        with torch.device("meta"):
            skeleton = builders.get_lm_model(skeleton_cfg)
    except Exception as exc:  # the config is the uploader's data: any failure to build is a format error
        raise WeightsError(f"{source}: its config does not describe a MusicGen LM ({type(exc).__name__})") from None
    expected = {k: tuple(v.shape) for k, v in skeleton.state_dict().items()}
    given = {k: tuple(getattr(v, "shape", ())) for k, v in state.items() if not k.startswith("condition_provider.")}
    missing, unexpected = sorted(expected.keys() - given.keys()), sorted(given.keys() - expected.keys())
    reshaped = sorted(k for k in expected.keys() & given.keys() if expected[k] != given[k])
    if missing or unexpected or reshaped:
        raise WeightsError(f"{source}: its tensors do not match its config's architecture: {len(missing)} missing "
                           f"{missing[:3]}, {len(unexpected)} unexpected {unexpected[:3]}, {len(reshaped)} of "
                           f"another shape {[(k, given[k], expected[k]) for k in reshaped[:2]]}")
