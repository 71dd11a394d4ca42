"""Real PVS-like objects found without a network (top-hat + STRIVE size and shape filters):
the ignore mask of synthetic training, the reference of the real-scan benchmark, the filter
of pseudo-labels (:mod:`.pvs_like`); candidate proposals for annotators, from a vesselness
filter or a model (:mod:`.proposals`)."""

from .proposals import PROPOSAL_METHODS, ProposalConfig, Proposals, propose_candidates
from .pvs_like import (CANDIDATE_COLUMNS, CandidateConfig, CandidateResult, component_widths_mm,
                       find_pvs_candidates, ignore_config, nearest_region, reference_config, strive_filter)

__all__ = ["CandidateConfig", "CandidateResult", "find_pvs_candidates", "strive_filter",
           "ignore_config", "reference_config", "component_widths_mm", "nearest_region", "CANDIDATE_COLUMNS",
           "ProposalConfig", "Proposals", "propose_candidates", "PROPOSAL_METHODS"]
