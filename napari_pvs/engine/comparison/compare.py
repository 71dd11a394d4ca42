"""Several models on one image, side by side: predictions, error maps and metrics.

:func:`compare_iter` runs each model's sliding-window inference (the same
:func:`~napari_pvs.engine.inference.segment_iter` as ``napari-pvs segment``) and keeps the
probability maps, so a new threshold needs no new inference (:meth:`Comparison.masks`).
With a reference mask (a project version or a simulated truth), :func:`mask_metrics` gives
per model:

* voxel DSC, sensitivity, PPV;
* VALDO detection F1 (Sudre C. H. et al., "Where is VALDO? VAscular Lesions Detection and
  segmentatiOn challenge at MICCAI 2021", Medical Image Analysis 91, 2024,
  doi:10.1016/j.media.2023.103029): components (26-connected in 3D, 8-connected on one
  slice) matched one to one when their IoU is above 0.1, ``F1 = 2 matched / (n_pred +
  n_ref)``;
* the absolute difference of the component counts;

and :func:`error_map` colours its true positives, false positives and false negatives,
voxel by voxel or component by component.

Arrays are ``(Z, Y, X)`` on the image grid.
"""

from __future__ import annotations

import time
from collections.abc import Generator, Sequence
from dataclasses import dataclass, field

import numpy as np
from scipy import ndimage as ndi

from ..models.checkpoint import LoadedModel
from ..errors import PVSInputError
from ..io import Volume
from ..metrics import IOU_THRESHOLD, match_components, overlap_metrics
from ..progress import map_events

__all__ = ["ModelPrediction", "Comparison", "CompareProgress", "compare_iter", "mask_metrics", "error_map",
           "error_components", "ErrorComponent", "model_label", "frangi_baseline", "write_metrics_csv",
           "FRANGI_DEFAULT_THRESHOLD", "TP", "FP", "FN", "METRIC_COLUMNS"]

#: values of :func:`error_map`
TP, FP, FN = 1, 2, 3
#: the columns of a metrics row, in table order
METRIC_COLUMNS = ("dsc", "sensitivity", "ppv", "detection_f1", "n_pred", "n_ref", "count_abs_diff")


def model_label(loaded: LoadedModel) -> str:
    """Short display name: ``"<model> (<checkpoint file stem>)"``, or the model name alone."""
    return f"{loaded.name} ({loaded.path.stem})" if loaded.path is not None else loaded.name


@dataclass(frozen=True)
class CompareProgress:
    """Progress of :func:`compare_iter`: model ``index`` of ``n_models`` (``label``),
    ``done`` of ``total`` slices of it, seconds since the start."""

    index: int
    n_models: int
    label: str
    done: int
    total: int
    elapsed_s: float

    @property
    def fraction(self) -> float:
        within = self.done / self.total if self.total else 0.0
        return (self.index + within) / self.n_models

    def summary(self) -> str:
        return f"model {self.index + 1}/{self.n_models} {self.label}: slices {self.done}/{self.total}"


@dataclass
class ModelPrediction:
    """One model's prediction on the compared image.

    Attributes
    ----------
    label : str
        Display name (:func:`model_label`).
    name : str
        Registry name.
    prob : np.ndarray
        float32 ``(Z, Y, X)`` PVS probability.
    seconds : float
        Inference wall-clock time.
    n_parameters : int
        Trainable parameters (0 for ``frangi``).
    """

    label: str
    name: str
    prob: np.ndarray = field(repr=False)
    seconds: float
    n_parameters: int

    def mask(self, threshold: float = 0.5) -> np.ndarray:
        """uint8 ``(Z, Y, X)``: ``prob >= threshold``."""
        return (self.prob >= threshold).astype(np.uint8)


@dataclass
class Comparison:
    """The result of :func:`compare_iter`.

    Attributes
    ----------
    image : Volume
    predictions : list of ModelPrediction
    reference : np.ndarray or None
        uint8 ``(Z, Y, X)`` reference mask.
    """

    image: Volume
    predictions: list[ModelPrediction]
    reference: np.ndarray | None = None

    def masks(self, threshold: float = 0.5) -> list[np.ndarray]:
        """Every model's mask at ``threshold``."""
        return [p.mask(threshold) for p in self.predictions]

    def metrics(self, threshold: float = 0.5, *, slice_index: int | None = None,
                masks: list[np.ndarray] | None = None) -> list[dict]:
        """One row per model: ``model``, ``parameters``, ``inference_s`` and, with a
        reference, the :func:`mask_metrics` of the volume (or of axial slice
        ``slice_index``). ``masks``: the models' masks at ``threshold`` when the caller
        already has them (:meth:`masks`)."""
        rows = []
        masks = self.masks(threshold) if masks is None else masks
        for p, mask in zip(self.predictions, masks, strict=True):
            row = {"model": p.label, "parameters": p.n_parameters, "inference_s": round(p.seconds, 2)}
            if self.reference is not None:
                row.update(mask_metrics(mask, self.reference, axial_axis=self.image.axial_axis,
                                        slice_index=slice_index))
            else:
                row["n_pred"] = _count(mask, self.image.axial_axis, slice_index)
            rows.append(row)
        return rows


def _labels(mask: np.ndarray) -> tuple[np.ndarray, int]:
    """Components of a 2D (8-connected) or 3D (26-connected) mask."""
    return ndi.label(mask > 0, structure=np.ones((3,) * mask.ndim))


def _count(mask: np.ndarray, axis: int, slice_index: int | None) -> int:
    return int(_labels(mask if slice_index is None else np.take(mask, slice_index, axis=axis))[1])


def mask_metrics(pred: np.ndarray, reference: np.ndarray, *, axial_axis: int = 0,
                 slice_index: int | None = None) -> dict:
    """Voxel and detection metrics of a binary prediction against a reference.

    Parameters
    ----------
    pred, reference : np.ndarray
        Binary ``(Z, Y, X)`` masks (nonzero = PVS) on the same grid.
    axial_axis : int
        The axial axis of the arrays (for ``slice_index``).
    slice_index : int, optional
        Only this axial slice (2D components, 8-connected); default the whole volume
        (3D components, 26-connected).

    Returns
    -------
    dict
        ``dsc``, ``sensitivity``, ``ppv``, ``detection_f1``, ``n_pred``, ``n_ref``,
        ``count_abs_diff`` (``|n_pred - n_ref|``), ``matched``.

    Raises
    ------
    ValueError
        Different shapes, or ``slice_index`` outside the volume.
    """
    pred, reference = np.asarray(pred) > 0, np.asarray(reference) > 0
    if pred.shape != reference.shape:
        raise ValueError(f"prediction shape {pred.shape} differs from the reference's {reference.shape}")
    if slice_index is not None:
        n = pred.shape[axial_axis]
        if not 0 <= slice_index < n:
            raise ValueError(f"slice {slice_index} is outside the volume's {n} axial slices")
        pred, reference = np.take(pred, slice_index, axis=axial_axis), np.take(reference, slice_index, axis=axial_axis)
    ov = overlap_metrics(pred, reference)
    lp, n_p = _labels(pred)
    lr, n_r = _labels(reference)
    matched, _, _ = match_components(lp, n_p, lr, n_r, iou_threshold=IOU_THRESHOLD)
    f1 = 2 * len(matched) / (n_p + n_r) if n_p + n_r else 1.0
    return {"dsc": float(ov.dsc), "sensitivity": float(ov.sensitivity), "ppv": float(ov.ppv),
            "detection_f1": float(f1), "n_pred": int(n_p), "n_ref": int(n_r),
            "count_abs_diff": int(abs(n_p - n_r)), "matched": len(matched)}


def error_map(pred: np.ndarray, reference: np.ndarray, *, components: bool = False) -> np.ndarray:
    """True positives, false positives and false negatives of ``pred`` against ``reference``.

    Parameters
    ----------
    pred, reference : np.ndarray
        Binary ``(Z, Y, X)`` masks on the same grid.
    components : bool
        False: voxel by voxel. True: component by component (26-connected, matched at
        IoU > 0.1 as in :func:`mask_metrics`): a matched predicted component is TP as a
        whole, an unmatched one FP, an unmatched reference component FN.

    Returns
    -------
    np.ndarray
        uint8 ``(Z, Y, X)``: 0 background, :data:`TP` (1), :data:`FP` (2), :data:`FN` (3).

    Raises
    ------
    ValueError
        Different shapes.
    """
    p, r = np.asarray(pred) > 0, np.asarray(reference) > 0
    if p.shape != r.shape:
        raise ValueError(f"prediction shape {p.shape} differs from the reference's {r.shape}")
    out = np.zeros(p.shape, np.uint8)
    if not components:
        out[r & ~p] = FN
        out[p & ~r] = FP
        out[p & r] = TP
        return out
    lp, n_p = _labels(p)
    lr, n_r = _labels(r)
    matched, _, _ = match_components(lp, n_p, lr, n_r, iou_threshold=IOU_THRESHOLD)
    hit_p = np.zeros(n_p + 1, bool)
    hit_r = np.zeros(n_r + 1, bool)
    for a, b, _ in matched:
        hit_p[a] = hit_r[b] = True
    out[(lr > 0) & ~hit_r[lr]] = FN
    out[(lp > 0) & hit_p[lp]] = TP
    out[(lp > 0) & ~hit_p[lp]] = FP
    return out


@dataclass(frozen=True)
class ErrorComponent:
    """A connected component of an :func:`error_map` (26-connected, one kind).

    Attributes
    ----------
    kind : str
        ``"TP"``, ``"FP"`` or ``"FN"``.
    centre : tuple of int
        Voxel ``(z, y, x)`` of the component nearest its centroid.
    n_voxels : int
    """

    kind: str
    centre: tuple[int, int, int]
    n_voxels: int


def error_components(errors: np.ndarray, kinds: Sequence[int] = (FP, FN)) -> list[ErrorComponent]:
    """The components of an :func:`error_map` of the given kinds, largest first (what a
    user clicks through to find where a model goes wrong)."""
    names = {TP: "TP", FP: "FP", FN: "FN"}
    out = []
    for kind in kinds:
        lab, n = _labels(errors == kind)
        if not n:
            continue
        idx = np.arange(1, n + 1)
        sizes = ndi.sum_labels(np.ones(lab.shape), lab, idx)
        for c, s, obj in zip(ndi.center_of_mass(lab > 0, lab, idx), sizes, ndi.find_objects(lab), strict=True):
            # the component's voxel nearest its centroid (a curved PVS's centroid may miss it)
            pts = np.argwhere(lab[obj] > 0) + [sl.start for sl in obj]
            near = pts[np.argmin(((pts - np.asarray(c)) ** 2).sum(1))]
            out.append(ErrorComponent(names[kind], tuple(int(v) for v in near), int(s)))
    return sorted(out, key=lambda e: -e.n_voxels)


def compare_iter(image: Volume, models: Sequence[LoadedModel], *, reference: np.ndarray | Volume | None = None,
                 labels: Sequence[str] | None = None, threshold: float = 0.5, device: str | None = None,
                 **segment_kwargs) -> Generator[CompareProgress, None, Comparison]:
    """Predict ``image`` with each model in turn, yielding :class:`CompareProgress`.

    Parameters
    ----------
    image : Volume
        T2 (or, for a T1 model, T1) volume ``(Z, Y, X)``.
    models : sequence of LoadedModel
        From :func:`~napari_pvs.engine.checkpoint.load_model` (a ``frangi`` checkpoint
        included).
    reference : np.ndarray or Volume, optional
        Binary reference mask on the image grid.
    labels : sequence of str, optional
        Display names (default :func:`model_label`; repeated names get a number).
    threshold : float
        Passed to the inference (the masks can be re-made at any threshold later).
    device : str, optional
    **segment_kwargs
        Passed to :func:`~napari_pvs.engine.inference.segment_iter` (``brain_only``, ...).

    Returns
    -------
    Comparison

    Raises
    ------
    PVSInputError
        No models, or a reference on another grid.
    """
    from ..inference import segment_iter

    if not models:
        raise PVSInputError("no models to compare", image.path)
    ref = None
    if reference is not None:
        ref = np.asarray(reference.data if isinstance(reference, Volume) else reference)
        if ref.shape != image.shape:
            raise PVSInputError(f"reference mask shape {ref.shape} differs from the image grid {image.shape}",
                                getattr(reference, "path", None))
        ref = (ref > 0).astype(np.uint8)
    names = list(labels) if labels is not None else [model_label(m) for m in models]
    seen: dict[str, int] = {}
    for i, n in enumerate(names):
        seen[n] = seen.get(n, 0) + 1
        if seen[n] > 1:
            names[i] = f"{n} #{seen[n]}"
    t0 = time.perf_counter()
    preds = []
    for i, (loaded, label) in enumerate(zip(models, names, strict=True)):
        gen = segment_iter(loaded, image, threshold=threshold, device=device, **segment_kwargs)
        pred = yield from map_events(gen, lambda ev, i=i, label=label: CompareProgress(
            i, len(models), label, ev.done, ev.total, time.perf_counter() - t0))
        n_par = sum(p.numel() for p in loaded.model.parameters() if p.requires_grad)
        preds.append(ModelPrediction(label, loaded.name, pred.prob, pred.seconds, int(n_par)))
    return Comparison(image=image, predictions=preds, reference=ref)


#: threshold of the unfitted Frangi baseline (:func:`frangi_baseline`): the thresholds
#: fitted on simulated PVS in the shared real T2 scans by ``benchmarks/compare_models.py``
#: were 0.41 and 0.58 (its two folds; training DSC 0.010 both)
FRANGI_DEFAULT_THRESHOLD = 0.5


def frangi_baseline(spacing_mm: float = 0.5, *, threshold: float = FRANGI_DEFAULT_THRESHOLD,
                    modality: str = "T2") -> LoadedModel:
    """The Frangi baseline without a checkpoint, ready for :func:`compare_iter`.

    Parameters
    ----------
    spacing_mm : float
        In-plane spacing (mm) it filters at (its sigmas are in pixels at this spacing).
    threshold : float
        Vesselness threshold (default :data:`FRANGI_DEFAULT_THRESHOLD`); a checkpoint from
        ``napari-pvs train --model frangi`` carries one fitted on the user's data.
    modality : str
        ``"T2"`` (bright PVS) or ``"T1"`` (dark PVS).
    """
    from ..models import FrangiBaseline, FrangiConfig

    model = FrangiBaseline(FrangiConfig(modality=modality)).eval()
    model.threshold.fill_(float(threshold))
    return LoadedModel(model=model, name="frangi", config=model.config, spacing_mm=float(spacing_mm),
                       percentiles=(0.5, 99.5), roi_size=(128, 128), path=None,
                       info={"note": f"unfitted Frangi baseline, threshold {threshold:g}"})


def write_metrics_csv(path, rows: Sequence[dict]) -> None:
    """Write metric rows (:meth:`Comparison.metrics`) as CSV, atomically."""
    import csv

    from ..io import atomic_path

    cols: list[str] = []
    for r in rows:
        cols += [k for k in r if k not in cols]
    with atomic_path(path) as tmp, open(tmp, "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=cols)
        w.writeheader()
        for r in rows:
            w.writerow({k: (f"{v:.4f}" if isinstance(v, float) else v) for k, v in r.items()})
