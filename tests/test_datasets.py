"""The data registry: local files are sha256-verified; missing ones are fetched with pooch."""

from __future__ import annotations

import shutil

import pytest

from napari_pvs.engine import data as datasets
from napari_pvs.engine.data import registry
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
        registry.resources.files("napari_pvs.engine.data") / "MANIFEST.tsv").read_text()


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
    """Offline stand-in for the network: pooch's HTTP downloader is asked for the GitHub
    address; pooch checks the registry hash and keeps the file in the cache."""
    rel = "open_ms/longitudinal/patient01/gt.nii.gz"
    monkeypatch.setenv(datasets.ENV_VAR, str(tmp_path / "empty"))
    monkeypatch.setattr(registry, "cache_dir", lambda: tmp_path / "cache")
    calls = {}

    import pooch

    def fake_download(self, url, output_file, pooch_obj, check_only=False):
        calls["url"] = url
        shutil.copy(data_dir / rel, output_file)

    monkeypatch.setattr(pooch.HTTPDownloader, "__call__", fake_download)
    p = datasets.fetch(rel)
    assert p.read_bytes() == (data_dir / rel).read_bytes()
    assert p.is_relative_to(tmp_path / "cache")
    assert calls["url"].startswith("https://github.com/muschellij2/open_ms_data/raw/65704901")
    # a download that does not match the registry hash is refused
    (tmp_path / "cache").joinpath(rel).unlink()
    monkeypatch.setattr(pooch.HTTPDownloader, "__call__",
                        lambda self, url, output_file, pooch_obj, check_only=False:
                        __import__("pathlib").Path(output_file).write_bytes(b"tampered"))
    with pytest.raises(PVSInputError, match="download from .* failed"):
        datasets.fetch(rel)
    with pytest.raises(PVSInputError, match="cannot be downloaded"):
        datasets.fetch(rel, download=False)


def test_unknown_file():
    with pytest.raises(PVSInputError, match="not in the data registry"):
        datasets.fetch("nope/missing.nii.gz")
