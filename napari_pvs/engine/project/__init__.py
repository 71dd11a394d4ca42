"""Annotation projects: an embedded store (SQLite catalogue + NIfTI files) that never loses
work. :mod:`.store` opens projects and holds images and raters; :mod:`.versions` the
annotation versions; :mod:`.runs` training runs and predictions; :mod:`.checks` file checks
and progress; :mod:`.records` what the catalogue describes; :mod:`.lock` the writer lock;
:mod:`.schema` the SQL schema; :mod:`.session` one rater's session; :mod:`.agreement` two
raters; :mod:`.export` nnU-Net/MONAI. Training on a project's labelled slices is
:mod:`napari_pvs.engine.training.project` (the store sits below training)."""

from .agreement import Disagreement, RaterAgreement, consensus_mask, rater_agreement
from .lock import ProjectLockedError
from .session import AnnotationSession, VersionDiff, version_diff
from .schema import DECISIONS, SCHEMA_VERSION, SLICE_STATUSES, VERSION_KINDS
from .store import (CATALOGUE_NAME, ImageRecord, Problem, Project, VersionRecord, common_labelled_slices,
                    slices_mask)

__all__ = ["Project", "ImageRecord", "VersionRecord", "Problem", "ProjectLockedError", "CATALOGUE_NAME",
           "SCHEMA_VERSION", "SLICE_STATUSES", "VERSION_KINDS", "DECISIONS", "RaterAgreement",
           "Disagreement", "rater_agreement", "consensus_mask",
           "AnnotationSession", "VersionDiff", "version_diff", "slices_mask", "common_labelled_slices"]
