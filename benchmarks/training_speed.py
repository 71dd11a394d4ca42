"""Training throughput: optimisation steps per second and the share of the budget spent
validating, for ``mfnsde`` on four simulated patient01 volumes (CPU, 2 threads).

Volumes: open_ms patient01 (Lesjak et al. 2016, CC-BY) visits 1 and 2, each with two
sets of synthetic PVS (seeds 1 and 2): four volumes, one held out for validation. The
run trains for ``--max-minutes`` (default 5) with the defaults of ``napari-pvs train``
(batch 4, 128x128 patches, validation after every epoch of ``--steps-per-epoch`` steps on
the fixed sample of validation patches). In napari-pvs 0.1.0 every validation was a
whole-volume sliding-window pass of 50-75 s, and the same 5-minute run made 107 steps.

Writes ``benchmarks/results/training_speed.json``.

Usage: ``python benchmarks/training_speed.py [--data ../shared/data] [--max-minutes 5]``
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from napari_pvs.engine.io import load_volume  # noqa: E402
from napari_pvs.engine.synth import simulate_pvs  # noqa: E402
from napari_pvs.engine.training import TrainConfig, train  # noqa: E402


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default=str(ROOT.parent / "shared" / "data"))
    ap.add_argument("--max-minutes", type=float, default=5.0)
    ap.add_argument("--steps-per-epoch", type=int, default=50)
    ap.add_argument("--model", default="mfnsde")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results"))
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    patient = Path(args.data) / "open_ms" / "longitudinal" / "patient01"
    t = time.perf_counter()
    sims = [simulate_pvs(load_volume(patient / f"study{v}_T2W.nii.gz"), seed=s) for v in (1, 2) for s in (1, 2)]
    print(f"simulated 4 volumes in {time.perf_counter() - t:.1f} s", flush=True)
    cfg = TrainConfig(model=args.model, epochs=100_000, steps_per_epoch=args.steps_per_epoch,
                      max_minutes=args.max_minutes, seed=0)
    gen = train([s.image for s in sims], [s.mask for s in sims], cfg, out / f"training_speed_{args.model}.pt")
    result = None
    try:
        while True:
            ev = next(gen)
            if ev.kind in ("start", "epoch", "done"):
                print(ev.summary(), flush=True)
    except StopIteration as stop:
        result = stop.value
    report = {
        "date": time.strftime("%Y-%m-%d"), "model": args.model, "volumes": 4, "max_minutes": args.max_minutes,
        "steps": result.steps_done, "epochs": result.epochs_done, "seconds": round(result.seconds, 1),
        "validation_seconds": round(result.val_seconds, 1), "validation_share": round(result.val_share, 4),
        "share_not_validating": round(1 - result.val_share, 4),  # training steps and data preparation
        "steps_per_second": round(result.steps_per_second, 3),
        "validations": len(result.history),
        "seconds_per_validation": round(result.val_seconds / max(1, len(result.history)), 2),
        "best_val_dsc": result.best_val_metric, "stop_reason": result.stop_reason,
        "threads": args.threads, "machine": platform.processor() or platform.machine(),
    }
    (out / "training_speed.json").write_text(json.dumps(report, indent=1))
    print(json.dumps(report, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
