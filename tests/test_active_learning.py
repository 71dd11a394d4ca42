"""Active learning: scoring functions, slice selection, stochastic predictions and the loop
driver (two rounds with a simulated annotator), on small synthetic arrays."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from napari_pvs.engine.active_learning import (ALConfig, SelectionConfig, UncertaintyConfig, active_learning_loop,
                                               bald, binary_entropy, component_scores, labelled_slices,
                                               predictive_entropy, score_volume, select_slices, slice_load_mm2,
                                               slice_means, suggest)
from napari_pvs.engine.progress import run_to_end


# --------------------------------------------------------------------------- scoring
def test_certain_model_scores_low_random_model_high():
    rng = np.random.default_rng(0)
    certain = np.broadcast_to((rng.random((1, 4, 8, 8)) > 0.5).astype(np.float32), (6, 4, 8, 8))
    random = rng.random((6, 4, 8, 8)).astype(np.float32)
    assert predictive_entropy(certain).max() < 1e-3 and bald(certain).max() < 1e-3
    assert predictive_entropy(random).mean() > 0.9          # mean of 6 uniform draws sits near 0.5
    assert bald(random).mean() > 0.2
    assert np.all(bald(random) <= predictive_entropy(random) + 1e-6)
    # members that agree on 0.5 are uncertain but not disagreeing: entropy 1, BALD 0
    half = np.full((5, 2, 3, 3), 0.5, np.float32)
    assert np.allclose(predictive_entropy(half), 1.0) and np.allclose(bald(half), 0.0, atol=1e-6)
    # members that disagree completely (half 0, half 1): BALD 1
    split = np.concatenate([np.zeros((3, 2, 2, 2)), np.ones((3, 2, 2, 2))]).astype(np.float32)
    assert np.allclose(bald(split), 1.0, atol=1e-3)
    assert binary_entropy(np.array([0.0, 0.5, 1.0])) == pytest.approx([0.0, 1.0, 0.0], abs=1e-4)
    with pytest.raises(ValueError, match=r"probabilities in \[0, 1\]"):
        bald(np.full((2, 3, 3), 1.5))
    with pytest.raises(ValueError, match="must be \\(T, ...\\)"):
        bald(np.zeros(4))


def test_slice_means_load_and_components():
    m = np.zeros((3, 4, 4))
    m[0] = 1.0
    m[1, :2] = 0.5
    brain = np.zeros((3, 4, 4), bool)
    brain[0] = brain[1, :2] = True
    out = slice_means(m, brain)
    assert out[0] == pytest.approx(1.0) and out[1] == pytest.approx(0.5) and np.isnan(out[2])
    assert slice_means(m)[1] == pytest.approx(0.25)
    assert slice_load_mm2(m, 0.25, brain) == pytest.approx([4.0, 1.0, 0.0])
    mask = np.zeros((1, 6, 6), bool)
    mask[0, 0:2, 0:2] = mask[0, 4:6, 4:6] = True
    vm = np.zeros((1, 6, 6))
    vm[0, 4:6, 4:6] = 0.8
    labels, scores = component_scores(vm, mask)
    assert labels.max() == 2 and sorted(np.round(scores, 3)) == [0.0, 0.8]
    given = np.zeros((1, 6, 6), np.int32)                              # labels given (proposal ids) are kept
    given[0, 0:2, 0:2], given[0, 4:6, 4:6] = 2, 1
    kept, per_id = component_scores(vm, given)
    assert np.array_equal(kept, given) and per_id.tolist() == pytest.approx([0.8, 0.0])
    with pytest.raises(ValueError, match="differs"):
        slice_means(m, brain[:2])


# --------------------------------------------------------------------------- selection
def _cands():
    s = np.arange(20)
    bump = np.exp(-((s - 10) ** 2) / 8.0)                       # neighbours of slice 10 all score high
    return {("a", 1): {"slices": s, "bald": bump, "entropy": bump, "load_mm2": s.astype(float)},
            ("b", 2): {"slices": s, "bald": 0.5 * bump, "entropy": 0.5 * bump, "load_mm2": np.zeros(20)}}


def test_select_slices_diversity_spreads_the_batch():
    mm = {("a", 1): 3.0, ("b", 2): 3.0}
    plain = select_slices(_cands(), "bald", 4, slice_mm=mm, config=SelectionConfig(diversity_mm=0, subject_decay=1))
    assert [(c.subject, c.slice) for c in plain] == [("a", 10), ("a", 9), ("a", 11), ("a", 8)]
    spread = select_slices(_cands(), "bald", 4, slice_mm=mm, config=SelectionConfig(diversity_mm=10))
    assert spread[0].slice == 10 and spread[0].rank == 1
    assert {c.subject for c in spread} == {"a", "b"}
    for i, c in enumerate(spread):                                 # no two picks of a scan within 6 mm
        for d in spread[i + 1:]:
            assert c.subject != d.subject or abs(c.slice - d.slice) * 3.0 > 6.0
    load = select_slices(_cands(), "load", 1)
    assert (load[0].subject, load[0].slice, load[0].score) == ("a", 19, 19.0)


def test_select_slices_random_and_errors():
    r1 = select_slices(_cands(), "random", 6, config=SelectionConfig(seed=3))
    r2 = select_slices(_cands(), "random", 6, config=SelectionConfig(seed=3))
    r3 = select_slices(_cands(), "random", 6, config=SelectionConfig(seed=4))
    key = [(c.subject, c.slice) for c in r1]
    assert key == [(c.subject, c.slice) for c in r2] != [(c.subject, c.slice) for c in r3]
    assert len(set(key)) == 6
    nan = {("a", 1): {"slices": np.arange(3), "bald": np.array([np.nan, 0.2, np.nan])}}
    assert [c.slice for c in select_slices(nan, "bald", 5)] == [1]
    with pytest.raises(ValueError, match="strategy must be one of"):
        select_slices(_cands(), "margin", 2)
    with pytest.raises(ValueError, match="needs the 'bald' scores"):
        select_slices({("a", 1): {"slices": np.arange(3)}}, "bald", 2)


# --------------------------------------------------------------------------- stochastic predictions
def _ckpt(path, *, dropout: float, constant: bool = False, spacing_mm: float = 0.5):
    import torch

    from conftest import SMALL_FEATURES
    from napari_pvs.engine.models.checkpoint import save_checkpoint
    from napari_pvs.engine.models import UNetConfig, build_model

    cfg = UNetConfig(features=SMALL_FEATURES, dropout=dropout)
    torch.manual_seed(0)
    model = build_model("unet", cfg)
    if constant:  # a model sure of its answer: every output logit -8 whatever the input
        with torch.no_grad():
            for p in model.parameters():
                p.zero_()
            last = [m for m in model.modules() if isinstance(m, torch.nn.Conv2d)][-1]
            last.bias.fill_(-8.0)
    return save_checkpoint(path, model=model, model_name="unet", model_config=cfg, spacing_mm=spacing_mm,
                           percentiles=(0.5, 99.5), patch_size=(64, 64),
                           train_config={"augment": False, "val_patches": 4, "batch_size": 2})


def test_score_volume_mc_dropout_and_tta(tmp_path):
    from conftest import blob_volume
    from napari_pvs.engine.models.checkpoint import load_model

    image, _ = blob_volume(1)
    noisy = load_model(_ckpt(tmp_path / "noisy.pt", dropout=0.5))
    sure = load_model(_ckpt(tmp_path / "sure.pt", dropout=0.5, constant=True))
    cfg = UncertaintyConfig(sampler="mc_dropout", n_samples=4, min_brain_fraction=0.0)
    a = run_to_end(score_volume(noisy, image, cfg))
    b = run_to_end(score_volume(sure, image, cfg))
    assert a.sampler == "mc_dropout" and a.scored.tolist() == list(range(6))
    assert a.bald.shape == (6,) and np.all(a.bald > 1e-3)
    assert np.all(b.bald < 1e-5) and np.all(b.entropy < 0.01)
    assert np.all(a.bald <= a.entropy + 1e-6)
    again = run_to_end(score_volume(noisy, image, cfg))             # seeded dropout masks
    assert np.allclose(again.bald, a.bald)
    part = run_to_end(score_volume(noisy, image, cfg, slices=[1, 4]))
    assert part.scored.tolist() == [1, 4] and np.isnan(part.bald[0]) and np.isfinite(part.bald[4])
    assert a.source_map("bald_map").shape == image.shape
    tta = run_to_end(score_volume(load_model(_ckpt(tmp_path / "nodrop.pt", dropout=0.0)), image,
                                  UncertaintyConfig(sampler="auto", n_samples=3, min_brain_fraction=0.0)))
    assert tta.sampler == "tta" and np.all(np.isfinite(tta.bald))
    with pytest.raises(ValueError, match="has no dropout"):
        run_to_end(score_volume(load_model(tmp_path / "nodrop.pt"), image, UncertaintyConfig(sampler="mc_dropout")))


# --------------------------------------------------------------------------- the loop driver
def test_loop_two_rounds_with_simulated_annotator(tmp_path):
    from conftest import blob_volume
    from napari_pvs.engine.io import save_volume
    from napari_pvs.engine.project import Project

    truth = {}
    with Project.create(tmp_path / "proj") as p:
        for i, subject in enumerate(("s1", "s2")):
            image, mask = blob_volume(10 + i)
            p.add_image(save_volume(tmp_path / f"{subject}.nii.gz", image.data, image), subject=subject)
            truth[subject] = mask
            p.save_annotation(subject, "sim", mask, slice_status={0: "done"})   # one annotated slice per scan

        def annotator(batch):                       # copies the truth of the proposed slices
            for subject in {c.subject for c in batch}:
                done = set(labelled_slices(p)[p.image(subject).id]) | {c.slice for c in batch if c.subject == subject}
                p.save_annotation(subject, "sim", truth[subject], slice_status={k: "done" for k in done})

        init = _ckpt(tmp_path / "init.pt", dropout=0.3)
        cfg = ALConfig(strategy="bald", n_per_round=2, uncertainty=UncertaintyConfig(n_samples=2,
                                                                                       min_brain_fraction=0.0),
                       finetune_steps=4, steps_per_epoch=2, finetune_minutes=2.0)
        events = []
        rounds = run_to_end(active_learning_loop(p, cfg, rounds=2, annotator=annotator, checkpoint=init),
                            events.append)
        assert [r["n_slices"] for r in rounds] == [4, 6]
        kinds = [e.kind for e in events]
        assert kinds.count("proposed") == 2 and kinds.count("round") == 2 and kinds[-1] == "done"
        proposed = [e.queue for e in events if e.kind == "proposed"]
        first = {(c.subject, c.slice) for c in proposed[0]}
        second = {(c.subject, c.slice) for c in proposed[1]}
        assert not first & second and not any(k == 0 for _, k in first | second)   # never an annotated slice
        assert all(e.round in (1, 2) for e in events if e.kind in ("score", "train", "proposed"))
        assert any(e.kind == "train" and getattr(e.inner, "val_metric", None) is not None for e in events)
        recorded = p.al_rounds()
        assert len(recorded) == 2 and recorded[1]["strategy"] == "bald" and len(recorded[1]["suggestions"]) == 2
        assert all((tmp_path / "proj" / "models").resolve() == Path(r["checkpoint"]).parent
                   for r in recorded)
        assert p.current_checkpoint() == Path(recorded[1]["checkpoint"])
        assert recorded[0]["run_id"] is not None
        # the next suggestion uses the round-2 model and never proposes the 6 annotated slices
        choices, scores = run_to_end(suggest(p, ALConfig(strategy="random", n_per_round=50)))
        assert scores.checkpoint is None and len(choices) == 12 - 6


# --------------------------------------------------------------------------- CLI
def test_cli_al_suggest_round_history(tmp_path, capsys):
    import json

    from conftest import blob_volume
    from napari_pvs.cli import main
    from napari_pvs.engine.io import save_volume
    from napari_pvs.engine.project import Project

    image, mask = blob_volume(5)
    t2 = save_volume(tmp_path / "s1.nii.gz", image.data, image)
    ckpt = _ckpt(tmp_path / "m.pt", dropout=0.3)
    proj = tmp_path / "proj"
    with Project.create(proj) as p:
        p.add_image(t2, subject="s1")
    assert main(["al", "round", str(proj), "-m", str(ckpt), "--steps", "2"]) == 2      # nothing annotated yet
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"napari-pvs: error: {proj.resolve()}: no T2 image has a latest version with slices marked "
                   "done or reviewed"]
    with Project.open(proj) as p:
        p.save_annotation("s1", "alice", mask, slice_status={1: "done", 3: "done"})
    assert main(["al", "suggest", str(proj), "-m", str(ckpt), "-n", "3", "--samples", "2", "--json", "-"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["strategy"] == "bald" and [r["rank"] for r in out["slices"]] == [1, 2, 3]
    assert not {r["slice"] for r in out["slices"]} & {1, 3} and all(r["bald"] is not None for r in out["slices"])
    assert main(["al", "round", str(proj), "-m", str(ckpt), "--steps", "2", "--max-minutes", "1"]) == 0
    text = capsys.readouterr().out
    assert "round 1: 2 labelled slices, validation DSC" in text and "al_round_001.pt" in text
    assert main(["al", "history", str(proj), "--json", "-"]) == 0
    (rnd,) = json.loads(capsys.readouterr().out)
    assert rnd["n_slices"] == 2 and Path(rnd["checkpoint"]).is_file()
    assert main(["al", "suggest", str(proj), "--strategy", "random", "-n", "2"]) == 0     # table output
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("next 2 slices to annotate (random, no model (random)") and len(lines) == 4
