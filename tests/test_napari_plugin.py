"""napari plugin contributions: manifest, NIfTI reader and writer, sample data.

Runs headless (pytest-xvfb starts Xvfb). Real-data tests read the shared data folder
(``$NAPARI_PVS_DATA`` or ``../shared/data``) and are skipped when it is absent.
"""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

pytest.importorskip("napari")

from napari_pvs.plugin.reader import is_label_volume, napari_get_reader  # noqa: E402
from napari_pvs.plugin.writer import write_labels  # noqa: E402
from conftest import real_file  # noqa: E402
from napari_pvs.engine.errors import PVSInputError  # noqa: E402

MANIFEST = Path(__file__).resolve().parents[1] / "napari_pvs" / "napari.yaml"
T2_REL = "open_ms/longitudinal/patient01/study1_T2W.nii.gz"
GT_REL = "open_ms/longitudinal/patient01/gt.nii.gz"


# --------------------------------------------------------------------------- manifest


def test_manifest_validates_and_names_all_contributions():
    import npe2
    from npe2.manifest.utils import import_python_name

    mf = npe2.PluginManifest.from_file(MANIFEST)
    assert mf.name == "napari-pvs"
    assert mf.display_name == "napari-pvs"
    ids = {c.id for c in mf.contributions.commands}
    assert ids == {"napari-pvs.get_reader", "napari-pvs.write_labels", "napari-pvs.write_image",
                   "napari-pvs.make_sample_data",
                   "napari-pvs.make_train_widget", "napari-pvs.make_segment_widget",
                   "napari-pvs.make_count_widget", "napari-pvs.make_annotate_widget",
                   "napari-pvs.make_active_learning_widget",
                   "napari-pvs.make_registration_widget", "napari-pvs.make_compare_widget",
                   "napari-pvs.make_cohort_widget"}
    for cmd in mf.contributions.commands:
        assert callable(import_python_name(cmd.python_name)), cmd.python_name
    assert {w.display_name for w in mf.contributions.widgets} == {
        "Train PVS model", "Segment PVS", "Count PVS (BG/CSO)", "Annotate PVS", "Active learning",
        "Register images", "Compare models", "Cohort (whole study)"}
    (reader,) = mf.contributions.readers
    assert set(reader.filename_patterns) >= {"*.nii", "*.nii.gz", "*.mgz", "*.dcm"} and reader.accepts_directories
    labels_writer, image_writer = mf.contributions.writers
    assert [str(t) for t in labels_writer.layer_types] == ["labels"]
    assert [str(t) for t in image_writer.layer_types] == ["image"]
    assert set(labels_writer.filename_extensions) == set(image_writer.filename_extensions) == {".nii", ".nii.gz"}
    # the widgets also sit in napari's Layers menus (Segment / Annotate / Measure / Register)
    menus = {m: [item.command for item in items] for m, items in mf.contributions.menus.items()}
    assert "napari-pvs.make_segment_widget" in menus["napari/layers/segment"]
    assert "napari-pvs.make_annotate_widget" in menus["napari/layers/annotate"]
    assert menus["napari/layers/measure"] == ["napari-pvs.make_count_widget", "napari-pvs.make_cohort_widget"]
    (sample,) = mf.contributions.sample_data
    assert sample.key == "t2_simulated_pvs"
    # the installed distribution exposes the same manifest through its entry point
    installed = npe2.PluginManifest.from_distribution("napari-pvs")
    assert {c.id for c in installed.contributions.commands} == ids


def test_npe2_validate_cli():
    from npe2.cli import app
    from typer.testing import CliRunner

    res = CliRunner().invoke(app, ["validate", "--imports", str(MANIFEST)])
    assert res.exit_code == 0, res.output
    assert "valid" in res.output


def test_importing_plugin_modules_does_not_import_torch():
    import subprocess
    import sys

    code = ("import sys, napari_pvs.plugin.reader, napari_pvs.plugin.writer, napari_pvs.plugin.sample_data, "
            "napari_pvs.plugin.layers, napari_pvs.widgets.train, napari_pvs.widgets.segment, napari_pvs.widgets.count, "
            "napari_pvs.widgets.registration, napari_pvs.engine.registration; "
            "print('torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


# --------------------------------------------------------------------------- reader


def test_reader_rejects_other_files():
    assert napari_get_reader("image.tif") is None
    assert napari_get_reader(["a.nii.gz", "b.png"]) is None
    assert callable(napari_get_reader("scan.NII.GZ"))
    assert callable(napari_get_reader(["a.nii", "b.nii.gz"]))


def test_label_detection():
    assert is_label_volume(np.array([[0, 1], [2, 3]], dtype=np.uint8))
    assert not is_label_volume(np.arange(40, dtype=np.uint8).reshape(2, 20))  # too many values
    assert not is_label_volume(np.array([0, 1, 300], dtype=np.uint16))        # > 255
    assert not is_label_volume(np.array([0.0, 0.5, 1.0], dtype=np.float32))   # not whole numbers
    assert is_label_volume(np.array([0.0, 1.0], dtype=np.float32))            # float-saved mask
    assert not is_label_volume(np.array([0.0, np.nan], dtype=np.float32))
    assert is_label_volume(np.array([0, 2, 1000, 2035], dtype=np.int32), "aseg_mask.nii.gz")
    assert is_label_volume(np.array([0.0, 2.0, 530.0], dtype=np.float32), "training_seg_01.nii.gz")
    assert not is_label_volume(np.arange(300, dtype=np.uint16), "T2.nii.gz")


def test_reader_float_mask_becomes_integer_labels(tmp_path):
    arr = np.zeros((6, 5, 4), np.float32)
    arr[1, 2, 3] = 530.0
    path = tmp_path / "subject_seg.nii.gz"
    nib.save(nib.Nifti1Image(arr, np.eye(4)), str(path))
    ((data, _, kind),) = napari_get_reader(str(path))(str(path))
    assert kind == "labels" and data.dtype == np.uint16 and data[3, 2, 1] == 530


def test_reader_real_t2_geometry():
    path = real_file(T2_REL)
    img = nib.load(str(path))
    layers = napari_get_reader(str(path))(str(path))
    assert len(layers) == 1
    data, kwargs, kind = layers[0]
    assert kind == "image"
    assert kwargs["name"] == "study1_T2W"
    assert kwargs["colormap"] == "gray"
    # (Z, Y, X) = NIfTI (k, j, i) reversed
    assert data.shape == img.shape[::-1] == (36, 448, 406)
    np.testing.assert_array_equal(data[17], np.asarray(img.dataobj)[:, :, 17].T)
    zooms = img.header.get_zooms()[:3]
    np.testing.assert_allclose(kwargs["scale"], zooms[::-1], rtol=1e-5)
    md = kwargs["metadata"]
    np.testing.assert_array_equal(md["affine"], img.affine)
    assert isinstance(md["nifti_header"], nib.Nifti1Header)
    assert md["nifti_header"].get_data_shape() == img.shape
    assert md["source_path"] == str(path)
    assert md["orientation"] == "".join(nib.aff2axcodes(img.affine)) == "LPS"


def test_reader_real_mask_is_labels():
    path = real_file(GT_REL)
    ((data, kwargs, kind),) = napari_get_reader(str(path))(str(path))
    assert kind == "labels"
    assert data.dtype.kind in "iu" and set(np.unique(data)) <= {0, 1}
    assert data.shape == nib.load(str(path)).shape[::-1]


def test_viewer_opens_nifti_with_plugin(make_napari_viewer, tmp_path):
    # a small oblique, anisotropic NIfTI written here: opened through napari's own machinery
    affine = np.array([[0.0, 0.0, 3.0, -10.0], [-0.8, 0.0, 0.0, 20.0], [0.0, 0.6, 0.0, 5.0], [0, 0, 0, 1]])
    arr = np.random.default_rng(0).integers(0, 1000, size=(20, 24, 7)).astype(np.int16)  # (i, j, k)
    path = tmp_path / "small_T2.nii.gz"
    nib.save(nib.Nifti1Image(arr, affine), str(path))
    viewer = make_napari_viewer()
    (layer,) = viewer.open(str(path), plugin="napari-pvs")
    assert layer.__class__.__name__ == "Image"
    assert layer.data.shape == (7, 24, 20)
    np.testing.assert_allclose(layer.scale, (3.0, 0.6, 0.8), rtol=1e-6)
    np.testing.assert_array_equal(layer.metadata["affine"], nib.load(str(path)).affine)  # float32 in file
    np.testing.assert_allclose(layer.metadata["affine"], affine, atol=1e-6)
    np.testing.assert_array_equal(layer.data, arr.transpose(2, 1, 0))


def test_reader_bad_file_one_line_error(tmp_path):
    bad = tmp_path / "broken.nii.gz"
    bad.write_bytes(b"this is not a nifti file")
    with pytest.raises(PVSInputError) as info:
        napari_get_reader(str(bad))(str(bad))
    msg = str(info.value)
    assert "broken.nii.gz" in msg and "\n" not in msg
    four_d = tmp_path / "fourd.nii"
    nib.save(nib.Nifti1Image(np.zeros((4, 4, 4, 3), np.float32), np.eye(4)), str(four_d))
    with pytest.raises(PVSInputError, match="fourd.nii.*4 dimensions"):
        napari_get_reader(str(four_d))(str(four_d))


# --------------------------------------------------------------------------- writer


def _assert_same_geometry(written: Path, source: nib.Nifti1Image):
    out = nib.load(str(written))
    np.testing.assert_array_equal(out.affine, source.affine)
    np.testing.assert_array_equal(out.header.get_qform(), source.header.get_qform())
    np.testing.assert_array_equal(out.header.get_sform(), source.header.get_sform())
    assert int(out.header["qform_code"]) == int(source.header["qform_code"])
    assert int(out.header["sform_code"]) == int(source.header["sform_code"])
    assert out.header.get_data_shape() == source.header.get_data_shape()[:3]
    np.testing.assert_array_equal(out.header.get_zooms()[:3], source.header.get_zooms()[:3])
    for key in ("xyzt_units", "quatern_b", "quatern_c", "quatern_d", "qoffset_x", "qoffset_y", "qoffset_z"):
        np.testing.assert_array_equal(out.header[key], source.header[key])
    return out


def test_writer_round_trip_real_t2(tmp_path):
    path = real_file(T2_REL)
    src = nib.load(str(path))
    ((data, kwargs, _),) = napari_get_reader(str(path))(str(path))
    labels = np.zeros(data.shape, dtype=np.uint8)
    labels[17, 200:210, 150:153] = 1
    labels[5, 10, 20] = 2
    meta = {"name": "mask", "scale": kwargs["scale"], "translate": (0, 0, 0), "metadata": kwargs["metadata"]}
    (written,) = write_labels(str(tmp_path / "sub" / "pvs_mask.nii.gz"), labels, meta)
    out = _assert_same_geometry(Path(written), src)
    assert out.get_data_dtype() == np.uint8
    np.testing.assert_array_equal(np.asarray(out.dataobj), labels.transpose(2, 1, 0))
    assert not list((tmp_path / "sub").glob(".*part*"))  # atomic: no temporary file left
    # and reading it back gives a labels layer on the same grid
    ((back, bkw, kind),) = napari_get_reader(written)(written)
    assert kind == "labels"
    np.testing.assert_array_equal(back, labels)
    np.testing.assert_array_equal(bkw["metadata"]["affine"], src.affine)


def test_layer_save_uses_plugin_writer(make_napari_viewer, tmp_path):
    affine = np.array([[-0.5, 0.0, 0.1, 90.0], [0.0, -0.5, 0.0, 100.0], [0.0, 0.05, 4.0, -70.0], [0, 0, 0, 1]])
    src_path = tmp_path / "t2.nii.gz"
    src = nib.Nifti1Image(np.random.default_rng(1).random((30, 32, 6)).astype(np.float32), affine)
    src.header.set_qform(affine, code=2)
    src.header.set_sform(affine, code=1)
    nib.save(src, str(src_path))
    src = nib.load(str(src_path))
    viewer = make_napari_viewer()
    (image,) = viewer.open(str(src_path), plugin="napari-pvs")
    labels = viewer.add_labels(np.zeros(image.data.shape, np.uint8), name="drawn",
                               scale=image.scale, metadata={k: image.metadata[k] for k in ("affine", "nifti_header")})
    labels.data[2, 5:8, 5:8] = 1
    out = tmp_path / "drawn.nii.gz"
    written = labels.save(str(out), plugin="napari-pvs")
    assert Path(written[0]) == out
    res = _assert_same_geometry(out, src)
    np.testing.assert_array_equal(np.asarray(res.dataobj).transpose(2, 1, 0), labels.data)


def test_writer_without_geometry_uses_the_layer_transform(tmp_path, caplog):
    labels = np.zeros((5, 6, 7), np.uint16)
    labels[1, 2, 3] = 300
    meta = {"name": "drawn", "scale": (3.0, 0.5, 0.25), "translate": (6.0, 1.0, 2.0), "metadata": {}}
    with caplog.at_level("WARNING", logger="napari_pvs.plugin.writer"):
        (written,) = write_labels(str(tmp_path / "drawn"), labels, meta)
    assert written.endswith("drawn.nii.gz")
    assert any("no source geometry" in r.getMessage() for r in caplog.records)
    out = nib.load(written)
    # napari-pvs world frame (S, P, L mm): data X runs to the subject's left, Y to posterior
    np.testing.assert_allclose(out.affine, [[-0.25, 0, 0, -2.0], [0, -0.5, 0, -1.0], [0, 0, 3.0, 6.0],
                                            [0, 0, 0, 1]])
    assert out.get_data_dtype() == np.uint16
    np.testing.assert_array_equal(np.asarray(out.dataobj).transpose(2, 1, 0), labels)


def test_writer_rejects_labels_off_the_source_grid(tmp_path):
    path = real_file(T2_REL)
    ((_, kwargs, _),) = napari_get_reader(str(path))(str(path))
    with pytest.raises(PVSInputError, match="does not match the source image grid"):
        write_labels(str(tmp_path / "x.nii.gz"), np.zeros((36, 10, 10), np.uint8),
                     {"metadata": kwargs["metadata"], "scale": kwargs["scale"]})
    assert not (tmp_path / "x.nii.gz").exists()


# --------------------------------------------------------------------------- sample data


def test_sample_data_simulates_off_the_gui_thread(make_napari_viewer, qtbot):
    from qtpy.QtCore import QTimer

    path = real_file(T2_REL)
    src = nib.load(str(path))
    viewer = make_napari_viewer()
    ticks = []
    timer = QTimer()
    timer.timeout.connect(lambda: ticks.append(1))
    timer.start(20)
    layers = viewer.open_sample("napari-pvs", "t2_simulated_pvs")
    # returned at once: the T2 and an empty mask, filled in by a worker thread
    assert [type(lyr).__name__ for lyr in layers] == ["Image", "Labels"]
    image, mask = layers
    assert image.metadata["simulation"] == "running" and mask.data.sum() == 0
    qtbot.waitUntil(lambda: mask.metadata.get("simulation") == "done", timeout=120_000)
    timer.stop()
    assert len(ticks) >= 5, "the GUI event loop was blocked while simulating"
    assert image.data.shape == mask.data.shape == src.shape[::-1]
    np.testing.assert_allclose(image.scale, mask.scale)
    np.testing.assert_allclose(image.scale, src.header.get_zooms()[:3][::-1], rtol=1e-5)
    for lyr in layers:
        np.testing.assert_array_equal(lyr.metadata["affine"], src.affine)
    n_pvs = int(mask.data.sum())
    assert 50 < n_pvs < 0.001 * mask.data.size  # PVS present, and sparse
    assert set(np.unique(mask.data)) == {0, 1}
    # the PVS are brighter than the original T2 where the mask is on, identical elsewhere
    orig = np.asarray(src.dataobj).transpose(2, 1, 0).astype(np.float32)
    on = mask.data > 0
    assert image.data[on].mean() > orig[on].mean()
    changed = image.data != orig
    assert changed[on].mean() > 0.95
    assert changed.sum() < 20 * on.sum()  # only the PVS and their partial-volume rims differ
    assert image.metadata["simulated_pvs"] is True and image.metadata["n_simulated_pvs"] == 60


def test_sample_data_without_viewer_returns_the_simulation():
    real_file(T2_REL)
    from napari_pvs.plugin.sample_data import load_sample

    (img, ikw, ikind), (mask, mkw, mkind) = load_sample()
    assert (ikind, mkind) == ("image", "labels") and mask.sum() > 50
    assert ikw["metadata"]["simulation"] == "done" and img[mask > 0].mean() > 0
