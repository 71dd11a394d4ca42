"""Classical registration with SimpleITK: affine, optionally followed by a B-spline.

The fallback when no trained network fits the data, and the baseline every network is
measured against. Both images are brought to one isotropic working grid (``grid_mm``,
2 mm by default: the rating-slice landmarks need a few mm, and the open_ms scans' 3.3-4
mm slices are coarser than that anyway), masked to the brain when masks are given and
scaled to their 99th percentile. Then, with Mattes mutual information (works within and
across contrasts, e.g. a T1 template onto a T2 scan; Mattes et al., IEEE TMI 2003,
doi:10.1109/TMI.2003.809072) and ``SetOptimizerScalesFromPhysicalShift``:

1. centre of mass (``CenteredTransformInitializer``, moments of the masked images);
2. 9-dof ``ScaleVersor3DTransform`` (rotation, translation and a scale per axis: heads
   differ in size by 10-30 %), shrink factors 4, 2, 1;
3. 12-dof ``AffineTransform`` from there, shrink factors 2, 1;
4. optional B-spline (control points every ``bspline_mesh_mm``; L-BFGS-B), the affine
   held fixed as the moving initial transform, shrink factors 2, 1.

Why these settings: fixed iteration caps and a 2 mm grid bound the run time (a
B-spline on the full 1 mm grid with a fine mesh ran for 14 minutes here); 25 % random
sampling with a fixed seed keeps runs reproducible (5 % for the B-spline, whose metric
derivative costs ~200 products per sample: 25 % took 0.66 s per evaluation on a small
phantom); the 9-dof stage before the affine
avoids the shears an affine finds from a poor start. The B-spline mesh (80 mm) and
iterations (40) were chosen on ``benchmarks/registration.py`` pairs (2026-11-22, 2 cores):
with a 40 mm mesh and 60 iterations the B-spline bent patient01's two visits of one head
away from the site's transforms (0.64 mm mean, affine alone 0.32 mm), made the basal
ganglia worse on one cross-subject pair (Dice 0.48 against affine's 0.68) and took 150-390
s; with 60 mm and 40 iterations 0.45 mm, Dice 0.52, 100-190 s; with 80 mm and 40
iterations 0.25 and 0.32 mm in two runs (affine 0.32 mm) and a basal-ganglia Dice within
0.03 of the affine's on all four benchmark pairs, in 47-167 s. A coarse mesh cannot follow
small structures, which is the price of never doing much worse than the affine.

Refer to: Lowekamp et al., "The Design of SimpleITK", Front. Neuroinform. 2013,
doi:10.3389/fninf.2013.00045; Rueckert et al., "Nonrigid registration using free-form
deformations", IEEE TMI 1999, doi:10.1109/42.796284.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Generator
from dataclasses import asdict, dataclass

import numpy as np
from nibabel.affines import voxel_sizes
from scipy import ndimage as ndi

from ..errors import PVSInputError
from ..io import Volume
from .transform import SpatialTransform, resample_grid, warp_array

__all__ = ["ClassicalConfig", "RegistrationEvent", "register_classical", "working_image", "itk_affine_to_ras"]

_LPS = np.diag([-1.0, -1.0, 1.0, 1.0])     # RAS <-> LPS (ITK's world convention)


@dataclass(frozen=True)
class ClassicalConfig:
    """Settings of :func:`register_classical` (saved with every result)."""

    grid_mm: float = 2.0
    deformable: bool = False
    bins: int = 32
    sampling: float = 0.25
    scale_versor_iterations: int = 150
    affine_iterations: int = 100
    bspline_mesh_mm: float = 80.0
    bspline_iterations: int = 40
    bspline_sampling: float = 0.05
    seed: int = 0

    def __post_init__(self):
        if not 0.5 <= self.grid_mm <= 8:
            raise ValueError(f"grid_mm must be in [0.5, 8] mm, got {self.grid_mm}")
        for name in ("sampling", "bspline_sampling"):
            if not 0 < getattr(self, name) <= 1:
                raise ValueError(f"{name} must be in (0, 1], got {getattr(self, name)}")


@dataclass(frozen=True)
class RegistrationEvent:
    """Progress of a registration: ``stage`` (``"init"``, ``"scale_versor"``, ``"affine"``,
    ``"bspline"``, ``"done"``), resolution ``level`` (0 = coarsest), optimiser
    ``iteration`` and ``metric`` value (lower is better), ``elapsed`` seconds."""

    stage: str
    fraction: float | None
    level: int = 0
    iteration: int = 0
    metric: float = float("nan")
    elapsed: float = 0.0

    def summary(self) -> str:
        if self.stage == "done":
            return f"registration done in {self.elapsed:.1f} s (metric {self.metric:.4f})"
        return (f"{self.stage}: level {self.level + 1}, iteration {self.iteration}, "
                f"metric {self.metric:.4f} ({self.elapsed:.0f} s)")


# ------------------------------------------------------------------------- grids
def _to_sitk(data: np.ndarray, affine: np.ndarray):
    import SimpleITK as sitk

    img = sitk.GetImageFromArray(np.ascontiguousarray(data, dtype=np.float32))
    lps = _LPS @ np.asarray(affine, float)
    sp = voxel_sizes(affine)
    img.SetSpacing([float(s) for s in sp])
    img.SetOrigin([float(v) for v in lps[:3, 3]])
    img.SetDirection([float(v) for v in (lps[:3, :3] / sp).ravel()])
    return img


def working_image(volume: Volume, grid_mm: float, mask: np.ndarray | None = None
                  ) -> tuple[np.ndarray, np.ndarray]:
    """The volume on an isotropic ``grid_mm`` grid (antialiased, masked, scaled to its
    99th percentile inside the mask) for registration.

    Returns
    -------
    (data, affine)
        float32 ``(Z, Y, X)`` on the new grid and its voxel -> world RAS mm affine.
    """
    data = np.asarray(volume.data, dtype=np.float32)
    if mask is not None:
        data = np.where(mask, data, 0).astype(np.float32)
    vs = np.asarray(volume.voxel_size)
    sigma = np.maximum(0.0, grid_mm / vs - 1) * 0.5          # antialias where downsampling
    if sigma.any():
        data = ndi.gaussian_filter(data, sigma)
    aff, shape = resample_grid(volume, grid_mm, pad_mm=4 * grid_mm)
    out = warp_array(data, volume.affine, aff, shape, SpatialTransform.identity(), order=1)
    inside = out[out > 0]
    scale = float(np.percentile(inside, 99)) if inside.size else 0.0
    if not np.isfinite(scale) or scale <= 0:
        raise PVSInputError("nothing to register: the image (inside its mask) is empty", volume.path)
    return np.clip(out / scale, 0, 1.5).astype(np.float32), aff


def itk_affine_to_ras(tx) -> np.ndarray:
    """``(4, 4)`` RAS mm matrix of a SimpleITK matrix-offset transform (``p -> M (p - c) + c
    + t`` in ITK's LPS mm; e.g. one read with ``SimpleITK.ReadTransform``)."""
    m = np.asarray(tx.GetMatrix(), float).reshape(3, 3)
    c = np.asarray(tx.GetCenter(), float)
    t = np.asarray(tx.GetTranslation(), float)
    out = np.eye(4)
    out[:3, :3] = m
    out[:3, 3] = c + t - m @ c
    return _LPS @ out @ _LPS


# ------------------------------------------------------------------------- running
def _run(method, n_levels: int, fixed, moving, stage: str, f0: float, f1: float, t0: float,
         ) -> Generator[RegistrationEvent, None, None]:
    """Execute ``method`` in a thread (SimpleITK releases the GIL), yielding its
    iterations as events; closing the generator stops the optimiser at its next
    iteration."""
    import SimpleITK as sitk

    events: queue.SimpleQueue = queue.SimpleQueue()
    stop = threading.Event()

    def on_iteration():
        events.put((method.GetCurrentLevel(), method.GetOptimizerIteration(), method.GetMetricValue()))
        if stop.is_set():
            method.StopRegistration()

    method.AddCommand(sitk.sitkIterationEvent, on_iteration)
    box: dict = {}

    def target():
        try:
            method.Execute(fixed, moving)
        except Exception as exc:  # noqa: BLE001 - re-raised on the caller's thread
            box["error"] = exc

    thread = threading.Thread(target=target, name=f"napari-pvs-{stage}", daemon=True)
    thread.start()
    try:
        while thread.is_alive():
            thread.join(0.2)
            last = None
            while not events.empty():
                last = events.get()
            if last is not None:
                level, it, metric = last
                frac = f0 + (f1 - f0) * min(1.0, (level + 0.5) / n_levels)
                yield RegistrationEvent(stage, frac, int(level), int(it), float(metric), time.perf_counter() - t0)
    finally:
        stop.set()
        thread.join()
        method.RemoveAllCommands()
    if "error" in box:
        raise PVSInputError(f"registration failed in the {stage} stage: {box['error']}")


def _method(cfg: ClassicalConfig, shrink: tuple[int, ...], smooth_vox: tuple[float, ...], sampling: float):
    import SimpleITK as sitk

    r = sitk.ImageRegistrationMethod()
    r.SetMetricAsMattesMutualInformation(numberOfHistogramBins=cfg.bins)
    r.SetMetricSamplingStrategy(r.RANDOM)
    r.SetMetricSamplingPercentage(sampling, seed=cfg.seed + 1)
    r.SetInterpolator(sitk.sitkLinear)
    r.SetShrinkFactorsPerLevel(list(shrink))
    r.SetSmoothingSigmasPerLevel(list(smooth_vox))
    return r


def register_classical(fixed: Volume, moving: Volume, *, fixed_mask: np.ndarray | None = None,
                       moving_mask: np.ndarray | None = None, config: ClassicalConfig | None = None,
                       ) -> Generator[RegistrationEvent, None, SpatialTransform]:
    """Register ``moving`` to ``fixed`` (affine, then an optional B-spline); a generator of
    :class:`RegistrationEvent` returning the fixed-to-moving :class:`SpatialTransform`.

    Parameters
    ----------
    fixed, moving : Volume
        3D ``(Z, Y, X)`` scans with their affines (any contrast, orientation and voxel size;
        e.g. the MNI T1 template as moving and a subject T2 as fixed).
    fixed_mask, moving_mask : np.ndarray, optional
        bool brain masks on each volume's grid; intensities outside are set to 0.
    config : ClassicalConfig, optional

    Returns
    -------
    SpatialTransform
        ``affine`` (4, 4) fixed world -> moving world RAS mm; with ``config.deformable``
        also the B-spline's DDF (mm) on the ``grid_mm`` grid of the fixed image.
        ``info`` holds the final metric per stage, seconds and the config.

    Raises
    ------
    PVSInputError
        An image is empty inside its mask, or SimpleITK fails.
    """
    import SimpleITK as sitk

    cfg = config or ClassicalConfig()
    t0 = time.perf_counter()
    yield RegistrationEvent("init", 0.0)
    f_data, f_aff = working_image(fixed, cfg.grid_mm, fixed_mask)
    m_data, m_aff = working_image(moving, cfg.grid_mm, moving_mask)
    f_img, m_img = _to_sitk(f_data, f_aff), _to_sitk(m_data, m_aff)
    stages = ["scale_versor", "affine"] + (["bspline"] if cfg.deformable else [])
    share = {"scale_versor": 0.45, "affine": 0.25, "bspline": 0.3}
    total = sum(share[s] for s in stages)
    metrics: dict[str, float] = {}
    f_now = 0.02

    def span(stage):
        nonlocal f_now
        a, f_now = f_now, f_now + 0.98 * share[stage] / total
        return a, f_now

    # 1-2: centre of mass, then 9 dof
    versor = sitk.ScaleVersor3DTransform(sitk.CenteredTransformInitializer(
        f_img, m_img, sitk.ScaleVersor3DTransform(), sitk.CenteredTransformInitializerFilter.MOMENTS))
    r = _method(cfg, (4, 2, 1), (2.0, 1.0, 0.0), cfg.sampling)
    r.SetOptimizerAsRegularStepGradientDescent(learningRate=1.0, minStep=1e-3,
                                               numberOfIterations=cfg.scale_versor_iterations,
                                               relaxationFactor=0.6)
    r.SetOptimizerScalesFromPhysicalShift()
    r.SetInitialTransform(versor, inPlace=True)
    yield from _run(r, 3, f_img, m_img, "scale_versor", *span("scale_versor"), t0)
    metrics["scale_versor"] = float(r.GetMetricValue())

    # 3: affine from the 9-dof result
    affine_tx = sitk.AffineTransform(3)
    affine_tx.SetCenter(versor.GetCenter())
    affine_tx.SetMatrix(versor.GetMatrix())
    affine_tx.SetTranslation(versor.GetTranslation())
    r = _method(cfg, (2, 1), (1.0, 0.0), cfg.sampling)
    r.SetOptimizerAsRegularStepGradientDescent(learningRate=0.5, minStep=1e-4,
                                               numberOfIterations=cfg.affine_iterations, relaxationFactor=0.6)
    r.SetOptimizerScalesFromPhysicalShift()
    r.SetInitialTransform(affine_tx, inPlace=True)
    yield from _run(r, 2, f_img, m_img, "affine", *span("affine"), t0)
    metrics["affine"] = float(r.GetMetricValue())
    affine_ras = itk_affine_to_ras(affine_tx)

    ddf = ddf_aff = None
    if cfg.deformable:
        extent = np.asarray(f_img.GetSize(), float) * np.asarray(f_img.GetSpacing())
        mesh = [max(1, int(round(e / cfg.bspline_mesh_mm))) for e in extent]
        bspline = sitk.BSplineTransformInitializer(f_img, mesh, order=3)
        r = _method(cfg, (2, 1), (1.0, 0.0), cfg.bspline_sampling)
        r.SetOptimizerAsLBFGSB(gradientConvergenceTolerance=1e-5, numberOfIterations=cfg.bspline_iterations,
                               maximumNumberOfCorrections=5, maximumNumberOfFunctionEvaluations=4 * cfg.bspline_iterations)
        r.SetMovingInitialTransform(affine_tx)
        r.SetInitialTransform(bspline, inPlace=True)
        yield from _run(r, 2, f_img, m_img, "bspline", *span("bspline"), t0)
        metrics["bspline"] = float(r.GetMetricValue())
        field = sitk.TransformToDisplacementField(bspline, sitk.sitkVectorFloat64, f_img.GetSize(),
                                                  f_img.GetOrigin(), f_img.GetSpacing(), f_img.GetDirection())
        arr = sitk.GetArrayFromImage(field)                      # (Z, Y, X, 3) LPS mm
        arr[..., :2] *= -1                                       # -> RAS
        ddf = np.ascontiguousarray(np.moveaxis(arr, -1, 0), dtype=np.float32)
        ddf_aff = f_aff
    seconds = time.perf_counter() - t0
    last = metrics[stages[-1]]
    yield RegistrationEvent("done", 1.0, metric=last, elapsed=seconds)
    return SpatialTransform(affine=affine_ras, ddf=ddf, ddf_affine=ddf_aff,
                            method="classical" if cfg.deformable else "affine",
                            info={"metric": metrics, "seconds": seconds, "config": asdict(cfg)})
