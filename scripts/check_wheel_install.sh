#!/usr/bin/env bash
# Build the wheel and the sdist, install the wheel into a fresh virtual environment outside
# the repository, and run `napari-pvs segment` and `locate-slices` on a shared real T2 from
# there: the package works as users get it (templates from the nilearn wheel, the shipped
# default model inside the wheel). Prints the wheel's size and the environment's.
#   bash scripts/check_wheel_install.sh [DATA_DIR]      (make wheel-check)
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
DATA="${1:-${NAPARI_PVS_DATA:-$ROOT/../shared/data}}"
DATA="$(cd "$DATA" && pwd)"
WORK="$(mktemp -d /tmp/napari-pvs-wheel.XXXXXX)"
PY="${PYTHON:-python3}"
echo "== build (wheel and sdist) into $WORK/dist"
"$PY" -m venv "$WORK/build-env"
"$WORK/build-env/bin/pip" install -q --upgrade pip build
(cd "$ROOT" && "$WORK/build-env/bin/python" -m build --outdir "$WORK/dist" . 2>&1 | tee "$WORK/build.log" | tail -3)
# (PYTHONDONTWRITEBYTECODE=1 makes setuptools say "byte-compiling is disabled": not a packaging warning)
if grep -iE "^\s*(warning|SetuptoolsDeprecationWarning)" "$WORK/build.log" | grep -v "byte-compiling is disabled"; then
  echo "build warnings (above)"; exit 1
fi
WHEEL="$(ls "$WORK"/dist/*.whl)"
echo "wheel: $(basename "$WHEEL") $(du -h "$WHEEL" | cut -f1)"
echo "== fresh environment (engine and CLI, no GUI extra)"
"$PY" -m venv "$WORK/env"
"$WORK/env/bin/pip" install -q --upgrade pip
"$WORK/env/bin/pip" install -q -c "$ROOT/constraints.txt" torch==2.13.0
"$WORK/env/bin/pip" install -q -c "$ROOT/constraints.txt" "$WHEEL"
echo "environment: $(du -sh "$WORK/env" | cut -f1)"
cd "$WORK"                                     # outside the repository
T2="$DATA/open_ms/longitudinal/patient04/study1_T2W.nii.gz"
env -u NAPARI_PVS_DATA "$WORK/env/bin/napari-pvs" --version
env -u NAPARI_PVS_DATA "$WORK/env/bin/napari-pvs" segment "$T2" -o "$WORK/mask.nii.gz"
mkdir -p "$WORK/allen/atlas" && cp -r "$DATA/atlas/allen" "$WORK/allen/atlas/"
NAPARI_PVS_DATA="$WORK/allen" "$WORK/env/bin/napari-pvs" locate-slices "$T2" --json "$WORK/slices.json"
test -s "$WORK/mask.nii.gz" && test -s "$WORK/slices.json"
echo "OK: the wheel installs and runs from $WORK"
