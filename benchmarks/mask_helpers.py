"""Mask helpers: the connected-component and hole-filling libraries (``cc3d``, ``fill_voids``)
and box-limited dilations against the former scipy-based helpers, in the brain and wide-CSF
masks that every segmentation computes, on every shared real T2, one process, the same run.

    python benchmarks/mask_helpers.py [--data ../shared/data] [--repeat 3]

"former": the largest component by ``scipy.ndimage.label``, holes filled by one labelling
pass, ``dilate_mm`` and the wide-CSF geodesic reach on the whole array. "libraries": today's
``anatomy.morphology`` (``cc3d.largest_k``, ``fill_voids.fill``, distances and dilations on
the mask's box). Both use the ``edt`` distance transform (see
``benchmarks/distance_transform.py``). Prints seconds of ``find_brain_mask`` and
``find_wide_csf`` (median of ``--repeat`` calls) and the voxels where the masks differ;
writes ``benchmarks/results/mask_helpers.json``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
from scipy import ndimage as ndi

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from napari_pvs.engine.anatomy import brain, tissue  # noqa: E402
from napari_pvs.engine.anatomy.morphology import edt_to  # noqa: E402
from napari_pvs.engine.anatomy.regions import find_brain_mask, find_wide_csf  # noqa: E402
from napari_pvs.engine.io import load_volume  # noqa: E402
from distance_transform import save_rows, timed, voxels_differing  # noqa: E402
from real_scans import SCANS  # noqa: E402   the real-scan benchmark's scans


def former_largest(mask):
    lab, n = ndi.label(mask)
    if n <= 1:
        return mask.copy()
    sizes = np.bincount(lab.ravel())
    sizes[0] = 0
    return lab == int(sizes.argmax())


def former_fill_holes(mask):
    mask = np.asarray(mask) != 0
    lab, n = ndi.label(~mask)
    if n == 0:
        return mask.copy()
    outside = np.zeros(n + 1, dtype=bool)
    outside[0] = True
    for axis in range(mask.ndim):
        for end in (0, -1):
            outside[np.unique(np.take(lab, end, axis=axis))] = True
    return mask | ~outside[lab]


def former_dilate_mm(mask, radius_mm, spacing):
    if radius_mm <= 0 or not mask.any():
        return mask.copy()
    return edt_to(mask, spacing) <= radius_mm


def former_geodesic_reach(seed, within, spacing, reach_mm):
    return current_geodesic_reach(seed, within, spacing, reach_mm, on_box=False)


current_geodesic_reach = tissue._geodesic_reach
FORMER = {(brain, "largest_component"): former_largest, (brain, "fill_holes"): former_fill_holes,
          (tissue, "dilate_mm"): former_dilate_mm, (tissue, "_geodesic_reach"): former_geodesic_reach}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "mask_helpers.json")
    args = ap.parse_args(argv)
    current = {key: getattr(*key) for key in FORMER}
    rows = {}
    print("| scan | brain mask s (former / libraries) | wide CSF s | brain / CSF voxels differing |")
    print("|---|---|---|---|")
    for key, (rel, _) in SCANS.items():
        image = load_volume(args.data / rel)
        res = {}
        for name, helpers in (("former", FORMER), ("libraries", current)):
            for (module, attr), fn in helpers.items():
                setattr(module, attr, fn)
            try:
                t_brain, b = timed(lambda: find_brain_mask(image), args.repeat)  # noqa: B023
                t_csf, csf = timed(lambda: find_wide_csf(image, b), args.repeat)  # noqa: B023
            finally:
                for (module, attr), fn in current.items():
                    setattr(module, attr, fn)
            res[name] = {"brain_s": t_brain, "csf_s": t_csf, "brain": b, "csf": csf}
        f, c = res["former"], res["libraries"]
        diff_brain, diff_csf = voxels_differing(f["brain"], c["brain"]), voxels_differing(f["csf"], c["csf"])
        rows[key] = {name: {k: v for k, v in r.items() if k in ("brain_s", "csf_s")} for name, r in res.items()}
        rows[key].update(brain_voxels_differing=diff_brain, csf_voxels_differing=diff_csf,
                         brain_voxels=int(c["brain"].sum()) if c["brain"] is not None else 0)
        print(f"| {key} | {f['brain_s']} / {c['brain_s']} | {f['csf_s']} / {c['csf_s']} | {diff_brain} / {diff_csf} |",
              flush=True)
    save_rows(args.out, rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
