"""Settings and events of active learning, and what it reads of a project.

:class:`ALConfig` (strategy, batch, stochastic passes, diversity, fine-tuning budget) and
:class:`ALEvent` (what every active-learning generator yields); :func:`project_checkpoint`
(the project's current model) and :func:`labelled_slices` (the annotated slices).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from .scoring import STRATEGIES
from .selection import SelectionConfig
from .uncertainty import UncertaintyConfig

__all__ = ["ALConfig", "ALEvent", "project_checkpoint", "labelled_slices"]


@dataclass(frozen=True)
class ALConfig:
    """Settings of an active-learning round.

    Attributes
    ----------
    strategy : str
        ``"bald"``, ``"entropy"``, ``"random"`` or ``"load"``.
    n_per_round : int
        Slices proposed per round.
    uncertainty : UncertaintyConfig
        Sampler and number of stochastic passes (``load`` uses one deterministic pass).
    selection : SelectionConfig
        Diversity term.
    finetune_minutes : float
        Wall-clock budget of each fine-tuning (equal budget per round).
    finetune_steps : int
        Upper bound on optimisation steps per round (epochs of ``steps_per_epoch``).
    steps_per_epoch : int
        Steps between validations (the live validation DSC).
    learning_rate : float or None
        None: the checkpoint's training learning rate times ``lr_factor``.
    lr_factor : float
        Fine-tuning a trained model at its full training rate (Adagrad 0.05) on a few
        slices wrecked the shipped model in 20 steps (validation DSC 0 on the slice it had
        segmented itself); 0.2 by default.
    validate_start : bool
        Validate the starting model first and keep it unless fine-tuning beats it on the
        validation slices, so a round never records a worse model (default True).
    versions : str
        Which versions are annotations (``"latest"``, ``"reviewed"``, ``"consensus"``).
    seed : int

    Raises
    ------
    ValueError
        Unknown strategy, non-positive counts or budget.
    """

    strategy: str = "bald"
    n_per_round: int = 10
    uncertainty: UncertaintyConfig = UncertaintyConfig()
    selection: SelectionConfig = SelectionConfig()
    finetune_minutes: float = 5.0
    finetune_steps: int = 2000
    steps_per_epoch: int = 25
    learning_rate: float | None = None
    lr_factor: float = 0.2
    validate_start: bool = True
    versions: str = "latest"
    seed: int = 0

    def __post_init__(self):
        if self.strategy not in STRATEGIES:
            raise ValueError(f"strategy must be one of {STRATEGIES}, got {self.strategy!r}")
        if self.n_per_round < 1 or self.finetune_steps < 1 or self.steps_per_epoch < 1:
            raise ValueError(f"n_per_round, finetune_steps and steps_per_epoch must be >= 1, got {self.n_per_round}, "
                             f"{self.finetune_steps} and {self.steps_per_epoch}")
        if not self.lr_factor > 0:
            raise ValueError(f"lr_factor must be > 0, got {self.lr_factor}")
        if not self.finetune_minutes > 0:
            raise ValueError(f"finetune_minutes must be > 0, got {self.finetune_minutes}")


@dataclass(frozen=True)
class ALEvent:
    """Progress of an active-learning job.

    Attributes
    ----------
    kind : str
        ``"score"`` (scoring progress), ``"proposed"`` (a batch is ready: ``queue``),
        ``"waiting"`` (for the batch to be annotated), ``"train"`` (fine-tuning progress:
        ``inner`` is the :class:`~napari_pvs.engine.training.TrainEvent`), ``"round"`` (a
        round was recorded: ``record``) or ``"done"``.
    round : int
        1-based round of the loop (0 outside a loop).
    message : str
    inner : object or None
        The scoring or training event relayed.
    queue : tuple of SliceChoice
    record : dict or None
        The recorded round (:meth:`Project.al_rounds` row).
    """

    kind: str
    round: int = 0
    message: str = ""
    inner: object = None
    queue: tuple = ()
    record: dict | None = None

    @property
    def fraction(self) -> float | None:
        if self.kind in ("round", "done"):
            return 1.0
        return getattr(self.inner, "fraction", None)

    def summary(self) -> str:
        prefix = f"round {self.round}: " if self.round else ""
        if self.inner is not None and hasattr(self.inner, "summary"):
            return prefix + self.inner.summary()
        return prefix + self.message


def project_checkpoint(project) -> Path:
    """The project's current model (:meth:`Project.current_checkpoint`), else the shipped
    default model."""
    from ..data import default_checkpoint

    return project.current_checkpoint() or default_checkpoint()


def labelled_slices(project, versions: str = "latest") -> dict[int, list[int]]:
    """``image_id -> axial slices marked done or reviewed`` in the chosen versions
    (:func:`~napari_pvs.engine.project.export.chosen_versions`)."""
    from ..project.export import chosen_versions

    return {int(v.image_id): sorted(int(k) for k in slices) for v, slices in chosen_versions(project, versions)}
