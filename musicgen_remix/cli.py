"""Command line: ``python -m musicgen_remix {generate,remix,analyze,sync,weights,serve} ...``.

Flags are named after the Cog inputs and take their defaults from the same request dataclass, so
the CLI, the server and the library cannot drift apart. Every request is checked before any model is
loaded or downloaded, and an error names the flag (``--continuation-end``), not the server's field.

Output files: the suffix of a path decides its format (``-o song.mp3`` writes MP3); a suffix that is not
a supported format, or an ``--output-format`` that disagrees with it, is an error naming both.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import logging
import re
import shutil
import sys
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar, cast

from musicgen_remix.errors import InputError, MusicgenRemixError

if TYPE_CHECKING:
    from musicgen_remix.analysis.beats import Beats
    from musicgen_remix.audio import Audio, OutputFormat
    from musicgen_remix.progress import Progress
    from musicgen_remix.remix.beatsync import SyncPlan

logger = logging.getLogger(__name__)
T = TypeVar("T")


def main(argv: Sequence[str] | None = None) -> int:
    from musicgen_remix.serving import configure_logging

    parser = _parser()
    args = parser.parse_args(argv)
    configure_logging(verbose=args.verbose)
    try:
        return int(args.func(args))
    except InputError as exc:
        logger.error("%s", _in_flag_terms(exc, args.parser))
        return 2
    except MusicgenRemixError as exc:
        logger.error("%s", exc)
        return 2


def _in_flag_terms(exc: InputError, parser: argparse.ArgumentParser) -> str:
    """The error as the command line says it: ``--continuation-end=...`` for the field ``continuation_end``,
    and the other fields its text names as their flags too (``greater than --continuation-start``)."""
    flags = _flags_by_field(parser)
    allowed = _FIELD_WORD.sub(lambda match: _as_flag(match, flags), exc.allowed)
    return str(InputError(flags.get(exc.field, exc.field), exc.value, allowed))


# A field name in an error's text, with what it says of a boolean: ``continuation=true``, ``continuation is true``.
_FIELD_WORD = re.compile(r"(?<![-\w])([a-z][a-z0-9_]*)(=true|=false| is true| is false)?\b")


def _as_flag(match: re.Match[str], flags: dict[str, str]) -> str:
    """One field name as its flag. A one-word name (``seed``, ``audio``) is also an English word ("a random
    seed"), so it is renamed only where it is clearly the field: with a boolean's value."""
    name, said = match.group(1), match.group(2) or ""
    flag = flags.get(name)
    if flag is None or ("_" not in name and not said):
        return match.group(0)
    if said in ("=false", " is false"):
        flag = "--no-" + flag.removeprefix("--")
    return flag + (" is given" if said.startswith(" is") else "")


def _flags_by_field(parser: argparse.ArgumentParser) -> dict[str, str]:
    """Field name (the flag's ``dest``) -> its long flag, for the flags whose values the command sends on."""
    flags: dict[str, str] = {}
    for action in parser._actions:
        long = [option for option in action.option_strings if option.startswith("--")]
        if long:
            flags.setdefault(action.dest, long[0])
    return flags


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m musicgen_remix", description=__doc__.splitlines()[0])
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(required=True, metavar="COMMAND")
    for name, add, help_text in (
            ("generate", _add_generate, "text/melody-conditioned generation or continuation"),
            ("remix", _add_remix, "re-arrange a song over its own chords, keeping its vocals"),
            ("analyze", _add_analyze, "tempo, beats, downbeats and chords of a song"),
            ("sync", _add_sync, "time-stretch AUDIO so its downbeats land on REF's"),
            ("weights", _add_weights, "list or fetch weights"),
            ("serve", _add_serve, "run Cog's HTTP server for one entrypoint (from a checkout)")):
        command = sub.add_parser(name, help=help_text)
        add(command)
        command.set_defaults(parser=command)
    return parser


# -- generate -----------------------------------------------------------------------------------------
def _add_generate(p: argparse.ArgumentParser) -> None:
    from musicgen_remix.generate import DURATION_MAX_S, MODEL_VERSIONS, defaults

    d = defaults()
    p.add_argument("--prompt", default=d["prompt"], help="description of the music")
    p.add_argument("--input-audio", type=Path, default=d["input_audio"],
                   help="audio to continue (--continuation) or whose melody to follow")
    p.add_argument("--duration", type=int, default=d["duration"],
                   help=f"seconds of output, the prompt included (1-{DURATION_MAX_S}; default %(default)s)")
    p.add_argument("--continuation", action=argparse.BooleanOptionalAction, default=d["continuation"],
                   help="continue --input-audio instead of following its melody")
    p.add_argument("--continuation-start", type=int, default=d["continuation_start"],
                   help="start (s) of the part of --input-audio to use (default %(default)s)")
    p.add_argument("--continuation-end", type=int, default=d["continuation_end"],
                   help="end (s) of that part; -1 or unset: end of file")
    _add_shared(p, d)
    p.add_argument("--model-version", choices=MODEL_VERSIONS, default=d["model_version"],
                   help="default: --weights if given, else melody")
    p.add_argument("--replicate-weights", default=d["replicate_weights"],
                   help="URL of a fine-tuned checkpoint to use for this run")
    p.add_argument("--weights", default=None, help="default weights: a fine-tuned checkpoint file or URL")
    p.add_argument("-o", "--output", type=Path, required=True, help="output file")
    p.set_defaults(func=_run_generate)


def _run_generate(args: argparse.Namespace) -> int:
    from musicgen_remix.generate import GenerateRequest, check_request
    from musicgen_remix.progress import Progress
    from musicgen_remix.service import GenerateService

    fmt = audio_format(args.output, "--output", args.output_format)
    job = check_request(_request(GenerateRequest, args, output_format=fmt))  # before any model is loaded
    _check_weights_flag(args.weights)
    version = "melody" if job.model_version == "default" else job.model_version
    service = GenerateService(args.weights, default_version=version,
                              assets=("mbd",) if job.shared.multi_band_diffusion else ())
    with _workdir() as work, _Bar() as bar:
        result = service.run(job, work, Progress(report=bar))
        target = _deliver(result.path, args.output)
    logger.info("%s: %.2f s, %d ch, %d Hz, model %s, seed %d", target, result.seconds, result.channels,
                result.sample_rate, result.model, result.seed)
    sys.stdout.write(f"seed: {result.seed}\n")
    return 0


def _check_weights_flag(weights: str | None) -> None:
    """``--weights`` names a file that exists, or a URL (downloaded when the service starts)."""
    if weights is None or not weights.strip() or weights.startswith(("http://", "https://")):
        return
    if not Path(weights).is_file():
        raise InputError("--weights", weights, "a fine-tuned checkpoint file that exists, or its http(s) URL")


class _Bar:
    """A tqdm bar per stage, fed by the engine's progress callback."""

    def __enter__(self) -> _Bar:
        self._bars: dict[str, object] = {}
        return self

    def __call__(self, stage: str, done: int, total: int) -> None:
        from tqdm import tqdm

        bar = self._bars.get(stage)
        if bar is None:
            bar = self._bars[stage] = tqdm(total=total, desc=stage, unit="step", file=sys.stderr)
        bar.total = total  # type: ignore[attr-defined]
        bar.update(done - bar.n)  # type: ignore[attr-defined]

    def __exit__(self, *exc: object) -> None:
        for bar in self._bars.values():
            bar.close()  # type: ignore[attr-defined]


# -- remix ------------------------------------------------------------------------------------------
def _add_remix(p: argparse.ArgumentParser) -> None:
    from musicgen_remix.analysis.chroma import CHROMA_COEFFICIENT_RANGE
    from musicgen_remix.remix.request import CHORD_VERSIONS, remix_defaults

    d = remix_defaults()
    low, high = CHROMA_COEFFICIENT_RANGE
    p.add_argument("--music-input", type=Path, required=True, help="the song to remix")
    p.add_argument("--prompt", required=True, help="the new style, e.g. 'bossa nova, nylon guitar'")
    p.add_argument("--beat-sync-threshold", type=float, default=d["beat_sync_threshold"],
                   help="seconds; -1: 1.1 beats of the song (default %(default)s)")
    p.add_argument("--chroma-coefficient", type=float, default=d["chroma_coefficient"],
                   help=f"{low:g}-{high:g} (default %(default)s)")
    _add_shared(p, d)
    p.add_argument("--model-version", choices=CHORD_VERSIONS, default=d["model_version"], help="default %(default)s")
    p.add_argument("--large-chord-voca", action=argparse.BooleanOptionalAction, default=d["large_chord_voca"],
                   help="large chord vocabulary (default); --no-large-chord-voca: 24 major/minor triads")
    p.add_argument("--chords", default=d["chords"], help="progression replacing the detected chords, one per bar")
    p.add_argument("-o", "--output", type=Path, required=True, help="the mix")
    p.add_argument("--instrumental", type=Path, help="also write the beat-synced instrumental here")
    p.add_argument("--vocals", type=Path, help="also write the vocal stem here")
    p.add_argument("--analysis", type=Path, help="also write the analysis JSON here")
    p.add_argument("--plot", type=Path, help="also write the plot (PNG) here")
    p.set_defaults(func=_run_remix)


def _run_remix(args: argparse.Namespace) -> int:
    from musicgen_remix.progress import Progress
    from musicgen_remix.remix.request import RemixRequest, check_remix_request
    from musicgen_remix.service import RemixService

    fmt = audio_format(args.output, "--output", args.output_format)
    for path, flag in ((args.instrumental, "--instrumental"), (args.vocals, "--vocals")):
        if path is not None:
            audio_format(path, flag, None)
    if args.analysis is not None:
        file_format(args.analysis, "--analysis", ("json",))
    if args.plot is not None:
        file_format(args.plot, "--plot", PLOT_FORMATS)
    job = check_remix_request(_request(RemixRequest, args, output_format=fmt))  # before any model is loaded
    extras = any(x is not None for x in (args.instrumental, args.vocals, args.analysis, args.plot))
    service = RemixService(default_version=job.model_version,
                           assets=("mbd",) if job.shared.multi_band_diffusion else ())
    with _workdir() as work, _Bar() as bar:
        # Stems are written lossless and converted on delivery: an mp3 round trip would shift them in time.
        result = service.run(job, work, Progress(report=bar), extras=extras, extras_format="wav")
        target = _deliver(result.mix, args.output)
        for path, dest, flag in ((result.instrumental, args.instrumental, "--instrumental"),
                                 (result.vocals, args.vocals, "--vocals")):
            if dest is not None and path is not None:
                _deliver_audio(path, dest, flag)
        if args.analysis is not None and result.analysis_json is not None:
            _deliver(result.analysis_json, args.analysis)
        if args.plot is not None and result.plot is not None:
            _deliver_plot(result.plot, args.plot)
    bpm = "unknown" if result.analysis.bpm is None else f"{result.analysis.bpm:.1f}"
    logger.info("%s: bpm %s, %d downbeats, %d matched by beat sync%s, seed %d", target, bpm,
                len(result.analysis.downbeats), len(result.sync.matched),
                f" (skipped: {result.sync.skipped_reason})" if result.sync.skipped else "", result.seed)
    sys.stdout.write(f"seed: {result.seed}\n")
    return 0


# -- analyze ------------------------------------------------------------------------------------------
def _add_analyze(p: argparse.ArgumentParser) -> None:
    p.add_argument("audio", type=Path, help="audio file")
    p.add_argument("--json", action="store_true", help="print one JSON object on stdout")
    p.add_argument("--no-large-chord-voca", dest="large_chord_voca", action="store_false",
                   help="only the 24 major/minor triads")
    p.add_argument("--plot", type=Path, help="also draw the analysis (numbered bars, beats, chords, key): "
                                             ".png, .pdf or .jpg")
    p.set_defaults(func=_run_analyze)


def _run_analyze(args: argparse.Namespace) -> int:
    import json

    from musicgen_remix.analysis.summary import analyze, format_summary
    from musicgen_remix.audio import read_audio
    from musicgen_remix.progress import Progress

    if args.plot is not None:
        file_format(args.plot, "--plot", PLOT_FORMATS)
    audio = read_audio(args.audio, field="audio")
    with _Bar() as bar:
        result = analyze(audio, large_vocabulary=args.large_chord_voca, progress=Progress(report=bar))
    if args.plot is not None:
        from musicgen_remix.analysis.plot import plot_analysis

        args.plot.parent.mkdir(parents=True, exist_ok=True)
        plot_analysis(args.plot, song=audio.wav.mean(0).numpy(), sample_rate=audio.sample_rate, analysis=result)
    if args.json:
        sys.stdout.write(json.dumps(result.to_json()) + "\n")
    else:
        sys.stdout.write(format_summary(result) + "\n")
    return 0


# -- sync ---------------------------------------------------------------------------------------------
def _add_sync(p: argparse.ArgumentParser) -> None:
    p.add_argument("--reference", type=Path, required=True, help="audio whose downbeats are the target")
    p.add_argument("--audio", type=Path, required=True, help="audio to time-stretch")
    p.add_argument("-o", "--output", type=Path, required=True, help="output file (wav, flac or mp3)")
    p.add_argument("--threshold", dest="beat_sync_threshold", type=float, default=None,
                   help="largest downbeat distance to pair, seconds (default or -1: 1.1 beats of the reference)")
    p.add_argument("--plot", type=Path, help="also draw the downbeats before and after: .png, .pdf or .jpg")
    p.set_defaults(func=_run_sync)


def _run_sync(args: argparse.Namespace) -> int:
    from musicgen_remix.audio import read_audio, write_audio
    from musicgen_remix.audio.io import check_audio_file
    from musicgen_remix.audio.tags import sync_tags
    from musicgen_remix.progress import Progress
    from musicgen_remix.remix.beatsync import check_threshold, resolve_threshold, sync_to_reference

    # 1. Everything that needs no audio decoded: the output names, the threshold, the input files.
    fmt = audio_format(args.output, "--output", None)
    if args.plot is not None:
        file_format(args.plot, "--plot", PLOT_FORMATS)
    check_threshold(args.beat_sync_threshold)
    check_audio_file(args.reference, "reference")
    check_audio_file(args.audio, "audio")
    reference = read_audio(args.reference, field="reference")
    audio = read_audio(args.audio, field="audio")
    with _Bar() as bar:
        progress = Progress(report=bar)
        # 2. Both downbeat grids (one step each), then the stretch.
        ref_beats, beats = _track_both(reference, audio, progress)
        threshold = resolve_threshold(args.beat_sync_threshold, ref_beats.bpm)
        with progress.stage("beat sync"):
            synced, plan = sync_to_reference(audio, beats.downbeats, ref_beats.downbeats, threshold=threshold,
                                             target_duration=reference.duration, reference=reference,
                                             reference_beats=ref_beats.times)
    # 3. The take at the reference's length, with tags that say what it is.
    path = write_audio(args.output, synced.wav.clamp(-1, 1), synced.sample_rate, fmt=fmt,
                       tags=sync_tags(args.reference.name, args.audio.name, args.beat_sync_threshold, threshold))
    if args.plot is not None:
        from musicgen_remix.remix.plot import plot_sync

        args.plot.parent.mkdir(parents=True, exist_ok=True)
        plot_sync(args.plot, reference=reference.wav.mean(0).numpy(), sample_rate=reference.sample_rate,
                  reference_downbeats=ref_beats.downbeats.tolist(), take_downbeats=beats.downbeats.tolist(),
                  synced_downbeats=plan.map_times(beats.downbeats).tolist())
    _log_sync(path, plan, args.reference.name, threshold)
    return 0


def _track_both(reference: Audio, audio: Audio, progress: Progress) -> tuple[Beats, Beats]:
    """The beats of the reference, then of the take: two steps of one stage."""
    from musicgen_remix.analysis.beats import track_beats

    stage = "beats and tempo"
    progress.step(stage, 0, 2)
    ref_beats = track_beats(reference)
    progress.step(stage, 1, 2)
    beats = track_beats(audio)
    progress.step(stage, 2, 2)
    return ref_beats, beats


def _log_sync(path: Path, plan: SyncPlan, reference: str, threshold: float) -> None:
    import numpy as np

    if plan.skipped:
        logger.warning("%s: not stretched (%s); padded/trimmed to the reference's length", path, plan.skipped_reason)
        return
    moved = np.abs(plan.offsets) * 1000
    logger.info("%s: moved %d downbeats by %.0f ms (median; at most %.0f ms) to land on %s's, each within "
                "%.0f ms of where the alignment puts it (bar shift %s, tempo ratio %.3f); agreement with the "
                "reference %.2f -> %.2f", path, len(plan.matched), np.median(moved), moved.max(), reference,
                threshold * 1000, plan.shift, plan.ratio or 1.0, plan.agreement_before or 0.0,
                plan.agreement_after or 0.0)


def _add_shared(p: argparse.ArgumentParser, d: dict[str, object]) -> None:
    """The flags both entrypoints share (decoding, normalization, sampling, output, seed)."""
    from musicgen_remix.audio import OUTPUT_FORMATS, STRATEGIES

    p.add_argument("--multi-band-diffusion", action=argparse.BooleanOptionalAction,
                   default=d["multi_band_diffusion"], help="decode with MultiBand Diffusion")
    p.add_argument("--normalization-strategy", choices=STRATEGIES,
                   default=d["normalization_strategy"], help="default %(default)s")
    p.add_argument("--top-k", type=int, default=d["top_k"], help="default %(default)s")
    p.add_argument("--top-p", type=float, default=d["top_p"], help="default %(default)s (0: use top-k)")
    p.add_argument("--temperature", type=float, default=d["temperature"], help="default %(default)s")
    p.add_argument("--classifier-free-guidance", type=int, default=d["classifier_free_guidance"],
                   help="default %(default)s")
    p.add_argument("--output-format", choices=OUTPUT_FORMATS, default=None,
                   help="must agree with -o's suffix, which decides the format")
    p.add_argument("--seed", type=int, default=d["seed"], help="random when unset or -1; 0 is a seed")


def _request(cls: type[T], args: argparse.Namespace, **overrides: object) -> T:
    """A request dataclass from the flags of the same names (flags are named after the Cog inputs)."""
    values = {f.name: getattr(args, f.name) for f in dataclasses.fields(cls) if hasattr(args, f.name)}  # type: ignore[arg-type]
    return cls(**{**values, **overrides})


PLOT_FORMATS = ("png", "pdf", "jpg")


def file_format(path: Path, flag: str, formats: Sequence[str]) -> str:
    """The format ``path``'s suffix names, if it is one of ``formats``; else an error naming ``flag``."""
    suffix = path.suffix.lstrip(".").lower()
    if suffix not in formats:
        raise InputError(flag, str(path), f"a file name ending in {' '.join('.' + f for f in formats)} (the suffix "
                                          "decides the format)")
    return suffix


def audio_format(path: Path, flag: str, requested: str | None) -> OutputFormat:
    """The audio format of an output path: its suffix decides; ``--output-format``, if given, must agree."""
    from musicgen_remix.audio import OUTPUT_FORMATS

    suffix = file_format(path, flag, OUTPUT_FORMATS)
    if requested is not None and requested != suffix:
        raise InputError("--output-format", requested, f"the format {flag} {path.name} names ({suffix}), or no "
                                                       "--output-format at all")
    return cast("OutputFormat", suffix)


def _deliver(path: Path, dest: Path) -> Path:
    dest.parent.mkdir(parents=True, exist_ok=True)
    shutil.move(str(path), dest)
    return dest


def _deliver_audio(path: Path, dest: Path, flag: str) -> Path:
    """Move ``path`` to ``dest``, re-encoding with the same tags when ``dest``'s suffix names another format."""
    from musicgen_remix.audio import read_audio, write_audio
    from musicgen_remix.audio.tags import read_tags

    fmt = audio_format(dest, flag, None)
    if fmt == path.suffix.lstrip("."):
        return _deliver(path, dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    return write_audio(dest, read_audio(path), fmt=fmt, tags=read_tags(path))


def _deliver_plot(path: Path, dest: Path) -> Path:
    """The plot in the format ``dest``'s suffix names (drawn as PNG; Pillow writes JPEG and PDF from it)."""
    if file_format(dest, "--plot", PLOT_FORMATS) in ("png",):
        return _deliver(path, dest)
    from PIL import Image

    dest.parent.mkdir(parents=True, exist_ok=True)
    with Image.open(path) as image:
        image.convert("RGB").save(dest)
    return dest


@contextlib.contextmanager
def _workdir() -> Iterator[Path]:
    work = Path(tempfile.mkdtemp(prefix="musicgen-remix-"))
    try:
        yield work
    finally:
        shutil.rmtree(work, ignore_errors=True)


# -- weights ------------------------------------------------------------------------------------------
def _add_weights(p: argparse.ArgumentParser) -> None:
    sub = p.add_subparsers(required=True, metavar="ACTION")
    fetch = sub.add_parser("fetch", help="download assets into the weights root (resumable, verified)")
    fetch.add_argument("names", nargs="*", help="asset names (default: what the generate entrypoint needs)")
    fetch.add_argument("--all", action="store_true", help="every asset in the manifest")
    fetch.add_argument("--root", type=Path, default=None, help="weights root (default: $MUSICGEN_REMIX_WEIGHTS "
                                                               "or ./weights)")
    fetch.set_defaults(func=_run_fetch)
    listing = sub.add_parser("list", help="assets, licences and what is on disk")
    listing.add_argument("--root", type=Path, default=None)
    listing.set_defaults(func=_run_list)


def _run_fetch(args: argparse.Namespace) -> int:
    from musicgen_remix.weights.fetch import main_weights_fetch
    from musicgen_remix.weights.manifest import load_manifest

    names = sorted(load_manifest()) if args.all else list(args.names)
    return main_weights_fetch(names, args.root)


def _run_list(args: argparse.Namespace) -> int:
    from musicgen_remix.weights.fetch import list_assets

    for row in list_assets(args.root):
        size = f"{row.size / 1e6:,.0f} MB" if row.size else "?"
        sys.stdout.write(f"{row.name:30} {row.kind:9} {row.state:9} {size:>10}  {row.licence}\n")
    return 0


# -- serve --------------------------------------------------------------------------------------------
def _add_serve(p: argparse.ArgumentParser) -> None:
    from musicgen_remix.serve import ENTRYPOINTS

    p.add_argument("entrypoint", choices=list(ENTRYPOINTS), help="which entrypoint to serve")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default %(default)s)")
    p.add_argument("--port", type=int, default=5000, help="TCP port (default %(default)s)")
    p.add_argument("--upload-url", default=None,
                   help="Cog's --upload-url: output files are PUT to this URL (async predictions)")
    p.set_defaults(func=_run_serve)


def _run_serve(args: argparse.Namespace) -> int:
    from musicgen_remix.serve import serve

    serve(args.entrypoint, host=args.host, port=args.port, upload_url=args.upload_url)
    return 1  # serve() only returns if the server could not be started
