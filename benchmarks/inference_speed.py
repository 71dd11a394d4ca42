"""Inference speed: seconds and peak memory to segment real T2 scans on the CPU (2 threads).

Volumes (shared real data, Lesjak et al. 2016/2017, CC-BY):

* ``open_ms/longitudinal/patient01/study2_T2W`` (clinical, 348x384x44, 0.60x0.60x3.3 mm),
  with synthetic PVS inserted (seed 3) so that accuracy can be measured;
* ``open_ms/mni/patient07/T2`` (182x218x182, 1 mm isotropic), with synthetic PVS (seed 3).

Configurations (each in its own process, so that its peak memory is its own):

``v0.1``           the 0.1.0 path: every slice, the whole plane, 8 slices and their 32
                   windows per forward pass
``head-box``       only the head's slices and in-plane box (aligned to the window grid)
``brain-windows``  head box + windows without brain voxels skipped
``default``        brain-windows with 8 windows per forward pass (the shipped default)
``one-slice``      default, one slice per sliding-window call (no batching of slices)
``64-windows``     default with 64 windows per forward pass
``overlap-0.125``  default with half the window overlap (changes the prediction)
``dynunet``        MONAI ``DynUNet`` of similar size (filters 16-128) on the default path

The model is a ``mfnsde`` checkpoint (``--checkpoint``), or one trained here on visit 1
with synthetic PVS for ``--train-minutes`` (default 3). Each configuration reports seconds,
peak RSS (MB), windows run, DSC against the simulated truth, and the agreement (DSC) of its
mask with the ``v0.1`` mask. Writes ``benchmarks/results/inference_speed.json``.

Usage: ``python benchmarks/inference_speed.py [--data ../shared/data] [--checkpoint CKPT]``
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

VOLUMES = {
    "clinical": "open_ms/longitudinal/patient01/study2_T2W.nii.gz",
    "mni_1mm": "open_ms/mni/patient07/T2.nii.gz",
}
CONFIGS = {
    "v0.1": dict(crop_to_head=False, brain_only=False, batch_size=8, windows_per_pass=32),
    "head-box": dict(crop_to_head=True, brain_only=False, batch_size=8, windows_per_pass=32),
    "brain-windows": dict(crop_to_head=True, brain_only=True, batch_size=8, windows_per_pass=32),
    "default": dict(crop_to_head=True, brain_only=True, batch_size=8),
    "one-slice": dict(crop_to_head=True, brain_only=True, batch_size=1),
    "64-windows": dict(crop_to_head=True, brain_only=True, batch_size=8, windows_per_pass=64),
    "overlap-0.125": dict(crop_to_head=True, brain_only=True, batch_size=8, overlap=0.125),
    "dynunet": dict(crop_to_head=True, brain_only=True, batch_size=8, network="dynunet"),
}
#: the 1 mm volume is 4x more pixels at the model's 0.51 mm: fewer configurations there
PER_VOLUME = {"clinical": list(CONFIGS), "mni_1mm": ["v0.1", "default", "dynunet"]}


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def run_one(args) -> dict:
    """One configuration on one volume (child process); prints a JSON line."""
    import numpy as np
    import torch

    torch.set_num_threads(args.threads)
    from napari_pvs.engine.models.checkpoint import load_model
    from napari_pvs.engine.inference import predict_volume
    from napari_pvs.engine.io import load_volume
    from napari_pvs.engine.metrics import overlap_metrics

    cfg = dict(CONFIGS[args.config])
    cache = Path(args.work) / f"{args.volume}_sim.npz"
    d = np.load(cache)
    vol = load_volume(Path(args.data) / VOLUMES[args.volume])
    image = vol.with_data(d["image"])
    loaded = load_model(args.checkpoint)
    if cfg.pop("network", None) == "dynunet":
        from monai.networks.nets import DynUNet

        net = DynUNet(2, 1, 1, kernel_size=[3] * 4, strides=[1, 2, 2, 2], upsample_kernel_size=[2] * 3,
                      filters=[16, 32, 64, 128], norm_name="instance").eval()

        class Wrapped(torch.nn.Module):
            def __init__(self):
                super().__init__()
                self.net = net

            def forward(self, batch):
                return self.net(batch["image"])

        loaded.model = Wrapped()
    n_params = sum(p.numel() for p in loaded.model.parameters())
    windows = [0]
    model = loaded.model

    def count_windows(module, inputs):
        windows[0] += int(inputs[0]["image"].shape[0])

    model.register_forward_pre_hook(count_windows)
    rss0 = _rss_mb()
    t0 = time.perf_counter()
    pred = predict_volume(loaded, image, **cfg)
    seconds = time.perf_counter() - t0
    out = {"volume": args.volume, "config": args.config, "seconds": round(seconds, 2),
           "peak_rss_mb": round(_rss_mb(), 1), "rss_before_mb": round(rss0, 1), "windows": windows[0],
           "n_params": n_params, "mask_voxels": int(pred.mask.sum())}
    if args.config != "dynunet":
        m = overlap_metrics(pred.mask, d["mask"])
        out.update(dsc=round(m.dsc, 4), sensitivity=round(m.sensitivity, 4), ppv=round(m.ppv, 4))
    np.save(Path(args.work) / f"{args.volume}_{args.config}_mask.npy", pred.mask)
    print(json.dumps(out), flush=True)
    return out


def prepare(args) -> None:
    """Simulated PVS in both volumes (cached), and a checkpoint when none is given."""
    import numpy as np
    import torch

    torch.set_num_threads(args.threads)
    from napari_pvs.engine.io import load_volume
    from napari_pvs.engine.synth import simulate_pvs

    for key, rel in VOLUMES.items():
        cache = Path(args.work) / f"{key}_sim.npz"
        if not cache.exists():
            sim = simulate_pvs(load_volume(Path(args.data) / rel), seed=3)
            np.savez(cache, image=sim.image.data, mask=sim.mask)
    if args.checkpoint is None:
        from napari_pvs.engine.training import TrainConfig, train

        ckpt = Path(args.work) / "mfnsde_bench.pt"
        if not ckpt.exists():
            v1 = load_volume(Path(args.data) / "open_ms/longitudinal/patient01/study1_T2W.nii.gz")
            sims = [simulate_pvs(v1, seed=s) for s in (1, 2)]
            cfg = TrainConfig(model="mfnsde", max_minutes=args.train_minutes, steps_per_epoch=100, seed=0)
            for ev in train([s.image for s in sims], [s.mask for s in sims], cfg, ckpt):
                if ev.kind in ("epoch", "done"):
                    print(f"  [train] {ev.summary()}", flush=True)
        args.checkpoint = str(ckpt)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default=str(ROOT.parent / "shared" / "data"))
    ap.add_argument("--checkpoint", help="mfnsde checkpoint (default: train one for --train-minutes)")
    ap.add_argument("--train-minutes", type=float, default=3.0)
    ap.add_argument("--threads", type=int, default=2, help="torch CPU threads (the machine has 2 cores)")
    ap.add_argument("--work", default=str(ROOT / "benchmarks" / "results" / "inference_speed_work"))
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "inference_speed.json"))
    ap.add_argument("--only", nargs="*", help="volume:config pairs to run (default all)")
    ap.add_argument("--one", nargs=2, metavar=("VOLUME", "CONFIG"), help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    Path(args.work).mkdir(parents=True, exist_ok=True)
    if args.one:
        args.volume, args.config = args.one
        run_one(args)
        return 0
    prepare(args)
    import numpy as np

    results = []
    for vol_key, names in PER_VOLUME.items():
        for name in names:
            if args.only and f"{vol_key}:{name}" not in args.only:
                continue
            cmd = [sys.executable, __file__, "--data", args.data, "--checkpoint", args.checkpoint,
                   "--threads", str(args.threads), "--work", args.work, "--one", vol_key, name]
            proc = subprocess.run(cmd, capture_output=True, text=True)
            if proc.returncode != 0:
                print(proc.stderr, file=sys.stderr)
                raise SystemExit(f"{vol_key}:{name} failed")
            line = proc.stdout.strip().splitlines()[-1]
            res = json.loads(line)
            ref = Path(args.work) / f"{vol_key}_v0.1_mask.npy"
            if ref.exists() and name != "v0.1":
                a, b = np.load(ref) > 0, np.load(Path(args.work) / f"{vol_key}_{name}_mask.npy") > 0
                den = a.sum() + b.sum()
                res["agreement_dsc_vs_v0.1"] = round(float(2 * (a & b).sum() / den) if den else 1.0, 4)
            print(json.dumps(res), flush=True)
            results.append(res)
    by = {(r["volume"], r["config"]): r for r in results}
    for vol_key in PER_VOLUME:
        base = by.get((vol_key, "v0.1"))
        for r in results:
            if r["volume"] == vol_key and base:
                r["speedup_vs_v0.1"] = round(base["seconds"] / r["seconds"], 2)
        mf, dy = by.get((vol_key, "default")), by.get((vol_key, "dynunet"))
        if mf and dy:
            mf["time_ratio_vs_dynunet"] = round(mf["seconds"] / dy["seconds"], 2)
    report = {"date": time.strftime("%Y-%m-%d"), "machine": platform.processor() or platform.machine(),
              "threads": args.threads, "checkpoint": args.checkpoint, "results": results}
    Path(args.out).write_text(json.dumps(report, indent=1))
    print(f"\n{'volume':9} {'config':14} {'s':>7} {'speedup':>7} {'peak MB':>8} {'windows':>7} {'DSC':>6} "
          f"{'agree':>6}")
    for r in results:
        print(f"{r['volume']:9} {r['config']:14} {r['seconds']:7.1f} {r.get('speedup_vs_v0.1', 1):7.2f} "
              f"{r['peak_rss_mb']:8.0f} {r['windows']:7d} {r.get('dsc', float('nan')):6.3f} "
              f"{r.get('agreement_dsc_vs_v0.1', 1.0):6.3f}")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
