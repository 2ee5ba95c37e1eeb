"""The generate entrypoint: its request (:mod:`.request`) and its pipeline (:mod:`.pipeline`), as for the remix."""

from musicgen_remix.generate.pipeline import GenerateResult, run_generate, splice_prompt
from musicgen_remix.generate.request import (
    DURATION_MAX_S,
    MODEL_VERSIONS,
    GenerateJob,
    GenerateRequest,
    ModelVersion,
    check_request,
    defaults,
)

__all__ = ["DURATION_MAX_S", "MODEL_VERSIONS", "GenerateJob", "GenerateRequest", "GenerateResult", "ModelVersion",
           "check_request", "defaults", "run_generate", "splice_prompt"]
