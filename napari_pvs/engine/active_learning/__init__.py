"""Active learning: the model asks for the slices that teach it most.

:mod:`.scoring` (entropy, BALD, per-slice and per-component aggregation), :mod:`.uncertainty`
(stochastic predictions of a volume: MC dropout or test-time augmentation),
:mod:`.selection` (ranking with a diversity term), :mod:`.config` (settings, events, the
project's model and annotated slices), :mod:`.suggest` (score a project, propose slices),
:mod:`.finetune` (fine-tuning rounds), :mod:`.loop` (suggest, wait, fine-tune, record;
generators of :class:`ALEvent`).
"""

from .config import ALConfig, ALEvent, labelled_slices, project_checkpoint
from .finetune import (HOLDOUT_MIN_VOLUMES, FinetunePlan, finetune_round, plan_finetune, record_finetune,
                       round_message, run_finetune)
from .loop import active_learning_loop
from .suggest import ProjectScores, ScoringInputs, score_images, score_project, scoring_inputs, select_next, suggest
from .scoring import (STRATEGIES, bald, binary_entropy, component_scores,
                      predictive_entropy, slice_load_mm2, slice_means)
from .selection import SelectionConfig, SliceChoice, select_slices
from .uncertainty import SAMPLERS, ScoreProgress, UncertaintyConfig, VolumeScores, has_dropout, score_volume

__all__ = ["HOLDOUT_MIN_VOLUMES", "ALConfig", "ALEvent", "FinetunePlan", "ProjectScores", "ScoringInputs",
           "active_learning_loop", "finetune_round", "labelled_slices", "plan_finetune", "project_checkpoint",
           "record_finetune", "round_message", "run_finetune", "score_images", "score_project", "scoring_inputs",
           "select_next", "suggest", "STRATEGIES", "bald",
           "binary_entropy", "component_scores", "predictive_entropy", "slice_load_mm2", "slice_means",
           "SelectionConfig", "SliceChoice", "select_slices", "SAMPLERS", "ScoreProgress", "UncertaintyConfig",
           "VolumeScores", "has_dropout", "score_volume"]
