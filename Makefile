# napari-pvs developer commands. Two entry points for users: `make demo` and `make test`.
# torch is pinned through constraints.txt so that pip takes the local CPU wheel instead of
# pulling gigabytes of CUDA packages.

PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
PIP_INSTALL := $(PIP) install -c constraints.txt
DATA ?= $(or $(NAPARI_PVS_DATA),../shared/data)

.PHONY: venv install install-test install-gui demo test benchmark benchmark-speed benchmark-real benchmark-rating-slices benchmark-proposals benchmark-al benchmark-registration benchmark-compare default-model accurate-model benchmark-default-model screenshots screenshots-annotation screenshots-al screenshots-registration screenshots-compare wheel-check benchmark-cohort benchmark-reliability benchmark-event-loop benchmark-onnx benchmark-distance-transform benchmark-mask-helpers clean

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip

venv: $(PY)

$(VENV)/.install-test: pyproject.toml constraints.txt | $(PY)
	$(PIP_INSTALL) torch==2.13.0
	$(PIP_INSTALL) -e ".[testing]"
	touch $@

# the demo needs napari and a Qt binding (the "gui" extra), not the test tools
$(VENV)/.install-gui: pyproject.toml constraints.txt | $(PY)
	$(PIP_INSTALL) torch==2.13.0
	$(PIP_INSTALL) -e ".[gui]"
	touch $@

install: $(VENV)/.install-test

install-test: $(VENV)/.install-test

install-gui: $(VENV)/.install-gui

## demo: create .venv, install napari-pvs with its GUI extra, open napari with napari-pvs docked
## and a real T2 loaded
demo: install-gui
	$(PY) -m napari_pvs.plugin.demo

## test: install the test extras, lint (ruff: pyflakes, bugbear, blind except), run the whole suite
## headless (pytest-xvfb starts Xvfb)
test: install-test
	$(VENV)/bin/ruff check .
	$(PY) -m pytest -q -ra

## benchmark: simulate, train mfnsde <= 10 min, segment the other visit; writes benchmarks/results/
benchmark: install
	$(PY) benchmarks/vertical_slice.py --data $(DATA)

## benchmark-speed: inference seconds and peak memory (CPU, 2 threads), training steps/s and validation share
benchmark-speed: install
	$(PY) benchmarks/inference_speed.py --data $(DATA)
	$(PY) benchmarks/training_speed.py --data $(DATA)

## benchmark-real: the shipped model (plus MODELS="name=ckpt ...") on the real scans without inserted PVS:
## detections per region and rating slice, reference agreement, test-retest, mimics, figures
benchmark-real: install
	$(PY) benchmarks/real_scans.py --data $(DATA) --model default=napari_pvs/weights/pvs_default.pt \
		$(foreach m,$(MODELS),--model $(m))

## benchmark-rating-slices: the 1 mm scans' rating slices and their neighbours, per reference PVS
## (slices spanned, in-slice contrast, the model's probability), counts on 0 / 3 / 5 mm slabs, figures
benchmark-rating-slices: install
	$(PY) benchmarks/rating_neighbours.py --data $(DATA)

## default-model: build the shipped default model from the shared data and install it as
## napari_pvs/weights/pvs_default.pt (about 50 min on 2 CPU cores): a liteunet student (small 2.5D
## U-Net, whole slices, ONNX Runtime) distilled from the accurate ensemble (pvs_accurate.pt) on every
## shared real T2 but the held-out patient01 visit 2 and patient07: the teacher's confident detections
## plus synthetic PVS over the measured width/contrast range, faint ones included. Time-budgeted: a
## rebuild gives the same recipe, not the same weights.
DEFAULT_MODEL_OUT = $(or $(OUT),/tmp/napari-pvs-default-model)
default-model: install
	$(PY) scripts/make_student_model.py --data $(DATA) --teacher napari_pvs/weights/pvs_accurate.pt \
		--out $(DEFAULT_MODEL_OUT)/student --minutes $(or $(MINUTES),25) --install

## accurate-model: build the shipped "accurate" model (napari_pvs/weights/pvs_accurate.pt, the default
## until 2026-12, about 30 min on 2 CPU cores): a deep ensemble of three 2.5D mfnsde (one neighbouring
## slice on each side as input), each trained for 8 min with domain randomisation and lesion-like hard
## negatives, seeds 0, 1 and 2. The full recipe (wide simulation, thick slices, pseudo-labels):
## scripts/make_default_model.py without the --no-*/--narrow-* flags.
DM_FLAGS = --data $(DATA) --narrow-simulation --no-thick-slices --no-pseudo-labels \
	--minutes 8 --lesion-mimics 8 --context-slices 1
accurate-model: install
	$(PY) scripts/make_default_model.py $(DM_FLAGS) --out $(DEFAULT_MODEL_OUT)/ctx1_s0 --seed 0
	$(PY) scripts/make_default_model.py $(DM_FLAGS) --out $(DEFAULT_MODEL_OUT)/ctx1_s1 --seed 1
	$(PY) scripts/make_default_model.py $(DM_FLAGS) --out $(DEFAULT_MODEL_OUT)/ctx1_s2 --seed 2
	$(PY) scripts/make_default_model.py --out $(DEFAULT_MODEL_OUT) --install --ensemble \
		$(DEFAULT_MODEL_OUT)/ctx1_s0/model.pt $(DEFAULT_MODEL_OUT)/ctx1_s1/model.pt $(DEFAULT_MODEL_OUT)/ctx1_s2/model.pt

## benchmark-default-model: the default, the accurate ensemble (torch and ONNX) end to end on a clinical and a
## 1 mm T2 (seconds, peak MB, ratio), then the real-scan benchmark of both and the visual counts beside them
benchmark-default-model: install
	$(PY) benchmarks/default_model_speed.py --data $(DATA)
	$(PY) benchmarks/real_scans.py --data $(DATA) --model default=napari_pvs/weights/pvs_default.pt \
		--model accurate=napari_pvs/weights/pvs_accurate.pt
	$(PY) benchmarks/visual_counts.py --compare benchmarks/results/real_scans/real_scans.json

## benchmark-proposals: recall and false candidates per slice of the vesselness and model proposals
## on synthetic PVS in real T2 scans
benchmark-proposals: install
	$(PY) benchmarks/annotation_proposals.py --data $(DATA)

## benchmark-al: active learning with a simulated annotator on synthetic PVS in real T2 scans:
## held-back DSC and detection F1 against annotated slices for bald, entropy, random and load
## selection, 3 repeats (about 75 min on 2 CPU cores); writes a plot and JSON
benchmark-al: install
	$(PY) benchmarks/active_learning.py --data $(DATA)

## benchmark-registration: atlas-placed BG/CSO rating slices against hand-placed ones on every shared T2;
## affine, classical and ACSGRegNet (trained here for 10 min of CPU) on the SynthSeg label maps;
## T1 -> T2 against the site's own transforms; patient01 visit 2 -> visit 1 (site transforms, carried brain and
## PVS masks); writes benchmarks/results/registration/registration.json
benchmark-registration: install
	$(PY) benchmarks/registration.py --data $(DATA)

## benchmark-compare: mfnsde, gloms, cmgraph, dynunet, unet and frangi on simulated PVS in the shared
## real T2s, cross-validated by subject, MINUTES (default 4) of training each per fold (about 70 min on
## 2 CPU cores for two folds); writes benchmarks/results/compare_models.{json,md,png}
benchmark-compare: install
	$(PY) benchmarks/compare_models.py --data $(DATA) --minutes $(or $(MINUTES),4)

## screenshots: napari with a real T2 and the predicted overlay, 2D and 3D, under Xvfb
screenshots: install
	xvfb-run -a -s "-screen 0 1600x1000x24" $(PY) scripts/screenshots.py --out screenshots

## screenshots-annotation: the Annotate PVS widget on a real T2 (candidates, progress, agreement)
screenshots-annotation: install
	xvfb-run -a -s "-screen 0 1600x1000x24" $(PY) scripts/screenshots_annotation.py --out screenshots

## screenshots-al: the Active learning widget's queue beside a real T2 (candidates, BALD map, history)
screenshots-al: install
	xvfb-run -a -s "-screen 0 1600x1000x24" $(PY) scripts/screenshots_active_learning.py --out screenshots

## screenshots-registration: atlas-placed rating slices (Count widget) and T1 -> T2 registration on real scans
screenshots-registration: install
	xvfb-run -a -s "-screen 0 1600x1000x24" $(PY) scripts/screenshots_registration.py --out screenshots

## screenshots-compare: the Compare models widget (shipped model, CKPTS="a.pt b.pt", Frangi) on a real T2
## with simulated PVS, 2D and 3D
screenshots-compare: install
	xvfb-run -a -s "-screen 0 1600x1000x24" $(PY) scripts/screenshots_compare.py --out screenshots \
		$(foreach c,$(CKPTS),--checkpoint $(c))

## benchmark-cohort: scans per hour in one process and on the local Dask cluster, seconds per stage,
## Dask's overhead per task, an estimate for 10,000 scans (N BIDS entries from the shared T2s, default 20)
benchmark-cohort: install
	$(PY) benchmarks/cohort.py --data $(DATA) --n $(or $(N),20)

## benchmark-reliability: the bad-input corpus table (CLI, API, napari), fuzzing x10, 100 SIGKILLs per writer,
## a 200-subject 10,000-version project opened, a cohort of 200 small volumes with 10 % bad
benchmark-reliability: install
	$(PY) benchmarks/reliability.py --data $(DATA)

## benchmark-onnx: napari-pvs segment with torch and with ONNX Runtime on two real T2s (2 threads): seconds, peak memory, agreement
benchmark-onnx: install-test
	$(PY) benchmarks/onnx_speed.py --data $(DATA)

## benchmark-distance-transform: the edt library against scipy in the brain, wide-CSF and candidate masks of every real T2
benchmark-distance-transform: install
	$(PY) benchmarks/distance_transform.py --data $(DATA)

## benchmark-mask-helpers: cc3d, fill_voids and box-limited dilations against the former scipy helpers in the brain and wide-CSF masks of every real T2
benchmark-mask-helpers: install
	$(PY) benchmarks/mask_helpers.py --data $(DATA)

## benchmark-event-loop: napari's event loop (10 ms timer) while the widgets segment, train, place slices and count
benchmark-event-loop: install
	xvfb-run -a -s "-screen 0 1600x1000x24" $(PY) benchmarks/event_loop.py --data $(DATA)

## wheel-check: build the wheel and sdist, install the wheel in a fresh venv outside the repository,
## run segment and locate-slices on a shared T2 there (prints the wheel's and the environment's size)
wheel-check:
	bash scripts/check_wheel_install.sh $(DATA)

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache
