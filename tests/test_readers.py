"""Readers of the files raters have: DICOM series (against dcm2niix), the nine transfer
syntaxes, FreeSurfer MGZ (against nibabel), BIDS datasets into a project and out as a
derivative, and the one-line refusals of bad DICOM, MGZ and BIDS input."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from bad_inputs import structured_report
from conftest import real_file
from nibabel.affines import apply_affine

from napari_pvs.engine.errors import PVSInputError
from napari_pvs.engine.io import list_series, load_volume

SERIES = "dicom/studyforrest_t1w"
TS = "dicom/transfer_syntaxes/In"


def _series_dir() -> Path:
    return real_file(f"{SERIES}/N2D_0001.dcm").parent


@pytest.fixture(scope="module")
def t1_dicom():
    return load_volume(_series_dir())


def test_dicom_series_equals_dcm2niix(t1_dicom, tmp_path):
    """The 384-file oblique series: same pixels and geometry as dcm2niix's NIfTI (the
    dcm2niix wheel converts it here), through the integer voxel map between the two."""
    exe = shutil.which("dcm2niix") or str(Path(sys.executable).parent / "dcm2niix")
    if not Path(exe).exists():
        pytest.skip("the dcm2niix wheel is not installed")
    subprocess.run([exe, "-z", "n", "-b", "n", "-f", "ref", "-o", str(tmp_path), str(_series_dir())],
                   check=True, capture_output=True)
    ref = nib.load(str(tmp_path / "ref.nii"))
    ours = t1_dicom
    assert ours.shape == (384, 384, 274) and ref.shape == (274, 384, 384)
    vox = np.linalg.inv(ref.affine) @ ours.affine          # ours (i, j, k) -> dcm2niix (i, j, k)
    m = np.rint(vox)
    assert np.abs(vox - m).max() < 1e-4                     # a flip/permutation, no resampling
    assert np.abs(ref.affine @ m - ours.affine).max() < 1e-3   # same world mm (oblique included)
    o = ours.data.transpose(2, 1, 0)
    ijk = np.indices(o.shape).reshape(3, -1).T
    out = np.zeros(ref.shape, o.dtype)
    out[tuple(apply_affine(m, ijk).astype(int).T)] = o[tuple(ijk.T)]
    np.testing.assert_array_equal(out, np.asarray(ref.dataobj))
    # the patient's orientation: oblique, mostly L-P-S voxel axes, 0.667 x 0.667 x 0.700 mm
    assert ours.orientation == ("L", "P", "S")
    np.testing.assert_allclose(ours.voxel_size, (0.6667, 0.6667, 0.7), atol=1e-3)


def test_any_file_of_the_series_reads_the_series(t1_dicom):
    one = load_volume(_series_dir() / "N2D_0200.dcm")
    np.testing.assert_array_equal(one.data, t1_dicom.data)
    np.testing.assert_allclose(one.affine, t1_dicom.affine)


def test_no_patient_data_in_the_volume(t1_dicom, tmp_path):
    from napari_pvs.engine.io import save_volume

    assert t1_dicom.meta["modality"] == "MR" and t1_dicom.meta["series_number"] == "401"
    text = json.dumps({k: str(v) for k, v in t1_dicom.meta.items()})
    out = save_volume(tmp_path / "t1.nii.gz", t1_dicom.data, t1_dicom)
    raw = nib.load(str(out)).header.binaryblock
    for secret in ("Jane", "Doe"):                          # the series' patient name is Jane_Doe
        assert secret not in text and secret.encode() not in raw


def test_nine_transfer_syntaxes_decode_to_identical_pixels():
    folder = real_file(f"{TS}/1.dcm").parent
    series = list_series(folder)
    assert [s.number for s in series] == [str(i) for i in range(1, 10)]
    arrays = [load_volume(folder / f"{i}.dcm").data for i in range(1, 10)]
    assert arrays[0].shape == (1, 384, 384) and arrays[0].dtype == np.uint16
    for i, a in enumerate(arrays[1:], 2):
        np.testing.assert_array_equal(a, arrays[0], err_msg=f"{i}.dcm")
    with pytest.raises(PVSInputError, match=r"9 DICOM series here, choose one .*series 1 'ax_asc_35sl'"):
        load_volume(folder)
    assert load_volume(folder, series=3).meta["series_number"] == "3"


def test_mgz_equals_nibabel_and_masks_are_written_as_nifti(tmp_path):
    from napari_pvs.engine.io import save_volume

    path = real_file("mgz/norm.mgz")
    ref = nib.load(str(path))
    vol = load_volume(path)
    assert vol.shape == (256, 256, 256) and vol.orientation == ("L", "I", "A") and vol.data.dtype == np.uint8
    np.testing.assert_array_equal(vol.data, np.asarray(ref.dataobj).transpose(2, 1, 0))
    np.testing.assert_allclose(vol.affine, ref.affine)
    out = nib.load(str(save_volume(tmp_path / "m.nii.gz", (vol.data > 100).astype(np.uint8), vol)))
    np.testing.assert_allclose(out.affine, ref.affine, atol=1e-5)


def _bad_dicom_folder(tmp_path, name, files):
    d = tmp_path / name
    d.mkdir()
    for f in files:
        shutil.copy(f, d / Path(f).name)
    return d


def test_bad_dicom_and_mgz_input_is_one_line(tmp_path):
    series = sorted(_series_dir().glob("*.dcm"))
    cases = []
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "notes.txt").write_text("no images here")
    cases.append((empty, "no DICOM image in this folder"))
    gap = _bad_dicom_folder(tmp_path, "gap", series[:100] + series[103:140])
    cases.append((gap, "missing slice(s): a gap of 2.67 mm after slice 100 of 137"))
    dup = _bad_dicom_folder(tmp_path, "dup", series[:20])
    shutil.copy(series[5], dup / "copy_of_6.dcm")
    cases.append((dup, "duplicated slice position"))
    bad_mgz = tmp_path / "bad.mgz"
    bad_mgz.write_bytes(b"\x00" * 100)
    cases.append((bad_mgz, "bad.mgz: named .mgz but not gzip-compressed"))
    folder_named_nifti = tmp_path / "scan.nii.gz"
    folder_named_nifti.mkdir()
    cases.append((folder_named_nifti, "is a directory"))
    txt = tmp_path / "report.txt"
    txt.write_text("x")
    cases.append((txt, "not a readable scan"))
    for path, needle in cases:
        with pytest.raises(PVSInputError) as err:
            load_volume(path)
        msg = str(err.value)
        assert needle in msg and "\n" not in msg, (path, msg)


def test_a_multi_echo_series_is_refused(tmp_path):
    """Six slices of the real series written twice by SimpleITK, as echo 1 and echo 2
    (same positions, one series UID): a 4D series, refused in one line."""
    import SimpleITK as sitk

    folder = tmp_path / "multi_echo"
    folder.mkdir()
    for i, f in enumerate(sorted(_series_dir().glob("*.dcm"))[:6]):
        reader = sitk.ImageFileReader()
        reader.SetFileName(str(f))
        img = reader.Execute()
        for echo in (1, 2):
            for key in reader.GetMetaDataKeys():
                img.SetMetaData(key, reader.GetMetaData(key))
            img.SetMetaData("0018|0086", str(echo))
            writer = sitk.ImageFileWriter()
            writer.KeepOriginalImageUIDOn()
            writer.SetFileName(str(folder / f"echo{echo}_{i}.dcm"))
            writer.Execute(img)
    with pytest.raises(PVSInputError, match=r"multi_echo: a multi-echo series \(echo numbers 1, 2\)"):
        load_volume(folder)


def test_a_dicom_object_without_an_image_is_refused(tmp_path):
    report = structured_report(tmp_path / "report.dcm")   # the corpus's builder (tests/bad_inputs.py)
    with pytest.raises(PVSInputError, match="report.dcm: a DICOM object that holds no readable image"):
        load_volume(report)
    with pytest.raises(PVSInputError, match="no DICOM image in this folder"):
        load_volume(tmp_path)


# --------------------------------------------------------------------------- BIDS


@pytest.fixture
def bids_root(tmp_path):
    """A BIDS tree of shared real T2s (links): two subjects, one with two sessions and a
    second run, one with a FLAIR."""
    root = tmp_path / "bids"
    t2a = real_file("open_ms/longitudinal/patient01/study1_T2W.nii.gz")
    t2b = real_file("open_ms/longitudinal/patient01/study2_T2W.nii.gz")
    fl = real_file("open_ms/longitudinal/patient04/study1_FLAIR.nii.gz")
    t2c = real_file("open_ms/longitudinal/patient04/study1_T2W.nii.gz")
    links = {"sub-01/ses-1/anat/sub-01_ses-1_T2w.nii.gz": t2a, "sub-01/ses-2/anat/sub-01_ses-2_T2w.nii.gz": t2b,
             "sub-01/ses-2/anat/sub-01_ses-2_run-2_T2w.nii.gz": t2b, "sub-04/anat/sub-04_T2w.nii.gz": t2c,
             "sub-04/anat/sub-04_FLAIR.nii.gz": fl}
    for rel, src in links.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).symlink_to(src)
    (root / "dataset_description.json").write_text(json.dumps({"Name": "test", "BIDSVersion": "1.10.0"}))
    (root / "participants.tsv").write_text("participant_id\tage\tsex\nsub-01\t45\tF\nsub-04\t61\tM\n")
    return root


def test_bids_entities_by_pybids():
    from napari_pvs.engine.io.bids import bids_entities

    e = bids_entities("x/sub-01/ses-1/anat/sub-01_ses-1_acq-tse_run-2_T2w.nii.gz")
    assert (e.subject, e.session, e.acquisition, e.run, e.suffix) == ("01", "1", "tse", "2", "T2w")
    assert e.subject_id == "sub-01_ses-1" and e.role == "T2"
    assert bids_entities("sub-02_FLAIR.nii.gz").role == "FLAIR"
    assert not bids_entities("study1_T2W.nii.gz").is_bids


def test_bids_dataset_into_a_project_and_out_as_a_derivative(bids_root, tmp_path):
    from napari_pvs.engine.io.bids import bids_entities, derivative_path
    from napari_pvs.engine.project import Project
    from napari_pvs.engine.usecases import Segmentation

    with Project.create(tmp_path / "proj") as proj:
        added = proj.add_bids(bids_root)
        got = sorted((r.subject, r.role) for r in added)
        assert got == [("sub-01_ses-1", "T2"), ("sub-01_ses-2", "T2"), ("sub-01_ses-2", "T2_run-2"),
                       ("sub-04", "FLAIR"), ("sub-04", "T2")]
        assert proj.add_bids(bids_root) == []                    # already there: nothing twice
        one = proj.add_image(bids_root / "sub-04/anat/sub-04_T2w.nii.gz", subject="other")
        assert (one.subject, one.role) == ("other", "T2")
    # a derivative: the BIDS layout, a dataset description with the model's sha256
    src = bids_root / "sub-01/ses-2/anat/sub-01_ses-2_run-2_T2w.nii.gz"
    vol = load_volume(src)
    from napari_pvs.engine.inference import Prediction

    prob = np.zeros(vol.shape, np.float32)
    prob[10, 100:103, 100:103] = 0.9
    ckpt = tmp_path / "model.pt"
    ckpt.write_bytes(b"weights")
    seg = Segmentation(vol, Prediction(prob, (prob >= 0.5).astype(np.uint8), 0.5, 1.0), "mfnsde", ckpt)
    out = tmp_path / "derivatives" / "napari-pvs"
    written = seg.write_derivative(out)
    rel = sorted(p.relative_to(out).as_posix() for p in written)
    assert rel == ["sub-01/ses-2/anat/sub-01_ses-2_run-2_desc-pvs_mask.nii.gz",
                   "sub-01/ses-2/anat/sub-01_ses-2_run-2_desc-pvs_probseg.nii.gz"]
    desc = json.loads((out / "dataset_description.json").read_text())
    assert desc["DatasetType"] == "derivative" and desc["GeneratedBy"][0]["Name"] == "napari-pvs"
    import hashlib

    assert desc["GeneratedBy"][0]["ModelSHA256"] == hashlib.sha256(b"weights").hexdigest()
    mask = nib.load(str(out / rel[0]))
    assert int(np.asarray(mask.dataobj).sum()) == 9 and np.allclose(mask.affine, nib.load(str(src)).affine)
    # counts as a .tsv with its column sidecar
    from napari_pvs.engine.usecases import ScanRating, count_rating

    rating = ScanRating(count_rating(vol.with_data(seg.prediction.mask), 10, 20))
    tsv = rating.write_derivative(out, src)
    assert tsv == derivative_path(out, bids_entities(src), "counts")
    lines = tsv.read_text().splitlines()
    assert lines[0].split("\t")[:5] == ["region", "slice_index", "left", "right", "total"]
    assert lines[1].split("\t")[:5] == ["BG", "10", lines[1].split("\t")[2], lines[1].split("\t")[3], "1"]
    cols = json.loads(tsv.with_suffix(".json").read_text())
    assert "Potter" in cols["grade"]["Description"] and "mm^2" in cols["area_mm2"]["Description"]


def test_bids_root_without_t2w_is_one_line(tmp_path):
    from napari_pvs.engine.io.bids import find_bids_scans

    root = tmp_path / "b"
    (root / "sub-01" / "anat").mkdir(parents=True)
    (root / "sub-01" / "anat" / "sub-01_T1w.nii.gz").write_bytes(b"")
    with pytest.raises(PVSInputError, match="no T2w scan under sub-"):
        find_bids_scans(root)
    with pytest.raises(PVSInputError, match="not a BIDS dataset"):
        find_bids_scans(tmp_path / "nothing")


def test_rating_slices_with_the_template_from_the_nilearn_wheel(tmp_path, monkeypatch):
    """A data folder with only the Allen atlas (no ../shared): the MNI template comes from
    the installed nilearn package, checked against the registry's sha256, nothing downloaded."""
    pytest.importorskip("nilearn")
    t2 = real_file("stroke/T2.nii.gz")
    allen = real_file("atlas/allen/AllenAtlas.nii.gz")
    data = tmp_path / "data"
    (data / "atlas" / "allen").mkdir(parents=True)
    shutil.copy(allen, data / "atlas" / "allen" / allen.name)
    monkeypatch.setenv("NAPARI_PVS_DATA", str(data))
    import napari_pvs.engine.data.registry as registry

    monkeypatch.setattr(registry, "_dev_data_dir", lambda: tmp_path / "no-shared-here")

    def no_download(*_a, **_k):
        raise AssertionError("nothing may be downloaded")

    monkeypatch.setattr(registry, "_pooch", lambda root, env=None: type(
        "P", (), {"fetch": staticmethod(lambda rel, **k: str(root / rel) if (root / rel).is_file() else no_download())})())
    from napari_pvs.engine.data import fetch
    from napari_pvs.engine.registration.atlas import TEMPLATE
    from napari_pvs.engine.usecases import place_rating_slices_job
    from napari_pvs.engine.progress import run_to_end

    assert "nilearn" in fetch(TEMPLATE).parts
    placed = run_to_end(place_rating_slices_job(load_volume(t2), with_regions=False))
    n = load_volume(t2).shape[placed.slices.axial_axis]
    assert 0 <= placed.slices.bg < placed.slices.cso < n and placed.slices.midline.source == "atlas"


def test_napari_opens_a_dicom_folder_and_an_mgz_in_world_mm(make_napari_viewer, tmp_path):
    pytest.importorskip("napari")
    from napari_pvs.plugin.reader import napari_get_reader

    folder = _series_dir()
    assert callable(napari_get_reader(str(folder))) and callable(napari_get_reader(str(real_file("mgz/norm.mgz"))))
    assert napari_get_reader(str(tmp_path / "missing_folder")) is None
    viewer = make_napari_viewer()
    (t1,) = viewer.open(str(folder), plugin="napari-pvs")
    assert type(t1).__name__ == "Image" and t1.data.shape == (384, 384, 274)
    np.testing.assert_allclose(t1.scale, (0.6667, 0.6667, 0.7), atol=1e-3)
    assert t1.metadata["series_number"] == "401" and "Jane" not in str(t1.metadata)
    # the world position of a voxel is the patient's (LPS mm: napari-pvs's world frame)
    vol = load_volume(folder)
    ras = vol.voxel_to_world([100, 200, 150])
    np.testing.assert_allclose(t1.data_to_world((100, 200, 150)), (ras[2], -ras[1], -ras[0]), atol=1e-3)
    (mgz,) = viewer.open(str(real_file("mgz/norm.mgz")), plugin="napari-pvs")
    assert mgz.data.shape == (256, 256, 256) and mgz.name == "norm"
    # the image writer: a float layer back to NIfTI on the DICOM's grid
    from napari_pvs.plugin.writer import write_image

    (out,) = write_image(str(tmp_path / "t1_copy"), t1.data.astype(np.float32), {"metadata": t1.metadata})
    back = nib.load(out)
    assert back.get_data_dtype() == np.float32 and np.allclose(back.affine, vol.affine)
