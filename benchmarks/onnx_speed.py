"""Inference backends end to end: ``napari-pvs segment`` with torch and with ONNX Runtime on real
T2 scans, CPU with 2 threads, each run in its own process (its peak memory is its own).

    python benchmarks/onnx_speed.py [--data ../shared/data] [--checkpoint CKPT] [--repeat 1]

Scans (shared real data): ``open_ms/longitudinal/patient01/study2_T2W`` (clinical, 348x384x44)
and ``open_ms/mni/patient07/T2`` (182x218x182, 1 mm). For each backend: wall seconds of the
whole command (reading, inference, writing the mask and probability map), the inference seconds
it reports, peak RSS (MB), and against torch: the largest probability difference and the mask
voxels that differ. The ONNX file is exported before timing (the export is a one-off per
checkpoint, cached; its seconds are printed apart). Writes ``benchmarks/results/onnx_speed.json``.
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

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
SCANS = {"clinical (patient01 v2)": "open_ms/longitudinal/patient01/study2_T2W.nii.gz",
         "1 mm (patient07)": "open_ms/mni/patient07/T2.nii.gz"}


def run_segment(scan: Path, out: Path, backend: str, checkpoint: str | None, env: dict) -> dict:
    """One ``napari-pvs segment`` process (:func:`default_model_speed.run_segment`)."""
    from default_model_speed import run_segment as run

    return run(scan, out, checkpoint or "default", backend, env)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data")
    ap.add_argument("--checkpoint", default=None, help="default: the shipped default model")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "onnx_speed.json")
    args = ap.parse_args(argv)
    import nibabel as nib

    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads), "MKL_NUM_THREADS": str(args.threads)}
    # the one-off export (cached by the checkpoint's sha256), timed apart
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-c",
                    "import sys; from napari_pvs.engine.usecases import load_segmenter; "
                    "load_segmenter(sys.argv[1] if len(sys.argv) > 1 else None, device='cpu', backend='onnx')",
                    *([args.checkpoint] if args.checkpoint else [])], check=True, env=env)
    export_s = time.perf_counter() - t0
    print(f"ONNX export (or cache hit) and session: {export_s:.1f} s", flush=True)
    results = {"threads": args.threads, "checkpoint": args.checkpoint or "shipped default",
               "export_s": round(export_s, 1), "scans": {}}
    rows = []
    for label, rel in SCANS.items():
        scan = args.data / rel
        if not scan.is_file():
            print(f"{label}: {scan} not found, skipped")
            continue
        per = {}
        with tempfile.TemporaryDirectory() as tmp:
            probs = {}
            for backend in ("torch", "onnx"):
                out = Path(tmp) / backend
                out.mkdir()
                r = run_segment(scan, out, backend, args.checkpoint, env)
                probs[backend] = (np.asarray(nib.load(out / "prob.nii.gz").dataobj, np.float32),
                                  np.asarray(nib.load(out / "mask.nii.gz").dataobj) > 0)
                per[backend] = r
                print(f"{label} {backend}: {r['wall_s']} s, peak {r['peak_rss_mb']} MB", flush=True)
            diff = float(np.abs(probs["onnx"][0] - probs["torch"][0]).max())
            masks_differ = int((probs["onnx"][1] != probs["torch"][1]).sum())
            per["onnx"]["max_prob_diff_vs_torch"] = round(diff, 6)
            per["onnx"]["mask_voxels_differing"] = masks_differ
            per["onnx"]["speedup_vs_torch"] = round(per["torch"]["wall_s"] / per["onnx"]["wall_s"], 2)
        results["scans"][label] = per
        rows.append((label, per))
    print("\n| scan | torch s | onnx s | speed-up | torch peak MB | onnx peak MB | max prob diff | mask voxels differing |")
    print("|---|---|---|---|---|---|---|---|")
    for label, per in rows:
        t, o = per["torch"], per["onnx"]
        print(f"| {label} | {t['wall_s']} | {o['wall_s']} | {o['speedup_vs_torch']} | {t['peak_rss_mb']} | "
              f"{o['peak_rss_mb']} | {o['max_prob_diff_vs_torch']:.2g} | {o['mask_voxels_differing']} |")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
