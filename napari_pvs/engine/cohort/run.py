"""The use case *run a cohort*: every scan through :func:`~.scan.process_scan` on Dask.

Scheduling is Dask distributed's, not ours:

* default: a ``distributed.LocalCluster`` of worker *processes* sized to the machine, each
  running one scan at a time with ``torch_threads`` threads (workers x threads = cores, so
  torch does not oversubscribe them);
* ``scheduler="tcp://host:8786"``: a running Dask cluster (``dask scheduler`` and
  ``dask worker`` started by the user, on any machines that see the files);
* ``slurm={...}``: dask-jobqueue's ``SLURMCluster`` (queue, cores, memory, walltime, GPUs
  through ``job_extra_directives``), scaled to the jobs asked for.

Each worker loads the model once (a per-process cache) and uses CUDA when it has a GPU.
After every finished scan ``cohort.tsv`` is rewritten atomically; the report is written at
the end. A scan whose sidecar records the same input, model, version and settings is not
recomputed, so after a crash (even ``kill -9`` of the whole run) the same command
finishes the rest and leaves no partial file.

Refer to: Rocklin M., "Dask: Parallel Computation with Blocked algorithms and Task
Scheduling", Proc. SciPy 2015, doi:10.25080/Majora-7b98e3ed-013.

Example
-------
>>> from napari_pvs.engine.cohort import CohortConfig, run_cohort
>>> result = run_cohort("bids_root", "derivatives/napari-pvs", CohortConfig())   # doctest: +SKIP
>>> result.n_failed, result.table                                                # doctest: +SKIP
(0, PosixPath('derivatives/napari-pvs/cohort.tsv'))
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Generator
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import PVSInputError
from ..progress import format_seconds, run_to_end
from .config import CohortConfig
from .inputs import CohortScan, discover_scans
from .report import write_report
from .scan import process_scan
from .table import write_cohort_tsv

__all__ = ["CohortEvent", "CohortResult", "run_cohort_job", "run_cohort", "local_cluster_size", "model_sha256"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class CohortEvent:
    """Progress of a cohort run: scans finished (``done``, of which ``failed`` and
    ``skipped``), ``total``, the last scan and its status, seconds, the estimated seconds
    left and the Dask dashboard address (when there is one)."""

    done: int
    total: int
    failed: int = 0
    skipped: int = 0
    last: str = ""
    last_status: str = ""
    elapsed_s: float = 0.0
    eta_s: float | None = None
    dashboard: str = ""
    row: dict | None = None

    @property
    def fraction(self) -> float:
        return self.done / self.total if self.total else 1.0

    def summary(self) -> str:
        eta = f", about {format_seconds(self.eta_s)} left" if self.eta_s is not None and self.done < self.total else ""
        last = f"; {self.last}: {self.last_status}" if self.last else ""
        return (f"{self.done}/{self.total} scans ({self.failed} failed, {self.skipped} unchanged){eta}{last}"
                + (f"; dashboard {self.dashboard}" if self.dashboard else ""))


@dataclass
class CohortResult:
    """The end of a cohort run: ``rows`` (one per scan, input order), the table, the
    report and counts."""

    rows: list[dict]
    table: Path
    report: Path
    seconds: float
    dashboard: str = ""
    stage_seconds: dict = field(default_factory=dict)

    @property
    def n_failed(self) -> int:
        return sum(r.get("status") == "failed" for r in self.rows)

    @property
    def n_skipped(self) -> int:
        return sum(r.get("status") == "skipped" for r in self.rows)


def local_cluster_size(torch_threads: int, workers: int | None = None) -> tuple[int, int]:
    """``(workers, threads per worker)`` of the default local cluster: one scan at a time per
    worker process, ``cores // torch_threads`` workers (at least one)."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    n = workers if workers else max(1, cores // max(1, torch_threads))
    return int(n), 1


def model_sha256(checkpoint: str | None) -> str:
    """sha256 of the checkpoint (the shipped default model's when None)."""
    from ..data import default_checkpoint, sha256_file

    return sha256_file(checkpoint or default_checkpoint())


def _client(workers: int | None, scheduler: str | None, slurm: dict | None, torch_threads: int):
    """A Dask client and what to close after: the local cluster, a scheduler's, or SLURM's."""
    try:
        from distributed import Client, LocalCluster
    except ImportError as exc:  # pragma: no cover - a core dependency
        raise PVSInputError("Dask distributed is not installed (pip install distributed)") from exc
    if scheduler:
        try:
            return Client(scheduler, timeout="20s"), None
        except (OSError, TimeoutError) as exc:
            raise PVSInputError(f"no Dask scheduler answers at {scheduler} ({type(exc).__name__})") from None
    if slurm is not None:
        try:
            from dask_jobqueue import SLURMCluster
        except ImportError:
            raise PVSInputError("--slurm needs dask-jobqueue: pip install 'napari-pvs[cluster]'") from None
        jobs = int(slurm.pop("jobs", 1))
        gpus = int(slurm.pop("gpus", 0))
        extra = list(slurm.pop("job_extra_directives", []))
        if gpus:
            extra.append(f"--gres=gpu:{gpus}")
        cluster = SLURMCluster(processes=1, job_extra_directives=extra, **slurm)
        cluster.scale(jobs=jobs)
        return Client(cluster), cluster
    n, threads = local_cluster_size(torch_threads, workers)
    cluster = LocalCluster(n_workers=n, threads_per_worker=threads, processes=True,
                           dashboard_address=":0", silence_logs=logging.ERROR)
    return Client(cluster), cluster


def run_cohort_job(source: str | Path | list[CohortScan], out_root: str | Path, config: CohortConfig = CohortConfig(),
                   *, workers: int | None = None, scheduler: str | None = None, slurm: dict | None = None,
                   client=None) -> Generator[CohortEvent, None, CohortResult]:
    """Run a cohort (see the module docstring); yields a :class:`CohortEvent` per finished
    scan and returns a :class:`CohortResult`.

    Parameters
    ----------
    source : str, Path or list of CohortScan
        A BIDS root, a folder of scans, a text file of paths (:func:`~.inputs.discover_scans`).
    out_root : str or Path
        The output folder: a BIDS derivative plus ``cohort.tsv`` and ``report.html``.
    config : CohortConfig
    workers : int, optional
        Local cluster workers (default: cores // ``config.torch_threads``).
    scheduler : str, optional
        The address of a running Dask scheduler.
    slurm : dict, optional
        Keyword arguments of ``dask_jobqueue.SLURMCluster`` (``queue``, ``cores``,
        ``memory``, ``walltime``, ...) plus ``jobs`` and ``gpus``.
    client : distributed.Client, optional
        An existing client (then nothing is started or closed here).

    Raises
    ------
    PVSInputError
        No scans; an unreachable scheduler; the model file missing.
    """
    from distributed import as_completed

    from ... import __version__
    from ..io.bids import write_dataset_description

    t0 = time.perf_counter()
    scans = source if isinstance(source, list) else discover_scans(source)
    if not scans:
        raise PVSInputError("no scans to process", None if isinstance(source, list) else source)
    out_root = Path(out_root)
    out_root.mkdir(parents=True, exist_ok=True)
    for stale in out_root.rglob(".*.part*"):      # temporary files of a run killed while writing
        stale.unlink(missing_ok=True)
    msha = model_sha256(config.checkpoint)
    write_dataset_description(out_root, model_sha256=msha, model_name=Path(config.checkpoint).name
                              if config.checkpoint else "default",
                              source=source if isinstance(source, (str, Path)) and Path(source).is_dir() else None)
    own = client is None
    cluster = None
    if own:
        client, cluster = _client(workers, scheduler, dict(slurm) if slurm is not None else None, config.torch_threads)
    dashboard = getattr(client, "dashboard_link", "") or ""
    rows: dict[str, dict] = {}
    table = out_root / "cohort.tsv"
    order = [s.scan_id for s in scans]
    try:
        futures = client.map(process_scan, scans, out_root=str(out_root), config=config, version=__version__,
                             model_sha256=msha, pure=False, key=[f"napari-pvs-{s.scan_id}-{time.time_ns()}" for s in scans])
        by_future = {f.key: s for f, s in zip(futures, scans, strict=True)}
        done = failed = skipped = 0
        for fut in as_completed(futures):
            scan = by_future[fut.key]
            try:
                row = fut.result()
            except Exception as exc:  # noqa: BLE001 - a lost worker: the scan fails, the cohort goes on
                row = {"scan_id": scan.scan_id, "subject": scan.subject, "session": scan.session, "file": scan.path,
                       "status": "failed", "error": f"{type(exc).__name__}: {' '.join(str(exc).split())}"[:500]}
            rows[scan.scan_id] = row
            done += 1
            failed += row.get("status") == "failed"
            skipped += row.get("status") == "skipped"
            write_cohort_tsv(table, [rows[k] for k in order if k in rows])
            elapsed = time.perf_counter() - t0
            computed = done - skipped
            eta = (elapsed / computed) * (len(scans) - done) if computed else None
            yield CohortEvent(done, len(scans), failed, skipped, scan.scan_id, row.get("status", ""), elapsed, eta,
                              dashboard, row)
    finally:
        if own:
            client.close()
            if cluster is not None:
                cluster.close()
    ordered = [rows[k] for k in order]
    report = write_report(out_root / "report.html", ordered, out_root=out_root,
                          source=source if isinstance(source, (str, Path)) else None,
                          settings={**config.settings(), "model_sha256": msha, "napari-pvs": __version__})
    stage = {}
    for r in ordered:
        for k, v in r.items():
            if k.startswith("seconds_") and isinstance(v, (int, float)):
                stage.setdefault(k[len("seconds_"):], []).append(float(v))
    return CohortResult(ordered, table, report, time.perf_counter() - t0, dashboard,
                        {k: sum(v) / len(v) for k, v in stage.items()})


def run_cohort(source, out_root, config: CohortConfig = CohortConfig(), *,
               on_event: Callable[[CohortEvent], None] | None = None, **kwargs) -> CohortResult:
    """:func:`run_cohort_job` run to its end (same parameters), calling ``on_event``."""
    return run_to_end(run_cohort_job(source, out_root, config, **kwargs), on_event)
