"""Vertical-slice benchmark: simulate -> train mfnsde -> segment the other visit -> DSC.

On open_ms patient01 (Lesjak et al. 2016, CC-BY):

1. insert synthetic PVS (seed 1 for training, seed 2 for validation) into visit 1's T2
   (study1_T2W, 0.51 x 0.51 x 4.0 mm);
2. train ``mfnsde`` for at most ``--max-minutes`` (default 10) on the CPU (2 threads)
   or the GPU when there is one;
3. insert synthetic PVS with another seed (3) into visit 2's T2 (study2_T2W,
   0.60 x 0.60 x 3.3 mm: another resolution), segment it and compare with the known mask.

Writes ``benchmarks/results/vertical_slice.json`` (DSC, sensitivity, PPV, PVS-level
detection rates, training and inference seconds) and prints it.

Usage: ``python benchmarks/vertical_slice.py [--data ../shared/data] [--max-minutes 10]``
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

import numpy as np
import torch
from scipy import ndimage

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from napari_pvs.engine.models.checkpoint import load_model  # noqa: E402
from napari_pvs.engine.inference import predict_volume  # noqa: E402
from napari_pvs.engine.io import load_volume, save_volume  # noqa: E402
from napari_pvs.engine.metrics import overlap_metrics  # noqa: E402
from napari_pvs.engine.synth import simulate_pvs  # noqa: E402
from napari_pvs.engine.training import TrainConfig, train  # noqa: E402


def detection_rates(pred: np.ndarray, truth: np.ndarray) -> dict:
    """PVS-level (3D connected component, 26-connectivity) detection sensitivity and PPV."""
    s = ndimage.generate_binary_structure(3, 3)
    lt, nt = ndimage.label(truth > 0, structure=s)
    lp, npred = ndimage.label(pred > 0, structure=s)
    hit_t = len(np.unique(lt[(pred > 0) & (lt > 0)]))
    hit_p = len(np.unique(lp[(truth > 0) & (lp > 0)]))
    return {"n_true_pvs": int(nt), "n_pred_pvs": int(npred),
            "pvs_sensitivity": hit_t / nt if nt else float("nan"),
            "pvs_ppv": hit_p / npred if npred else float("nan")}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default=str(ROOT.parent / "shared" / "data"))
    ap.add_argument("--max-minutes", type=float, default=10.0)
    ap.add_argument("--model", default="mfnsde")
    ap.add_argument("--steps-per-epoch", type=int, default=200)
    ap.add_argument("--threads", type=int, default=2, help="torch CPU threads (the machine has 2 cores)")
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results"))
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    patient = Path(args.data) / "open_ms" / "longitudinal" / "patient01"

    t = time.perf_counter()
    v1 = load_volume(patient / "study1_T2W.nii.gz")
    sim_train = simulate_pvs(v1, seed=1)
    sim_val = simulate_pvs(v1, seed=2)
    v2 = load_volume(patient / "study2_T2W.nii.gz")
    sim_test = simulate_pvs(v2, seed=3)
    sim_s = time.perf_counter() - t
    print(f"simulated 3 volumes in {sim_s:.1f} s: train {int(sim_train.mask.sum())}, val "
          f"{int(sim_val.mask.sum())}, test {int(sim_test.mask.sum())} PVS voxels", flush=True)

    cfg = TrainConfig(model=args.model, epochs=10_000, steps_per_epoch=args.steps_per_epoch,
                      max_minutes=args.max_minutes, seed=0)
    ckpt = out / f"vertical_slice_{args.model}.pt"
    t = time.perf_counter()
    # two volumes: split_by_volume holds one out for validation (both are visit-1 anatomy;
    # the test visit is never seen in training)
    gen = train([sim_train.image, sim_val.image], [sim_train.mask, sim_val.mask],
                cfg, ckpt)
    last = None
    for ev in gen:
        last = ev
        if ev.kind in ("start", "done"):
            print(f"[{ev.kind}] {ev.message}", flush=True)
        elif ev.kind == "epoch":
            print(f"epoch {ev.epoch:3d} step {ev.step:5d} loss {ev.loss:.4f} val DSC {ev.val_metric:.3f} "
                  f"(best {ev.best_val_metric:.3f}) {ev.elapsed_s:6.0f} s", flush=True)
    train_s = time.perf_counter() - t

    loaded = load_model(ckpt)
    pred = predict_volume(loaded, sim_test.image)
    m = overlap_metrics(pred.mask, sim_test.mask)
    det = detection_rates(pred.mask, sim_test.mask)
    save_volume(out / "study2_pred_mask.nii.gz", pred.mask, v2, dtype="uint8")
    save_volume(out / "study2_sim_image.nii.gz", sim_test.image.data, v2, dtype="float32")
    save_volume(out / "study2_sim_mask.nii.gz", sim_test.mask, v2, dtype="uint8")
    result = {
        "model": args.model,
        "train_image": "open_ms/longitudinal/patient01/study1_T2W (seeds 1 train, 2 validation)",
        "test_image": "open_ms/longitudinal/patient01/study2_T2W (seed 3)",
        "dsc": m.dsc, "sensitivity": m.sensitivity, "ppv": m.ppv,
        **det,
        "best_val_dice": last.best_val_metric if last else None,
        "validation_seconds": last.val_seconds if last else 0.0,
        "train_steps": last.step if last else 0,
        "train_epochs": last.epoch if last else 0,
        "training_seconds": train_s,
        "inference_seconds": pred.seconds,
        "simulation_seconds": sim_s,
        "spacing_mm": loaded.spacing_mm,
        "device": "cuda" if torch.cuda.is_available() else "cpu",
        "torch_threads": torch.get_num_threads(),
        "machine": platform.processor() or platform.machine(),
    }
    (out / "vertical_slice.json").write_text(json.dumps(result, indent=2))
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
