"""Default-model speed end to end: ``napari-pvs segment`` with each model on real T2 scans, CPU
with 2 threads, every model in the same run, each run in its own process (its peak memory and
its import time are its own).

    python benchmarks/default_model_speed.py [--data ../shared/data]
        [--model NAME=CKPT[@BACKEND] ...] [--scans clinical,1mm,...]
        [--device cpu|cuda] [--batch-size 8] [--in-process 0]

Default models: ``before`` = the ensemble of three 2.5D MfNS_De that was the shipped default
until 2026-12 (``-m accurate``) with torch, ``accurate (onnx)`` = the same with ONNX Runtime,
``student`` = the shipped ``liteunet`` default (``-m default``, backend auto). For each model
and scan: wall seconds of the whole command (start-up, reading, inference, writing the mask and
probability map), peak RSS (MB) and the ratio to ``before``. One warm-up call per model makes
its ONNX file first (a one-off, cached). Writes ``benchmarks/results/default_model_speed.json``.

``--device cuda`` runs each command on the GPU (torch backend, autocast; give models as
``NAME=CKPT@torch``). ``--in-process N`` adds, per model and scan, the median of N calls in
one warm process (model loaded once, one warm-up call first; each call reads the scan,
segments it and writes the mask and probability map), as in napari or a cohort worker, where
start-up and imports are paid once.

Targets (issue 28): clinical T2 <= 10 s, 1 mm 182^3 <= 25 s, peak <= 1.5 GB; on a GPU,
one scan <= 1 s.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SCANS = {"clinical": "open_ms/longitudinal/patient01/study2_T2W.nii.gz",
         "1mm": "open_ms/mni/patient07/T2.nii.gz",
         "p01_v1": "open_ms/longitudinal/patient01/study1_T2W.nii.gz",
         "p04_v1": "open_ms/longitudinal/patient04/study1_T2W.nii.gz",
         "stroke_1mm": "stroke/T2.nii.gz",
         "clinical_stroke_1mm": "clinical_stroke/T2.nii",
         "arc_M2265": "arc/M2265_T2w.nii.gz",
         "arc_M2208_mni": "arc/M2208_T2w_mni.nii.gz"}
DEFAULT_MODELS = ("before=accurate@torch", "accurate (onnx)=accurate@onnx", "student=default@auto")


def run_segment(scan: Path, out: Path, checkpoint: str, backend: str, env: dict, device: str = "cpu",
                batch_size: int = 8) -> dict:
    cmd = [sys.executable, "-m", "napari_pvs.cli", "segment", str(scan), "-o", str(out / "mask.nii.gz"),
           "--prob", str(out / "prob.nii.gz"), "--backend", backend, "--device", device, "-m", checkpoint,
           "--batch-size", str(batch_size)]
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - t0
    stdout, stderr = proc.stdout.read(), proc.stderr.read()
    if status != 0:
        raise SystemExit(f"{checkpoint}@{backend} on {scan.name} failed:\n{stderr[-2000:]}")
    return {"wall_s": round(wall, 1), "peak_rss_mb": round(usage.ru_maxrss / 1024), "stdout": stdout.strip()[-200:]}


def in_process_seconds(scans: list[Path], out: Path, checkpoint: str, backend: str, device: str,
                       batch_size: int, repeat: int, profile: bool = False) -> dict[str, dict]:
    """Per scan: the median wall seconds of ``repeat`` read-segment-write calls in this process
    (model loaded once; one untimed warm-up call on the first scan), and the medians of its
    parts: reading the scan, segmenting it (preprocessing, network, resampling back) and
    writing the mask and the probability map (``.nii.gz``)."""
    import torch

    from napari_pvs.engine.io import load_volume
    from napari_pvs.engine.progress import run_to_end
    from napari_pvs.engine.usecases import load_segmenter, segment_job

    t = time.perf_counter()
    loaded = load_segmenter(checkpoint, device=device, backend=backend)
    load_s = time.perf_counter() - t
    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)

    def once(scan: Path) -> dict:
        sync()
        t = time.perf_counter()
        image = load_volume(scan)
        t_read = time.perf_counter()
        seg = run_to_end(segment_job(image, loaded, batch_size=batch_size))
        sync()
        t_seg = time.perf_counter()
        seg.write(out / "mask.nii.gz", prob=out / "prob.nii.gz")
        t_end = time.perf_counter()
        return {"total": t_end - t, "read": t_read - t, "segment": t_seg - t_read, "write": t_end - t_seg}

    warm = once(scans[0])["total"]
    if profile:      # where one warm call of the first scan spends its time
        import cProfile
        import pstats

        prof = cProfile.Profile()
        prof.runcall(once, scans[0])
        pstats.Stats(prof).sort_stats("cumulative").print_stats(25)
    res = {}
    for scan in scans:
        calls = [once(scan) for _ in range(repeat)]
        med = {k: round(statistics.median(c[k] for c in calls), 3) for k in calls[0]}
        res[str(scan)] = {"in_process_s": med["total"], "calls_s": [round(c["total"], 3) for c in calls],
                          "read_s": med["read"], "segment_s": med["segment"], "write_s": med["write"],
                          "model_load_s": round(load_s, 2), "warm_up_s": round(warm, 2)}
    return res


def parse_model(spec: str) -> tuple[str, str, str]:
    name, _, rest = spec.partition("=")
    ckpt, _, backend = rest.partition("@")
    return name, ckpt, backend or "auto"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data")
    ap.add_argument("--model", action="append", help="NAME=CKPT[@BACKEND] (CKPT may be default or accurate)")
    ap.add_argument("--scans", default="clinical,1mm", help="comma-separated subset of " + ",".join(SCANS))
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "default_model_speed.json")
    ap.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    ap.add_argument("--batch-size", type=int, default=8, help="slices per forward pass (napari-pvs segment --batch-size)")
    ap.add_argument("--in-process", type=int, default=0, metavar="N",
                    help="also time N read-segment-write calls per scan in one warm process (median)")
    ap.add_argument("--profile", action="store_true",
                    help="with --in-process: print a cProfile of one warm call per model (first scan)")
    args = ap.parse_args(argv)
    models = [parse_model(m) for m in (args.model or DEFAULT_MODELS)]
    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads), "MKL_NUM_THREADS": str(args.threads)}
    for _, ckpt, backend in models:      # one-off ONNX exports (cached), not timed
        if backend in ("onnx", "auto") and args.device == "cpu":
            subprocess.run([sys.executable, "-c", "import sys; from napari_pvs.engine.usecases import load_segmenter; "
                            "load_segmenter(sys.argv[1], device='cpu', backend=sys.argv[2])", ckpt, backend],
                           check=True, env=env, capture_output=True)
    results = {"threads": args.threads, "device": args.device, "batch_size": args.batch_size,
               "models": [list(m) for m in models], "scans": {}}
    if args.device == "cuda":
        import torch

        results["gpu"] = torch.cuda.get_device_name(0)
    keys = args.scans.split(",")
    for key in keys:
        scan = args.data / SCANS[key]
        per = {}
        with tempfile.TemporaryDirectory() as tmp:
            for name, ckpt, backend in models:
                out = Path(tmp) / name.replace(" ", "_")
                out.mkdir()
                per[name] = run_segment(scan, out, ckpt, backend, env, args.device, args.batch_size)
                print(f"{key} {name}: {per[name]['wall_s']} s, peak {per[name]['peak_rss_mb']} MB", flush=True)
        base = per[models[0][0]]["wall_s"]
        for r in per.values():
            r["speedup_vs_" + models[0][0]] = round(base / r["wall_s"], 1)
        results["scans"][key] = per
    names = [m[0] for m in models]
    if args.in_process:
        import torch

        torch.set_num_threads(args.threads)
        print(f"\nin one warm process ({args.device}), median of {args.in_process} read-segment-write calls:")
        with tempfile.TemporaryDirectory() as tmp:
            for name, ckpt, backend in models:
                res = in_process_seconds([args.data / SCANS[k] for k in keys], Path(tmp), ckpt, backend,
                                         args.device, args.batch_size, args.in_process, args.profile)
                for key in keys:
                    r = res[str(args.data / SCANS[key])]
                    results["scans"][key][name].update(r)
                    print(f"{key} {name}: {r['in_process_s']} s = read {r['read_s']} + segment {r['segment_s']} "
                          f"+ write {r['write_s']} (calls {r['calls_s']}; model load "
                          f"{r['model_load_s']} s, warm-up {r['warm_up_s']} s)", flush=True)
    print("\n| scan | " + " | ".join(f"{n} s (x)" for n in names) + " | " + " | ".join(f"{n} peak MB" for n in names) + " |")
    print("|---" * (1 + 2 * len(names)) + "|")
    for key, per in results["scans"].items():
        print(f"| {key} | " + " | ".join(f"{per[n]['wall_s']} ({per[n]['speedup_vs_' + names[0]]})" for n in names)
              + " | " + " | ".join(str(per[n]["peak_rss_mb"]) for n in names) + " |")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
