"""The remix pipeline: separate once, analyse, generate over the song's chords, beat-sync, mix back.

Each step is a small module of its own; this one reads as the list of steps. Everything is written into
the caller's per-request directory. The mirror image of :mod:`musicgen_remix.generate.pipeline`: a checked
job in, numbered steps, the shared tail (:mod:`musicgen_remix.engine.take`) out.
"""

from __future__ import annotations

import dataclasses
import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch

from musicgen_remix.analysis.beats import track_beats
from musicgen_remix.analysis.chords import parse_chord_progression, recognize_chords
from musicgen_remix.analysis.chroma import chords_to_chroma
from musicgen_remix.analysis.summary import Analysis
from musicgen_remix.audio import Audio, OutputFormat, integrated_loudness, read_audio, write_audio
from musicgen_remix.audio.tags import Provenance
from musicgen_remix.engine.seeding import apply_seed
from musicgen_remix.engine.take import deliver, render
from musicgen_remix.engine.tokens import generate_windows
from musicgen_remix.errors import AudioError
from musicgen_remix.progress import Progress
from musicgen_remix.remix.beatsync import SyncPlan, resolve_threshold, sync_to_reference
from musicgen_remix.remix.mix import MixReport, mix_vocals
from musicgen_remix.remix.plot import plot_remix
from musicgen_remix.remix.request import SONG_MAX_S, SONG_MIN_S, RemixJob
from musicgen_remix.remix.separate import Separator

if TYPE_CHECKING:
    from musicgen_remix.models.store import Loaded, ModelStore

logger = logging.getLogger(__name__)

SILENCE_LUFS = -60.0


@dataclass(frozen=True)
class RemixResult:
    """The mix and, when asked for, the other products of one remix."""

    mix: Path
    seed: int
    analysis: Analysis
    sync: SyncPlan
    mixing: MixReport
    instrumental: Path | None = None
    vocals: Path | None = None
    analysis_json: Path | None = None
    plot: Path | None = None
    generated_downbeats: list[float] = field(default_factory=list)


RECORDED_INPUTS = ("beat_sync_threshold", "chroma_coefficient", "multi_band_diffusion", "normalization_strategy",
                   "top_k", "top_p", "temperature", "classifier_free_guidance", "model_version", "large_chord_voca",
                   "chords")


def run_remix(job: RemixJob, loaded: Loaded, store: ModelStore, separator: Separator, out_dir: Path,
              progress: Progress | None = None, *, extras: bool = False, extras_format: OutputFormat | None = None
              ) -> RemixResult:
    """Remix ``job.music_input``; with ``extras`` also write the instrumental, vocals, analysis and plot.

    ``extras_format`` is the audio format of the instrumental and vocals (default: the mix's).
    """
    from musicgen_remix.models.chord import chord_attributes, chord_conditioner, chroma_window

    progress = progress or Progress()
    shared = job.shared
    # 1. What depends on the model and the audio: the codebook, the chord conditioner, the song.
    shared.sampling.check(loaded.info.card)
    conditioner = chord_conditioner(loaded.model)
    song = read_song(job.music_input)
    progress.check()
    # 2. Separate once; every later stage reuses these stems.
    stems = separator.separate(song, progress)
    progress.check()
    # 3. Beats, downbeats and tempo of the song.
    with progress.stage("beats and tempo"):
        beats = track_beats(song)
    # 4. Chords: the caller's progression, or recognised on the drumless mix.
    written = job.chords is not None
    if job.chords is not None:
        chords = parse_chord_progression(job.chords, beats.downbeats, song.duration)
    else:
        with progress.stage("chords"):
            chords = recognize_chords(stems.drumless, large_vocabulary=job.large_chord_voca, beats=beats.times)
    analysis = Analysis.from_results(song.duration, song.sample_rate, beats, chords)
    _log_analysis(analysis)
    progress.check()
    # 5. Generate an instrumental for the whole song over its chords (windowed, chroma advancing).
    apply_seed(shared.seed)
    description = prompt_with_tempo(job.prompt, beats.bpm)
    spec = conditioner.spec
    # Recognised chords are denoised as MusicGen-Chord's own extractor did; written ones are kept as written.
    chroma = torch.from_numpy(chords_to_chroma(chords, song.duration, spec.frame_rate, denoise=not written))
    tokens = generate_windows(
        loaded.model, lambda offset, _windowed: chord_attributes(description, chroma_window(chroma, offset, spec),
                                                                 job.chroma_coefficient),
        duration=song.duration, sampling=shared.sampling, progress=progress)
    generated = render(loaded.model, tokens, mbd=store.mbd() if shared.multi_band_diffusion else None,
                       progress=progress)
    # 6. Beat sync: the instrumental's bars onto the song's (aligned on downbeats and on the drumless mix's
    #    chords, kept unstretched when that measures better against the song).
    with progress.stage("beat sync"):
        generated_beats = track_beats(generated)
        threshold = resolve_threshold(job.beat_sync_threshold, beats.bpm)
        synced, plan = sync_to_reference(generated, generated_beats.downbeats, beats.downbeats, threshold=threshold,
                                         target_duration=song.duration, reference=song,
                                         reference_harmony=stems.drumless, reference_beats=beats.times)
    # 7. Mix the vocals back at the song's balance; normalise and write, with what made it.
    mixed = mix_vocals(synced, stems.vocal, stems.accompaniment)
    provenance = _provenance(job, loaded.info.name)
    mix_path = deliver(mixed.mix, shared, out_dir, "remix", provenance)
    result = RemixResult(mix=mix_path, seed=shared.seed, analysis=analysis, sync=plan, mixing=mixed.report,
                         generated_downbeats=[float(t) for t in generated_beats.downbeats])
    if extras:
        result = _write_extras(result, job, out_dir, song, mixed.instrumental, stems.vocal, plan, threshold,
                               extras_format or shared.output_format, provenance)
    return result


def _provenance(job: RemixJob, model: str) -> Provenance:
    """The take's record: the inputs that shaped it (the song by file name only)."""
    inputs: dict[str, object] = {name: getattr(job.request, name) for name in RECORDED_INPUTS}
    inputs["music_input"] = job.music_input.name
    return Provenance("remix", job.prompt, job.shared.seed, model, inputs)


def prompt_with_tempo(prompt: str, bpm: float | None) -> str:
    """The text the chord model is given: sakemin's remixer appended ``", bpm : N"`` (a whole number; his
    analyser's tempo was one already, ours is rounded to the nearest)."""
    return prompt if bpm is None else f"{prompt}, bpm : {round(bpm)}"


def read_song(path: Path) -> Audio:
    """The song, or an :class:`AudioError` naming ``music_input`` for what cannot be a song."""
    song = read_audio(path, field="music_input", max_seconds=SONG_MAX_S)
    if song.duration < SONG_MIN_S:
        raise AudioError("music_input", path.name, f"a song of at least {SONG_MIN_S:.0f} s (this one is "
                                                   f"{song.duration:.2f} s)")
    loudness = integrated_loudness(song.wav, song.sample_rate)
    if not np.isfinite(loudness) or loudness < SILENCE_LUFS:
        raise AudioError("music_input", path.name, f"audible music (this file is silent: {loudness:.1f} LUFS)")
    return song


def _log_analysis(analysis: Analysis) -> None:
    bpm = "unknown" if analysis.bpm is None else f"{analysis.bpm:.1f}"
    logger.info("analysis: %.1f s, bpm %s, meter %s, %d beats, %d downbeats", analysis.duration, bpm,
                analysis.meter, len(analysis.beats), len(analysis.downbeats))
    logger.info("chords: %s", " ".join(f"{c.start:.1f}:{c.label}" for c in analysis.chords[:64])
                + (" ..." if len(analysis.chords) > 64 else ""))


def _write_extras(result: RemixResult, job: RemixJob, out_dir: Path, song: Audio, instrumental: Audio,
                  vocals: Audio, plan: SyncPlan, threshold: float, fmt: OutputFormat,
                  provenance: Provenance) -> RemixResult:
    # The stems as they are in the mix (same rate, channels and gains).
    tags = provenance.tags()
    inst_path = write_audio(out_dir / f"instrumental.{fmt}", instrumental.wav.clamp(-1, 1), instrumental.sample_rate,
                            fmt=fmt, tags=tags)
    vocal_path = write_audio(out_dir / f"vocals.{fmt}", vocals.wav.clamp(-1, 1), vocals.sample_rate, fmt=fmt,
                             tags=tags)
    report = {"analysis": result.analysis.to_json(), "seed": result.seed,
              "sync": {"threshold_s": threshold, **plan.report()},
              "generated_downbeats": result.generated_downbeats,
              "mix": {"instrumental_gain_db": result.mixing.instrumental_gain_db,
                      "vocal_lufs": result.mixing.vocal_lufs,
                      "accompaniment_lufs": result.mixing.accompaniment_lufs}}
    json_path = out_dir / "analysis.json"
    json_path.write_text(json.dumps(report, indent=2))
    synced_downbeats = _map_times(result.generated_downbeats, plan)
    plot_path = plot_remix(out_dir / "remix.png", song=song.wav.mean(0).numpy(), sample_rate=song.sample_rate,
                           song_downbeats=result.analysis.downbeats, generated_downbeats=result.generated_downbeats,
                           synced_downbeats=synced_downbeats,
                           chords=[(c.start, c.end, c.label) for c in result.analysis.chords],
                           title=f"remix: {job.prompt}"[:100])
    return dataclasses.replace(result, instrumental=inst_path, vocals=vocal_path, analysis_json=json_path,
                               plot=plot_path)


def _map_times(times: list[float], plan: SyncPlan) -> list[float]:
    """Where the generated downbeats land after the stretch (unchanged when it was not applied)."""
    return [float(t) for t in plan.map_times(times)]

