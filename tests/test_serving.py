"""Serving plumbing around each request: request directories, failures, cancels as Cog 0.23 delivers them."""

from __future__ import annotations

import ctypes
import logging
import os
import subprocess
import tempfile
import threading
import time
from pathlib import Path

import pytest
from cog import CancelationException

from musicgen_remix.errors import InputError
from musicgen_remix.serving import Entrypoint, RequestDirs, downloaded_file, remove_orphaned_dirs


def test_request_dirs_keep_only_the_live_request() -> None:
    dirs = RequestDirs()
    first = dirs.new()
    (first / "output.wav").write_bytes(b"x")
    second = dirs.new()
    assert not first.exists() and second.is_dir()
    dirs.cleanup()
    assert not second.exists()


def test_directories_of_processes_that_are_gone_are_removed_at_start(tmp_path: Path,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """What a killed worker left (no exit handlers ran) is removed by the next one; live processes' stay."""
    gone = subprocess.Popen(["true"])
    gone.wait()  # reaped: its pid names no process now
    orphan = tmp_path / f"musicgen-remix-{gone.pid}-abc123"
    (orphan / "sub").mkdir(parents=True)
    (orphan / "sub" / "output.wav").write_bytes(b"x")
    live = tmp_path / f"musicgen-remix-{os.getpid()}-def456"
    live.mkdir()
    unrelated = tmp_path / "musicgen-remix-notapid"
    unrelated.mkdir()
    monkeypatch.setenv("TMPDIR", str(tmp_path))
    monkeypatch.setattr(tempfile, "tempdir", None)  # tempfile caches the directory it found
    dirs = RequestDirs()
    assert not orphan.exists()
    assert live.is_dir() and unrelated.is_dir()
    new = dirs.new()
    assert new.parent == tmp_path and new.name.startswith(f"musicgen-remix-{os.getpid()}-")
    assert remove_orphaned_dirs(tmp_path) == []  # the new one's process is alive
    dirs.cleanup()


def test_a_successful_request_keeps_its_directory_for_the_upload() -> None:
    entrypoint = Entrypoint()
    with entrypoint.request() as (out_dir, _):
        (out_dir / "output.wav").write_bytes(b"x")
    assert (out_dir / "output.wav").is_file()  # Cog reads it after run() returns
    entrypoint.dirs.cleanup()


def test_an_input_error_removes_the_directory_and_logs_one_line(caplog: pytest.LogCaptureFixture) -> None:
    entrypoint = Entrypoint()
    with caplog.at_level(logging.ERROR), pytest.raises(InputError), entrypoint.request() as (out_dir, _):
        raise InputError("top_k", 9999, "an integer from 0 to 2048")
    assert not out_dir.exists()
    assert [r.message for r in caplog.records] == ["top_k=9999 is not allowed: an integer from 0 to 2048"]
    assert all(r.exc_info is None for r in caplog.records)


def test_an_unexpected_failure_is_logged_with_its_traceback(caplog: pytest.LogCaptureFixture) -> None:
    entrypoint = Entrypoint()
    with caplog.at_level(logging.ERROR), pytest.raises(ZeroDivisionError), entrypoint.request() as (out_dir, _):
        _ = 1 / 0
    assert not out_dir.exists()
    assert caplog.records[-1].exc_info is not None  # the current Cog runtime reports only one line


def _inject(thread: threading.Thread, exception: type[BaseException]) -> None:
    """What coglet does to cancel: raise ``exception`` in ``thread`` at its next bytecode."""
    done = ctypes.pythonapi.PyThreadState_SetAsyncExc(ctypes.c_ulong(thread.ident or 0), ctypes.py_object(exception))
    assert done == 1


def test_a_cancel_injected_into_the_request_thread_passes_through_and_cleans_up() -> None:
    entrypoint = Entrypoint()
    seen: dict[str, object] = {}
    running = threading.Event()

    def run() -> None:
        try:
            with entrypoint.request() as (out_dir, _):
                seen["dir"] = out_dir
                running.set()
                while True:  # a generation loop: Python bytecode between steps
                    time.sleep(0.001)
        except BaseException as exc:  # noqa: BLE001 - the point of this test
            seen["raised"] = exc

    thread = threading.Thread(target=run)
    thread.start()
    assert running.wait(5)
    started = time.monotonic()
    _inject(thread, CancelationException)
    thread.join(5)
    assert time.monotonic() - started < 1.0
    assert isinstance(seen["raised"], CancelationException)
    assert not Path(str(seen["dir"])).exists()


def test_downloaded_file_accepts_only_what_the_server_downloaded(tmp_path: Path) -> None:
    song = tmp_path / "song.wav"
    song.write_bytes(b"RIFF")
    assert downloaded_file(None, "music_input", downloaded=False) is None
    assert downloaded_file(song, "music_input", downloaded=True) == song
    with pytest.raises(InputError, match=r"music_input='/etc/passwd' is not allowed: a URL of the file"):
        downloaded_file("/etc/passwd", "music_input", downloaded=False)
    with pytest.raises(InputError, match="input_audio"):
        downloaded_file(tmp_path / "gone.wav", "input_audio", downloaded=True)


def _rss_mib() -> float:
    return int(Path("/proc/self/statm").read_text().split()[1]) * 4096 / 2**20


def test_memory_a_thread_freed_goes_back_to_the_system() -> None:
    """The pattern of a prediction under coglet: a thread allocates, frees all but a few blocks, ends; glibc keeps
    the freed pages in that thread's arena (free() returns none of them: live blocks pin the heap's top)."""
    import ctypes.util

    if "libc.so" not in (ctypes.util.find_library("c") or ""):
        pytest.skip("not glibc")
    from musicgen_remix.serving import release_freed_memory

    kept: list[bytes] = []

    def predict() -> None:
        blocks = [b"\x01" * (64 * 1024) for _ in range(4000)]  # 250 MiB written, in blocks under the mmap threshold
        kept.extend(blocks[::50] + blocks[-1:])
        del blocks

    worker = threading.Thread(target=predict)
    worker.start()
    worker.join()
    before = _rss_mib()
    assert release_freed_memory()
    after = _rss_mib()
    assert before - after > 150, f"RSS {before:.0f} -> {after:.0f} MiB"
    kept.clear()


def test_every_request_gives_freed_memory_back_before_and_after(monkeypatch: pytest.MonkeyPatch) -> None:
    from musicgen_remix import serving

    calls: list[str] = []
    monkeypatch.setattr(serving, "release_freed_memory", lambda: calls.append("trim") or True)
    entrypoint = Entrypoint()
    with entrypoint.request():
        calls.append("run")
    with pytest.raises(InputError), entrypoint.request():
        calls.append("run")
        raise InputError("top_k", 9999, "an integer from 0 to 2048")
    assert calls == ["trim", "run", "trim"] * 2
    entrypoint.dirs.cleanup()


class _Cycle:
    def __init__(self) -> None:
        self.me = self
        self.buffer = bytearray(8 * 2**20)


def test_a_cycle_made_by_a_request_is_freed_when_the_request_ends() -> None:
    import gc
    import weakref

    entrypoint = Entrypoint()
    try:
        entrypoint.ready()
        assert gc.get_freeze_count() > 0  # setup's objects: no longer scanned by each request's collection
        gc.disable()  # no automatic collection may do the request's work for it
        with entrypoint.request():
            made = weakref.ref(_Cycle())
            assert made() is not None
        assert made() is None
    finally:
        gc.enable()
        gc.unfreeze()
        entrypoint.dirs.cleanup()
