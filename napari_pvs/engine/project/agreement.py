"""Agreement between two raters' PVS masks, and their consensus.

* voxel DSC, sensitivity and PPV (:func:`~napari_pvs.engine.metrics.overlap_metrics`,
  rater A as reference);
* detection F1 as in the VALDO challenge (Sudre et al., "Where is VALDO? VAscular Lesions
  Detection and segmentatiOn challenge at MICCAI 2021", Med Image Anal 2024,
  doi:10.1016/j.media.2023.103029): 3D components (26-connectivity) of the two masks are
  matched one to one, greedily by decreasing IoU, when their IoU is above 0.1;
  ``F1 = 2 matched / (n_A + n_B)``;
* PVS counts on the BG and CSO rating slices side by side
  (:func:`~napari_pvs.engine.rating.count_rating_slices`);
* the consensus: matched components are kept (the union of the pair's voxels); every
  unmatched component is a disagreement, listed with its rater, centre and size, to be
  accepted or rejected one by one (:func:`consensus_mask`).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy import ndimage as ndi

from ..anatomy.morphology import STRUCTURE_26
from ..metrics import IOU_THRESHOLD, match_components

__all__ = ["Disagreement", "RaterAgreement", "rater_agreement", "consensus_mask"]


@dataclass(frozen=True)
class Disagreement:
    """A component found by one rater only.

    Attributes
    ----------
    index : int
        Position in :attr:`RaterAgreement.disagreements` (what decisions refer to).
    rater : str
        ``"A"`` or ``"B"``: whose mask has it.
    label : int
        Its label in that rater's component map.
    centre : tuple of float
        Centroid, voxel ``(z, y, x)``.
    n_voxels : int
    best_iou : float
        Its largest IoU with any component of the other rater (0: nothing overlaps).
    """

    index: int
    rater: str
    label: int
    centre: tuple[float, float, float]
    n_voxels: int
    best_iou: float


@dataclass
class RaterAgreement:
    """Agreement of two raters on one image (see the module docstring); masks are
    ``(Z, Y, X)``."""

    rater_a: str
    rater_b: str
    dsc: float
    sensitivity: float
    ppv: float
    n_a: int
    n_b: int
    matched: list[tuple[int, int, float]]
    disagreements: list[Disagreement]
    counts: dict = field(default_factory=dict)
    labels_a: np.ndarray | None = field(default=None, repr=False)
    labels_b: np.ndarray | None = field(default=None, repr=False)

    @property
    def detection_f1(self) -> float:
        """``2 matched / (n_A + n_B)``; 1.0 when both masks are empty."""
        total = self.n_a + self.n_b
        return 2 * len(self.matched) / total if total else 1.0

    def summary(self) -> dict:
        """JSON-able numbers (no arrays)."""
        return {"rater_a": self.rater_a, "rater_b": self.rater_b, "dsc": self.dsc,
                "sensitivity": self.sensitivity, "ppv": self.ppv, "detection_f1": self.detection_f1,
                "n_a": self.n_a, "n_b": self.n_b, "matched": len(self.matched),
                "only_a": sum(d.rater == "A" for d in self.disagreements),
                "only_b": sum(d.rater == "B" for d in self.disagreements), "counts": self.counts}


def rater_agreement(mask_a: np.ndarray, mask_b: np.ndarray, *, rater_a: str = "A", rater_b: str = "B",
                    image=None, rating_slices: dict[str, int] | None = None,
                    iou_threshold: float = IOU_THRESHOLD) -> RaterAgreement:
    """Agreement of two binary PVS masks on one image.

    Parameters
    ----------
    mask_a, mask_b : np.ndarray
        ``(Z, Y, X)``, nonzero = PVS, same shape.
    rater_a, rater_b : str
        Names, for the report.
    image : Volume, optional
        The annotated image (its geometry: axial axis, midline) for the slice counts.
    rating_slices : dict, optional
        ``{"bg": int, "cso": int}`` axial slice indices (0-based, along
        ``image.axial_axis``): each rater's PVS count there (2D components,
        :func:`~napari_pvs.engine.rating.count_slice`) goes into ``counts``.
    iou_threshold : float
        Component matching threshold (VALDO: 0.1).

    Raises
    ------
    ValueError
        The masks differ in shape.
    """
    from ..metrics import overlap_metrics

    a = np.asarray(mask_a) > 0
    b = np.asarray(mask_b) > 0
    if a.shape != b.shape:
        raise ValueError(f"the raters' masks differ in shape: {a.shape} vs {b.shape} (Z, Y, X)")
    ov = overlap_metrics(b, a)
    la, n_a = ndi.label(a, structure=STRUCTURE_26)
    lb, n_b = ndi.label(b, structure=STRUCTURE_26)
    matched, best_a, best_b = match_components(la, n_a, lb, n_b, iou_threshold=iou_threshold)
    done_a = {m[0] for m in matched}
    done_b = {m[1] for m in matched}
    dis = []
    for who, lab, n, done, best in (("A", la, n_a, done_a, best_a), ("B", lb, n_b, done_b, best_b)):
        todo = [k for k in range(1, n + 1) if k not in done]
        if not todo:
            continue
        centres = ndi.center_of_mass(np.ones(lab.shape, np.uint8), lab, todo)
        sizes = ndi.sum_labels(np.ones(lab.shape, np.uint8), lab, todo)
        for k, c, sz in zip(todo, centres, sizes, strict=True):
            dis.append(Disagreement(len(dis), who, int(k), tuple(float(v) for v in c), int(sz), float(best[k])))
    counts = {}
    if rating_slices and image is not None:
        from ..rating.counting import count_slice

        for name, sl in rating_slices.items():
            counts[name] = {"slice": int(sl)}
            for who, m in ((rater_a, a), (rater_b, b)):
                counts[name][who] = count_slice(image.with_data(m.astype(np.uint8)), int(sl), name.upper()).total
    return RaterAgreement(rater_a, rater_b, ov.dsc, ov.sensitivity, ov.ppv, int(n_a), int(n_b), matched,
                          dis, counts, la, lb)


def consensus_mask(agreement: RaterAgreement, accepted: set[int] | list[int] = ()) -> np.ndarray:
    """Consensus of two raters: every matched pair of components (the union of its two
    components' voxels) plus the disagreements whose ``index`` is in ``accepted``.

    Returns
    -------
    np.ndarray
        uint8 ``(Z, Y, X)`` 0/1.
    """
    la, lb = agreement.labels_a, agreement.labels_b
    if la is None or lb is None:
        raise ValueError("the agreement holds no component maps (made without rater_agreement?)")
    keep_a = np.zeros(int(la.max()) + 1, bool)
    keep_b = np.zeros(int(lb.max()) + 1, bool)
    for ka, kb, _ in agreement.matched:
        keep_a[ka] = keep_b[kb] = True
    for d in agreement.disagreements:
        if d.index in set(accepted):
            (keep_a if d.rater == "A" else keep_b)[d.label] = True
    keep_a[0] = keep_b[0] = False
    return (keep_a[la] | keep_b[lb]).astype(np.uint8)
