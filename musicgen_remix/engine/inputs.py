"""The inputs both entrypoints share (decoding, normalization, sampling, output, seed), declared once.

Each entrypoint's request dataclass extends :class:`SharedInputs`; the Cog inputs and the CLI flags read
their defaults from those dataclasses (:func:`input_defaults`). A request is what a caller sent (any
values); :meth:`SharedInputs.check_shared` turns the shared part into :class:`Shared`, the checked form the
pipelines take: typed, in range, the seed resolved (drawn once when the caller left it random).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, fields
from typing import Any, cast

from musicgen_remix.audio import OUTPUT_FORMATS, STRATEGIES, OutputFormat, Strategy
from musicgen_remix.engine.sampling import CFG_DEFAULT, TEMPERATURE_DEFAULT, TOP_K_DEFAULT, TOP_P_DEFAULT, Sampling
from musicgen_remix.engine.seeding import resolve_seed
from musicgen_remix.errors import InputError

PROMPT_MAX_CHARS = 2000
# C0 controls but tab and newline, DEL, C1 controls (U+0080-U+009F), and lone surrogates (not text: no
# encoder or tokenizer can take them).
_NOT_TEXT = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\ud800-\udfff]")


def check_text(field: str, value: str, max_chars: int) -> str:
    """``value`` if it is at most ``max_chars`` characters of text; else :class:`InputError` naming ``field``."""
    if not isinstance(value, str):
        raise InputError(field, value, "text")
    if len(value) > max_chars:
        raise InputError(field, value, f"at most {max_chars} characters (got {len(value)})")
    if _NOT_TEXT.search(value):
        raise InputError(field, value, "text without control characters or lone surrogates")
    return value


def clean_prompt(prompt: str | None) -> str | None:
    """The prompt with its whitespace collapsed; None when blank. Raises :class:`InputError` naming ``prompt``."""
    if prompt is None or not str(prompt).strip():
        return None
    return " ".join(check_text("prompt", prompt, PROMPT_MAX_CHARS).split())


@dataclass(frozen=True)
class Shared:
    """The shared inputs of a request, checked: what both pipelines take."""

    sampling: Sampling
    normalization: Strategy
    output_format: OutputFormat
    seed: int  # resolved: the caller's, or the one drawn for this request
    multi_band_diffusion: bool


@dataclass(frozen=True)
class SharedInputs:
    multi_band_diffusion: bool = False
    normalization_strategy: str = "loudness"
    top_k: int = TOP_K_DEFAULT
    top_p: float = TOP_P_DEFAULT
    temperature: float = TEMPERATURE_DEFAULT
    classifier_free_guidance: int = CFG_DEFAULT
    output_format: str = "wav"
    seed: int | None = None

    @property
    def sampling(self) -> Sampling:
        return Sampling(self.top_k, self.top_p, self.temperature, self.classifier_free_guidance)

    def check_shared(self) -> Shared:
        """The checks that need no model (the codebook size is checked against the model: ``Sampling.check``).

        Raises:
            InputError: naming the first input that is out of its range or not one of its choices.
        """
        if self.normalization_strategy not in STRATEGIES:
            raise InputError("normalization_strategy", self.normalization_strategy,
                             f"one of {', '.join(STRATEGIES)}")
        if self.output_format not in OUTPUT_FORMATS:
            raise InputError("output_format", self.output_format, f"one of {', '.join(OUTPUT_FORMATS)}")
        sampling = self.sampling
        sampling.check_ranges()
        return Shared(sampling=sampling, normalization=cast(Strategy, self.normalization_strategy),
                      output_format=cast(OutputFormat, self.output_format), seed=resolve_seed(self.seed),
                      multi_band_diffusion=bool(self.multi_band_diffusion))


def input_defaults(cls: type[Any]) -> dict[str, object]:
    """Field name -> default of a request dataclass, for the Cog inputs and the CLI flags."""
    return {f.name: f.default for f in fields(cls)}
