"""Manifest tests: the shipped registry is complete and consistent; bad entries are rejected."""

from __future__ import annotations

from pathlib import Path

import pytest

from musicgen_remix.errors import WeightsError
from musicgen_remix.weights import DEFAULT_ASSETS, asset_path, load_manifest, weights_root
from musicgen_remix.weights.manifest import DEFAULT_MANIFEST_PATH, WEIGHTS_ENV

REV = "0123456789abcdef0123456789abcdef01234567"
SHA = "ab" * 32

SERVER_ASSETS = {
    "musicgen-melody": "musicgen",
    "musicgen-stereo-melody": "musicgen",
    "musicgen-melody-large": "musicgen",
    "musicgen-stereo-melody-large": "musicgen",
    "musicgen-small": "musicgen",
    "musicgen-medium": "musicgen",
    "musicgen-large": "musicgen",
    "encodec-32khz": "encodec",
    "mbd": "mbd",
    "t5-base": "t5",
    "htdemucs": "demucs",
    "musicgen-chord": "chord",
    "musicgen-stereo-chord": "chord",
    "musicgen-chord-large": "chord",
    "musicgen-stereo-chord-large": "chord",
}


def test_shipped_manifest_registers_every_asset_the_server_needs() -> None:
    manifest = load_manifest()

    assert {name: manifest[name].kind for name in SERVER_ASSETS if name in manifest} == SERVER_ASSETS
    assert set(DEFAULT_ASSETS) <= set(manifest)
    for asset in manifest.values():
        assert asset.licence and asset.description and asset.source
        assert asset.files
        for file in asset.files:
            assert file.url.startswith("https://"), file.url


def test_shipped_manifest_pins_and_hashes() -> None:
    manifest = load_manifest()

    htdemucs = manifest["htdemucs"].files[0]
    assert htdemucs.url == "https://dl.fbaipublicfiles.com/demucs/hybrid_transformer/955717e8-8726e21a.th"
    assert htdemucs.sha256 is not None and htdemucs.sha256.startswith("8726e21a")
    mbd_url = manifest["mbd"].files[0].url
    assert mbd_url.endswith("/facebook/multiband-diffusion/resolve/main/mbd_musicgen_32khz.th")
    for name in ("t5-base", "encodec-32khz", "musicgen-small", "htdemucs"):
        asset = manifest[name]
        assert asset.pinned
        assert all(f.size is not None and f.sha256 is not None for f in asset.files), name
    # the audiocraft-format 32 kHz EnCodec is the very file musicgen-small ships
    (codec,) = manifest["encodec-32khz"].files
    small = {f.filename: f for f in manifest["musicgen-small"].files}["compression_state_dict.bin"]
    assert (codec.url, codec.size, codec.sha256) == (small.url, small.size, small.sha256)
    release_files = {"state_dict.bin", "compression_state_dict.bin"}
    for name in SERVER_ASSETS:
        if manifest[name].kind == "musicgen":
            assert {f.filename for f in manifest[name].files} == release_files


def test_shipped_layout(tmp_path: Path) -> None:
    manifest = load_manifest()
    t5_rev = manifest["t5-base"].revision

    def where(name: str) -> Path:
        return asset_path(name, tmp_path, manifest=manifest)

    assert where("musicgen-melody") == tmp_path / "facebook" / "musicgen-melody"
    assert where("musicgen-stereo-melody-large") == tmp_path / "facebook" / "musicgen-stereo-melody-large"
    assert where("encodec-32khz") == tmp_path / "audiocraft" / "encodec-32khz"
    assert where("mbd") == tmp_path / "facebook" / "multiband-diffusion" / "mbd_musicgen_32khz.th"
    assert where("t5-base") == tmp_path / "hf" / "models--t5-base" / "snapshots" / str(t5_rev)
    assert manifest["t5-base"].hf_ref == "hf/models--t5-base/refs/main"
    assert where("htdemucs") == tmp_path / "torch" / "hub" / "checkpoints" / "955717e8-8726e21a.th"
    assert where("musicgen-stereo-chord") == tmp_path / "sakemin" / "musicgen-stereo-chord.th"


def test_weights_root_default_and_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv(WEIGHTS_ENV, raising=False)
    assert weights_root() == DEFAULT_MANIFEST_PATH.parent
    monkeypatch.setenv(WEIGHTS_ENV, str(tmp_path))
    assert weights_root() == tmp_path
    assert asset_path("htdemucs").parent == tmp_path / "torch" / "hub" / "checkpoints"


def test_hf_urls_use_the_endpoint_and_revision(tmp_path: Path) -> None:
    manifest = load_manifest(hf_endpoint="https://mirror.example/")

    urls = [f.url for f in manifest["musicgen-melody"].files]
    rev = manifest["musicgen-melody"].revision
    assert urls == [
        f"https://mirror.example/facebook/musicgen-melody/resolve/{rev}/state_dict.bin",
        f"https://mirror.example/facebook/musicgen-melody/resolve/{rev}/compression_state_dict.bin",
    ]


def test_unknown_asset_name_lists_known_ones() -> None:
    with pytest.raises(WeightsError, match="known assets: .*musicgen-melody.*htdemucs"):
        asset_path("musicgen-melodie")


GOOD_URL = """
[assets.a]
kind = "chord"
url = "https://example.org/w/a.th"
licence = "CC-BY-NC-4.0"
description = "d"
"""

GOOD_HF = f"""
[assets.m]
kind = "musicgen"
hf = "facebook/musicgen-melody"
revision = "{REV}"
files = ["state_dict.bin", "compression_state_dict.bin"]
licence = "CC-BY-NC-4.0"
description = "d"
"""


def _load(tmp_path: Path, text: str) -> dict:
    path = tmp_path / "manifest.toml"
    path.write_text(text, encoding="utf-8")
    return load_manifest(path)


def test_minimal_entries_load(tmp_path: Path) -> None:
    manifest = _load(tmp_path, GOOD_URL + GOOD_HF)
    assert list(manifest) == ["a", "m"]
    assert manifest["a"].files[0].size is None and manifest["a"].files[0].sha256 is None
    assert not manifest["a"].pinned and manifest["m"].pinned


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (GOOD_URL.replace('kind = "chord"', 'kind = "vocoder"'), "kind='vocoder' is not one of"),
        (GOOD_URL.replace('kind = "chord"\n', ""), "kind=None"),
        (GOOD_URL.replace('licence = "CC-BY-NC-4.0"\n', ""), "licence"),
        (GOOD_URL.replace('description = "d"', 'description = "  "'), "description"),
        (GOOD_URL.replace("url = ", 'hf = "x/y"\nurl = '), "exactly one source"),
        (GOOD_URL.replace('url = "https://example.org/w/a.th"\n', ""), "exactly one source"),
        (GOOD_URL + 'sha256 = "1234"\n', "64 hex digits"),
        (GOOD_URL + "size = -3\n", "positive number of bytes"),
        (GOOD_URL + "size = true\n", "positive number of bytes"),
        (GOOD_URL + 'sha265 = "x"\n', "unknown keys \\['sha265'\\]"),
        (GOOD_URL.replace("https://example.org", "http://example.org"), "must use https"),
        (GOOD_URL.replace("w/a.th", "w/..%2Fa.th"), "not a safe relative path"),
        (GOOD_URL.replace("a.th", "x-12345678.th") + f'sha256 = "{SHA}"\n', "hash prefix '12345678'"),
        (GOOD_URL.replace('kind = "chord"', 'kind = "t5"'), "downloaded from the hub"),
        (GOOD_HF.replace('kind = "musicgen"', 'kind = "demucs"'), "downloaded from a URL"),
        (GOOD_HF.replace(', "compression_state_dict.bin"', ""), "needs files .'compression_state_dict"),
        (GOOD_HF.replace('"state_dict.bin"', '"../state_dict.bin"'), "not a safe relative path"),
        (GOOD_HF.replace(f'revision = "{REV}"\n', ""), "needs revision"),
        (GOOD_HF.replace('kind = "musicgen"', 'kind = "t5"').replace(REV, "main"), "40-hex commit sha"),
        (GOOD_HF.replace('"state_dict.bin",', '{ name = "state_dict.bin", sha = 1 },'), "keys .'sha'"),
        (GOOD_HF + "size = 3\n", "belongs to an entry of files"),
        (GOOD_HF.replace("[assets.m]", "[assets.M]"), "asset name 'M'"),
        (
            GOOD_URL
            + GOOD_URL.replace("[assets.a]", "[assets.b]").replace(
                'description = "d"', f'description = "d"\nsha256 = "{SHA}"'
            ),
            "both write sakemin/a.th",
        ),
        ("version = 1\n" + GOOD_URL, "unknown top-level keys"),
        ("", "no \\[assets.<name>\\] tables"),
        ("[assets.a\n", "cannot be read"),
    ],
)
def test_invalid_manifests_are_rejected(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(WeightsError, match=message):
        _load(tmp_path, text)


def test_missing_manifest_file(tmp_path: Path) -> None:
    with pytest.raises(WeightsError, match="not found"):
        load_manifest(tmp_path / "nope.toml")


def test_publisher_prefixes_of_the_first_release_are_registered() -> None:
    from musicgen_remix.weights.manifest import load_manifest

    manifest = load_manifest()
    prefixes = {name: manifest[name].files[0].sha256_prefix for name in
                ("musicgen-medium", "musicgen-large", "musicgen-melody")}
    assert prefixes == {"musicgen-medium": "fbc9f401db", "musicgen-large": "1f0cf17b5e",
                        "musicgen-melody": "61305ffc49"}
    assert all(manifest[name].files[0].filename == "state_dict.bin" for name in prefixes)
    # musicgen-small's full hash starts with its own first-release prefix: the hub file is the v0 file.
    small = manifest["musicgen-small"].files[0].sha256
    assert small is not None and small.startswith("830fe5771e")


@pytest.mark.parametrize(("entry", "problem"), [
    ('{ name = "state_dict.bin", sha256_prefix = "xyz" }', "must be 8 to 64 hex digits"),
    ('{ name = "state_dict.bin", sha256_prefix = "abcdef0123", sha256 = "' + "0" * 64 + '" }',
     "does not start with sha256_prefix"),
])
def test_bad_sha256_prefix_is_refused(tmp_path: Path, entry: str, problem: str) -> None:
    from musicgen_remix.weights.manifest import load_manifest

    path = tmp_path / "manifest.toml"
    path.write_text(f'''[assets.m]
kind = "musicgen"
hf = "facebook/musicgen-medium"
revision = "main"
files = [{entry}, "compression_state_dict.bin"]
licence = "CC-BY-NC-4.0"
description = "x"
''')
    with pytest.raises(WeightsError, match=problem):
        load_manifest(path)


def test_an_asset_is_present_only_with_every_file(tmp_path: Path) -> None:
    """A directory left by a failed download is not the model."""
    melody = load_manifest()["musicgen-melody"]
    assert melody.path(tmp_path) == tmp_path / "facebook" / "musicgen-melody"
    melody.path(tmp_path).mkdir(parents=True)
    assert not melody.present(tmp_path)
    (melody.path(tmp_path) / "state_dict.bin").write_bytes(b"lm")
    assert not melody.present(tmp_path)
    (melody.path(tmp_path) / "compression_state_dict.bin").write_bytes(b"codec")
    assert melody.present(tmp_path)
