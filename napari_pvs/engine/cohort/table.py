"""``cohort.tsv``: one row per scan, in input order, written atomically after every scan."""

from __future__ import annotations

import csv
from pathlib import Path

from .scan import ROW_COLUMNS, STAGES

__all__ = ["COLUMNS", "write_cohort_tsv", "read_table"]

#: the columns of ``cohort.tsv``: the row's, then each stage's seconds
COLUMNS = [c for c in ROW_COLUMNS if c != "seconds_total"] + ["qc_figure"] + [f"seconds_{s}" for s in STAGES] + \
    ["seconds_total"]


def write_cohort_tsv(path: str | Path, rows: list[dict]) -> Path:
    """Write the rows (``n/a`` where a value is missing) atomically."""
    from ..io import atomic_path

    path = Path(path)
    with atomic_path(path) as tmp, open(tmp, "w", newline="") as fh:
        w = csv.writer(fh, delimiter="\t", lineterminator="\n")
        w.writerow(COLUMNS)
        for r in rows:
            w.writerow(["n/a" if r.get(c) in (None, "") else r.get(c) for c in COLUMNS])
    return path


def read_table(path: str | Path) -> list[dict]:
    """A ``.tsv`` or ``.csv`` table as a list of dicts (``n/a`` and empty cells -> None)."""
    path = Path(path)
    text = path.read_text()
    delim = "\t" if "\t" in text.splitlines()[0] else ","
    rows = list(csv.DictReader(text.splitlines(), delimiter=delim))
    return [{k.strip(): (None if v is None or v.strip() in ("", "n/a") else v.strip()) for k, v in r.items()}
            for r in rows]
