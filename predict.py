"""Cog entrypoints: thin typed adapters over :mod:`musicgen_remix`, one call into the package each.

``predict.py:GenerateRunner`` — generate with continuation (the fofr/musicgen-mario schema), cog.generate.yaml.
``predict.py:RemixRunner`` — remix a song (the sakemin/musicgen-remixer schema), cog.yaml.
``predict.py:RemixDetailedRunner`` — the same remix returning every product, cog.remix-detailed.yaml.

The Cog CLI writes each entrypoint's input schema statically from this file (it parses it; nothing is
imported), so every ``Input()`` argument here is a literal, each description one string literal.
``tests/test_predict_inputs.py`` checks every literal against the package's own defaults, choices and
ranges (the package stays the one source of truth) and against the committed schemas in ``openapi/``.
"""

from cog import BaseRunner, Input, Path

from musicgen_remix.service import GenerateRequest, GenerateService, RemixRequest, RemixService
from musicgen_remix.serving import Entrypoint, downloaded_file


class GenerateRunner(BaseRunner):
    """Text-to-music, melody conditioning and continuation; default weights from ``COG_WEIGHTS``."""

    def setup(self, weights: str | None = None) -> None:
        self.entrypoint = Entrypoint()
        # Replicate sets COG_WEIGHTS (a URL) on a version made by a training: that fine-tune is the default.
        self.service = GenerateService(weights)
        self.entrypoint.ready()

    def run(
        self,
        prompt: str | None = Input(description="A description of the music you want to generate.", default=None),
        input_audio: Path | None = Input(description="An audio file that will influence the generated music. If `continuation` is `True`, the generated music will be a continuation of the audio file. Otherwise, the generated music will mimic the audio file's melody.", default=None),
        duration: int = Input(description="Duration of the generated audio in seconds, the continuation prompt included (up to 300: beyond the model's 30 s window, generation continues window by window).", default=8, ge=1, le=300),
        continuation: bool = Input(description="If `True`, generated music will continue `input_audio`. Otherwise, generated music will mimic `input_audio`'s melody.", default=False),
        continuation_start: int = Input(description="Start time of the audio file to use for continuation.", default=0, ge=0),
        continuation_end: int | None = Input(description="End time of the audio file to use for continuation. If -1 or None, will default to the end of the audio clip.", default=None),
        multi_band_diffusion: bool = Input(description="If `True`, the EnCodec tokens will be decoded with MultiBand Diffusion (stereo models: left and right decoded separately).", default=False),
        normalization_strategy: str = Input(description="Strategy for normalizing audio.", default="loudness", choices=["loudness", "clip", "peak", "rms"]),
        top_k: int = Input(description="Reduces sampling to the k most likely tokens.", default=250, ge=0),
        top_p: float = Input(description="Reduces sampling to tokens with cumulative probability of p. When set to  `0` (default), top_k sampling is used.", default=0.0, ge=0.0, le=1.0),
        temperature: float = Input(description="Controls the 'conservativeness' of the sampling process. Higher temperature means more diversity.", default=1.0, ge=0.0),
        classifier_free_guidance: int = Input(description="Increases the influence of inputs on the output. Higher values produce lower-varience outputs that adhere more closely to inputs.", default=3, ge=0),
        output_format: str = Input(description="Output format for generated audio.", default="wav", choices=["wav", "mp3", "flac"]),
        seed: int | None = Input(description="Seed for random number generator. If None or -1, a random seed will be used.", default=None),
        replicate_weights: str | None = Input(description="Replicate MusicGen weights to use. Leave blank to use the default weights.", default=None),
        model_version: str = Input(description="Model to use when replicate_weights is blank: `default` is the deployment's weights (a fine-tune, or melody).", default="default", choices=["default", "melody", "stereo-melody", "melody-large", "stereo-melody-large", "small", "medium", "large"]),
    ) -> Path:
        with self.entrypoint.request() as (out_dir, progress):
            request = GenerateRequest(
                prompt=prompt, input_audio=downloaded_file(input_audio, "input_audio", downloaded=_made(input_audio), into=out_dir),
                duration=duration, continuation=continuation, continuation_start=continuation_start,
                continuation_end=continuation_end, multi_band_diffusion=multi_band_diffusion,
                normalization_strategy=normalization_strategy, top_k=top_k, top_p=top_p, temperature=temperature,
                classifier_free_guidance=classifier_free_guidance, output_format=output_format, seed=seed,
                model_version=model_version, replicate_weights=replicate_weights)
            return Path(self.service.predict(request, out_dir, progress).path)


class RemixInputs:
    """The remix entrypoint's inputs, declared once and shared by both remix runners."""

    prompt = Input(description="A description of the music you want to generate.", default=None)
    music_input = Input(description="An audio file input for the remix.", default=None)
    multi_band_diffusion = Input(description="If `True`, the EnCodec tokens will be decoded with MultiBand Diffusion.", default=False)
    normalization_strategy = Input(description="Strategy for normalizing audio.", default="loudness", choices=["loudness", "clip", "peak", "rms"])
    beat_sync_threshold = Input(description="When beat syncing, if the gap between generated downbeat timing and input audio downbeat timing is larger than `beat_sync_threshold`, consider the beats are not corresponding. If `None` or `-1`, `1.1/(bpm/60)` will be used as the value.", default=0.75)
    chroma_coefficient = Input(description="Coefficient value multiplied to multi-hot chord chroma.", default=1.0, ge=0.5, le=2.0)
    top_k = Input(description="Reduces sampling to the k most likely tokens.", default=250, ge=0)
    top_p = Input(description="Reduces sampling to tokens with cumulative probability of p. When set to  `0` (default), top_k sampling is used.", default=0.0, ge=0.0, le=1.0)
    temperature = Input(description="Controls the 'conservativeness' of the sampling process. Higher temperature means more diversity.", default=1.0, ge=0.0)
    classifier_free_guidance = Input(description="Increases the influence of inputs on the output. Higher values produce lower-varience outputs that adhere more closely to inputs.", default=3, ge=0)
    output_format = Input(description="Output format for generated audio.", default="wav", choices=["wav", "mp3", "flac"])
    seed = Input(description="Seed for random number generator. If `None` or `-1`, a random seed will be used.", default=None)
    model_version = Input(description="Chord model: mono or stereo, medium (1.5B) or large (3.3B).", default="stereo-chord", choices=["chord", "stereo-chord", "chord-large", "stereo-chord-large"])
    large_chord_voca = Input(description="If `True`, chords are recognised from a large vocabulary (sevenths, diminished, ...); if `False`, only the 24 major and minor triads.", default=True)
    chords = Input(description="Chord progression replacing the detected chords, one chord per bar at the song's tempo and meter, cycled: e.g. `C G Am F` or `C:maj G:7 A:min F:maj7`.", default=None)


class RemixRunner(BaseRunner):
    """Remix a song: the sakemin/musicgen-remixer schema, one file URI out (the mix)."""

    def setup(self) -> None:
        self.entrypoint = Entrypoint()
        self.service = RemixService()
        self.entrypoint.ready()

    def run(
        self,
        prompt: str | None = RemixInputs.prompt,
        music_input: Path | None = RemixInputs.music_input,
        multi_band_diffusion: bool = RemixInputs.multi_band_diffusion,
        normalization_strategy: str = RemixInputs.normalization_strategy,
        beat_sync_threshold: float | None = RemixInputs.beat_sync_threshold,
        chroma_coefficient: float = RemixInputs.chroma_coefficient,
        top_k: int = RemixInputs.top_k,
        top_p: float = RemixInputs.top_p,
        temperature: float = RemixInputs.temperature,
        classifier_free_guidance: int = RemixInputs.classifier_free_guidance,
        output_format: str = RemixInputs.output_format,
        seed: int | None = RemixInputs.seed,
        model_version: str = RemixInputs.model_version,
        large_chord_voca: bool = RemixInputs.large_chord_voca,
        chords: str | None = RemixInputs.chords,
    ) -> Path:
        return Path(self.remix(locals(), extras=False)[0])

    def remix(self, scope: dict, *, extras: bool) -> list[str]:
        """The remix of the run() arguments in ``scope``: the mix, then (with ``extras``) every product."""
        inputs = {k: v for k, v in scope.items() if k not in ("self", "__class__")}
        music_input = inputs.pop("music_input")
        with self.entrypoint.request() as (out_dir, progress):
            request = RemixRequest(music_input=downloaded_file(music_input, "music_input", downloaded=_made(music_input),
                                                               into=out_dir), **inputs)
            result = self.service.predict(request, out_dir, progress, extras=extras)
            return [str(p) for p in (result.mix, result.instrumental, result.vocals, result.analysis_json,
                                     result.plot) if p is not None]


class RemixDetailedRunner(RemixRunner):
    """The same remix, every product uploaded as its own file: ``remix.<fmt>``, ``instrumental.<fmt>`` (the
    beat-synced instrumental), ``vocals.<fmt>``, ``analysis.json`` and ``remix.png`` (in the order Cog
    finishes uploading them: tell them apart by name)."""

    def run(  # type: ignore[override]
        self,
        prompt: str | None = RemixInputs.prompt,
        music_input: Path | None = RemixInputs.music_input,
        multi_band_diffusion: bool = RemixInputs.multi_band_diffusion,
        normalization_strategy: str = RemixInputs.normalization_strategy,
        beat_sync_threshold: float | None = RemixInputs.beat_sync_threshold,
        chroma_coefficient: float = RemixInputs.chroma_coefficient,
        top_k: int = RemixInputs.top_k,
        top_p: float = RemixInputs.top_p,
        temperature: float = RemixInputs.temperature,
        classifier_free_guidance: int = RemixInputs.classifier_free_guidance,
        output_format: str = RemixInputs.output_format,
        seed: int | None = RemixInputs.seed,
        model_version: str = RemixInputs.model_version,
        large_chord_voca: bool = RemixInputs.large_chord_voca,
        chords: str | None = RemixInputs.chords,
    ) -> list[Path]:
        return [Path(p) for p in self.remix(locals(), extras=True)]


def _made(value: object) -> bool:
    """Whether Cog made ``value`` from a URL it downloaded (a ``cog.Path``), not from a caller's string."""
    return isinstance(value, Path)
