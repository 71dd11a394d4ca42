"""Annotation projects: an embedded store (SQLite catalogue + NIfTI files) that never loses
work (:mod:`.store`), its writer lock (:mod:`.lock`) and schema (:mod:`.schema`)."""

from .agreement import (IOU_THRESHOLD, Disagreement, RaterAgreement, consensus_mask, match_components,
                        rater_agreement)
from .lock import ProjectLockedError
from .session import AnnotationSession, VersionDiff, version_diff
from .schema import DECISIONS, SCHEMA_VERSION, SLICE_STATUSES, VERSION_KINDS
from .store import (CATALOGUE_NAME, ImageRecord, Problem, Project, VersionRecord, common_labelled_slices,
                    sha256_of, slices_mask)

__all__ = ["Project", "ImageRecord", "VersionRecord", "Problem", "ProjectLockedError", "CATALOGUE_NAME",
           "SCHEMA_VERSION", "SLICE_STATUSES", "VERSION_KINDS", "DECISIONS", "sha256_of", "RaterAgreement",
           "Disagreement", "rater_agreement", "match_components", "consensus_mask", "IOU_THRESHOLD",
           "AnnotationSession", "VersionDiff", "version_diff", "slices_mask", "common_labelled_slices"]
