"""What a Cog entrypoint needs around one call into the package, free of any Cog import.

``predict.py`` stays a thin typed adapter: it converts Cog's types and calls :meth:`Entrypoint.request`.
This module owns the process-level plumbing:

- one temporary directory per request (``musicgen-remix-*`` under ``TMPDIR``), removed at once when the
  request fails or is canceled, otherwise when the next request starts (Cog uploads or inlines the output
  after ``run()`` returns) or when the process exits;
- a file input must be a file the server downloaded for this request (Cog 0.23 hands any other string to
  ``run()`` as a plain ``str``: a caller could name a file on the server);
- failures are logged with their traceback (the current Cog runtime reports only a one-line error) and a
  cancel, which Cog 0.23 delivers as an exception injected into the prediction thread, passes through
  untouched after the request's files are removed;
- Cog's own leftovers in ``TMPDIR`` are removed: when a URL input fails to download, Cog has already created
  its empty ``tmp*`` file and never removes it (one per failed request);
- memory: what setup made is frozen out of the garbage collector's sight (:meth:`Entrypoint.ready`:
  ``gc.freeze``), so that each request can end with a full collection that costs microseconds instead of
  0.3 s; then what the request freed goes back to the system, and again before the next request
  (:func:`release_freed_memory`). Without both, the worker's RSS on tiny weights grew from 1.24 to 2.40 GiB
  over 100 predictions of ``benchmarks.soak --entrypoint remix-detailed``: reference cycles (a matplotlib
  figure with its renderer's buffer) waited for the collector's rare oldest-generation pass, and glibc kept
  what each prediction thread's arena had freed (coglet runs each prediction on a thread of its own).
"""

from __future__ import annotations

import atexit
import contextlib
import ctypes
import ctypes.util
import gc
import logging
import os
import re
import shutil
import tempfile
import threading
import time
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path

from musicgen_remix.errors import InputError
from musicgen_remix.progress import Progress, log_progress

logger = logging.getLogger(__name__)

REQUEST_DIR_PREFIX = "musicgen-remix-"
LEFTOVER_AGE_S = 10.0
"""An empty ``tmp*`` file older than this is a failed download of an earlier request (this request's inputs
were written just before ``run()`` was called, and Cog serves one request at a time)."""


class RequestDirs:
    """One temporary directory per request; the previous one is removed when the next request starts and
    the last one when the process exits.

    A process that cannot run its exit handlers leaves its last directory: coglet kills a worker that has
    not exited 10 s after ``POST /shutdown`` (a prediction still running on a busy machine), and the kernel
    kills one that runs out of memory. Directories are named ``musicgen-remix-<pid>-*``, so the next process
    to start removes those whose process is gone (:func:`remove_orphaned_dirs`).
    """

    def __init__(self) -> None:
        self._last: Path | None = None
        self._lock = threading.Lock()
        remove_orphaned_dirs()
        atexit.register(self.cleanup)

    def new(self) -> Path:
        with self._lock:
            self._remove_last()
            self._last = Path(tempfile.mkdtemp(prefix=f"{REQUEST_DIR_PREFIX}{os.getpid()}-"))
            return self._last

    def cleanup(self) -> None:
        with self._lock:
            self._remove_last()

    def _remove_last(self) -> None:
        if self._last is not None:
            shutil.rmtree(self._last, ignore_errors=True)
            self._last = None


# Libraries whose start-up noise reads like a broken install: xFormers' "please reinstall" banner (its C++
# extensions are not needed: audiocraft runs on torch's attention), audiocraft's info chatter per window.
NOISY_LOGGERS = ("xformers", "audiocraft", "transformers", "huggingface_hub", "demucs")


def configure_logging(*, verbose: bool = False) -> None:
    """Log lines as the CLI and the server show them; quiet libraries unless ``verbose``.

    Quiet means: the noisy libraries' loggers at ERROR, ``torch.nn.utils.weight_norm``'s FutureWarning
    (audiocraft's EnCodec uses it) ignored, transformers' per-file loading bars off. With ``verbose``
    everything is shown at DEBUG.
    """
    logging.basicConfig(level=logging.DEBUG if verbose else logging.INFO,
                        format="%(levelname)s %(name)s: %(message)s")
    if verbose:
        return
    for name in NOISY_LOGGERS:
        logging.getLogger(name).setLevel(logging.ERROR)
    warnings.filterwarnings("ignore", message=r".*weight_norm.*", category=FutureWarning)
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    os.environ.setdefault("TRANSFORMERS_NO_ADVISORY_WARNINGS", "1")


def _malloc_trim() -> Callable[[int], int] | None:
    """glibc's ``malloc_trim``, or None where the C library is another (musl, macOS)."""
    name = ctypes.util.find_library("c")
    try:
        trim = ctypes.CDLL(name).malloc_trim
    except (OSError, AttributeError, TypeError):
        return None
    trim.argtypes = [ctypes.c_size_t]
    trim.restype = ctypes.c_int
    return trim


_TRIM = _malloc_trim()


def release_freed_memory() -> bool:
    """Return the heap memory that every thread's arena has free to the system; False where that cannot be
    done (no glibc) or nothing was returned."""
    if _TRIM is None:
        return False
    return bool(_TRIM(0))


class Entrypoint:
    """The per-process state of one served entrypoint: request directories and progress reporting."""

    def __init__(self) -> None:
        configure_logging()
        self.dirs = RequestDirs()

    def ready(self) -> None:
        """End of setup: what exists now (the models) lives as long as the process; the collector stops
        scanning it, so a request's closing collection sees only what the request made."""
        gc.collect()
        gc.freeze()

    @contextlib.contextmanager
    def request(self) -> Iterator[tuple[Path, Progress]]:
        """A new request's directory and progress reporter (log lines); see the module docstring."""
        remove_cog_leftovers()
        release_freed_memory()  # what Cog freed after the last request (its output, read and sent)
        out_dir = self.dirs.new()
        try:
            yield out_dir, Progress(report=log_progress())
        except InputError as exc:
            self.dirs.cleanup()
            logger.error("%s", exc)
            raise
        except Exception:
            self.dirs.cleanup()
            logger.exception("the prediction failed")
            raise
        except BaseException:  # a cancel (Cog injects its CancelationException), or the process stopping
            self.dirs.cleanup()
            logger.info("the prediction was canceled; its files are removed")
            raise
        finally:
            gc.collect()  # reference cycles the request left (figures, tracebacks) hold memory until collected
            release_freed_memory()  # what this request's pipeline freed


def remove_orphaned_dirs(tmpdir: Path | None = None) -> list[str]:
    """Remove the request directories in ``TMPDIR`` whose process no longer exists; returns their names.

    A directory whose pid is alive is kept, whoever that process is now (a reused pid errs on the safe side).
    """
    root = Path(tmpdir or tempfile.gettempdir())
    removed = []
    for path in root.glob(f"{REQUEST_DIR_PREFIX}*-*"):
        pid_text = path.name[len(REQUEST_DIR_PREFIX):].split("-", 1)[0]
        if not pid_text.isdigit() or path.is_symlink() or not path.is_dir() or _alive(int(pid_text)):
            continue
        shutil.rmtree(path, ignore_errors=True)
        removed.append(path.name)
    if removed:
        logger.info("removed %d request director%s left by processes that are gone", len(removed),
                    "y" if len(removed) == 1 else "ies")
    return removed


def _alive(pid: int) -> bool:
    """Whether ``pid`` names a process (another user's too: signal 0 to it is refused, but it exists)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    return True


def remove_cog_leftovers(tmpdir: Path | None = None) -> list[str]:
    """Remove the empty ``tmp*`` files Cog's failed input downloads leave in ``TMPDIR``; returns their names."""
    root = Path(tmpdir or tempfile.gettempdir())
    removed = []
    now = time.time()
    for path in root.glob("tmp*"):
        try:
            stat = path.lstat()
            if path.is_file() and not path.is_symlink() and stat.st_size == 0 and now - stat.st_mtime > LEFTOVER_AGE_S:
                path.unlink()
                removed.append(path.name)
        except OSError:  # gone meanwhile, or not ours to remove
            continue
    if removed:
        logger.info("removed %d empty file(s) left in %s by failed input downloads", len(removed), root)
    return removed


def downloaded_file(value: object, field: str, *, downloaded: bool, into: Path | None = None) -> Path | None:
    """A file input as the server received it: ``None``, or a file it downloaded for this request.

    Args:
        value: what the Cog adapter got for the input.
        field: the input's name, for the error.
        downloaded: whether Cog made ``value`` from a URL it fetched (a ``cog.Path``); a plain string is
            a path the caller chose on the server, which is never read.
        into: the request's directory: the file is linked there under the name the caller's URL gave it
            (Cog stores it as ``tmp<8 random characters><name>``), so errors name what the caller sent.

    Raises:
        InputError: naming ``field``, for anything but a downloaded file.
    """
    if value is None:
        return None
    if not downloaded:
        raise InputError(field, value, "a URL of the file (http, https or data:); a path on the server is "
                                       "not accepted")
    path = Path(str(value))
    if not path.is_file():
        raise InputError(field, _caller_name(path.name), "a file the server could download")
    if into is None:
        return path
    link = into / "inputs" / field / (_caller_name(path.name) or "file")
    link.parent.mkdir(parents=True, exist_ok=True)
    link.symlink_to(path.resolve())
    return link


def _caller_name(name: str) -> str:
    """The file name the caller's URL gave, without the prefix Cog's ``NamedTemporaryFile`` added."""
    return re.sub(r"^tmp[a-z0-9_]{8}", "", name)
