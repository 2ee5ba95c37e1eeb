"""Audio in one convention: float32 ``[C, T]`` tensors in [-1, 1] with their sample rate beside them."""

from musicgen_remix.audio.io import (
    MP3_BITRATE_KBPS,
    OUTPUT_FORMATS,
    Audio,
    OutputFormat,
    convert,
    read_audio,
    resample,
    to_channels,
    trim,
    write_audio,
)
from musicgen_remix.audio.normalize import (
    LOUDNESS_CEILING_DBFS,
    LOUDNESS_TARGET_LUFS,
    RMS_TARGET_DBFS,
    STRATEGIES,
    Strategy,
    integrated_loudness,
    limit,
    normalize,
)

__all__ = [
    "LOUDNESS_CEILING_DBFS",
    "LOUDNESS_TARGET_LUFS",
    "MP3_BITRATE_KBPS",
    "OUTPUT_FORMATS",
    "RMS_TARGET_DBFS",
    "STRATEGIES",
    "Audio",
    "OutputFormat",
    "Strategy",
    "convert",
    "integrated_loudness",
    "limit",
    "normalize",
    "read_audio",
    "resample",
    "to_channels",
    "trim",
    "write_audio",
]
