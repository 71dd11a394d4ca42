"""The data registry: local files are sha256-verified; missing ones are fetched with pooch."""

from __future__ import annotations

import shutil

import pytest

from napari_pvs.engine import datasets
from napari_pvs.engine.errors import PVSInputError


def test_manifest_matches_shared(data_dir):
    entries = datasets.manifest()
    assert "open_ms/longitudinal/patient01/study1_T2W.nii.gz" in entries
    e = entries["open_ms/longitudinal/patient01/study1_T2W.nii.gz"]
    assert e.url == ("https://github.com/muschellij2/open_ms_data/raw/65704901f60650824565aa5a4818611aa89716f4/"
                     "longitudinal/raw/patient01/study1_T2W.nii.gz")
    assert entries["atlas/mni152/mni_icbm152_t1_tal_nlin_sym_09a_converted.nii.gz"].url is None
    # the packaged copy is the shared one
    assert (data_dir / "MANIFEST.tsv").read_text() == (
        datasets.resources.files("napari_pvs") / "data" / "MANIFEST.tsv").read_text()


def test_fetch_from_data_dir_verifies_sha(data_dir, monkeypatch):
    monkeypatch.setenv(datasets.ENV_VAR, str(data_dir))
    p = datasets.fetch("open_ms/longitudinal/patient01/gt.nii.gz")
    assert p == data_dir / "open_ms/longitudinal/patient01/gt.nii.gz"


def test_fetch_rejects_corrupt_copy(data_dir, tmp_path, monkeypatch):
    rel = "open_ms/longitudinal/patient01/gt.nii.gz"
    (tmp_path / rel).parent.mkdir(parents=True)
    data = (data_dir / rel).read_bytes()
    (tmp_path / rel).write_bytes(data[:-10] + b"0123456789")
    monkeypatch.setenv(datasets.ENV_VAR, str(tmp_path))
    with pytest.raises(PVSInputError, match="sha256 does not match"):
        datasets.fetch(rel)


def test_fetch_downloads_missing_file_with_pooch(data_dir, tmp_path, monkeypatch):
    """Offline stand-in for the network: pooch.retrieve is given the GitHub address and
    the registry hash, and its file is returned."""
    rel = "open_ms/longitudinal/patient01/gt.nii.gz"
    monkeypatch.setenv(datasets.ENV_VAR, str(tmp_path / "empty"))
    calls = {}

    def fake_retrieve(url, known_hash, fname, path, progressbar):
        calls.update(url=url, known_hash=known_hash)
        out = tmp_path / "cache" / fname
        out.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(data_dir / rel, out)
        return str(out)

    import pooch

    monkeypatch.setattr(pooch, "retrieve", fake_retrieve)
    p = datasets.fetch(rel)
    assert p.read_bytes() == (data_dir / rel).read_bytes()
    assert calls["url"].startswith("https://github.com/muschellij2/open_ms_data/raw/65704901")
    assert calls["known_hash"] == "sha256:" + datasets.manifest()[rel].sha256
    with pytest.raises(PVSInputError, match="cannot be downloaded"):
        datasets.fetch(rel, download=False)


def test_unknown_file():
    with pytest.raises(PVSInputError, match="not in the data registry"):
        datasets.fetch("nope/missing.nii.gz")
