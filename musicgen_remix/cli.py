"""Command line: ``python -m musicgen_remix {generate,weights} ...``.

Flags are named after the Cog inputs and take their defaults from the same request dataclass, so
the CLI, the server and the library cannot drift apart.
"""

from __future__ import annotations

import argparse
import logging
import shutil
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

from musicgen_remix.errors import MusicgenRemixError

logger = logging.getLogger(__name__)


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(levelname)s %(name)s: %(message)s")
    try:
        return int(args.func(args))
    except MusicgenRemixError as exc:
        logger.error("%s", exc)
        return 2


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m musicgen_remix", description=__doc__.splitlines()[0])
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(required=True, metavar="COMMAND")
    _add_generate(sub.add_parser("generate", help="text/melody-conditioned generation or continuation"))
    _add_weights(sub.add_parser("weights", help="list, fetch or write (tiny) weights"))
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
    p.add_argument("--multi-band-diffusion", action=argparse.BooleanOptionalAction,
                   default=d["multi_band_diffusion"], help="decode with MultiBand Diffusion")
    p.add_argument("--normalization-strategy", choices=["loudness", "clip", "peak", "rms"],
                   default=d["normalization_strategy"], help="default %(default)s")
    p.add_argument("--top-k", type=int, default=d["top_k"], help="default %(default)s")
    p.add_argument("--top-p", type=float, default=d["top_p"], help="default %(default)s (0: use top-k)")
    p.add_argument("--temperature", type=float, default=d["temperature"], help="default %(default)s")
    p.add_argument("--classifier-free-guidance", type=int, default=d["classifier_free_guidance"],
                   help="default %(default)s")
    p.add_argument("--output-format", choices=["wav", "mp3", "flac"], default=d["output_format"],
                   help="default %(default)s (or taken from -o's suffix)")
    p.add_argument("--seed", type=int, default=d["seed"], help="random when unset or -1; 0 is a seed")
    p.add_argument("--model-version", choices=MODEL_VERSIONS, default=d["model_version"],
                   help="default: --weights if given, else melody")
    p.add_argument("--replicate-weights", default=d["replicate_weights"],
                   help="URL of a fine-tuned checkpoint to use for this run")
    p.add_argument("--weights", default=None, help="default weights: a fine-tuned checkpoint file or URL")
    p.add_argument("-o", "--output", type=Path, required=True, help="output file")
    p.set_defaults(func=_run_generate)


def _run_generate(args: argparse.Namespace) -> int:
    from musicgen_remix.engine.progress import Progress
    from musicgen_remix.generate import GenerateRequest
    from musicgen_remix.service import GenerateService

    fmt = args.output_format
    suffix = args.output.suffix.lstrip(".").lower()
    if suffix in ("wav", "mp3", "flac") and fmt == "wav":
        fmt = suffix
    request = GenerateRequest(
        prompt=args.prompt, input_audio=args.input_audio, duration=args.duration, continuation=args.continuation,
        continuation_start=args.continuation_start, continuation_end=args.continuation_end,
        multi_band_diffusion=args.multi_band_diffusion, normalization_strategy=args.normalization_strategy,
        top_k=args.top_k, top_p=args.top_p, temperature=args.temperature,
        classifier_free_guidance=args.classifier_free_guidance, output_format=fmt, seed=args.seed,
        model_version=args.model_version, replicate_weights=args.replicate_weights)
    service = GenerateService(args.weights)
    work = Path(tempfile.mkdtemp(prefix="musicgen-remix-"))
    try:
        with _Bar() as bar:
            result = service.predict(request, work, Progress(report=bar))
        args.output.parent.mkdir(parents=True, exist_ok=True)
        target = args.output if args.output.suffix.lstrip(".").lower() == fmt else args.output.with_suffix(f".{fmt}")
        shutil.move(str(result.path), target)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    logger.info("%s: %.2f s, %d ch, %d Hz, model %s, seed %d", target, result.seconds, result.channels,
                result.sample_rate, result.model, result.seed)
    return 0


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
    tiny = sub.add_parser("tiny", help="write tiny random weights in the release formats (offline tests)")
    tiny.add_argument("dir", type=Path)
    tiny.set_defaults(func=_run_tiny)


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


def _run_tiny(args: argparse.Namespace) -> int:
    from musicgen_remix.weights.tiny import write_tiny_weights

    written = write_tiny_weights(args.dir)
    sys.stdout.write(f"wrote {len(written)} files under {args.dir}\n"
                     f"use them with: MUSICGEN_REMIX_WEIGHTS={args.dir}\n")
    return 0
