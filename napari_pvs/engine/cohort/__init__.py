"""A whole study in one run: segment, place the rating slices, count and QC every scan of a
cohort on Dask, resumably, with one table and one HTML report.

:mod:`.inputs` (BIDS root, folder or list file -> scans), :mod:`.config` (the settings
recorded with every output), :mod:`.scan` (one scan, end to end: the work a Dask task
does), :mod:`.shape` (per-PVS length, width, orientation; possible lacunes),
:mod:`.table` (``cohort.tsv``), :mod:`.report` (``report.html``), :mod:`.run` (the use
case: :func:`run_cohort_job` / :func:`run_cohort` on a local cluster, a scheduler address
or SLURM), :mod:`.agreement` (two tables or raters: Spearman, ICC, weighted kappa,
Bland-Altman).
"""

from .config import CohortConfig
from .inputs import CohortScan, discover_scans
from .run import CohortEvent, CohortResult, run_cohort, run_cohort_job
from .scan import process_scan

__all__ = ["CohortConfig", "CohortScan", "discover_scans", "process_scan", "run_cohort_job", "run_cohort",
           "CohortEvent", "CohortResult"]
