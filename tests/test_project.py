"""The annotation project store (napari_pvs.engine.project): versions, slice statuses,
writer lock, checks, crash safety, agreement, consensus, export, and its CLI verbs."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from conftest import make_phantom

from napari_pvs.cli import main
from napari_pvs.engine.errors import PVSInputError
from napari_pvs.engine.io import load_volume, save_volume
from napari_pvs.engine.project import (SCHEMA_VERSION, Project, ProjectLockedError, consensus_mask,
                                       rater_agreement)
from napari_pvs.engine.project.export import IGNORE_LABEL, export_dataset

HERE = Path(__file__).parent


@pytest.fixture
def t2(tmp_path):
    vol, _ = make_phantom()
    return save_volume(tmp_path / "t2.nii.gz", vol.data, vol)


@pytest.fixture
def proj(tmp_path, t2):
    p = Project.create(tmp_path / "proj")
    p.add_image(t2, subject="s1")
    yield p
    p.close()


def _mask(shape, *boxes):
    m = np.zeros(shape, np.uint8)
    for z, y, x in boxes:
        m[z, y:y + 2, x:x + 2] = 1
    return m


def test_versions_record_rater_parent_status_and_content(proj):
    img = proj.image("s1")
    assert img.shape == (44, 176, 146) and img.axial_axis == 0 and img.voxel_size == (3.0, 1.0, 1.0)
    m1 = _mask(img.shape, (20, 50, 60))
    v1 = proj.save_annotation("s1", "alice", m1, slice_status={20: "done", 21: "in_progress"}, note="first")
    m2 = _mask(img.shape, (20, 50, 60), (25, 90, 90))
    v2 = proj.save_annotation("s1", "alice", m2)                  # inherits the parent's statuses
    assert (v1.parent_id, v2.parent_id) == (None, v1.id)
    assert v2.slice_status == {20: "done", 21: "in_progress"}
    assert (v1.n_components, v2.n_components, v2.n_voxels) == (1, 2, 8)
    np.testing.assert_array_equal(proj.load_version(v1.id), m1)
    np.testing.assert_array_equal(proj.load_version(v2.id), m2)
    # the file has the image's exact geometry
    assert np.allclose(nib.load(v2.path).affine, nib.load(img.path).affine)
    v3 = proj.set_slice_status(v2.id, [21, 22], "reviewed")
    assert v3.slice_status == {20: "done", 21: "reviewed", 22: "reviewed"}
    assert v3.path == v2.path and v3.parent_id == v2.id          # no copy of the mask
    assert v3.labelled_slices == [20, 21, 22]
    mask, labelled = proj.label_mask(v3.id)
    assert labelled[[20, 21, 22]].all() and not labelled[19].any() and labelled.sum() == 3 * 176 * 146
    assert [v.id for v in proj.versions("s1", rater="alice")] == [v1.id, v2.id, v3.id]
    assert proj.status()[0]["raters"]["alice"]["reviewed"] == 2
    with pytest.raises(ValueError, match="slice status must be one of"):
        proj.save_annotation("s1", "alice", m1, slice_status={3: "finished"})
    with pytest.raises(ValueError, match="outside the image's 44 axial slices"):
        proj.set_slice_status(v3.id, [44], "done")


def test_decisions_are_stored_with_the_version(proj):
    shape = proj.image("s1").shape
    v = proj.save_annotation("s1", "alice", _mask(shape, (10, 40, 40)), decisions=[
        {"candidate": 0, "decision": "accept", "source": "vesselness", "centre": (10, 40.5, 40.5), "n_voxels": 4},
        {"candidate": 1, "decision": "reject", "source": "vesselness", "centre": (12, 70, 70), "n_voxels": 3}])
    got = proj.decisions(v.id)
    assert [d["decision"] for d in got] == ["accept", "reject"] and got[0]["centre"] == (10, 40.5, 40.5)
    with pytest.raises(ValueError, match="decision must be one of"):
        proj.save_annotation("s1", "alice", _mask(shape), decisions=[{"candidate": 0, "decision": "maybe"}])
    # the failed save left no version behind (one transaction)
    assert len(proj.versions("s1")) == 1


def test_autosave_offered_after_a_crash(proj):
    shape = proj.image("s1").shape
    proj.save_annotation("s1", "alice", _mask(shape, (5, 40, 40)))
    assert proj.newest_autosave("s1", "alice") is None
    a = proj.save_annotation("s1", "alice", _mask(shape, (5, 40, 40), (6, 60, 60)), kind="autosave")
    assert proj.newest_autosave("s1", "alice").id == a.id
    assert proj.latest_version("s1", "alice").kind == "manual"
    proj.save_annotation("s1", "alice", _mask(shape, (5, 40, 40), (6, 60, 60)))
    assert proj.newest_autosave("s1", "alice") is None


def test_a_second_writer_gets_a_clear_error_and_readers_still_work(proj, tmp_path):
    with pytest.raises(ProjectLockedError, match=r"open for writing elsewhere \(.*pid \d+"):
        Project.open(tmp_path / "proj")
    with Project.open(tmp_path / "proj", readonly=True) as ro:
        assert ro.subjects() == ["s1"]
        with pytest.raises(PVSInputError, match="read-only"):
            ro.add_rater("bob")
    proj.close()
    with Project.open(tmp_path / "proj") as again:      # the lock went with the close
        assert again.add_rater("bob") == "bob"


def test_second_writer_in_another_process_is_refused(proj, tmp_path):
    code = (f"from napari_pvs.engine.project import Project\n"
            f"Project.open({str(tmp_path / 'proj')!r})\n")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert r.returncode != 0 and "open for writing elsewhere" in r.stderr


def test_mask_on_another_grid_is_refused_and_nothing_written(proj):
    before = sorted((proj.root / "annotations").rglob("*")) if (proj.root / "annotations").exists() else []
    with pytest.raises(ValueError, match=r"mask shape \(44, 176, 145\) differs from the image grid"):
        proj.save_annotation("s1", "alice", np.zeros((44, 176, 145), np.uint8))
    after = sorted((proj.root / "annotations").rglob("*")) if (proj.root / "annotations").exists() else []
    assert before == after and proj.versions() == []


def test_files_altered_or_missing_behind_the_catalogue_are_named(proj, tmp_path):
    shape = proj.image("s1").shape
    v1 = proj.save_annotation("s1", "alice", _mask(shape, (5, 40, 40)))
    v2 = proj.save_annotation("s1", "alice", _mask(shape, (6, 40, 40)))
    proj.close()
    # edited behind its back: another mask saved over the version's file
    img = load_volume(v1.path)
    save_volume(v1.path, np.ones(shape, np.uint8), img)
    v2.path.rename(v2.path.with_name("renamed.nii.gz"))
    with Project.open(tmp_path / "proj", readonly=True) as ro:
        kinds = {(p.kind, p.path.name) for p in ro.verify()}
        assert ("altered", v1.path.name) in kinds and ("missing", v2.path.name) in kinds
        assert ("orphan", "renamed.nii.gz") in kinds
        with pytest.raises(PVSInputError, match=rf"{v1.path.name}: altered"):
            ro.load_version(v1.id)
    with pytest.raises(PVSInputError, match="altered|missing"):
        Project.open(tmp_path / "proj", verify=True)
    with Project.open(tmp_path / "proj", readonly=True) as reported:      # default: reported, named
        assert {(p.kind, p.path.name) for p in reported.problems} == {("altered", v1.path.name),
                                                                      ("missing", v2.path.name)}
    assert main(["project", "status", str(tmp_path / "proj")]) == 1


def test_newer_schema_is_refused_and_not_touched(proj, tmp_path):
    proj.close()
    db = tmp_path / "proj" / "catalogue.sqlite"
    with sqlite3.connect(db) as con:
        con.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    before = db.read_bytes()
    with pytest.raises(PVSInputError, match=f"schema version {SCHEMA_VERSION + 1} is newer"):
        Project.open(tmp_path / "proj")
    assert db.read_bytes() == before


def test_not_a_project_and_existing_project(tmp_path, proj):
    with pytest.raises(PVSInputError, match="not a napari-pvs project"):
        Project.open(tmp_path / "nothing")
    with pytest.raises(PVSInputError, match="already exists"):
        Project.create(tmp_path / "proj")
    with pytest.raises(PVSInputError, match="already has a T2 image"):
        proj.add_image(proj.image("s1").path, subject="s1")


def test_crash_safety_under_sigkill(tmp_path):
    """30 SIGKILLs (100 in benchmarks/reliability.py) at random moments of a save loop: the
    catalogue stays whole, every version's file matches its sha256 and the mask that was
    saved, and no completed save is lost."""
    from napari_pvs.engine.io import Volume

    big = make_phantom()[0]
    small = Volume(data=np.ascontiguousarray(big.data[10:30, ::4, ::4]), affine=big.affine)   # (20, 44, 37)
    with Project.create(tmp_path / "proj") as p:
        p.add_image(save_volume(tmp_path / "small.nii.gz", np.asarray(small.data), small), subject="s1")
    r = subprocess.run([sys.executable, str(HERE / "_crash_writer.py"), str(tmp_path / "proj"), "30", "7"],
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-2000:]
    trials = [json.loads(line) for line in r.stdout.splitlines()]
    assert len(trials) == 30
    for t in trials:
        assert t["integrity"] == "ok" and t["problems"] == [] and t["bad_content"] == 0 and t["lost"] == [], t
    assert trials[-1]["completed_saves"] >= 30          # the writers did get saves done
    with Project.open(tmp_path / "proj", verify=True) as p:
        assert p.integrity_check() == "ok"
        assert len(p.versions("s1")) == trials[-1]["versions"]


@pytest.mark.parametrize("mode", ["session", "import-mask"])
def test_sigkill_during_session_autosave_and_import_mask(tmp_path, mode):
    """15 SIGKILLs (100 in benchmarks/reliability.py) while an AnnotationSession (the Annotate
    widget's session) autosaves brush strokes, or while ``project import-mask`` runs in a
    loop: the catalogue stays whole and every version reported saved is there, intact."""
    from napari_pvs.engine.io import Volume

    big = make_phantom()[0]
    small = Volume(data=np.ascontiguousarray(big.data[10:30, ::4, ::4]), affine=big.affine)
    with Project.create(tmp_path / "proj") as p:
        p.add_image(save_volume(tmp_path / "small.nii.gz", np.asarray(small.data), small), subject="s1")
    r = subprocess.run([sys.executable, str(HERE / "_crash_writer.py"), str(tmp_path / "proj"), "15", "11", mode],
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-2000:]
    trials = [json.loads(line) for line in r.stdout.splitlines()]
    assert len(trials) == 15
    for t in trials:
        assert t["integrity"] == "ok" and t["problems"] == [] and t["bad_content"] == 0 and t["lost"] == [], t
    assert trials[-1]["completed_saves"] >= 15


def test_agreement_and_consensus():
    shape = (20, 40, 40)
    a = _mask(shape, (5, 10, 10), (8, 20, 20), (12, 30, 5))
    b = _mask(shape, (5, 10, 10), (8, 21, 21), (15, 5, 30))      # 2nd overlaps 1 of 4 voxels: IoU 1/7
    b[3, 30:33, 30:33] = 1                                         # b only
    ag = rater_agreement(a, b, rater_a="alice", rater_b="bob")
    assert (ag.n_a, ag.n_b, len(ag.matched)) == (3, 4, 2)
    assert ag.detection_f1 == pytest.approx(2 * 2 / 7)
    tp = 4 + 1
    assert ag.dsc == pytest.approx(2 * tp / (a.sum() + b.sum()))
    only = {(d.rater, d.centre) for d in ag.disagreements}
    assert ("A", (12.0, 30.5, 5.5)) in only and ("B", (3.0, 31.0, 31.0)) in only and len(only) == 3
    cons = consensus_mask(ag)
    assert cons[5, 10, 10] and cons[8, 20, 20] and cons[8, 22, 22]     # matched pairs: union
    assert not cons[12, 30, 5] and not cons[3, 31, 31]
    idx = next(d.index for d in ag.disagreements if d.centre == (3.0, 31.0, 31.0))
    assert consensus_mask(ag, [idx])[3, 31, 31] == 1
    with pytest.raises(ValueError, match="differ in shape"):
        rater_agreement(a, b[:-1])


def test_export_nnunet_marks_unlabelled_slices_ignore(proj, tmp_path):
    shape = proj.image("s1").shape
    v = proj.save_annotation("s1", "alice", _mask(shape, (20, 50, 60)), slice_status={20: "done", 30: "reviewed"})
    info = export_dataset(proj, tmp_path / "Dataset501_PVS", fmt="nnunet")
    assert info["n_cases"] == 1 and info["cases"]["s1"]["version"] == v.id
    meta = json.loads((tmp_path / "Dataset501_PVS" / "dataset.json").read_text())
    assert meta["labels"] == {"background": 0, "PVS": 1, "ignore": IGNORE_LABEL}
    assert meta["channel_names"] == {"0": "T2"} and meta["numTraining"] == 1 and meta["file_ending"] == ".nii.gz"
    lab = load_volume(tmp_path / "Dataset501_PVS" / "labelsTr" / "s1.nii.gz")
    img = load_volume(tmp_path / "Dataset501_PVS" / "imagesTr" / "s1_0000.nii.gz")
    assert lab.shape == img.shape == shape and np.allclose(lab.affine, img.affine)
    data = np.asarray(lab.data)
    assert data[20].max() == 1 and set(np.unique(data[20])) == {0, 1}
    assert set(np.unique(data[30])) == {0} and (data[19] == IGNORE_LABEL).all()
    # reviewed: only slice 30 is labelled
    export_dataset(proj, tmp_path / "monai", fmt="monai", versions="reviewed")
    dl = json.loads((tmp_path / "monai" / "datalist.json").read_text())
    (entry,) = dl["training"]
    assert entry["labelled_slices"] == [30] and Path(entry["ignore"]).is_file()
    ign = np.asarray(load_volume(entry["ignore"]).data)
    assert ign[30].max() == 0 and ign[20].min() == 1
    with pytest.raises(PVSInputError, match="no T2 image has a consensus version"):
        export_dataset(proj, tmp_path / "none", versions="consensus")


def test_cli_project_verbs(tmp_path, t2, capsys):
    d = str(tmp_path / "p")
    assert main(["project", "init", d]) == 0
    assert main(["project", "add", d, str(t2), "--subject", "s1"]) == 0
    assert "voxel size 3.00 x 1.00 x 1.00 mm, 44 axial slices" in capsys.readouterr().out
    img = load_volume(t2)
    for rater, boxes in (("alice", [(20, 50, 60), (22, 80, 80)]), ("bob", [(20, 50, 60), (30, 100, 100)])):
        save_volume(tmp_path / f"{rater}.nii.gz", _mask(img.shape, *boxes), img, dtype=np.uint8)
        assert main(["project", "import-mask", d, "s1", str(tmp_path / f"{rater}.nii.gz"), "--rater", rater,
                     "--slices", "done"]) == 0
    out = capsys.readouterr().out
    assert "2 of 44 slices done" in out
    assert main(["project", "status", d]) == 0
    out = capsys.readouterr().out
    assert "alice: v1 2 done" in out and "bob: v2 2 done" in out and "problems: none" in out
    assert main(["project", "agreement", d, "s1", "--raters", "alice", "bob", "--bg-slice", "20",
                 "--cso-slice", "30", "--consensus-rater", "consensus", "--json", "-"]) == 0
    res = json.loads(capsys.readouterr().out)
    assert res["matched"] == 1 and res["detection_f1"] == pytest.approx(0.5)
    assert res["counts"]["cso"] == {"slice": 30, "alice": 0, "bob": 1}
    assert res["consensus_version"] == 3
    assert main(["project", "export", d, "--format", "nnunet", "-o", str(tmp_path / "nn"),
                 "--versions", "consensus"]) == 0
    lab = np.asarray(load_volume(tmp_path / "nn" / "labelsTr" / "s1.nii.gz").data)
    assert lab[20].max() == 1 and (lab[21] == IGNORE_LABEL).all()   # only slice 20 is done by both
    # errors: one line, exit code 2
    bad = tmp_path / "bad.nii.gz"
    nib.save(nib.Nifti1Image(np.zeros((140, 176, 44), np.uint8), img.affine), bad)
    assert main(["project", "import-mask", d, "s1", str(bad), "--rater", "alice"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "bad.nii.gz" in err and "grid" in err
    with Project.open(d, readonly=True) as ro:
        assert len(ro.versions()) == 3          # nothing was saved
    assert main(["project", "import-mask", d, "s1", str(tmp_path / "alice.nii.gz"), "--rater", "x",
                 "--role", "FLAIR"]) == 2
    assert "no FLAIR image of subject 's1'" in capsys.readouterr().err
    assert main(["project", "init", d]) == 2
    assert "already exists" in capsys.readouterr().err


def _train_on_project(tmp_path, name, image, mask, done_slices):
    import torch

    from conftest import SMALL_FEATURES
    from napari_pvs.engine.progress import run_to_end
    from napari_pvs.engine.training.project import train_from_project
    from napari_pvs.engine.training import TrainConfig

    t2 = save_volume(tmp_path / f"{name}_t2.nii.gz", image.data, image)
    with Project.create(tmp_path / name) as p:
        p.add_image(t2, subject="s1")
        p.save_annotation("s1", "alice", mask, slice_status={s: "done" for s in done_slices})
        cfg = TrainConfig(model="unet", model_config={"features": SMALL_FEATURES}, epochs=1, steps_per_epoch=4,
                          patch_size=(64, 64), augment=False, val_patches=4)
        result = run_to_end(train_from_project(p, cfg, tmp_path / f"{name}.pt"))
        runs = p.training_runs()
    assert len(runs) == 1 and runs[0]["versions"] == [1] and runs[0]["checkpoint"] == str(result.checkpoint)
    return torch.load(result.checkpoint, weights_only=True)["state_dict"]


def test_one_done_slice_trains_only_on_that_slice(tmp_path):
    """The PVS drawn on slices not marked done change nothing in training: the weights are
    the same whatever they hold; marking another slice done changes them."""
    import torch

    from conftest import blob_volume

    image, mask = blob_volume(3)
    assert mask[2].any() and mask[4].any()
    other = mask.copy()
    other[[0, 1, 3, 4, 5]] = np.random.default_rng(0).random(other[[0, 1, 3, 4, 5]].shape) > 0.9
    a = _train_on_project(tmp_path, "a", image, mask, [2])
    b = _train_on_project(tmp_path, "b", image, other, [2])
    c = _train_on_project(tmp_path, "c", image, mask, [4])
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not all(torch.equal(a[k], c[k]) for k in a)


def test_session_autosave_candidates_and_next_slice(proj):
    from napari_pvs.engine.candidates import Proposals
    from napari_pvs.engine.project import AnnotationSession, version_diff

    s = AnnotationSession.start(proj, "s1", "alice", autosave_s=30.0)
    assert s.base is None and s.mask.sum() == 0 and s.next_unfinished() == 0
    assert s.maybe_autosave(now=1e9) is None                       # nothing changed: no version
    s.mask[10, 40:42, 40:42] = 1
    s.set_status(0, "done")
    s.set_status(1, "reviewed")
    assert s.changed and s.next_unfinished() == 2 and s.next_unfinished(after=43) == 2
    assert s.maybe_autosave(now=s._last_save_t + 5) is None        # too early
    a = s.maybe_autosave(now=s._last_save_t + 31)
    assert a is not None and a.kind == "autosave" and a.slice_status == {0: "done", 1: "reviewed"}
    assert not s.changed and s.maybe_autosave(now=1e12) is None
    # a crash now: reopening offers the autosave
    again = AnnotationSession.start(proj, "s1", "alice")
    assert again.base.id == a.id and again.mask.sum() == 4
    # candidates: accept merges, reject does not; decisions go with the next save
    labels = np.zeros(s.mask.shape, np.int32)
    labels[20, 50:52, 50:52] = 1
    labels[21, 80:82, 80:82] = 2
    labels[10, 40:42, 40:42] = 3                                    # already in the mask: skipped
    table = [{"id": i, "slice": z, "centre": (z, 0.0, 0.0), "n_voxels": 4} for i, z in ((1, 20), (2, 21), (3, 10))]
    s.set_proposals(Proposals(labels, table, "vesselness"))
    assert s.next_candidate()["id"] == 1 and s.remaining == 1
    assert s.decide("accept")["id"] == 2
    assert s.decide("reject") is None and s.current is None
    assert s.mask[20, 50, 50] == 1 and s.mask[21, 80, 80] == 0
    v = s.save(note="two candidates")
    assert v.parent_id == a.id and [d["decision"] for d in proj.decisions(v.id)] == ["accept", "reject"]
    diff = version_diff(proj.load_version(a.id), proj.load_version(v.id))
    assert (diff.added, diff.removed) == (1, 0) and diff.labels[20, 50, 50] == 1
    with pytest.raises(ValueError, match="decision must be one of"):
        s.decide("maybe")
    with pytest.raises(ValueError, match="outside the image's 44 axial slices"):
        s.set_status(44, "done")
