"""Access to the real public MRI files listed in the data registry (``MANIFEST.tsv``).

Each row of the manifest gives a file's relative path, size, sha256 and public origin
(GitHub ``owner/repo``, commit and path inside that repository). A file is resolved in
this order:

1. the data directory: ``$NAPARI_PVS_DATA`` if set, else ``../shared/data`` beside a
   development checkout, if it exists;
2. the per-user cache (``pooch.os_cache("napari-pvs")``), downloading it with pooch from
   ``https://github.com/<source>/raw/<commit>/<source_path>`` when missing.

Every file is checked against its sha256 before it is used. No data file is ever part
of this repository.
"""

from __future__ import annotations

import csv
import hashlib
import logging
import os
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from pathlib import Path

from .errors import PVSInputError

__all__ = [
    "DataEntry",
    "manifest",
    "data_dir",
    "cache_dir",
    "fetch",
    "file_url",
    "verify_sha256",
    "sha256_file",
    "ENV_VAR",
]

log = logging.getLogger(__name__)
ENV_VAR = "NAPARI_PVS_DATA"


@dataclass(frozen=True)
class DataEntry:
    """One row of the data registry."""

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


def _read_manifest(path: Path) -> dict[str, DataEntry]:
    with open(path, newline="") as fh:
        rows = csv.DictReader(fh, delimiter="\t")
        return {
            r["path"]: DataEntry(r["path"], int(r["bytes"]), r["sha256"], r["source"],
                                 r["commit"], r["source_path"])
            for r in rows
        }


@lru_cache(maxsize=1)
def manifest() -> dict[str, DataEntry]:
    """The registry shipped with the package: relative path -> :class:`DataEntry`."""
    ref = resources.files("napari_pvs") / "data" / "MANIFEST.tsv"
    with resources.as_file(ref) as p:
        return _read_manifest(Path(p))


def _dev_data_dir() -> Path:
    # <checkout>/napari_pvs/engine/datasets.py -> <checkout>/../shared/data
    return Path(__file__).resolve().parents[3] / "shared" / "data"


def data_dir() -> Path | None:
    """The local data directory: ``$NAPARI_PVS_DATA``, else ``../shared/data`` beside a
    development checkout; None when neither exists."""
    env = os.environ.get(ENV_VAR)
    if env:
        return Path(env).expanduser()
    dev = _dev_data_dir()
    return dev if dev.is_dir() else None


def cache_dir() -> Path:
    """Per-user download cache used when a file is not in :func:`data_dir`."""
    import pooch

    return Path(pooch.os_cache("napari-pvs"))


def file_url(entry: DataEntry) -> str | None:
    """``https://github.com/<source>/raw/<commit>/<source_path>`` for GitHub sources."""
    if entry.source.startswith("pypi:") or entry.commit in ("", "-"):
        return None
    return f"https://github.com/{entry.source}/raw/{entry.commit}/{entry.source_path}"


def sha256_file(path: str | Path) -> str:
    """Hex sha256 of a file."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def verify_sha256(path: Path, expected: str) -> bool:
    """True when the file's sha256 equals ``expected`` (hex)."""
    return sha256_file(path) == expected.lower()


_verified: set[tuple[str, str]] = set()


def fetch(relpath: str, *, download: bool = True) -> Path:
    """Local path of a registry file, verified against its sha256.

    Parameters
    ----------
    relpath : str
        Path relative to the data root, as in ``MANIFEST.tsv``, e.g.
        ``"open_ms/longitudinal/patient01/study1_T2W.nii.gz"``.
    download : bool
        Allow downloading into the per-user cache with pooch when the file is not in
        the data directory.

    Returns
    -------
    Path

    Raises
    ------
    PVSInputError
        Unknown file; local copy with a wrong checksum; missing and not downloadable
        (offline, or a non-GitHub source).
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
            if not verify_sha256(local, entry.sha256):
                raise PVSInputError(f"sha256 does not match the registry ({entry.sha256[:12]}...); "
                                    "the file is corrupt or a different version", local)
            _verified.add(key)
        return local
    url = file_url(entry)
    if not download or url is None:
        where = root if root is not None else f"${ENV_VAR} (unset)"
        raise PVSInputError(f"not found in data directory {where} and cannot be downloaded"
                            + (" (source is not on GitHub)" if url is None else ""), relpath)
    import pooch

    target = cache_dir()
    log.info("downloading %s from %s", relpath, url)
    try:
        local = pooch.retrieve(url=url, known_hash=f"sha256:{entry.sha256}",
                               fname=relpath.replace("/", "__"), path=target, progressbar=False)
    except Exception as exc:  # network errors, hash mismatch
        raise PVSInputError(f"download from {url} failed ({type(exc).__name__}: {exc})", relpath) from None
    return Path(local)
