#!/usr/bin/env bash
# Run the GPU checks (benchmarks/gpu/check.py) in one call of the device tool (issue 17):
#
#   bash benchmarks/gpu/check.sh [--out DIR] [check.py options]     # on the H200 machine: carry .whl
#   bash benchmarks/gpu/check.sh --cpu --out /tmp/gpucheck           # the dry run here
#
# On the GPU it installs the wheelhouse that benchmarks/gpu/prepare.sh built (.whl/) into /tmp/site, over the
# image's own packages but under its torch (no torch wheel travels), and writes JSON under $OUT (the device
# tool's folder that comes back), else --out, else ./gpu-check-out. With --cpu the install is skipped: the dry
# run uses this machine's environment, which already holds the pinned versions (a manylinux cp312 wheelhouse
# would not match a local 3.11 anyway). Python: $PYTHON, else python3 if it imports torch, else the .venv of
# this checkout or of the main checkout it is a worktree of.
set -euo pipefail
cd "$(dirname "$0")/../.."
CPU=0; OUTDIR=${OUT:-gpu-check-out}; BUDGET=420; REST=()
while [ $# -gt 0 ]; do
  case $1 in
    --cpu) CPU=1; shift ;;
    --out) OUTDIR=$2; shift 2 ;;
    --budget-seconds) BUDGET=$2; shift 2 ;;
    *) REST+=("$1"); shift ;;
  esac
done
WHEELS=${WHEELS:-.whl}

pick_python() {
  if [ -n "${PYTHON:-}" ]; then echo "$PYTHON"; return; fi
  if python3 -c "import torch" 2>/dev/null; then echo python3; return; fi
  local main; main=$(dirname "$(git rev-parse --path-format=absolute --git-common-dir 2>/dev/null || echo .)")
  for venv in .venv "$main/.venv"; do
    if [ -x "$venv/bin/python" ]; then echo "$venv/bin/python"; return; fi
  done
  echo "check.sh: no Python with torch: set PYTHON" >&2; exit 1
}
PY=$(pick_python)

if [ $CPU -eq 0 ]; then
  compgen -G "$WHEELS/*.whl" >/dev/null \
    || { echo "check.sh: no wheels in $WHEELS: run benchmarks/gpu/prepare.sh here first and carry .whl" >&2; exit 1; }
  # --no-deps: prepare.sh already named every missing requirement; torch stays the image's (CUDA build).
  "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site \
    "$WHEELS"/*.whl 2>/tmp/check-pip.log \
    || { echo "check.sh: installing the wheelhouse failed: $(tail -1 /tmp/check-pip.log)" >&2; exit 1; }
  SITE=/tmp/site:
  # 8 minutes at most on the GPU: the device's 15 minutes also pay for the start and the transfers.
  [ "${BUDGET%.*}" -le 480 ] || { echo "check.sh: --budget-seconds $BUDGET is over the 480 s the device allows" >&2; exit 1; }
  MODE=()
else
  SITE=
  MODE=(--cpu)
fi
export PYTHONPATH="${SITE}$PWD/src:$PWD/cli${PYTHONPATH:+:$PYTHONPATH}"
export HF_HUB_OFFLINE=1 PYTHONUNBUFFERED=1
# A hung measurement must not eat the device time: the report is rewritten after each one, so what was measured
# before the stop comes back; 90 s over the budget lets the last started measurement finish.
timeout --signal=INT $((${BUDGET%.*} + 90)) "$PY" benchmarks/gpu/check.py "${MODE[@]}" --out "$OUTDIR" \
  --budget-seconds "$BUDGET" ${REST[@]+"${REST[@]}"}
