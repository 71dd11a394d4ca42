"""``napari-pvs simulate``: realistic synthetic PVS inserted into a real T2 scan."""

from __future__ import annotations

from pathlib import Path

__all__ = ["add_parsers"]


def cmd_simulate(args) -> int:
    from ..engine.io import check_scan, load_mask, load_volume, save_volume
    from ..engine.synth import SimulationConfig, simulate_pvs, write_table_csv

    image = check_scan(load_volume(args.image))
    lesion = load_mask(args.lesion_mask, reference=image) if args.lesion_mask else None
    cfg = SimulationConfig(**{k: v for k, v in (("n_bg", args.n_bg), ("n_cso", args.n_cso)) if v is not None})
    res = simulate_pvs(image, seed=args.seed, lesion_mask=lesion, config=cfg)
    out = Path(args.output)
    out.mkdir(parents=True, exist_ok=True)
    save_volume(out / "image.nii.gz", res.image.data, image, dtype="float32")
    save_volume(out / "mask.nii.gz", res.mask, image, dtype="uint8")
    save_volume(out / "fraction.nii.gz", res.fraction, image, dtype="float32")
    write_table_csv(res.table, out / "pvs.csv")
    n_vox = int(res.mask.sum())
    print(f"simulated {len(res.table)} PVS ({sum(r['region'] == 'BG' for r in res.table)} BG, "
          f"{sum(r['region'] == 'CSO' for r in res.table)} CSO), {n_vox} mask voxels, "
          f"noise sigma {res.noise_sigma:.2f}; wrote {out}/image.nii.gz, mask.nii.gz, fraction.nii.gz, pvs.csv")
    return 0


def add_parsers(sub, parent) -> None:
    s = sub.add_parser("simulate", parents=[parent], help="insert realistic synthetic PVS into a real T2 image",
                       description="Insert synthetic PVS (Bernal et al. 2022 digital reference object) into a real "
                                   "T2 image; writes OUTPUT/image.nii.gz, mask.nii.gz, fraction.nii.gz and pvs.csv.")
    s.add_argument("image", help="T2-weighted NIfTI image (.nii/.nii.gz)")
    s.add_argument("-o", "--output", required=True, metavar="DIR", help="output folder (created)")
    s.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    s.add_argument("--lesion-mask", help="expert lesion mask on the image grid: no PVS are placed there")
    s.add_argument("--n-bg", type=int, help="number of basal-ganglia PVS")
    s.add_argument("--n-cso", type=int, help="number of centrum-semiovale PVS")
    s.set_defaults(func=cmd_simulate)
