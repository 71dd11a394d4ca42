"""Load: a large project opens fast (files whose size and mtime are unchanged are not hashed
again) and an altered file is still found. The 10,000-version trial is in
``benchmarks/reliability.py``."""

from __future__ import annotations

import os

from load_helpers import build_large_project, time_open


def test_a_project_of_200_subjects_and_2000_versions_opens_in_under_a_second(tmp_path):
    proj = build_large_project(tmp_path / "big", n_subjects=200, n_versions=2000)
    cold, (problems, n) = time_open(proj)         # first open: every file hashed once, then cached
    assert problems == [] and n == 200
    warm, (problems, n) = time_open(proj)
    assert problems == [] and warm < 1.0, (cold, warm)
    assert (proj / ".cache" / "verified.json").is_file()
    # an edit behind the catalogue's back changes size or mtime: hashed again and reported
    victim = sorted((proj / "annotations").rglob("*.nii.gz"))[17]
    data = bytearray(victim.read_bytes())
    data[-5] ^= 0xFF
    victim.write_bytes(bytes(data))
    _, (problems, _) = time_open(proj)
    assert [(p.kind, p.path.name) for p in problems] == [("altered", victim.name)]
    # same size, mtime put back: the cache would miss it, a full check (no cache) does not
    st = victim.stat()
    os.utime(victim, ns=(st.st_atime_ns, st.st_mtime_ns))
    (proj / ".cache" / "verified.json").unlink()
    _, (problems, _) = time_open(proj)
    assert [p.kind for p in problems] == ["altered"]
