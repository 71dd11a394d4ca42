"""One scan of a cohort, end to end: the work of one Dask task.

read (NIfTI, MGZ, DICOM) -> segment (the *segment* use case; the model is loaded once per
worker process) -> place the BG/CSO rating slices by atlas (the *rate a scan* use case),
with QC flags for a weak registration or an implausible scale -> count per slice and
hemisphere with Potter grades, split at the registered midline -> per-region counts and
volumes (basal ganglia, centrum semiovale white matter above the lateral ventricles, other
white matter; mm^3 and as a share of the brain) -> per-PVS shape, possible lacunes -> a QC
figure -> the BIDS derivative files and a JSON sidecar (input and model sha256, version,
settings, per-stage seconds), each written atomically.

A scan whose sidecar records the same input sha256, model sha256, version and settings
is not recomputed (its row is read back). Any failure becomes a row with status
``failed`` and a one-line error; no exception leaves :func:`process_scan`.
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path

import numpy as np

from ..errors import PVSInputError
from ..io.bids import derivative_path, write_tsv_with_sidecar
from .config import CohortConfig
from .inputs import CohortScan
from .shape import SHAPE_COLUMNS, pvs_shapes

__all__ = ["process_scan", "input_sha256", "ROW_COLUMNS", "STAGES"]

log = logging.getLogger(__name__)

STAGES = ("read", "segment", "register", "count", "figure")

#: the columns of ``cohort.tsv`` (one row per scan) and what they hold
ROW_COLUMNS = {
    "scan_id": "sub-XX[_ses-YY][_acq-..][_run-..], or the id given",
    "subject": "subject (BIDS sub-XX)", "session": "session (BIDS ses-YY)", "file": "the scan read",
    "status": "ok, skipped (unchanged since the last run) or failed", "error": "the one-line error of a failed scan",
    "model": "model name and checkpoint file", "bg_slice": "BG rating slice (0-based axial index)",
    "cso_slice": "CSO rating slice (0-based axial index)",
    "bg_left": "PVS on the BG slice, left hemisphere", "bg_right": "PVS on the BG slice, right hemisphere",
    "bg_total": "PVS on the BG slice within the atlas basal ganglia", "bg_grade": "Potter grade of the BG slice",
    "cso_left": "PVS on the CSO slice, left", "cso_right": "PVS on the CSO slice, right",
    "cso_total": "PVS on the CSO slice within the atlas white matter", "cso_grade": "Potter grade of the CSO slice",
    "n_pvs": "PVS in the whole volume (3D components)", "pvs_volume_mm3": "PVS volume in mm^3",
    "brain_volume_mm3": "brain volume (intensity-based brain mask) in mm^3",
    "pvs_share_of_brain": "PVS volume / brain volume",
    "n_bg": "PVS centred in the basal ganglia (atlas, grown 3 mm)", "pvs_bg_mm3": "their volume in mm^3",
    "n_cso_wm": "PVS centred in white matter above the lateral ventricles' top", "pvs_cso_wm_mm3": "their volume",
    "n_other_wm": "PVS centred in the other white matter", "pvs_other_wm_mm3": "their volume",
    "n_possible_lacunes": "objects at least 3 mm wide (possible lacunes, STRIVE)",
    "registration_metric": "final Mattes mutual information of the atlas registration (lower is better)",
    "registration_scale": "template-to-subject scale (cube root of the affine's determinant)",
    "qc_flags": "what to check: registration_weak, registration_scale, lacunes; empty when none",
    "seconds_total": "seconds for the scan (all stages)",
}


_MODELS: dict[str, object] = {}
_ATLAS: list = []
_MALLOC_TUNED: list = []


def _tune_malloc() -> None:
    """Undo Dask's ``MALLOC_TRIM_THRESHOLD_=65536`` for this worker process (glibc only).

    Dask's nanny starts workers with that setting, which fixes glibc's mmap threshold at
    128 KiB: every large array is then mapped and unmapped anew. On a 20-slice crop of the
    stroke T2 the default model took 33.2 s in such a worker against 14.5 s in a plain
    process; with the thresholds raised here (``mallopt``) 12.4 s.
    """
    if _MALLOC_TUNED:
        return
    _MALLOC_TUNED.append(True)
    try:
        import ctypes

        libc = ctypes.CDLL("libc.so.6")
        libc.mallopt(-3, 64 * 1024 * 1024)      # M_MMAP_THRESHOLD
        libc.mallopt(-1, 256 * 1024 * 1024)     # M_TRIM_THRESHOLD
    except (OSError, AttributeError):            # not glibc: nothing to undo
        pass


def _atlas():
    """The MNI template and Allen labels, read once per worker process."""
    from ..registration.atlas import load_atlas

    if not _ATLAS:
        _ATLAS.append(load_atlas())
    return _ATLAS[0]


def _model(checkpoint: str | None):
    """The segmentation model, loaded once per worker process."""
    from ..usecases import load_segmenter

    key = str(checkpoint or "default")
    if key not in _MODELS:
        _MODELS[key] = load_segmenter(checkpoint)
    return _MODELS[key]


def input_sha256(path: str | Path) -> str:
    """sha256 of a scan file, or of a DICOM folder's (name, sha256) list."""
    import hashlib

    from ..data import sha256_file

    path = Path(path)
    if path.is_file():
        return sha256_file(path)
    h = hashlib.sha256()
    for f in sorted(p for p in path.iterdir() if p.is_file()):
        h.update(f"{f.name}:{sha256_file(f)}\n".encode())
    return h.hexdigest()


def _row_base(scan: CohortScan) -> dict:
    return {"scan_id": scan.scan_id, "subject": scan.subject, "session": scan.session, "file": scan.path}


def _regions_of(regions: np.ndarray, image, lv_top_z: float, bg_area, wm_area):
    """A function (code, centre_xyz) -> region name, from the rating areas."""

    def region_of(code_unused: int, centre_xyz) -> str:
        zyx = np.clip(np.rint(image.world_to_voxel(centre_xyz)).astype(int), 0, np.asarray(image.shape) - 1)
        if bg_area[tuple(zyx)]:
            return "BG"
        if wm_area[tuple(zyx)]:
            return "CSO_WM" if centre_xyz[2] >= lv_top_z else "other_WM"
        return "other"

    return region_of


def _qc_figure(path: Path, image, mask: np.ndarray, counts, bg_area, wm_area, flags: list[str]) -> None:
    """BG and CSO slices with the PVS outlines (red) and the counting areas (BG cyan, white
    matter yellow), written atomically as PNG."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    from ..io import atomic_path

    ax_axis = image.axial_axis
    fig = Figure(figsize=(9, 4.8), dpi=100)
    data = np.asarray(image.data, np.float32)
    lo, hi = np.percentile(data[data > 0], (1, 99.5)) if (data > 0).any() else (0, 1)
    for k, c in enumerate((counts.bg, counts.cso)):
        ax = fig.add_subplot(1, 2, k + 1)
        sl = c.slice_index
        img = np.take(data, sl, axis=ax_axis)
        ax.imshow(img, cmap="gray", vmin=lo, vmax=hi, interpolation="nearest")
        area = bg_area if c.region == "BG" else wm_area
        if area is not None and np.take(area, sl, axis=ax_axis).any():
            ax.contour(np.take(area, sl, axis=ax_axis), levels=[0.5], colors=["cyan" if c.region == "BG" else "yellow"],
                       linewidths=0.6)
        m = np.take(mask, sl, axis=ax_axis)
        if m.any():
            ax.contour(m, levels=[0.5], colors=["red"], linewidths=0.8)
        ax.set_title(f"{c.region} slice {sl}: L {c.left} R {c.right} (grade {c.grade})", fontsize=9)
        ax.axis("off")
    fig.suptitle(("QC: " + ", ".join(flags)) if flags else "QC: no flag", fontsize=9,
                 color="darkred" if flags else "black")
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(str(tmp), format="png")


def _sidecar_row(sidecar: Path, in_sha: str, model_sha: str, settings: dict, version: str) -> dict | None:
    try:
        rec = json.loads(sidecar.read_text())
    except (OSError, ValueError):
        return None
    same = (rec.get("input_sha256") == in_sha and rec.get("model_sha256") == model_sha
            and rec.get("settings") == settings and rec.get("version") == version and rec.get("status") == "ok")
    return dict(rec["row"]) if same and isinstance(rec.get("row"), dict) else None


def process_scan(scan: CohortScan, out_root: str | Path, config: CohortConfig, *, version: str,
                 model_sha256: str) -> dict:
    """Process one scan (see the module docstring); returns its ``cohort.tsv`` row
    (:data:`ROW_COLUMNS`, plus ``seconds_<stage>``). Never raises."""
    from ..io import atomic_path

    t_all = time.perf_counter()
    out_root = Path(out_root)
    e = scan.entities
    row = _row_base(scan)
    try:
        sidecar = derivative_path(out_root, e, "summary")
        in_sha = input_sha256(scan.path)
        settings = config.settings()
        done = _sidecar_row(sidecar, in_sha, model_sha256, settings, version)
        if done is not None:
            return {**done, "status": "skipped", "error": ""}
        return _process(scan, out_root, config, row, sidecar, in_sha, model_sha256, settings, version, t_all,
                        atomic_path)
    except Exception as exc:  # noqa: BLE001 - a failed scan is a row, the cohort goes on
        msg = " ".join(str(exc).split()) if isinstance(exc, PVSInputError) else \
            f"{type(exc).__name__}: {' '.join(str(exc).split())}"
        log.warning("cohort scan %s failed: %s", scan.scan_id, msg)
        return {**row, "status": "failed", "error": msg[:500], "seconds_total": round(time.perf_counter() - t_all, 2)}


def _process(scan, out_root, config, row, sidecar, in_sha, model_sha, settings, version, t_all, atomic_path) -> dict:
    import torch

    from ..anatomy import find_brain_mask
    from ..io import load_scan
    from ..progress import run_to_end
    from ..registration.atlas import rating_areas
    from ..usecases import count_rating, place_rating_slices_job, segment_job

    torch.set_num_threads(config.torch_threads)
    _tune_malloc()
    e = scan.entities
    seconds = {}
    t = time.perf_counter()
    image = load_scan(scan.path)

    brain = find_brain_mask(image)
    brain_ml = float(brain.sum() * np.prod(image.voxel_size)) / 1000.0 if brain is not None else 0.0
    lo_ml, hi_ml = config.brain_ml_range
    if not lo_ml <= brain_ml <= hi_ml:
        raise PVSInputError(f"not a brain scan: the brain mask holds {brain_ml:.0f} mL (expected {lo_ml:.0f}-"
                            f"{hi_ml:.0f} mL)", scan.path)
    seconds["read"] = time.perf_counter() - t

    t = time.perf_counter()
    model = _model(config.checkpoint)
    seg = run_to_end(segment_job(image, model, threshold=config.threshold,
                                 members=bool(config.agreement and model.name == "ensemble")))
    seconds["segment"] = time.perf_counter() - t

    t = time.perf_counter()
    last = {}
    placement = run_to_end(place_rating_slices_job(image, method=config.registration, atlas=_atlas(),
                                                   grid_mm=config.registration_grid_mm),
                           lambda ev: last.update(metric=getattr(ev, "metric", float("nan"))))
    rs = placement.slices
    metric = float(last.get("metric", float("nan")))
    scale = float(abs(np.linalg.det(np.asarray(rs.transform.affine)[:3, :3])) ** (-1.0 / 3.0)) \
        if rs.transform is not None else float("nan")
    seconds["register"] = time.perf_counter() - t

    t = time.perf_counter()
    mask_vol = image.with_data(seg.prediction.mask)
    counts = count_rating(mask_vol, rs.bg, rs.cso, regions=placement.regions, midline=rs.midline,
                          slab_mm=config.slab_mm)
    bg_area, wm_area = rating_areas(placement.regions, image.voxel_size)
    vox_mm3 = float(np.prod(image.voxel_size))
    shapes = pvs_shapes(mask_vol, lacune_width_mm=config.lacune_width_mm, regions=placement.regions,
                        region_of=_regions_of(placement.regions, image, rs.lv_top_mm[2], bg_area, wm_area))
    per = {name: [r for r in shapes if r["region"] == name] for name in ("BG", "CSO_WM", "other_WM")}
    pvs_mm3 = float(seg.prediction.mask.sum() * vox_mm3)
    brain_mm3 = float(brain.sum() * vox_mm3) if brain is not None else float("nan")
    flags = []
    if not metric <= config.qc_min_similarity:
        flags.append("registration_weak")
    lo, hi = config.qc_scale_range
    if not lo <= scale <= hi:
        flags.append("registration_scale")
    n_lacunes = sum(r["possible_lacune"] for r in shapes)
    if n_lacunes:
        flags.append("lacunes")
    seconds["count"] = time.perf_counter() - t

    t = time.perf_counter()
    qc_png = derivative_path(out_root, e, "qc")
    _qc_figure(qc_png, image, seg.prediction.mask, counts, bg_area, wm_area, flags)
    seconds["figure"] = time.perf_counter() - t

    from ..usecases import ScanRating

    written = seg.write_derivative(out_root, source=None, entities=e)
    written.append(ScanRating(counts, placement, placement.regions).write_derivative(out_root, entities=e))
    write_tsv_with_sidecar(derivative_path(out_root, e, "objects"), shapes, SHAPE_COLUMNS)
    from ..io import save_volume

    written.append(save_volume(derivative_path(out_root, e, "regions"), placement.regions, image, dtype="uint8"))
    ckpt = getattr(model, "path", None)
    row.update({
        "status": "ok", "error": "", "model": f"{model.name} ({Path(ckpt).name if ckpt else 'built in'})",
        "bg_slice": rs.bg, "cso_slice": rs.cso,
        "bg_left": counts.bg.left, "bg_right": counts.bg.right, "bg_total": counts.bg.total, "bg_grade": counts.bg.grade,
        "cso_left": counts.cso.left, "cso_right": counts.cso.right, "cso_total": counts.cso.total,
        "cso_grade": counts.cso.grade, "n_pvs": counts.volume.n_components,
        "pvs_volume_mm3": round(pvs_mm3, 2), "brain_volume_mm3": round(brain_mm3, 1),
        "pvs_share_of_brain": round(pvs_mm3 / brain_mm3, 6) if brain_mm3 == brain_mm3 and brain_mm3 > 0 else None,
        "n_bg": len(per["BG"]), "pvs_bg_mm3": round(sum(r["volume_mm3"] for r in per["BG"]), 2),
        "n_cso_wm": len(per["CSO_WM"]), "pvs_cso_wm_mm3": round(sum(r["volume_mm3"] for r in per["CSO_WM"]), 2),
        "n_other_wm": len(per["other_WM"]),
        "pvs_other_wm_mm3": round(sum(r["volume_mm3"] for r in per["other_WM"]), 2),
        "n_possible_lacunes": n_lacunes, "registration_metric": round(metric, 4), "registration_scale": round(scale, 3),
        "qc_flags": ";".join(flags), "qc_figure": str(qc_png.relative_to(out_root)),
        **{f"seconds_{k}": round(v, 2) for k, v in seconds.items()},
        "seconds_total": round(time.perf_counter() - t_all, 2)})
    record = {"scan": scan.path, "scan_id": scan.scan_id, "input_sha256": in_sha, "model_sha256": model_sha,
              "version": version, "settings": settings, "status": "ok", "seconds": row_seconds(row),
              "outputs": [str(Path(p).relative_to(out_root)) for p in written], "row": row}
    with atomic_path(sidecar) as tmp:
        tmp.write_text(json.dumps(record, indent=1, default=_json_default) + "\n")
    return row


def row_seconds(row: dict) -> dict:
    return {k[len("seconds_"):]: v for k, v in row.items() if k.startswith("seconds_")}


def _json_default(v):
    if isinstance(v, (np.integer,)):
        return int(v)
    if isinstance(v, (np.floating,)):
        return float(v)
    if isinstance(v, np.bool_):
        return bool(v)
    return str(v)
