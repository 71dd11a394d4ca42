"""Cohort throughput: scans per hour in one process (model loaded once) and on the local Dask
cluster, seconds per stage, Dask's overhead per task, and an estimate for 10,000 scans.

    python benchmarks/cohort.py --data ../shared/data [--n 20] [--tiny 200] [--out benchmarks/results/cohort]

1. A BIDS tree is built in a temporary folder from the shared real T2s (symbolic links,
   repeated as more subjects until ``--n`` entries).
2. One process: :func:`napari_pvs.engine.cohort.process_scan` on every entry in turn (the
   model and the atlas loaded once), the shipped default model, affine atlas registration.
3. The same entries through ``run_cohort`` on the default local cluster (a fresh output:
   nothing skipped).
4. Dask's overhead per task: ``--tiny`` tiny synthetic volumes through a task that reads
   the volume and sums it, on the local cluster against the same loop in one process.
5. From the measured per-stage seconds, an estimate on paper for 10,000 scans on a SLURM
   cluster of 16 GPUs (the segmentation share scaled by ``--gpu-speedup``, which is an
   assumption this machine cannot measure; registration and counting stay on the CPU).

Prints a table and writes ``cohort_benchmark.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

T2S = ["open_ms/longitudinal/patient01/study1_T2W.nii.gz", "open_ms/longitudinal/patient01/study2_T2W.nii.gz",
       "open_ms/longitudinal/patient04/study1_T2W.nii.gz", "open_ms/mni/patient07/T2.nii.gz", "stroke/T2.nii.gz",
       "clinical_stroke/T2.nii", "arc/M2208_T2w_mni.nii.gz"]


def build_bids(data: Path, root: Path, n: int) -> Path:
    bids = root / "bids"
    for i in range(n):
        src = data / T2S[i % len(T2S)]
        ext = ".nii" if src.name.endswith(".nii") else ".nii.gz"
        dest = bids / f"sub-{i + 1:03d}" / "anat" / f"sub-{i + 1:03d}_T2w{ext}"
        dest.parent.mkdir(parents=True, exist_ok=True)
        dest.symlink_to(src)
    (bids / "dataset_description.json").write_text(json.dumps({"Name": "benchmark", "BIDSVersion": "1.10.0"}))
    return bids


def _tiny_task(path: str) -> float:
    from napari_pvs.engine.io import load_volume

    return float(load_volume(path).data.sum())


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data")
    ap.add_argument("--n", type=int, default=20, help="BIDS entries (the shared T2s repeated)")
    ap.add_argument("--tiny", type=int, default=200, help="tiny volumes for Dask's overhead per task")
    ap.add_argument("--gpu-speedup", type=float, default=50.0,
                    help="assumed speed-up of segmentation on a GPU for the estimate (not measured here)")
    ap.add_argument("--skip-dask-run", action="store_true", help="skip step 3 (the cohort on the local cluster)")
    ap.add_argument("--keep", type=Path, help="work here and keep the outputs (default: a temporary folder)")
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "cohort")
    args = ap.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    import numpy as np

    from napari_pvs import __version__
    from napari_pvs.engine.cohort import CohortConfig, discover_scans, process_scan, run_cohort
    from napari_pvs.engine.cohort.run import local_cluster_size, model_sha256
    from napari_pvs.engine.io import Volume, save_volume

    os.environ["NAPARI_PVS_DATA"] = str(args.data)
    results: dict = {"n_scans": args.n, "cores": os.cpu_count()}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp) if args.keep is None else args.keep
        tmp.mkdir(parents=True, exist_ok=True)
        bids = build_bids(args.data, tmp, args.n)
        scans = discover_scans(bids)
        config = CohortConfig()
        msha = model_sha256(None)
        # 2. one process
        t0 = time.perf_counter()
        rows = []
        for s in scans:
            rows.append(process_scan(s, tmp / "one", config, version=__version__, model_sha256=msha))
            r = rows[-1]
            print(f"  {s.scan_id}: {r['status']} {r.get('seconds_total')} s "
                  f"(segment {r.get('seconds_segment')}, register {r.get('seconds_register')})", flush=True)
        one = time.perf_counter() - t0
        stages = {k: statistics.mean(float(r[f"seconds_{k}"]) for r in rows if f"seconds_{k}" in r)
                  for k in ("read", "segment", "register", "count", "figure", "total")}
        results["one_process"] = {"seconds": one, "scans_per_hour": 3600 * len(scans) / one,
                                  "failed": sum(r["status"] == "failed" for r in rows), "stage_seconds": stages}
        # 3. local Dask cluster
        if not args.skip_dask_run:
            workers, _ = local_cluster_size(config.torch_threads)
            res = run_cohort(bids, tmp / "dask", config)
            results["local_dask"] = {"workers": workers, "threads_per_worker": config.torch_threads,
                                     "seconds": res.seconds, "scans_per_hour": 3600 * len(scans) / res.seconds,
                                     "failed": res.n_failed, "stage_seconds": res.stage_seconds}
        # 4. Dask's overhead per task
        tiny = []
        for i in range(args.tiny):
            v = np.random.default_rng(i).normal(0, 1, (8, 16, 16)).astype(np.float32)
            tiny.append(str(save_volume(tmp / "tiny" / f"t{i:03d}.nii.gz", v, Volume(v, np.eye(4)))))
        t0 = time.perf_counter()
        for p in tiny:
            _tiny_task(p)
        loop = time.perf_counter() - t0
        from distributed import Client, LocalCluster

        with LocalCluster(n_workers=local_cluster_size(1)[0], threads_per_worker=1, processes=True,
                          dashboard_address=None) as cluster, Client(cluster) as client:
            client.submit(_tiny_task, tiny[0]).result()               # workers warm
            t0 = time.perf_counter()
            client.gather(client.map(_tiny_task, tiny, pure=False))
            dask_s = time.perf_counter() - t0
        results["dask_overhead"] = {"tasks": len(tiny), "loop_s": loop, "dask_s": dask_s,
                                    "overhead_ms_per_task": 1000 * (dask_s - loop / local_cluster_size(1)[0]) / len(tiny)}
    # 5. estimate for 10,000 scans on 16 GPUs
    st = results["one_process"]["stage_seconds"]
    per_scan_gpu = st["read"] + st["segment"] / args.gpu_speedup + st["register"] + st["count"] + st["figure"]
    results["estimate_10000_scans_16_gpus"] = {
        "assumed_gpu_speedup_of_segmentation": args.gpu_speedup, "seconds_per_scan_per_worker": per_scan_gpu,
        "hours": 10000 * per_scan_gpu / 16 / 3600,
        "note": "one worker per GPU; registration, counting and the figure stay on the CPU and dominate"}
    (args.out / "cohort_benchmark.json").write_text(json.dumps(results, indent=1))
    print(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
