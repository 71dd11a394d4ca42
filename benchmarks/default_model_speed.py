"""Default-model speed end to end: ``napari-pvs segment`` with each model on real T2 scans, CPU
with 2 threads, every model in the same run, each run in its own process (its peak memory and
its import time are its own).

    python benchmarks/default_model_speed.py [--data ../shared/data]
        [--model NAME=CKPT[@BACKEND] ...] [--scans clinical,1mm,...] [--repeat 1]

Default models: ``before`` = the ensemble of three 2.5D MfNS_De that was the shipped default
until 2026-12 (``-m accurate``) with torch, ``accurate (onnx)`` = the same with ONNX Runtime,
``student`` = the shipped ``liteunet`` default (``-m default``, backend auto). For each model
and scan: wall seconds of the whole command (start-up, reading, inference, writing the mask and
probability map), peak RSS (MB) and the ratio to ``before``. One warm-up call per model makes
its ONNX file first (a one-off, cached). Writes ``benchmarks/results/default_model_speed.json``.

Targets (issue 28): clinical T2 <= 10 s, 1 mm 182^3 <= 25 s, peak <= 1.5 GB.
"""

from __future__ import annotations

import argparse
import json
import os
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


def run_segment(scan: Path, out: Path, checkpoint: str, backend: str, env: dict) -> dict:
    cmd = [sys.executable, "-m", "napari_pvs.cli", "segment", str(scan), "-o", str(out / "mask.nii.gz"),
           "--prob", str(out / "prob.nii.gz"), "--backend", backend, "--device", "cpu", "-m", checkpoint]
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - t0
    stdout, stderr = proc.stdout.read(), proc.stderr.read()
    if status != 0:
        raise SystemExit(f"{checkpoint}@{backend} on {scan.name} failed:\n{stderr[-2000:]}")
    return {"wall_s": round(wall, 1), "peak_rss_mb": round(usage.ru_maxrss / 1024), "stdout": stdout.strip()[-200:]}


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
    args = ap.parse_args(argv)
    models = [parse_model(m) for m in (args.model or DEFAULT_MODELS)]
    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads), "MKL_NUM_THREADS": str(args.threads)}
    for _, ckpt, backend in models:      # one-off ONNX exports (cached), not timed
        if backend in ("onnx", "auto"):
            subprocess.run([sys.executable, "-c", "import sys; from napari_pvs.engine.usecases import load_segmenter; "
                            "load_segmenter(sys.argv[1], device='cpu', backend=sys.argv[2])", ckpt, backend],
                           check=True, env=env, capture_output=True)
    results = {"threads": args.threads, "models": [list(m) for m in models], "scans": {}}
    for key in args.scans.split(","):
        scan = args.data / SCANS[key]
        per = {}
        with tempfile.TemporaryDirectory() as tmp:
            for name, ckpt, backend in models:
                out = Path(tmp) / name.replace(" ", "_")
                out.mkdir()
                per[name] = run_segment(scan, out, ckpt, backend, env)
                print(f"{key} {name}: {per[name]['wall_s']} s, peak {per[name]['peak_rss_mb']} MB", flush=True)
        base = per[models[0][0]]["wall_s"]
        for r in per.values():
            r["speedup_vs_" + models[0][0]] = round(base / r["wall_s"], 1)
        results["scans"][key] = per
    names = [m[0] for m in models]
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
