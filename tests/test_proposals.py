"""Candidate proposals (napari_pvs.engine.candidates.proposals) on a synthetic head phantom."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import make_phantom

from napari_pvs.engine.candidates import ProposalConfig, propose_candidates
from napari_pvs.engine.errors import PVSInputError
from napari_pvs.engine.io import Volume


@pytest.fixture(scope="module")
def phantom_with_pvs():
    vol, lab = make_phantom(noise=8.0)
    data = vol.data.copy()
    tubes = []
    # vertical tubes (dots in each 3 mm slice), 1-2 mm wide, CSF-bright, in white matter
    for y, x in ((60, 50), (60, 100), (120, 60), (125, 95)):
        t = np.zeros(lab.shape, bool)
        t[16:26, y:y + 2, x:x + 1] = True
        assert (lab[t] == 1).all()
        data[t] = 800.0
        tubes.append(t)
    # an in-plane line, 1 mm wide, 12 mm long
    t = np.zeros(lab.shape, bool)
    t[30, 90, 40:52] = True
    data[t] = 800.0
    tubes.append(t)
    return Volume(data=data, affine=vol.affine), lab, tubes


def test_vesselness_proposals_find_the_tubes_not_the_ventricles(phantom_with_pvs):
    image, lab, tubes = phantom_with_pvs
    props = propose_candidates(image, config=ProposalConfig(regions_only=False))
    assert props.method == "vesselness" and props.n >= len(tubes)
    for t in tubes:
        assert props.labels[t].any()
    ventricles = (lab == 3) & (np.abs(np.arange(lab.shape[2]) - 72.5)[None, None, :] < 20)
    assert not props.labels[ventricles].any()
    # review order: by slice, ids 1..n, table matches the label map
    assert [p["id"] for p in props.table] == list(range(1, props.n + 1))
    assert [p["slice"] for p in props.table] == sorted(p["slice"] for p in props.table)
    for p in props.table:
        assert (props.labels == p["id"]).sum() == p["n_voxels"] and p["width_mm"] <= 3.0
    # false proposals are few: nearly every proposal sits on a tube
    on_tube = set(np.unique(props.labels[np.logical_or.reduce(tubes)])) - {0}
    assert len(on_tube) / props.n >= 0.8
    # by default only those centred near the BG/CSO regions, whole (a subset of the above)
    near = propose_candidates(image)
    assert 3 <= near.n <= props.n
    for p in near.table:
        assert (props.labels[near.labels == p["id"]] > 0).all()


def test_proposals_on_one_slice_and_from_a_model(phantom_with_pvs):
    image, lab, tubes = phantom_with_pvs
    one = propose_candidates(image, slices=[20])
    assert one.n >= 3 and {p["slice"] for p in one.table} == {20}
    assert set(np.flatnonzero(one.labels.any(axis=(1, 2)))) == {20}
    prob = np.zeros(image.shape, np.float32)
    prob[tubes[0]] = 0.9
    prob[tubes[1]] = 0.4                      # below the threshold
    prob[lab == 3] = 0.95                     # the ventricles and the CSF rim: never proposed
    m = propose_candidates(image, method="model", probability=prob)
    assert m.n == 1 and m.labels[tubes[0]].all() and not m.labels[tubes[1]].any()
    assert m.table[0]["score"] == pytest.approx(0.9)
    assert propose_candidates(image, method="model", probability=prob,
                              config=ProposalConfig(threshold=0.3)).n == 2


def test_proposal_errors(phantom_with_pvs):
    image, _, _ = phantom_with_pvs
    with pytest.raises(PVSInputError, match="needs a probability map"):
        propose_candidates(image, method="model")
    with pytest.raises(ValueError, match="method must be one of"):
        propose_candidates(image, method="frangi3d")
    with pytest.raises(ValueError, match=r"probability shape \(2, 2, 2\) differs"):
        propose_candidates(image, method="model", probability=np.zeros((2, 2, 2)))
    with pytest.raises(ValueError, match="min_tubeness"):
        ProposalConfig(min_tubeness=0)
