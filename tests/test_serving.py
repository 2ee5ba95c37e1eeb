"""Serving helpers: per-request directories and the cancel flag."""

from __future__ import annotations

import os
import signal

from musicgen_remix.serving import RequestDirs, cancel_signal


def test_request_dirs_keep_only_the_live_request() -> None:
    dirs = RequestDirs()
    first = dirs.new()
    (first / "output.wav").write_bytes(b"x")
    second = dirs.new()
    assert not first.exists() and second.is_dir()
    dirs.cleanup()
    assert not second.exists()


def test_cancel_signal_chains_the_servers_handler() -> None:
    seen: list[int] = []
    previous = signal.signal(signal.SIGUSR1, lambda signum, frame: seen.append(signum))
    try:
        event = cancel_signal()
        assert not event.is_set()
        os.kill(os.getpid(), signal.SIGUSR1)
        assert event.is_set() and seen == [signal.SIGUSR1]
    finally:
        signal.signal(signal.SIGUSR1, previous)


def test_cancel_signal_without_a_server_handler_is_never_set() -> None:
    previous = signal.signal(signal.SIGUSR1, signal.SIG_DFL)
    try:
        assert not cancel_signal().is_set()
        assert signal.getsignal(signal.SIGUSR1) == signal.SIG_DFL
    finally:
        signal.signal(signal.SIGUSR1, previous)
