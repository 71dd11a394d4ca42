"""Crash-test driver for the project store (run by tests/test_project.py, not by pytest).

``python _crash_writer.py PROJECT TRIALS SEED [MODE]``: imports the store once, then for each
trial forks a writer that opens the project and saves versions in a loop (a random
mask each time; MODE ``store`` calls ``Project.save_annotation``, ``session`` paints into an
``AnnotationSession`` (what the Annotate widget edits) and autosaves it, ``import-mask``
writes a mask file and runs ``napari-pvs project import-mask`` in the process; after each completed save it appends ``<version id> <sha256 of the mask>``
to ``PROJECT/../written.log`` and fsyncs it), kills the writer with SIGKILL after a random
delay, and checks the project as a newly started process would: it reopens it, runs
``PRAGMA integrity_check``, checks every version's file against its sha256 and mask content,
and checks that every completed save is in the catalogue (each version's content is
compared with what was saved once, the files' sha256 after every kill). Prints one JSON line per trial.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import signal
import sys
import time
from pathlib import Path

import numpy as np

from napari_pvs.engine.project import Project


def mask_digest(mask: np.ndarray) -> str:
    return hashlib.sha256((np.asarray(mask) > 0).astype(np.uint8).tobytes()).hexdigest()


def writer(root: Path, log: Path, seed: int) -> None:  # runs in the forked child
    rng = np.random.default_rng(seed)
    proj = Project.open(root, wait_s=10.0, verify=False)
    shape = proj.image("s1").shape
    with open(log, "a") as fh:
        while True:
            mask = (rng.random(shape) > 0.995).astype(np.uint8)
            status = {int(s): "done" for s in rng.choice(shape[0], size=3, replace=False)}
            kind = "autosave" if rng.random() < 0.5 else "manual"
            v = proj.save_annotation("s1", "crash", mask, slice_status=status, kind=kind)
            fh.write(f"{v.id} {mask_digest(mask)}\n")
            fh.flush()
            os.fsync(fh.fileno())


def session_writer(root: Path, log: Path, seed: int) -> None:  # the Annotate widget's autosave path
    from napari_pvs.engine.project import AnnotationSession

    rng = np.random.default_rng(seed)
    proj = Project.open(root, wait_s=10.0, verify=False)
    session = AnnotationSession.start(proj, "s1", "crash", autosave_s=0.0)
    shape = session.mask.shape
    with open(log, "a") as fh:
        while True:
            z, y, x = (int(rng.integers(0, n)) for n in shape)
            session.mask[z, max(0, y - 1):y + 2, max(0, x - 1):x + 2] = rng.integers(0, 2)   # a brush stroke
            session.set_status(z, "in_progress")
            v = session.maybe_autosave()
            if v is not None:
                fh.write(f"{v.id} {mask_digest(session.mask)}\n")
                fh.flush()
                os.fsync(fh.fileno())


def import_writer(root: Path, log: Path, seed: int) -> None:  # `napari-pvs project import-mask` in a loop
    import contextlib
    import io

    from napari_pvs.cli import main
    from napari_pvs.engine.io import save_volume

    rng = np.random.default_rng(seed)
    with Project.open(root, wait_s=10.0, verify=False) as proj:
        ref = proj.load_image(proj.image("s1").id)
    masks = root.parent / "masks"
    masks.mkdir(exist_ok=True)
    with open(log, "a") as fh:
        for i in range(10 ** 6):
            mask = (rng.random(ref.shape) > 0.995).astype(np.uint8)
            path = save_volume(masks / f"m{seed}_{i}.nii.gz", mask, ref)
            out = io.StringIO()
            with contextlib.redirect_stdout(out):
                code = main(["project", "import-mask", str(root), "s1", str(path), "--rater", "crash"])
            if code != 0:
                raise SystemExit(f"import-mask exited {code}")
            vid = int(out.getvalue().split()[1].rstrip(":"))
            fh.write(f"{vid} {mask_digest(mask)}\n")
            fh.flush()
            os.fsync(fh.fileno())


WRITERS = {"store": writer, "session": session_writer, "import-mask": import_writer}


def check(root: Path, log: Path, checked: set) -> dict:
    done = {}
    if log.exists():
        for line in log.read_text().splitlines():
            parts = line.split()
            if len(parts) == 2:
                done[int(parts[0])] = parts[1]
    with Project.open(root, wait_s=10.0, verify=False) as proj:
        integrity = proj.integrity_check()
        found = proj.verify()
        problems = [p for p in found if p.kind != "orphan"]
        orphans = [p for p in found if p.kind == "orphan"]
        bad_content = 0
        versions = proj.versions("s1", rater="crash")
        ids = {v.id for v in versions}
        for v in versions:             # each version's content once (versions never change)
            if v.id in done and v.id not in checked:
                bad_content += mask_digest(proj.load_version(v.id)) != done[v.id]
                checked.add(v.id)
        lost = sorted(set(done) - ids)
    return {"integrity": integrity, "problems": [str(p) for p in problems], "orphans": len(orphans),
            "bad_content": bad_content, "lost": lost, "versions": len(ids), "completed_saves": len(done)}


def main() -> None:
    root, trials, seed = Path(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
    mode = sys.argv[4] if len(sys.argv) > 4 else "store"
    run = WRITERS[mode]
    if mode == "import-mask":          # imported once here, so that each forked writer starts at once
        import napari_pvs.cli.project  # noqa: F401
        from napari_pvs.cli import main  # noqa: F401
    longest = 1.0 if mode == "import-mask" else 0.3
    log = root.parent / "written.log"
    rnd = random.Random(seed)
    checked: set = set()
    for trial in range(trials):
        pid = os.fork()
        if pid == 0:
            try:
                run(root, log, seed * 1000 + trial)
            finally:
                os._exit(0)
        time.sleep(rnd.uniform(0.02, longest))
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
        print(json.dumps({"trial": trial, **check(root, log, checked)}), flush=True)


if __name__ == "__main__":
    main()
