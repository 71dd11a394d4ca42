"""``napari-pvs cohort run`` and ``napari-pvs cohort compare``: a whole study on Dask (the
*run a cohort* use case, :mod:`napari_pvs.engine.cohort`), and the agreement of two tables."""

from __future__ import annotations

from ._common import EXIT_OK, add_json_arg, run_with_progress, say, write_json

__all__ = ["add_parsers", "EXIT_SOME_FAILED"]

#: exit status when some scans failed (their rows say why); 0 when all succeeded
EXIT_SOME_FAILED = 3


def _slurm(args) -> dict | None:
    if not args.slurm:
        return None
    opts = {"queue": args.slurm_queue, "cores": args.slurm_cores, "memory": args.slurm_memory,
            "walltime": args.slurm_walltime, "jobs": args.slurm_jobs, "gpus": args.slurm_gpus}
    return {k: v for k, v in opts.items() if v is not None}


def cmd_run(args) -> int:
    from ..engine.cohort import CohortConfig, discover_scans, run_cohort_job
    from ..engine.errors import PVSInputError

    try:
        config = CohortConfig(checkpoint=args.checkpoint, threshold=args.threshold, agreement=args.agreement,
                              slab_mm=args.slab_mm, registration=args.registration,
                              registration_grid_mm=args.grid_mm, torch_threads=args.threads)
    except ValueError as exc:
        raise PVSInputError(str(exc)) from None
    scans = discover_scans(args.input)
    say(f"{len(scans)} scans from {args.input}")
    gen = run_cohort_job(scans if not _is_dir(args.input) else args.input, args.output, config,
                         workers=args.workers, scheduler=args.scheduler, slurm=_slurm(args))
    result = run_with_progress(gen, "cohort", every_s=10.0)
    print(f"{len(result.rows)} scans in {result.seconds:.0f} s: {len(result.rows) - result.n_failed} done "
          f"({result.n_skipped} unchanged), {result.n_failed} failed; wrote {result.table} and {result.report}")
    for r in result.rows:
        if r.get("status") == "failed":
            print(f"  failed {r['scan_id']}: {r.get('error')}")
    return EXIT_SOME_FAILED if result.n_failed else EXIT_OK


def _is_dir(path) -> bool:
    from pathlib import Path

    return Path(path).is_dir()


def cmd_compare(args) -> int:
    from ..engine.cohort.agreement import agreement_report, compare_tables

    stats = compare_tables(args.a, args.b)
    for region in ("bg", "cso"):
        r = stats[region]
        ci = r.get("icc21_ci95")
        print(f"{region.upper()}: n {stats['n']}, Spearman rho {r['spearman_rho'] if r['spearman_rho'] is None else round(r['spearman_rho'], 3)}, "
              f"ICC(2,1) {None if r['icc21'] is None else round(r['icc21'], 3)}"
              + (f" [{ci[0]:.2f}, {ci[1]:.2f}]" if ci else "")
              + f", ICC(3,1) {None if r['icc31'] is None else round(r['icc31'], 3)}, weighted kappa "
              f"{None if r['kappa_weighted'] is None else round(r['kappa_weighted'], 3)}, mean difference "
              f"{r['mean_difference']:.2f} (limits of agreement {r['loa_low']:.2f} to {r['loa_high']:.2f})")
    if args.output:
        agreement_report(stats, args.output, name_a=args.a, name_b=args.b)
        say(f"wrote {args.output}")
    if args.json:
        write_json({k: v for k, v in stats.items()}, args.json)
    return EXIT_OK


def add_parsers(sub, parent) -> None:
    p = sub.add_parser("cohort", parents=[parent], help="a whole study: segment, place, count and QC every scan on Dask",
                       description="Cohort runs on Dask (resumable, one table and one HTML report) and the "
                                   "agreement of two cohort tables.")
    verbs = p.add_subparsers(dest="verb", required=True, metavar="VERB")
    r = verbs.add_parser("run", parents=[parent], help="run a cohort",
                         description="Segment every scan, place the BG/CSO rating slices by atlas (QC flags), count "
                                     "per hemisphere with Potter grades, per-region counts and volumes, per-PVS shape "
                                     "(possible lacunes), a QC figure and a JSON sidecar per scan, in OUTPUT (a BIDS "
                                     "derivative) with OUTPUT/cohort.tsv and OUTPUT/report.html. Scans whose outputs "
                                     "are up to date are not recomputed: run the same command again after a crash. "
                                     "Exit status 3 when some scans failed (their rows say why).")
    r.add_argument("input", help="a BIDS root (T2w by suffix), a folder of scans, or a text file of paths "
                                 "(optional subject id after a tab or comma)")
    r.add_argument("-o", "--output", required=True, metavar="DIR", help="output folder (created)")
    r.add_argument("-m", "--checkpoint", metavar="CKPT", help="model checkpoint (default: the shipped default model)")
    r.add_argument("--threshold", type=float, default=0.5, help="probability threshold (default 0.5)")
    r.add_argument("--agreement", action="store_true", help="also write the ensemble members' agreement maps")
    r.add_argument("--slab-mm", type=float, default=0.0, help="rating slab thickness for thin-slice scans (mm)")
    r.add_argument("--registration", choices=("affine", "classical"), default="affine",
                   help="atlas registration for the rating slices (default affine)")
    r.add_argument("--grid-mm", type=float, default=2.0,
                   help="working grid of the atlas registration in mm (default 2; coarser is faster)")
    r.add_argument("--workers", type=int, help="local cluster: worker processes (default: cores // --threads)")
    r.add_argument("--threads", type=int, default=2, help="torch threads per worker (default 2)")
    r.add_argument("--scheduler", metavar="ADDRESS", help="join a running Dask cluster (e.g. tcp://host:8786)")
    r.add_argument("--slurm", action="store_true", help="start workers as SLURM jobs (dask-jobqueue)")
    r.add_argument("--slurm-queue", help="SLURM partition")
    r.add_argument("--slurm-cores", type=int, default=4, help="cores per job (default 4)")
    r.add_argument("--slurm-memory", default="16GB", help="memory per job (default 16GB)")
    r.add_argument("--slurm-walltime", default="04:00:00", help="walltime per job (default 04:00:00)")
    r.add_argument("--slurm-jobs", type=int, default=1, help="number of jobs (workers) to start (default 1)")
    r.add_argument("--slurm-gpus", type=int, default=0, help="GPUs per job (--gres=gpu:N; default 0)")
    r.set_defaults(func=cmd_run)
    c = verbs.add_parser("compare", parents=[parent], help="agreement of two cohort tables (or raters' counts)",
                         description="Spearman rho, ICC(2,1) and ICC(3,1) with 95 %% CIs, weighted kappa of the Potter "
                                     "grades and Bland-Altman limits of agreement of the BG and CSO counts of two "
                                     "tables (cohort.tsv of two runs or models, or raters' visual counts as CSV/TSV "
                                     "with a subject or scan_id column and bg/cso counts).")
    c.add_argument("a", help="first table (.tsv or .csv)")
    c.add_argument("b", help="second table")
    c.add_argument("-o", "--output", metavar="HTML", help="write the agreement report (HTML with Bland-Altman plots)")
    add_json_arg(c, "the statistics")
    c.set_defaults(func=cmd_compare)
