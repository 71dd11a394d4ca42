"""The registry of real public MRI files (:mod:`.registry`, pooch-backed)."""

from .registry import ENV_VAR, DataEntry, cache_dir, data_dir, fetch, file_url, manifest, sha256_file

__all__ = ["DataEntry", "manifest", "data_dir", "cache_dir", "fetch", "file_url", "sha256_file", "ENV_VAR"]
