"""ONNX Runtime as the inference backend of any napari-pvs segmentation checkpoint.

:func:`onnx_model` exports a loaded checkpoint's network (the windows it is fed by the
sliding window: ``(B, C, H, W)`` float32, ``H, W`` = the training patch) to ONNX once, keeps
the file in the user cache under the checkpoint's sha256, and returns a
:class:`~napari_pvs.engine.models.checkpoint.LoadedModel` whose ``model`` runs the windows
with ONNX Runtime instead of torch. Everything else (normalisation, resampling, head box,
skipped windows, Gaussian blending, the brain mask) is the same code, so torch stays the
reference: the probabilities agree within 1e-3 (``tests/test_onnx_backend.py``).

An ensemble is exported with its members' logits as extra channels (its
``forward_members``), so the uncertain map of the Segment widget costs nothing more.

Refer to: ONNX Runtime, https://onnxruntime.ai (Microsoft, 2018-); the exporter,
``torch.onnx.export`` (TorchScript-based, opset 17).

Example
-------
>>> from napari_pvs.engine.models.checkpoint import load_model     # doctest: +SKIP
>>> from napari_pvs.engine.inference import predict_volume           # doctest: +SKIP
>>> fast = onnx_model(load_model("pvs_default.pt"))                  # doctest: +SKIP
>>> pred = predict_volume(fast, volume)                              # doctest: +SKIP
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import os
import tempfile
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import torch

from ..errors import PVSInputError
from ..models.checkpoint import LoadedModel

__all__ = ["onnx_model", "export_onnx", "OnnxNet", "OnnxEnsembleNet", "onnx_available", "BACKENDS"]

log = logging.getLogger(__name__)

#: inference backends: ``torch`` (the reference) and ``onnx`` (ONNX Runtime, CPU)
BACKENDS = ("auto", "torch", "onnx")
_OPSET = 17


def onnx_available() -> bool:
    """Whether ``onnx`` and ``onnxruntime`` are installed (``pip install napari-pvs[fast]``).

    Looked up without importing them: ``onnx`` is needed only to export (its import took
    1.6 s here, through ``ml_dtypes``), not to run a cached export."""
    from importlib.util import find_spec

    def installed(name: str) -> bool:
        try:
            return find_spec(name) is not None
        except (ImportError, ValueError):     # ValueError: in sys.modules as None (blocked)
            return False

    return installed("onnx") and installed("onnxruntime")


class _WindowsOnly(torch.nn.Module):
    """The network as ``windows (B, C, H, W) -> logits (B, K, H, W)`` for the exporter
    (``K`` = out channels, or ``(1 + n_members) * out`` for an ensemble's members)."""

    def __init__(self, model: torch.nn.Module, members: bool):
        super().__init__()
        self.model, self.members = model, members

    def forward(self, windows: torch.Tensor) -> torch.Tensor:
        batch = {"image": windows}
        out = self.model.forward_members(batch) if self.members else self.model(batch)
        out = out[0] if isinstance(out, (list, tuple)) else out
        return out.float()


def _model_key(loaded: LoadedModel) -> str:
    """sha256 of the checkpoint file (or of the weights when there is no file), with the
    exporter's settings: the cache key of the ONNX file."""
    from ..data import sha256_file

    h = hashlib.sha256()
    if loaded.path is not None and Path(loaded.path).is_file():
        h.update(sha256_file(loaded.path).encode())
    else:
        for name, tensor in loaded.model.state_dict().items():
            h.update(name.encode())
            h.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    h.update(f"opset{_OPSET}|roi{tuple(loaded.roi_size)}|torch{torch.__version__}".encode())
    if _whole_slice(loaded):
        h.update(b"|dynamic-hw")
    return h.hexdigest()


def _whole_slice(loaded: LoadedModel) -> bool:
    return bool(getattr(loaded.config, "whole_slice", False))


def _cache_dir() -> Path:
    """``$NAPARI_PVS_CACHE/onnx``, else ``onnx`` in napari-pvs's user cache
    (:func:`napari_pvs.engine.data.cache_dir`)."""
    from ..data import cache_dir

    return Path(os.environ.get("NAPARI_PVS_CACHE") or cache_dir()) / "onnx"


def export_onnx(loaded: LoadedModel, path: str | Path) -> Path:
    """Write the network of ``loaded`` as an ONNX graph to ``path`` (atomically).

    Parameters
    ----------
    loaded : LoadedModel
        A segmentation checkpoint (any 2D/2.5D family; an ensemble is exported with its
        members' logits as channels ``[C, (1 + n) * C)``).
    path : str or Path
        The ``.onnx`` file to write.

    Returns
    -------
    Path
        ``path``. Input ``windows``: float32 ``(B, C, H, W)`` with a dynamic ``B``, ``C`` the
        1 + 2k slices of a 2.5D model, ``(H, W)`` = ``loaded.roi_size`` (dynamic too for a
        whole-slice model, ``config.whole_slice``); output ``logits``
        float32 ``(B, K, H, W)``.

    Raises
    ------
    PVSInputError
        ``onnx`` is not installed, or the network cannot be exported.
    """
    if not onnx_available():
        raise PVSInputError("the onnx backend needs onnx and onnxruntime: pip install 'napari-pvs[fast]'")
    path = Path(path)
    members = hasattr(loaded.model, "forward_members")
    net = _WindowsOnly(loaded.model.to("cpu").eval(), members).eval()
    channels = 1 + 2 * int(getattr(loaded.config, "context_slices", 0))
    example = torch.zeros((2, channels, *loaded.roi_size), dtype=torch.float32)
    # whole-slice models take any multiple of their divisor: height and width are dynamic too
    axes = {0: "batch", 2: "height", 3: "width"} if _whole_slice(loaded) else {0: "batch"}
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(suffix=".onnx", dir=path.parent)
    os.close(fd)
    try:
        with torch.inference_mode(False), torch.no_grad():
            torch.onnx.export(net, (example,), tmp, input_names=["windows"], output_names=["logits"],
                              dynamic_axes={"windows": axes, "logits": axes},
                              opset_version=_OPSET, dynamo=False)
        os.replace(tmp, path)
    except Exception as exc:
        Path(tmp).unlink(missing_ok=True)
        raise PVSInputError(f"could not export the {loaded.name!r} network to ONNX: {exc}", loaded.path) from exc
    return path


class OnnxNet(torch.nn.Module):
    """A checkpoint's network run by ONNX Runtime behind torch's calling convention:
    ``net({"image": windows})`` -> logits ``(B, C, H, W)`` (torch tensors in and out, on the
    windows' device; ONNX Runtime itself runs on the CPU).

    Parameters
    ----------
    path : Path
        The ``.onnx`` file (:func:`export_onnx`).
    out_channels : int
        ``C``: the channels :meth:`forward` returns (the graph may hold more: an ensemble's
        members, see :class:`OnnxEnsembleNet`).
    threads : int, optional
        ONNX Runtime intra-op threads (default: torch's ``get_num_threads()``).
    """

    def __init__(self, path: Path, out_channels: int, threads: int | None = None):
        super().__init__()
        import onnxruntime as ort

        opts = ort.SessionOptions()
        opts.intra_op_num_threads = int(threads or torch.get_num_threads())
        opts.inter_op_num_threads = 1
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        # no arena: with it ONNX Runtime kept ~800 MB more at peak than torch on a clinical T2
        opts.enable_cpu_mem_arena = False
        self.session = ort.InferenceSession(str(path), sess_options=opts, providers=["CPUExecutionProvider"])
        self.path, self.out_channels = Path(path), int(out_channels)

    def _run(self, batch: Mapping[str, torch.Tensor] | torch.Tensor) -> torch.Tensor:
        windows = batch["image"] if isinstance(batch, Mapping) else batch
        x = np.ascontiguousarray(windows.detach().to("cpu", torch.float32).numpy())
        (logits,) = self.session.run(["logits"], {"windows": x})
        return torch.from_numpy(logits).to(windows.device)

    def forward(self, batch) -> torch.Tensor:
        return self._run(batch)[:, :self.out_channels]


class OnnxEnsembleNet(OnnxNet):
    """:class:`OnnxNet` of an ensemble: :meth:`forward_members` gives the ensemble's logits
    then each member's, ``(B, (1 + n) * C, H, W)``, as
    :meth:`~napari_pvs.engine.models.ensemble.EnsembleNet.forward_members`."""

    def forward_members(self, batch) -> torch.Tensor:
        return self._run(batch)


def onnx_model(loaded: LoadedModel, *, cache_dir: str | Path | None = None,
               threads: int | None = None) -> LoadedModel:
    """The same checkpoint with its network run by ONNX Runtime (see the module docstring).

    The ONNX file is made on first use (a few seconds) and kept in ``cache_dir`` (default
    the user cache, ``$NAPARI_PVS_CACHE/onnx`` when set) as ``<sha256>.onnx``.

    Parameters
    ----------
    loaded : LoadedModel
        From :func:`~napari_pvs.engine.models.checkpoint.load_model`.
    cache_dir : str or Path, optional
    threads : int, optional
        ONNX Runtime threads (default torch's).

    Returns
    -------
    LoadedModel
        A copy whose ``model`` is an :class:`OnnxNet` (CPU); ``info["backend"] == "onnx"``.

    Raises
    ------
    PVSInputError
        onnx/onnxruntime missing, or the export failed.
    """
    if isinstance(loaded.model, OnnxNet):
        return loaded
    if not onnx_available():
        raise PVSInputError("the onnx backend needs onnx and onnxruntime: pip install 'napari-pvs[fast]'")
    folder = Path(cache_dir) if cache_dir is not None else _cache_dir()
    path = folder / f"{_model_key(loaded)}.onnx"
    if not path.is_file():
        log.info("exporting %s to %s", loaded.name, path)
        export_onnx(loaded, path)
    cls = OnnxEnsembleNet if hasattr(loaded.model, "forward_members") else OnnxNet
    net = cls(path, int(loaded.config.out_channels), threads=threads)
    info = {**(loaded.info or {}), "backend": "onnx", "onnx_file": str(path)}
    return dataclasses.replace(loaded, model=net, info=info)
