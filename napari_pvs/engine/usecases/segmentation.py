"""Use case *segment*: PVS mask and probability of a scan with a checkpoint.

:func:`load_segmenter` reads the checkpoint (the shipped default model when none is given)
on the caller's thread, so that a missing or foreign file is refused before any work
starts; :func:`segment_job` runs the sliding-window inference
(:func:`~napari_pvs.engine.inference.segment_iter`) as a generator of
:class:`~napari_pvs.engine.inference.InferenceProgress` and returns a :class:`Segmentation`,
which writes its outputs on the scan's grid (:meth:`Segmentation.write`). With an ensemble
checkpoint (the shipped default is one), each member's probability comes from the same
pass, for the agreement map and the uncertain objects. :func:`segment` is the one-call form.

Used by ``napari-pvs segment``, the Segment widget and the Python API alike.

Example
-------
>>> from napari_pvs.engine.usecases import segment
>>> seg = segment("t2.nii.gz")                     # doctest: +SKIP
>>> seg.write("pvs_mask.nii.gz")                    # doctest: +SKIP
>>> seg.summary()                                   # doctest: +SKIP
'segmented t2.nii.gz with liteunet (pvs_default.pt) in 3.1 s: 412 PVS voxels (61.3 mm^3)'
"""

from __future__ import annotations

from collections.abc import Callable, Generator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import PVSInputError
from ..io import Volume, check_memory, check_scan, is_nifti_name, load_scan, save_volume
from ..progress import run_to_end

__all__ = ["Segmentation", "load_segmenter", "segment_job", "segment"]


def load_segmenter(checkpoint: str | Path | None = None, *, device: str = "auto", backend: str = "auto"):
    """The model of ``checkpoint`` (default: the shipped default model) on ``device``.

    Parameters
    ----------
    checkpoint : str or Path, optional
        A checkpoint file, or ``"default"`` / ``"accurate"`` for the shipped models
        (:func:`~napari_pvs.engine.data.resolve_checkpoint`).
    device : str
        ``auto``, ``cpu``, ``cuda`` (torch backend).
    backend : str
        ``torch`` (the reference), ``onnx``: the same network run by ONNX Runtime on the
        CPU (:func:`~napari_pvs.engine.inference.onnx_backend.onnx_model`; probabilities
        within 1e-3 of torch's), or ``auto`` (default): ``onnx`` for a whole-slice model
        (``liteunet``, the default) on the CPU when onnxruntime is installed, else ``torch``.

    Returns
    -------
    LoadedModel

    Raises
    ------
    PVSInputError
        The file is missing, not a napari-pvs checkpoint, or for another task; CUDA asked
        for on a machine without it; an unknown backend; ``onnx`` with ``device="cuda"`` or
        without onnxruntime installed.

    Example
    -------
    >>> loaded = load_segmenter("accurate", device="cpu", backend="torch")   # doctest: +SKIP
    >>> loaded.name                                                          # doctest: +SKIP
    'ensemble'
    """
    from ..data import resolve_checkpoint
    from ..device import pick_device
    from ..inference.onnx_backend import BACKENDS, onnx_available, onnx_model
    from ..models.checkpoint import load_model

    if backend not in BACKENDS:
        raise PVSInputError(f"unknown inference backend {backend!r}; expected one of {', '.join(BACKENDS)}")
    if backend == "onnx" and str(device).startswith("cuda"):
        raise PVSInputError("the onnx backend runs on the CPU; use the torch backend on cuda")
    path = resolve_checkpoint(checkpoint)
    dev = pick_device("cpu" if backend == "onnx" else device)
    loaded = load_model(path, device=dev)
    if backend == "auto":
        whole = bool(getattr(loaded.config, "whole_slice", False))
        backend = "onnx" if whole and dev.type == "cpu" and onnx_available() else "torch"
    return onnx_model(loaded) if backend == "onnx" else loaded


@dataclass
class Segmentation:
    """What :func:`segment_job` returns.

    Attributes
    ----------
    image : Volume
        The segmented scan.
    prediction : Prediction
        ``prob`` float32 and ``mask`` uint8 ``(Z, Y, X)`` on the scan's grid; with an
        ensemble, ``member_probs`` ``(M, Z, Y, X)``.
    model_name : str
        Registry name of the model (``"ensemble"``, ``"mfnsde"``, ...).
    checkpoint : Path or None
        Its checkpoint file.
    """

    image: Volume
    prediction: object
    model_name: str
    checkpoint: Path | None

    @property
    def n_members(self) -> int:
        """Ensemble members whose probabilities were kept (0 for a single model)."""
        mp = self.prediction.member_probs
        return 0 if mp is None else int(mp.shape[0])

    def pvs_volume_mm3(self) -> float:
        """Volume of the mask in mm^3."""
        return float(self.prediction.mask.sum() * np.prod(self.image.voxel_size))

    def summary(self) -> str:
        """One line: what was segmented, with what, how long, how much PVS."""
        src = self.image.path.name if self.image.path is not None else "the image"
        model = f"{self.model_name} ({self.checkpoint.name})" if self.checkpoint is not None else self.model_name
        return (f"segmented {src} with {model} in {self.prediction.seconds:.1f} s: "
                f"{int(self.prediction.mask.sum())} PVS voxels ({self.pvs_volume_mm3():.1f} mm^3)")

    def agreement_summary(self) -> str:
        """One line: voxels called PVS by k of the ensemble's members, and the uncertain ones.

        Raises
        ------
        ValueError
            No member probabilities (a single model).
        """
        agree = self.prediction.agreement()
        n = self.n_members
        uncertain = int((self.prediction.uncertain() > 0).sum())
        return ("member agreement: voxels called PVS by k of " + f"{n} members: "
                + ", ".join(f"{k}: {int((agree == k).sum())}" for k in range(1, n + 1))
                + f"; {uncertain} voxels called PVS by some member but not by the ensemble")

    def write(self, mask: str | Path, *, prob: str | Path | None = None,
              agreement: str | Path | None = None) -> list[Path]:
        """Write the mask (uint8), and optionally the probability (float32) and the member
        agreement (uint8 0..M), as NIfTI on the scan's grid, each atomically.

        Raises
        ------
        PVSInputError
            A path that is not ``.nii``/``.nii.gz``; an agreement map without ensemble
            member probabilities.
        """
        outs = [(mask, "output mask"), (prob, "probability map"), (agreement, "member agreement map")]
        for path, what in outs:
            if path is not None and not is_nifti_name(path):
                raise PVSInputError(f"the {what} must be a .nii or .nii.gz file", path)
        if agreement is not None and self.prediction.member_probs is None:
            raise PVSInputError(f"an agreement map needs an ensemble checkpoint, this one is a {self.model_name!r} "
                                "model", self.checkpoint)
        written = [save_volume(mask, self.prediction.mask, self.image, dtype="uint8")]
        if prob is not None:
            written.append(save_volume(prob, self.prediction.prob, self.image, dtype="float32"))
        if agreement is not None:
            written.append(save_volume(agreement, self.prediction.agreement(), self.image, dtype="uint8"))
        return written

    def write_derivative(self, root: str | Path, *, source: str | Path | None = None, entities=None) -> list[Path]:
        """Write the mask (``_desc-pvs_mask``), the probability (``_desc-pvs_probseg``) and,
        with an ensemble, the member agreement (``_desc-pvs_agreement``) into a BIDS
        derivative dataset at ``root`` (:mod:`napari_pvs.engine.io.bids`), with its
        ``dataset_description.json`` (version, model name and sha256).

        ``entities`` (:class:`~napari_pvs.engine.io.bids.BidsEntities`) name a scan whose
        file name is not BIDS.

        Raises
        ------
        PVSInputError
            The scan's file name is not BIDS (``sub-XX[_ses-YY]_..._T2w.nii.gz``) and no
            ``entities`` are given.
        """
        from ..data import sha256_file
        from ..io.bids import bids_entities, derivative_path, write_dataset_description

        e = entities if entities is not None else (bids_entities(self.image.path) if self.image.path else None)
        if e is None or not e.is_bids:
            raise PVSInputError("a BIDS derivative needs a BIDS-named scan (sub-XX[_ses-YY]_..._T2w.nii.gz)",
                                self.image.path)
        sha = sha256_file(self.checkpoint) if self.checkpoint is not None and Path(self.checkpoint).is_file() else None
        write_dataset_description(root, model_sha256=sha, model_name=self.model_name, source=source)
        return self.write(derivative_path(root, e, "mask"), prob=derivative_path(root, e, "probseg"),
                          agreement=derivative_path(root, e, "agreement") if self.n_members else None)


def segment_job(image: Volume | str | Path, model=None, *, threshold: float = 0.5, batch_size: int = 8,
                members: bool | None = None, device: str = "auto") -> Generator[object, None, Segmentation]:
    """Segment PVS in a scan.

    Parameters
    ----------
    image : Volume, str or Path
        T2-weighted scan ``(Z, Y, X)`` (any voxel size and orientation) or its file.
    model : LoadedModel, str or Path, optional
        A loaded model (:func:`load_segmenter`) or a checkpoint file; default the shipped
        default model.
    threshold : float
        Probability threshold of the mask, in ``(0, 1)``.
    batch_size : int
        Slices per forward pass.
    members : bool, optional
        Keep each ensemble member's probability (same pass); default: yes for an ensemble.
    device : str
        ``"auto"``, ``"cpu"`` or ``"cuda"`` (for a checkpoint given by path).

    Yields
    ------
    InferenceProgress

    Returns
    -------
    Segmentation

    Raises
    ------
    PVSInputError
        Unreadable image or checkpoint; an image that cannot be a scan or would not fit in
        memory (:func:`~napari_pvs.engine.io.checks.check_scan`, ``check_memory``); a
        threshold outside ``(0, 1)``; ``members`` with a single model.
    """
    from ..inference import segment_iter

    if not 0.0 < float(threshold) < 1.0:
        raise PVSInputError(f"the probability threshold must be within (0, 1), got {threshold}")
    loaded = model if hasattr(model, "model") and hasattr(model, "spacing_mm") else load_segmenter(model, device=device)
    if isinstance(image, Volume):
        from ..io.checks import SEGMENT_BYTES_PER_VOXEL

        check_memory(image.shape, SEGMENT_BYTES_PER_VOXEL, "segmenting", image.path)
        volume = check_scan(image)
    else:
        volume = load_scan(image)
    is_ensemble = loaded.name == "ensemble"
    if members and not is_ensemble:
        raise PVSInputError(f"member agreement needs an ensemble checkpoint, this one is a {loaded.name!r} model",
                            loaded.path)
    keep = is_ensemble if members is None else bool(members)
    pred = yield from segment_iter(loaded, volume, batch_size=batch_size, threshold=float(threshold), members=keep)
    return Segmentation(volume, pred, loaded.name, loaded.path)


def segment(image: Volume | str | Path, model=None, *, on_event: Callable[[object], None] | None = None,
            **kwargs) -> Segmentation:
    """:func:`segment_job` run to its end (same parameters), calling ``on_event`` with each
    progress event."""
    return run_to_end(segment_job(image, model, **kwargs), on_event)
