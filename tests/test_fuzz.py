"""Fuzzing the readers with hypothesis (derandomised, so CI sees the same cases each run):
NIfTI-1 headers and data written byte by byte, arrays of any dtype and shape through the scan
path, and DICOM series with changed tags. Each case must give a sane 3D volume or a
``PVSInputError``, within a time limit. 300 + 150 + 100 = 550 cases here; more in
``benchmarks/reliability.py``."""

from __future__ import annotations

import contextlib
import os
import signal
import tempfile
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from conftest import data_root
from fuzz_cases import (TIME_LIMIT_S, check_volume, dicom_mutations, nifti_files, scan_arrays, write_fuzzed_dicom,
                        write_fuzzed_nifti)
from hypothesis import HealthCheck, given, settings

from napari_pvs.engine.errors import PVSInputError
from napari_pvs.engine.io import load_scan, load_volume
from napari_pvs.engine.preprocess import normalize_percentile

#: multiply the number of cases (``PVS_FUZZ_SCALE=10`` in the benchmark)
SCALE = max(1, int(os.environ.get("PVS_FUZZ_SCALE", "1")))
FUZZ = settings(derandomize=True, deadline=None, database=None, print_blob=True,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


@contextlib.contextmanager
def time_limit(seconds: float):
    """Fail a case that runs longer than ``seconds`` (SIGALRM: a hang, not just slowness)."""
    def on_alarm(signum, frame):
        raise TimeoutError(f"case ran over {seconds} s")

    old = signal.signal(signal.SIGALRM, on_alarm)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)


#: when set, one line per case ("test name, outcome") is appended to this file (the benchmark counts them)
COUNTS = os.environ.get("PVS_FUZZ_COUNTS")


def _read(fn, *args, **kw):
    """``fn`` under the time limit: a volume, or None when refused with PVSInputError."""
    outcome = "volume"
    try:
        with time_limit(TIME_LIMIT_S):
            try:
                return fn(*args, **kw)
            except PVSInputError as exc:
                assert "\n" not in str(exc)
                outcome = "refused"
                return None
    finally:
        if COUNTS:
            with open(COUNTS, "a") as fh:
                fh.write(f"{os.environ.get('PYTEST_CURRENT_TEST', '?').split('::')[-1].split(' ')[0]}\t{outcome}\n")


@settings(FUZZ, max_examples=300 * SCALE)
@given(spec=nifti_files())
def test_fuzzed_nifti_headers_give_a_volume_or_pvs_input_error(spec):
    with tempfile.TemporaryDirectory() as d:
        path = write_fuzzed_nifti(spec, Path(d))
        vol = _read(load_volume, path)
        if vol is not None:
            check_volume(vol)


@settings(FUZZ, max_examples=150 * SCALE)
@given(case=scan_arrays())
def test_fuzzed_arrays_through_the_scan_path(case):
    data, zooms = case
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "a.nii.gz"
        nib.save(nib.Nifti1Image(data, np.diag([*zooms, 1.0])), str(path))
        vol = _read(load_scan, path)
        if vol is not None:
            check_volume(vol)
            assert vol.data.max() > vol.data.min()          # constant scans are refused
            norm = normalize_percentile(vol.data.astype(np.float32))
            assert np.isfinite(norm).all()


def _series_files(n=4):
    first = data_root() / "dicom" / "studyforrest_t1w" / "N2D_0001.dcm"
    if not first.exists():
        return None
    return sorted(first.parent.glob("*.dcm"))[:n]


@pytest.mark.skipif(_series_files() is None, reason="needs the shared DICOM series")
@settings(FUZZ, max_examples=100 * SCALE)
@given(mut=dicom_mutations())
def test_fuzzed_dicom_tags_give_a_volume_or_pvs_input_error(mut):
    muts, which = mut
    with tempfile.TemporaryDirectory() as d:
        folder = write_fuzzed_dicom(_series_files(), muts, which, Path(d) / "series")
        vol = _read(load_volume, folder)
        if vol is not None:
            check_volume(vol)
