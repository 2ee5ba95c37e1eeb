"""Beat sync on rendered music, as the remix and the ``sync`` command use it: madmom downbeats on both, the song's
audio given, Rubber Band. Each pair starts further apart than the threshold, or has a pickup bar, or a tempo
ratio of 0.9 or 1.1; bar ``k`` of the take must land on bar ``k`` of the song within 20 ms.

Where a downbeat lands is the applied time map at the take's true (MIDI) downbeat plus the lag at which the
output's onsets best match the take's own around it, so Rubber Band's placement is measured too.
"""

from __future__ import annotations

import dataclasses
import functools
import shutil
import tempfile
from pathlib import Path

import numpy as np
import pytest

from fixtures.songs import Piece, Song, have_fluidsynth, render_piece
from musicgen_remix.analysis.beats import track_beats
from musicgen_remix.audio import Audio, read_audio
from musicgen_remix.remix import agreement
from musicgen_remix.remix.beatsync import SyncPlan, resolve_threshold, sync_to_reference

pytestmark = [
    pytest.mark.skipif(not have_fluidsynth(), reason="fluidsynth or the GM soundfont is missing"),
    pytest.mark.skipif(shutil.which("rubberband") is None, reason="the rubberband program is missing"),
]
RATE = 22050
TOLERANCE_S = 0.020
SONG = Piece("song", ("C:maj", "A:min7", "D:min7", "G:7") * 2, bpm=112, chord_program=0, lead_in=0.3)
# The take: the same bars, another arrangement (electric piano, picked bass), no lead-in.
TAKE = dataclasses.replace(SONG, name="take", chord_program=4, bass_program=34, lead_in=0.0, seed=5)
PAIRS = {
    "take-1.2s-late": (SONG, dataclasses.replace(TAKE, lead_in=1.5)),
    "song-1.6s-lead-in": (dataclasses.replace(SONG, name="song-lead-in", lead_in=1.9), TAKE),
    "song-pickup-bar": (dataclasses.replace(SONG, name="song-pickup", pickup=4, melody=True),
                        dataclasses.replace(TAKE, lead_in=0.2)),
    "ratio-0.9": (SONG, dataclasses.replace(TAKE, bpm=SONG.bpm * 0.9, lead_in=0.6)),
    "ratio-1.1": (SONG, dataclasses.replace(TAKE, bpm=SONG.bpm * 1.1, lead_in=0.9)),
}
_folder: list[tempfile.TemporaryDirectory] = []


@functools.cache
def rendered(piece: Piece) -> tuple[Song, Audio]:
    if not _folder:
        _folder.append(tempfile.TemporaryDirectory(prefix="sync-offsets-"))
    song = render_piece(Path(_folder[0].name) / f"{piece.name}-{abs(hash(piece))}.wav", piece, sample_rate=RATE)
    return song, read_audio(song.path)


@functools.cache
def synced(name: str) -> tuple[Song, Song, Audio, Audio, SyncPlan, float]:
    (song, song_audio), (take, take_audio) = (rendered(piece) for piece in PAIRS[name])
    song_beats, take_beats = track_beats(song_audio), track_beats(take_audio)
    threshold = resolve_threshold(None, song_beats.bpm)
    out, plan = sync_to_reference(take_audio, take_beats.downbeats, song_beats.downbeats, threshold=threshold,
                                  target_duration=song_audio.duration, reference=song_audio)
    return song, take, take_audio, out, plan, threshold


def landing_errors(song: Song, take: Song, take_audio: Audio, out: Audio, plan: SyncPlan) -> np.ndarray:
    truth, source = np.array(song.downbeats), np.array(take.downbeats)
    planned = plan.map_times(source)
    take_onsets, out_onsets = agreement.fine_onsets(take_audio), agreement.fine_onsets(out)
    fps, width, reach = take_onsets.fps, round(0.15 * take_onsets.fps), round(0.03 * take_onsets.fps)
    errors = []
    for s, t, r in zip(source, planned, truth, strict=True):
        a, b = round(s * fps), round(t * fps)
        if min(a, b) - width - reach < 0 or b + width + reach > out_onsets.envelope.size:
            continue
        template = take_onsets.envelope[a - width : a + width]
        scores = [np.dot(template, out_onsets.envelope[b - width + lag : b + width + lag])
                  for lag in range(-reach, reach + 1)]
        errors.append(t + (int(np.argmax(scores)) - reach) / fps - r)
    return np.array(errors)


@pytest.mark.parametrize("name", list(PAIRS))
def test_every_downbeat_lands_on_the_songs_within_20_ms(name: str) -> None:
    song, take, take_audio, out, plan, threshold = synced(name)
    assert out.num_frames == rendered(PAIRS[name][0])[1].num_frames  # the song's length
    assert plan.decision == "synced", plan.skipped_reason
    errors = landing_errors(song, take, take_audio, out, plan)
    assert errors.size >= len(song.downbeats) - 1, errors
    assert np.abs(errors).max() <= TOLERANCE_S, np.round(errors * 1000, 1)


@pytest.mark.parametrize("name", ["take-1.2s-late", "song-1.6s-lead-in"])
def test_the_first_downbeats_were_further_apart_than_the_threshold(name: str) -> None:
    song, take, _, _, plan, threshold = synced(name)
    assert abs(take.downbeats[0] - song.downbeats[0]) > threshold
    assert plan.shift == 0 and plan.agreement_after > plan.agreement_before
