"""Sampling parameters shared by both entrypoints, with their defaults (defined once) and checks."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from musicgen_remix.errors import InputError

TOP_K_DEFAULT = 250
TOP_P_DEFAULT = 0.0
TEMPERATURE_DEFAULT = 1.0
CFG_DEFAULT = 3
TEMPERATURE_MAX = 10.0
CFG_MAX = 30


@dataclass(frozen=True)
class Sampling:
    """How tokens are drawn: top-k (or top-p when ``top_p > 0``), temperature, classifier-free guidance.

    ``temperature == 0`` means greedy decoding (argmax), as in audiocraft.
    """

    top_k: int = TOP_K_DEFAULT
    top_p: float = TOP_P_DEFAULT
    temperature: float = TEMPERATURE_DEFAULT
    classifier_free_guidance: float = CFG_DEFAULT

    def check(self, card: int) -> None:
        """Raise :class:`InputError` for values the model cannot take (``card``: codebook size)."""
        if not 0 <= self.top_k <= card or isinstance(self.top_k, bool):
            raise InputError("top_k", self.top_k, f"an integer from 0 to {card} (this model's codebook size); "
                                                  "0 samples from all tokens")
        self.check_ranges()

    def check_ranges(self) -> None:
        """The checks that need no model: every value in its range (and finite)."""
        if isinstance(self.top_k, bool) or not self.top_k >= 0:
            raise InputError("top_k", self.top_k, "an integer >= 0 (0 samples from all tokens)")
        if not 0.0 <= self.top_p <= 1.0:
            raise InputError("top_p", self.top_p, "a number from 0 to 1 (0 = use top_k)")
        if not 0.0 <= self.temperature <= TEMPERATURE_MAX:
            raise InputError("temperature", self.temperature,
                             f"a number from 0 to {TEMPERATURE_MAX} (0 = always the most likely token)")
        if not 0 <= self.classifier_free_guidance <= CFG_MAX:
            raise InputError("classifier_free_guidance", self.classifier_free_guidance,
                             f"a number from 0 to {CFG_MAX}")

    def lm_kwargs(self) -> dict[str, Any]:
        """Keyword arguments of audiocraft's ``LMModel.generate``."""
        return {
            "use_sampling": self.temperature > 0,
            "temp": self.temperature,
            "top_k": self.top_k,
            "top_p": self.top_p,
            "cfg_coef": float(self.classifier_free_guidance),
            "two_step_cfg": False,
        }
