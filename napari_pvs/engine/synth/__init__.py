"""Synthetic PVS with a known mask, inserted into real T2 images: rendering (:mod:`.render`),
noise matching (:mod:`.noise`) and insertion (:mod:`.simulate`); lesion-like hard negatives
(:mod:`.lesions`); T2-like images generated from label maps, SynthSeg-style (:mod:`.generative`)."""

from .lesions import LesionMimicConfig, LesionMimicResult, insert_lesion_mimics
from .noise import estimate_noise_sigma
from .render import render_pvs_fraction
from .simulate import (TABLE_COLUMNS, SimulationConfig, SimulationResult, insert_same_pvs, simulate_pvs,
                       wide_simulation, write_table_csv)

__all__ = ["SimulationConfig", "SimulationResult", "simulate_pvs", "insert_same_pvs", "wide_simulation", "write_table_csv", "TABLE_COLUMNS",
           "estimate_noise_sigma", "render_pvs_fraction",
           "LesionMimicConfig", "LesionMimicResult", "insert_lesion_mimics"]
