"""Sampling parameters shared by both entrypoints, with their defaults (defined once) and checks."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from musicgen_remix.errors import InputError

TOP_K_DEFAULT = 250
TOP_P_DEFAULT = 0.0
TEMPERATURE_DEFAULT = 1.0
CFG_DEFAULT = 3
# Ranges. The lower bounds (and top_p's upper one) are what the served schemas declare (predict.py's
# literal ge/le, tied to these by tests/test_predict_inputs.py); the upper bounds of top_k, temperature and
# guidance are checked here only, as the seed schemas declare none.
TOP_K_MIN = 0
TOP_K_MAX = 2048  # the codebook size of every released MusicGen: top_k beyond it selects nothing more
TOP_P_RANGE = (0.0, 1.0)
TEMPERATURE_MIN = 0.0
TEMPERATURE_MAX = 10.0
CFG_MIN = 0
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
        self.check_ranges()
        if self.top_k > card:
            raise InputError("top_k", self.top_k, f"an integer from {TOP_K_MIN} to {card} (this model's codebook "
                                                  "size); 0 samples from all tokens")

    def check_ranges(self) -> None:
        """The checks that need no model: every value in its range (and finite)."""
        if isinstance(self.top_k, bool) or not TOP_K_MIN <= self.top_k <= TOP_K_MAX:
            raise InputError("top_k", self.top_k, f"an integer from {TOP_K_MIN} to {TOP_K_MAX} (the codebook "
                                                  "size; 0 samples from all tokens)")
        low, high = TOP_P_RANGE
        if not low <= self.top_p <= high:
            raise InputError("top_p", self.top_p, f"a number from {low:g} to {high:g} (0 = use top_k)")
        if not TEMPERATURE_MIN <= self.temperature <= TEMPERATURE_MAX:
            raise InputError("temperature", self.temperature,
                             f"a number from {TEMPERATURE_MIN:g} to {TEMPERATURE_MAX:g} (0 = always the most "
                             "likely token)")
        if not CFG_MIN <= self.classifier_free_guidance <= CFG_MAX:
            raise InputError("classifier_free_guidance", self.classifier_free_guidance,
                             f"a number from {CFG_MIN} to {CFG_MAX}")

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
