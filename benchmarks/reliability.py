"""Reliability: the bad-input corpus table, fuzz counts, fault trials and load figures.

    python benchmarks/reliability.py --data ../shared/data [--fuzz-scale 10] [--kills 100]
        [--versions 10000] [--cohort 200] [--only corpus,fuzz,faults,load,cohort]

1. **Corpus** (``tests/bad_inputs.py``): every class through the CLI as a *separate process*
   (what a user sees, logging included), the Python API and the napari reader; one row per
   class: the CLI's exit status and stderr line, the API's exception, the reader's answer,
   and whether each met the contract (one line naming the file, exit 2, no traceback, no
   partial output, input untouched; or, for the odd-but-valid classes, that it worked).
2. **Fuzzing** (``tests/test_fuzz.py``) with ``PVS_FUZZ_SCALE`` times the CI numbers of cases.
3. **Faults**: ``--kills`` SIGKILLs each during ``Project.save_annotation``, an
   ``AnnotationSession``'s autosaves and ``project import-mask`` (``tests/_crash_writer.py``);
   the NaN-loss, out-of-memory and widget-exception tests (``tests/test_faults.py``).
4. **Load**: a project of 200 subjects and ``--versions`` versions built through the API,
   opened cold (every file hashed) and warm (size+mtime cache).
5. **Cohort**: ``--cohort`` small T2-like volumes, 10 % of them bad in assorted ways, through
   ``napari-pvs cohort run``: exactly the bad ones must be the failed rows.

Prints markdown tables and writes ``reliability.json`` under ``--out``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))


def _short(text: str, n: int = 90) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= n else text[: n - 1] + "…"


def corpus(data: Path, work: Path) -> dict:
    import bad_inputs as bi
    import napari_pvs.plugin.reader as reader

    reader._ask_series = lambda path: None
    base = work / "corpus"
    base.mkdir(parents=True)
    base.chmod(0o755)
    ctx = bi.make_context(base / "ctx", data if data.exists() else None)
    rows = []
    for i, case in enumerate(bi.CASES):
        if case.needs_data and ctx.data is None:
            continue
        t = time.perf_counter()
        cli = bi.run_cli_subprocess(case, base / f"cli-{i:02d}", ctx, sys.executable)
        api = bi.run_api(case, base / f"api-{i:02d}", ctx)
        rd = bi.run_reader(case, base / f"napari-{i:02d}", ctx)
        rows.append({"class": case.name, "group": case.group, "expect": case.expect,
                     "cli_ok": cli.ok, "cli": cli.detail, "cli_problems": cli.problems,
                     "api_ok": api.ok, "api": api.detail, "api_problems": api.problems,
                     "napari_ok": None if rd is None else rd.ok, "napari": "n/a" if rd is None else rd.detail,
                     "seconds": round(time.perf_counter() - t, 2)})
        print(f"  {i + 1:2d}/{len(bi.CASES)} {case.name}: cli {'ok' if cli.ok else cli.problems}, "
              f"api {'ok' if api.ok else api.problems}, napari {'n/a' if rd is None else ('ok' if rd.ok else rd.problems)}",
              flush=True)
    n_ok = sum(r["cli_ok"] and r["api_ok"] and r["napari_ok"] is not False for r in rows)
    print(f"\n### Bad-input corpus: {len(rows)} classes, {n_ok} meet the contract on every front end\n")
    print("| class | CLI (separate process) | API | napari reader |")
    print("|---|---|---|---|")
    strip = "napari-pvs: error: "
    for r in rows:
        def cell(ok, text):
            text = str(text)
            if text.startswith(strip):
                text = text[len(strip):]
            text = text.split(": ", 1)[-1] if "/" in text.split(": ", 1)[0] else text   # drop the temp path
            return ("ok: " if ok else "**FAIL**: ") + _short(text, 70)
        print(f"| {r['class']} | {cell(r['cli_ok'], r['cli'])} | {cell(r['api_ok'], r['api'])} | "
              f"{'n/a' if r['napari_ok'] is None else cell(r['napari_ok'], r['napari'])} |")
    return {"classes": len(rows), "all_ok": n_ok, "rows": rows}


def fuzz(scale: int, work: Path) -> dict:
    counts_file = work / "fuzz_counts.tsv"
    env = dict(os.environ, PVS_FUZZ_SCALE=str(scale), PVS_FUZZ_COUNTS=str(counts_file))
    t = time.perf_counter()
    r = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                        str(ROOT / "tests" / "test_fuzz.py")], capture_output=True, text=True, env=env, cwd=ROOT)
    seconds = time.perf_counter() - t
    counts: dict = {}
    if counts_file.exists():
        for line in counts_file.read_text().splitlines():
            test, outcome = line.split("\t")
            counts.setdefault(test, {"volume": 0, "refused": 0})[outcome] += 1
    tail = r.stdout.strip().splitlines()[-1] if r.stdout.strip() else r.stderr[-300:]
    print(f"\n### Fuzzing (scale {scale}): {tail}\n")
    print("| fuzz test | cases | read as a volume | refused (PVSInputError) |")
    print("|---|---|---|---|")
    for k, v in counts.items():
        print(f"| {k} | {v['volume'] + v['refused']} | {v['volume']} | {v['refused']} |")
    return {"scale": scale, "counts": counts, "total": sum(v["volume"] + v["refused"] for v in counts.values()),
            "result": tail, "returncode": r.returncode, "seconds": round(seconds, 1)}


def faults(work: Path, kills: int) -> dict:
    import numpy as np
    from conftest import make_phantom

    from napari_pvs.engine.io import Volume, save_volume
    from napari_pvs.engine.project import Project

    big = make_phantom()[0]
    small = Volume(data=np.ascontiguousarray(big.data[10:30, ::4, ::4]), affine=big.affine)
    out = {}
    print(f"\n### Faults: {kills} SIGKILLs per writer\n")
    print("| writer | trials | integrity ok | problems | bad content | lost saves | versions | completed saves | s |")
    print("|---|---|---|---|---|---|---|---|---|")
    for mode in ("store", "session", "import-mask"):
        d = work / f"kill-{mode}"
        d.mkdir(parents=True)
        with Project.create(d / "proj") as p:
            p.add_image(save_volume(d / "small.nii.gz", np.asarray(small.data), small), subject="s1")
        t = time.perf_counter()
        r = subprocess.run([sys.executable, str(ROOT / "tests" / "_crash_writer.py"), str(d / "proj"), str(kills), "5",
                            mode], capture_output=True, text=True)
        seconds = time.perf_counter() - t
        trials = [json.loads(line) for line in r.stdout.splitlines() if line.startswith("{")]
        res = {"trials": len(trials), "returncode": r.returncode,
               "integrity_ok": sum(t_["integrity"] == "ok" for t_ in trials),
               "problems": sum(len(t_["problems"]) for t_ in trials),
               "bad_content": sum(t_["bad_content"] for t_ in trials),
               "lost": sum(len(t_["lost"]) for t_ in trials),
               "versions": trials[-1]["versions"] if trials else 0,
               "completed_saves": trials[-1]["completed_saves"] if trials else 0, "seconds": round(seconds, 1)}
        out[mode] = res
        print(f"| {mode} | {res['trials']} | {res['integrity_ok']} | {res['problems']} | {res['bad_content']} | "
              f"{res['lost']} | {res['versions']} | {res['completed_saves']} | {res['seconds']} |")
    r = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-rA",
                        str(ROOT / "tests" / "test_faults.py")], capture_output=True, text=True, cwd=ROOT)
    passed = [ln.split("::", 1)[1] for ln in r.stdout.splitlines() if ln.startswith("PASSED")]
    failed = [ln for ln in r.stdout.splitlines() if ln.startswith("FAILED")]
    print("\nFault tests (tests/test_faults.py):")
    for p in passed:
        print(f"- passed: {p}")
    for f in failed:
        print(f"- {f}")
    out["fault_tests"] = {"passed": passed, "failed": failed}
    return out


def load(work: Path, versions: int) -> dict:
    from load_helpers import build_large_project, time_open

    t = time.perf_counter()
    proj = build_large_project(work / "load", n_subjects=200, n_versions=versions)
    build = time.perf_counter() - t
    cold, (problems, n) = time_open(proj)
    warm = [time_open(proj)[0] for _ in range(3)]
    nocheck = time_open(proj, verify=False)[0]
    res = {"subjects": n, "versions": versions, "build_s": round(build, 1), "open_cold_s": round(cold, 3),
           "open_warm_s": [round(w, 3) for w in warm], "open_without_check_s": round(nocheck, 3),
           "problems": len(problems)}
    print(f"\n### Load: a project of {n} subjects and {versions} versions (built through the API in {build:.0f} s)\n")
    print("| open | seconds |")
    print("|---|---|")
    print(f"| first (every file hashed, cache written) | {cold:.3f} |")
    print(f"| again (size+mtime cache), 3 times | {', '.join(f'{w:.3f}' for w in warm)} |")
    print(f"| without the file check | {nocheck:.3f} |")
    return res


def cohort(work: Path, n: int) -> dict:
    """``n`` small volumes (the MNI template at 3 mm as a T2, noise per scan), 10 % bad."""
    import numpy as np

    from napari_pvs.engine.data import fetch
    from napari_pvs.engine.io import Volume, load_volume, save_volume
    from napari_pvs.engine.models import UNetConfig, build_model
    from napari_pvs.engine.models.checkpoint import save_checkpoint
    import torch

    d = work / "cohort"
    scans = d / "scans"
    scans.mkdir(parents=True)
    tpl = load_volume(fetch("atlas/mni152/mni_icbm152_t1_tal_nlin_sym_09a_converted.nii.gz"))
    t1 = np.asarray(tpl.data, np.float32)[::3, ::3, ::3]
    aff = tpl.affine @ np.diag([3, 3, 3, 1.0])
    t2 = np.where(t1 > 5, 300 - t1, 0).astype(np.float32)
    bad_kinds = ["truncated", "random bytes", "noise (not a brain)", "all zero", "2D", "NaN voxels",
                 "4D", "10 mm slices", "empty file", "text file named .nii.gz"]
    n_bad = max(1, n // 10)
    bad_ids = set(np.random.default_rng(1).choice(n, n_bad, replace=False).tolist())
    lines, expected_failed = [], set()
    k = 0
    for i in range(n):
        sid = f"s{i:03d}"
        p = scans / f"{sid}.nii.gz"
        if i in bad_ids:
            kind = bad_kinds[k % len(bad_kinds)]
            k += 1
            expected_failed.add(sid)
            if kind == "truncated":
                good = save_volume(p, t2, Volume(t2, aff))
                p.write_bytes(good.read_bytes()[:500])
            elif kind == "random bytes":
                p.write_bytes(os.urandom(5000))
            elif kind == "noise (not a brain)":
                z = np.random.default_rng(i).uniform(0, 1, t2.shape).astype(np.float32)
                save_volume(p, z, Volume(z, aff))
            elif kind == "all zero":
                z = np.zeros_like(t2)
                save_volume(p, z, Volume(z, aff))
            elif kind == "2D":
                import nibabel as nib
                nib.save(nib.Nifti1Image(t2[:, :, 20].copy(), np.eye(4)), str(p))
            elif kind == "NaN voxels":
                z = t2.copy()
                z[5, 5, 5] = np.nan
                import nibabel as nib
                nib.save(nib.Nifti1Image(z.transpose(2, 1, 0), aff), str(p))
            elif kind == "4D":
                import nibabel as nib
                nib.save(nib.Nifti1Image(np.stack([t2.transpose(2, 1, 0)] * 2, -1), aff), str(p))
            elif kind == "10 mm slices":
                save_volume(p, t2, Volume(t2, aff @ np.diag([1, 1, 10 / 3, 1.0])))
            elif kind == "empty file":
                p.write_bytes(b"")
            else:
                p.write_text("not an image")
        else:
            z = t2 + np.random.default_rng(i).normal(0, 2, t2.shape).astype(np.float32) * (t2 > 0)
            save_volume(p, z, Volume(z, aff))
        lines.append(f"{p}\t{sid}")
    (d / "list.txt").write_text("\n".join(lines) + "\n")
    torch.manual_seed(0)
    cfg = UNetConfig(features=(4, 8, 16))
    ckpt = save_checkpoint(d / "tiny.pt", model=build_model("unet", cfg), model_name="unet", model_config=cfg,
                           spacing_mm=3.0, percentiles=(0.5, 99.5))
    t = time.perf_counter()
    r = subprocess.run([sys.executable, "-m", "napari_pvs.cli", "cohort", "run", str(d / "list.txt"), "-o", str(d / "out"),
                        "-m", str(ckpt), "--grid-mm", "6"], capture_output=True, text=True)
    seconds = time.perf_counter() - t
    from napari_pvs.engine.cohort.table import read_table

    rows = read_table(d / "out" / "cohort.tsv")
    failed = {r_["scan_id"] for r_ in rows if r_["status"] == "failed"}
    ok = {r_["scan_id"] for r_ in rows if r_["status"] == "ok"}
    res = {"scans": n, "bad": n_bad, "exit_status": r.returncode, "failed_rows": len(failed), "ok_rows": len(ok),
           "failed_exactly_the_bad_ones": failed == expected_failed, "seconds": round(seconds, 1),
           "scans_per_hour": round(3600 * n / seconds, 1),
           "errors": {r_["scan_id"]: r_["error"] for r_ in rows if r_["status"] == "failed"}}
    print(f"\n### Cohort: {n} small volumes, {n_bad} bad, through `napari-pvs cohort run` (local Dask)\n")
    print(f"exit status {r.returncode}; {len(ok)} ok, {len(failed)} failed; failed rows == the bad ones: "
          f"{failed == expected_failed}; {seconds:.0f} s ({res['scans_per_hour']} scans/h)")
    for sid in sorted(failed):
        print(f"- {sid}: {_short(res['errors'][sid].split(': ', 1)[-1], 110)}")
    return res


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data")
    ap.add_argument("--fuzz-scale", type=int, default=10)
    ap.add_argument("--kills", type=int, default=100)
    ap.add_argument("--versions", type=int, default=10000)
    ap.add_argument("--cohort", type=int, default=200)
    ap.add_argument("--only", default="corpus,fuzz,faults,load,cohort")
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "reliability")
    args = ap.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    os.environ["NAPARI_PVS_DATA"] = str(args.data)
    parts = set(args.only.split(","))
    results: dict = {"cores": os.cpu_count()}
    with tempfile.TemporaryDirectory(prefix="pvs-reliability-") as tmp:
        work = Path(tmp)
        work.chmod(0o755)
        if "corpus" in parts:
            results["corpus"] = corpus(args.data.resolve(), work)
        if "fuzz" in parts:
            results["fuzz"] = fuzz(args.fuzz_scale, work)
        if "faults" in parts:
            results["faults"] = faults(work, args.kills)
        if "load" in parts:
            results["load"] = load(work, args.versions)
        if "cohort" in parts:
            results["cohort"] = cohort(work, args.cohort)
    out = args.out / "reliability.json"
    out.write_text(json.dumps(results, indent=1, default=str))
    print(f"\nwrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
