"""Training runs and model predictions recorded in a project.

Mixed into :class:`~napari_pvs.engine.project.store.Project`.
"""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import numpy as np

from ..data import sha256_file
from ..io import save_volume
from .records import ImageRecord, _fsync_dir, _now

__all__ = ["RunsMixin"]


class RunsMixin:
    """The training-run and prediction part of :class:`~napari_pvs.engine.project.store.Project`."""

    # ------------------------------------------------------------------ runs and predictions
    def record_training_run(self, checkpoint: str | Path, *, config: dict, metrics: dict,
                            versions: list[int]) -> int:
        """Catalogue a training run (checkpoint path and sha256, config, metrics, the
        versions it trained on); the checkpoint stays where it is. Returns the run id."""
        ck = Path(checkpoint).resolve()
        with self._write() as db:
            return int(db.execute(
                "INSERT INTO training_runs (created, config, metrics, versions, checkpoint, checkpoint_sha256)"
                " VALUES (?, ?, ?, ?, ?, ?)",
                (_now(), json.dumps(config, default=str), json.dumps(metrics, default=str),
                 json.dumps([int(v) for v in versions]), str(ck), sha256_file(ck))).lastrowid)

    def training_runs(self) -> list[dict]:
        return [{"id": int(r["id"]), "created": r["created"], "config": json.loads(r["config"]),
                 "metrics": json.loads(r["metrics"]), "versions": json.loads(r["versions"]),
                 "checkpoint": r["checkpoint"], "checkpoint_sha256": r["checkpoint_sha256"]}
                for r in self._db.execute("SELECT * FROM training_runs ORDER BY id")]

    def record_al_round(self, checkpoint: str | Path, *, strategy: str, n_slices: int, val_dsc: float | None,
                        suggestions: list[dict], run_id: int | None = None) -> int:
        """Catalogue an active-learning round: the fine-tuned checkpoint, the strategy of
        the suggestions that led to it, the number of labelled slices it learnt from, its
        best validation DSC and the suggested slices (``SliceChoice.as_dict()`` rows).
        Returns the round id."""
        with self._write() as db:
            return int(db.execute(
                "INSERT INTO al_rounds (created, run_id, checkpoint, strategy, n_slices, val_dsc, suggestions)"
                " VALUES (?, ?, ?, ?, ?, ?, ?)",
                (_now(), run_id, str(Path(checkpoint).resolve()), strategy, int(n_slices),
                 None if val_dsc is None else float(val_dsc), json.dumps(suggestions, default=float))).lastrowid)

    def al_rounds(self) -> list[dict]:
        """Active-learning rounds, oldest first: ``id, created, run_id, checkpoint, strategy,
        n_slices, val_dsc, suggestions`` (empty for a catalogue older than schema 2 opened
        read-only)."""
        try:
            rows = self._db.execute("SELECT * FROM al_rounds ORDER BY id").fetchall()
        except sqlite3.OperationalError:
            return []
        return [{"id": int(r["id"]), "created": r["created"], "run_id": r["run_id"], "checkpoint": r["checkpoint"],
                 "strategy": r["strategy"], "n_slices": int(r["n_slices"]), "val_dsc": r["val_dsc"],
                 "suggestions": json.loads(r["suggestions"])} for r in rows]

    def current_checkpoint(self) -> Path | None:
        """The project's newest model: the checkpoint of the latest active-learning round or
        training run whose file still exists; None when there is none (callers then use the
        shipped default model)."""
        runs = [(r["created"], r["checkpoint"]) for r in self.training_runs()]
        runs += [(r["created"], r["checkpoint"]) for r in self.al_rounds()]
        for _, ck in sorted(runs, reverse=True):
            if Path(ck).is_file():
                return Path(ck)
        return None

    def save_prediction(self, image: str | int | ImageRecord, mask: np.ndarray, *, checkpoint_sha256: str) -> int:
        """Store a model's prediction mask for an image (atomically, like versions)."""
        rec = image if isinstance(image, ImageRecord) else self.image(image)
        if tuple(np.shape(mask)) != rec.shape:
            raise ValueError(f"prediction shape {tuple(np.shape(mask))} differs from the image grid {rec.shape}")
        with self._write() as db:
            pid = int(db.execute("INSERT INTO predictions (image_id, created, checkpoint_sha256, path, sha256)"
                                 " VALUES (?, ?, ?, '', '')", (rec.id, _now(), checkpoint_sha256)).lastrowid)
            rel = Path("predictions") / rec.subject / rec.role / f"p{pid:06d}.nii.gz"
            dest = self.root / rel
            save_volume(dest, (np.asarray(mask) > 0).astype(np.uint8), self._reference(rec), dtype=np.uint8)
            _fsync_dir(dest.parent)
            db.execute("UPDATE predictions SET path = ?, sha256 = ? WHERE id = ?", (rel.as_posix(), sha256_file(dest), pid))
        return pid

