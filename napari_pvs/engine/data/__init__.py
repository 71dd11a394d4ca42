"""Data napari-pvs ships or fetches: the registry of real public MRI files
(:mod:`.registry`, pooch-backed) and the shipped default model's location
(:mod:`.default_model`). Neither imports torch."""

from .default_model import (ACCURATE_CHECKPOINT_NAME, DEFAULT_CHECKPOINT_NAME, SHIPPED_MODELS, accurate_checkpoint,
                            default_checkpoint, resolve_checkpoint)
from .registry import ENV_VAR, DataEntry, cache_dir, data_dir, fetch, file_url, manifest, sha256_file

__all__ = ["DataEntry", "manifest", "data_dir", "cache_dir", "fetch", "file_url", "sha256_file", "ENV_VAR",
           "default_checkpoint", "DEFAULT_CHECKPOINT_NAME",
           "accurate_checkpoint", "ACCURATE_CHECKPOINT_NAME", "resolve_checkpoint", "SHIPPED_MODELS"]
