"""Tests for musicgen_remix.models.store: caching by key, LRU eviction, the pinned default,
content-addressed fine-tunes, and the error for weights that are not on disk."""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

import pytest

from musicgen_remix.errors import WeightsError
from musicgen_remix.models.store import ModelStore


@pytest.fixture(autouse=True)
def _offline_hub(tiny_weights: Path) -> None:
    from musicgen_remix.models.hub import use_weights_root

    use_weights_root(tiny_weights)


def finetune_file(root: Path, name: str) -> Path:
    return root / "finetunes" / f"{name}.th"


def sha256_of(path: Path) -> str:
    """Computed here, not with the store's own hasher: the keys are checked against the files' real digests."""
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_release_is_cached_by_key(tiny_weights: Path) -> None:
    store = ModelStore(tiny_weights, "cpu", max_models=2)
    first = store.release("small")
    assert store.release("small") is first
    assert first.key == "release:musicgen-small"
    assert first.info.name == "small"
    assert store.loaded_keys == ["release:musicgen-small"]


def test_lru_eviction_beyond_max_models(tiny_weights: Path) -> None:
    store = ModelStore(tiny_weights, "cpu", max_models=2)
    small = store.release("small")
    medium = store.release("medium")
    assert store.release("small") is small  # small is now the most recently used
    store.release("large")
    assert store.loaded_keys == ["release:musicgen-small", "release:musicgen-large"]
    assert store.release("small") is small
    # medium was evicted: asking again loads a new instance.
    again = store.release("medium")
    assert again is not medium
    assert store.loaded_keys == ["release:musicgen-small", "release:musicgen-medium"]


def test_max_models_one_keeps_only_the_last(tiny_weights: Path) -> None:
    store = ModelStore(tiny_weights, "cpu", max_models=1)
    small = store.release("small")
    store.release("medium")
    assert store.loaded_keys == ["release:musicgen-medium"]
    assert store.release("small") is not small


def test_pinned_default_is_never_evicted(tiny_weights: Path) -> None:
    store = ModelStore(tiny_weights, "cpu", max_models=1)
    default = store.release("melody")
    store.pin(default)
    assert store.loaded_keys == ["release:musicgen-melody"]
    for version in ("small", "medium", "large"):
        store.release(version)
    store.finetune(finetune_file(tiny_weights, "text-a"))
    keys = store.loaded_keys
    assert keys[0] == "release:musicgen-melody"
    assert len(keys) == 2
    assert store.release("melody") is default


def test_finetune_is_keyed_by_content(tiny_weights: Path, tmp_path: Path) -> None:
    store = ModelStore(tiny_weights, "cpu", max_models=3)
    a_here = tmp_path / "one" / "weights.th"
    a_there = tmp_path / "two" / "other-name.th"
    b_here = tmp_path / "three" / "weights.th"  # same name as a_here, different content
    for src, dst in ((finetune_file(tiny_weights, "melody-a"), a_here),
                     (finetune_file(tiny_weights, "melody-a"), a_there),
                     (finetune_file(tiny_weights, "melody-b"), b_here)):
        dst.parent.mkdir()
        shutil.copy(src, dst)
    a1 = store.finetune(a_here)
    a2 = store.finetune(a_there)
    b = store.finetune(b_here)
    assert a1 is a2
    assert b is not a1
    digest_a = sha256_of(a_here)
    assert a1.key == f"finetune:{digest_a}"
    assert b.key == f"finetune:{sha256_of(b_here)}" != a1.key
    assert a1.info.name == f"fine-tune {digest_a[:12]}"
    # Different content really is a different model.
    wa = a1.model.lm.state_dict()["emb.0.weight"]
    wb = b.model.lm.state_dict()["emb.0.weight"]
    assert not wa.equal(wb)


def test_finetune_content_change_at_same_path_loads_the_new_content(tiny_weights: Path, tmp_path: Path) -> None:
    store = ModelStore(tiny_weights, "cpu", max_models=2)
    path = tmp_path / "weights.th"
    shutil.copy(finetune_file(tiny_weights, "melody-a"), path)
    first = store.finetune(path)
    shutil.copy(finetune_file(tiny_weights, "melody-b"), path)
    second = store.finetune(path)
    assert second is not first
    assert second.key != first.key


def partial_root(tiny_weights: Path, tmp_path: Path) -> Path:
    """A weights root holding only the support assets (T5, htdemucs), no MusicGen or EnCodec."""
    root = tmp_path / "weights"
    root.mkdir()
    (root / "hf").symlink_to(tiny_weights / "hf", target_is_directory=True)
    (root / "torch").symlink_to(tiny_weights / "torch", target_is_directory=True)
    return root


def test_missing_release_names_the_fetch_command(tiny_weights: Path, tmp_path: Path) -> None:
    root = partial_root(tiny_weights, tmp_path)
    store = ModelStore(root, "cpu", fetch_missing=False)
    with pytest.raises(WeightsError) as info:
        store.release("melody")
    message = str(info.value)
    assert "python -m musicgen_remix weights fetch musicgen-melody" in message
    assert str(root) in message
    assert store.loaded_keys == []


def test_missing_encodec_for_finetune_names_the_fetch_command(tiny_weights: Path, tmp_path: Path) -> None:
    store = ModelStore(partial_root(tiny_weights, tmp_path), "cpu", fetch_missing=False)
    with pytest.raises(WeightsError, match="python -m musicgen_remix weights fetch encodec-32khz"):
        store.finetune(finetune_file(tiny_weights, "melody-a"))


def test_empty_root_names_a_fetch_command(tmp_path: Path) -> None:
    store = ModelStore(tmp_path, "cpu", fetch_missing=False)
    with pytest.raises(WeightsError, match=r"python -m musicgen_remix weights fetch [a-z0-9-]+"):
        store.release("small")


def test_missing_mbd_names_the_fetch_command(tmp_path: Path) -> None:
    store = ModelStore(tmp_path, "cpu", fetch_missing=False)
    with pytest.raises(WeightsError, match="weights fetch mbd"):
        store.mbd()


def test_mbd_is_loaded_once(tiny_weights: Path) -> None:
    store = ModelStore(tiny_weights, "cpu")
    assert store.mbd() is store.mbd()


def test_failed_load_is_not_cached(tiny_weights: Path, tmp_path: Path) -> None:
    store = ModelStore(tiny_weights, "cpu")
    bad = tmp_path / "bad.th"
    bad.write_text("not a checkpoint")
    for _ in range(2):
        with pytest.raises(WeightsError):
            store.finetune(bad)
    assert store.loaded_keys == []


def test_finetune_with_a_known_digest_is_not_hashed_again(tiny_weights: Path,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    # A content-addressed download is named by its sha256: the store takes that name as the key.
    import musicgen_remix.models.store as store_module

    store = ModelStore(tiny_weights, "cpu")
    path = finetune_file(tiny_weights, "melody-a")
    digest = sha256_of(path)
    monkeypatch.setattr(store_module, "sha256_file", lambda _: pytest.fail("hashed again"))
    loaded = store.finetune(path, digest=digest)
    assert loaded.key == f"finetune:{digest}"


def _weights_with_mbd(tiny_weights: Path, tmp_path: Path, content: bytes) -> Path:
    """A copy of the tiny weights root whose MBD file holds ``content``."""
    root = tmp_path / "weights"
    shutil.copytree(tiny_weights, root)
    (root / "facebook" / "multiband-diffusion" / "mbd_musicgen_32khz.th").write_bytes(content)
    return root


def test_unusable_mbd_is_reported_once_and_not_read_again(tiny_weights: Path, tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    import musicgen_remix.models.store as store_module

    root = _weights_with_mbd(tiny_weights, tmp_path, b"not a checkpoint")
    calls = []
    real_load = store_module.load_mbd
    monkeypatch.setattr(store_module, "load_mbd", lambda *a: (calls.append(a), real_load(*a))[1])
    store = ModelStore(root, "cpu")
    errors = []
    for _ in range(3):
        with pytest.raises(WeightsError, match="mbd_musicgen_32khz.th is not a readable torch checkpoint") as info:
            store.mbd()
        errors.append(info.value)
    assert len(calls) == 1 and errors[0] is errors[1] is errors[2]
    # A new file (fetched again, say) is tried once more, and works.
    good = tiny_weights / "facebook" / "multiband-diffusion" / "mbd_musicgen_32khz.th"
    shutil.copy(good, root / "facebook" / "multiband-diffusion" / "mbd_musicgen_32khz.th")
    assert store.mbd() is store.mbd()
    assert len(calls) == 2
