"""Cohort runs on Dask: the table, the report and the BIDS derivative; failed scans are rows
(exit 3); a run killed with SIGKILL finishes on a rerun without recomputing finished scans
and with the same table; a run through a separately started Dask scheduler and worker;
the agreement of two tables."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from napari_pvs.engine.io import Volume, save_volume

pytestmark = pytest.mark.slow

#: fast settings: a coarse registration grid (same slices here as the 2 mm default), 1 thread
FAST = ["--grid-mm", "6", "--threads", "1", "--workers", "1"]


@pytest.fixture(scope="module")
def scans(tmp_path_factory):
    """Small T2-like brains (the MNI template at 3 mm, contrast inverted inside the head,
    a little noise each), a tiny checkpoint, a corrupt file and a non-brain image."""
    import torch

    from napari_pvs.engine.data import fetch
    from napari_pvs.engine.io import load_volume
    from napari_pvs.engine.models import LiteUNetConfig, build_model
    from napari_pvs.engine.models.checkpoint import save_checkpoint

    root = tmp_path_factory.mktemp("cohort")
    tpl = load_volume(fetch("atlas/mni152/mni_icbm152_t1_tal_nlin_sym_09a_converted.nii.gz"))
    d = np.asarray(tpl.data, np.float32)[::3, ::3, ::3]
    aff = tpl.affine @ np.diag([3, 3, 3, 1.0])
    t2 = np.where(d > 5, 300 - d, 0).astype(np.float32)
    bids = root / "bids"
    paths = []
    for i, (sub, ses) in enumerate((("01", "1"), ("01", "2"), ("02", ""), ("03", ""))):
        noisy = t2 + np.random.default_rng(i).normal(0, 2, t2.shape).astype(np.float32) * (t2 > 0)
        folder = bids / f"sub-{sub}" / (f"ses-{ses}" if ses else "") / "anat"
        name = f"sub-{sub}" + (f"_ses-{ses}" if ses else "") + "_T2w.nii.gz"
        paths.append(save_volume(folder / name, noisy, Volume(noisy, aff)))
    (bids / "dataset_description.json").write_text(json.dumps({"Name": "t", "BIDSVersion": "1.10.0"}))
    (bids / "participants.tsv").write_text("participant_id\tage\tsex\nsub-01\t64\tF\nsub-02\t71\tM\nsub-03\t58\tF\n")
    torch.manual_seed(0)
    # a tiny liteunet (the default's family: no MONAI import, so each run starts seconds sooner),
    # its head biased so that a random network still marks some voxels
    cfg = LiteUNetConfig(features=(4, 8, 16))
    net = build_model("liteunet", cfg)
    with torch.no_grad():
        net.head.bias.fill_(0.0)
    ckpt = save_checkpoint(root / "tiny.pt", model=net, model_name="liteunet", model_config=cfg,
                           spacing_mm=3.0, percentiles=(0.5, 99.5))
    bad = root / "bad"
    bad.mkdir()
    corrupt = bad / "corrupt.nii.gz"
    corrupt.write_bytes(paths[2].read_bytes()[:400])
    noise = np.random.default_rng(9).uniform(0, 1, (20, 20, 20)).astype(np.float32)
    notbrain = save_volume(bad / "noise.nii.gz", noise, Volume(noise, np.eye(4)))
    return {"bids": bids, "paths": paths, "ckpt": ckpt, "corrupt": corrupt, "notbrain": notbrain}


def _cli(args, **kw):
    return subprocess.run([sys.executable, "-m", "napari_pvs.cli", *map(str, args)], capture_output=True, text=True,
                          **kw)


def _table(path: Path) -> list[dict]:
    from napari_pvs.engine.cohort.table import read_table

    return read_table(path)


def _comparable(rows):
    keep = ("scan_id", "bg_slice", "cso_slice", "bg_left", "bg_right", "bg_total", "cso_total", "n_pvs",
            "pvs_volume_mm3", "qc_flags")
    return [{k: r.get(k) for k in keep} for r in rows]


@pytest.fixture(scope="module")
def ref_run(scans, tmp_path_factory):
    """One uninterrupted run of the BIDS cohort (the reference of the SIGKILL test too)."""
    out = tmp_path_factory.mktemp("ref") / "out"
    r = _cli(["cohort", "run", scans["bids"], "-o", out, "-m", scans["ckpt"], *FAST])
    assert r.returncode == 0, r.stderr[-2000:]
    return out, _table(out / "cohort.tsv")


def test_cohort_run_bids_table_report_derivative_and_failed_rows(scans, ref_run, tmp_path):
    out, _ = ref_run
    rows = _table(out / "cohort.tsv")
    assert [x["scan_id"] for x in rows] == ["sub-01_ses-1", "sub-01_ses-2", "sub-02", "sub-03"]
    assert all(x["status"] == "ok" for x in rows)
    assert {x["bg_slice"] for x in rows} == {"22"} and {x["cso_slice"] for x in rows} == {"37"}
    for x in rows:
        assert int(x["bg_left"]) + int(x["bg_right"]) == int(x["bg_total"])
        assert 0 <= int(x["bg_grade"]) <= 4 and float(x["registration_scale"]) > 0.5
    anat = out / "sub-01" / "ses-2" / "anat"
    names = sorted(p.name for p in anat.iterdir())
    assert names == sorted([f"sub-01_ses-2_desc-pvs_{k}" for k in (
        "mask.nii.gz", "probseg.nii.gz", "counts.tsv", "counts.json", "objects.tsv", "objects.json", "qc.png",
        "summary.json")] + ["sub-01_ses-2_desc-atlas_dseg.nii.gz"])
    summary = json.loads((anat / "sub-01_ses-2_desc-pvs_summary.json").read_text())
    from napari_pvs.engine.data import sha256_file

    assert summary["input_sha256"] == sha256_file(scans["paths"][1])
    assert summary["model_sha256"] == sha256_file(scans["ckpt"])
    assert set(summary["seconds"]) >= {"read", "segment", "register", "count", "figure", "total"}
    html = (out / "report.html").read_text()
    assert "Counts by age and sex" in html and "QC gallery" in html and html.count("data:image/png;base64,") >= 6
    assert "http://" not in html and "https://" not in html               # opens with no network
    desc = json.loads((out / "dataset_description.json").read_text())
    assert desc["DatasetType"] == "derivative"
    # the same command again: nothing recomputed (the reference table itself is kept as it was)
    again = tmp_path / "again"
    import shutil

    shutil.copytree(out, again)
    r2 = _cli(["cohort", "run", scans["bids"], "-o", again, "-m", scans["ckpt"], *FAST])
    assert r2.returncode == 0 and [x["status"] for x in _table(again / "cohort.tsv")] == ["skipped"] * 4
    # a list with a corrupt file and a non-brain image: exactly those rows fail, exit 3
    lst = tmp_path / "scans.txt"
    lst.write_text(f"{scans['paths'][2]}\tgood\n{scans['corrupt']}\n{scans['notbrain']}\n")
    r3 = _cli(["cohort", "run", lst, "-o", tmp_path / "out2", "-m", scans["ckpt"], *FAST])
    assert r3.returncode == 3, r3.stderr[-2000:]
    rows = {x["scan_id"]: x for x in _table(tmp_path / "out2" / "cohort.tsv")}
    assert {k: v["status"] for k, v in rows.items()} == {"good": "ok", "corrupt": "failed", "noise": "failed"}
    assert "corrupt.nii.gz" in rows["corrupt"]["error"] and "brain" in rows["noise"]["error"]
    assert "failed corrupt" in r3.stdout


def test_sigkill_then_rerun_gives_the_same_table_without_recomputing(scans, ref_run, tmp_path):
    out = tmp_path / "killed"
    proc = subprocess.Popen([sys.executable, "-m", "napari_pvs.cli", "cohort", "run", str(scans["bids"]), "-o",
                             str(out), "-m", str(scans["ckpt"]), *FAST], start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while time.time() < deadline and not list(out.rglob("*_summary.json")):
        time.sleep(0.2)
    time.sleep(float(np.random.default_rng(int(time.time())).uniform(0.0, 1.5)))   # a random moment after
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    finished = {p.name.split("_desc-")[0] for p in out.rglob("*_summary.json")}
    assert finished, "the run was killed before any scan finished"
    r = _cli(["cohort", "run", scans["bids"], "-o", out, "-m", scans["ckpt"], *FAST])
    assert r.returncode == 0, r.stderr[-2000:]
    rows = _table(out / "cohort.tsv")
    assert _comparable(rows) == _comparable(ref_run[1])
    assert {x["scan_id"] for x in rows if x["status"] == "skipped"} == finished      # no finished scan recomputed
    for p in out.rglob("*"):
        assert ".part" not in p.name, p                       # no partial file under any name after the rerun


def test_cohort_through_a_running_dask_scheduler(scans, tmp_path):
    sched_file = tmp_path / "scheduler.json"
    env = {**os.environ, "DASK_DISTRIBUTED__WORKER__DAEMON": "False"}
    sched = subprocess.Popen([sys.executable, "-m", "distributed.cli.dask_scheduler", "--host", "127.0.0.1",
                              "--port", "0", "--dashboard-address", ":0", "--scheduler-file", str(sched_file)],
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    worker = None
    try:
        deadline = time.time() + 60
        while time.time() < deadline and not sched_file.exists():
            time.sleep(0.2)
        address = json.loads(sched_file.read_text())["address"]
        worker = subprocess.Popen([sys.executable, "-m", "distributed.cli.dask_worker", "--scheduler-file",
                                   str(sched_file), "--nworkers", "1", "--nthreads", "1"],
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
        lst = tmp_path / "two.txt"
        lst.write_text(f"{scans['paths'][0]}\n{scans['paths'][2]}\n")
        r = _cli(["cohort", "run", lst, "-o", tmp_path / "out", "-m", scans["ckpt"], "--scheduler", address,
                  "--grid-mm", "6", "--threads", "1"])
        assert r.returncode == 0, r.stderr[-2000:]
        rows = _table(tmp_path / "out" / "cohort.tsv")
        assert [x["status"] for x in rows] == ["ok", "ok"] and rows[0]["scan_id"] == "sub-01_ses-1"
    finally:
        for p in (worker, sched):
            if p is not None:
                p.terminate()
                p.wait(timeout=30)


def test_cohort_compare_of_two_tables(tmp_path):
    a = tmp_path / "a.tsv"
    b = tmp_path / "raters.csv"
    bg_a, cso_a = [3, 8, 12, 25, 1, 6], [10, 15, 30, 45, 4, 20]
    a.write_text("scan_id\tstatus\tbg_total\tcso_total\n" + "".join(
        f"s{i}\tok\t{x}\t{y}\n" for i, (x, y) in enumerate(zip(bg_a, cso_a, strict=True))))
    b.write_text("subject,bg,cso\n" + "".join(f"s{i},{x + 1},{y - 2}\n" for i, (x, y) in enumerate(zip(bg_a, cso_a,
                                                                                                          strict=True))))
    from napari_pvs.cli import main

    out = tmp_path / "agree.html"
    assert main(["cohort", "compare", str(a), str(b), "-o", str(out), "--json", str(tmp_path / "s.json")]) == 0
    stats = json.loads((tmp_path / "s.json").read_text())
    assert stats["n"] == 6
    assert stats["bg"]["spearman_rho"] == pytest.approx(1.0) and stats["bg"]["mean_difference"] == pytest.approx(-1.0)
    assert stats["bg"]["loa_low"] == pytest.approx(-1.0) and stats["bg"]["icc31"] == pytest.approx(1.0)
    assert 0.9 < stats["bg"]["icc21"] < 1.0 and stats["cso"]["mean_difference"] == pytest.approx(2.0)
    assert len(stats["bg"]["icc21_ci95"]) == 2 and stats["cso"]["kappa_weighted"] > 0.5
    html = out.read_text()
    assert "ICC(2,1)" in html and html.count("data:image/png;base64,") == 2


def test_cohort_widget_runs_a_small_cohort_and_opens_a_row(make_napari_viewer, qtbot, scans, tmp_path):
    pytest.importorskip("napari")
    lst = tmp_path / "list.txt"
    lst.write_text(f"{scans['paths'][3]}\n{scans['corrupt']}\n")
    viewer = make_napari_viewer()
    _, w = viewer.window.add_plugin_dock_widget("napari-pvs", "Cohort (whole study)")
    w.input.value = str(lst)
    w.output.value = tmp_path / "out"
    w.checkpoint.value = scans["ckpt"]
    w.workers.value = 1
    w.grid_mm.value = 6.0
    assert w.start()
    assert w.table.rowCount() == 2 and w.table.item(0, 1).text() == "queued"
    qtbot.waitUntil(lambda: w.worker is None, timeout=180_000)
    assert [w.table.item(i, 1).text() for i in range(2)] == ["ok", "failed"], w.status.text()
    assert "corrupt.nii.gz" in w.table.item(1, 6).text() and "1 failed" in w.status.text()
    w.open_row(0)
    names = [ly.name for ly in viewer.layers]
    assert names == ["sub-03 T2", "sub-03 atlas regions", "sub-03 PVS mask"]
    assert viewer.layers["sub-03 PVS mask"].data.shape == viewer.layers["sub-03 T2"].data.shape
    assert w.qc.pixmap() is not None and not w.qc.pixmap().isNull()
    assert w.report_button.isEnabled() and (tmp_path / "out" / "report.html").is_file()
