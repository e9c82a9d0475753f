#!/usr/bin/env bash
# Build the wheelhouse that benchmarks/gpu/check.sh installs on the H200 machine (issue 17): that machine has no
# network, so every pinned package its image lacks or holds at another version travels as a wheel, in one
# git-ignored folder carried by the device tool (`carry: [".whl"]`, 64 MiB per call in all).
#
#   bash benchmarks/gpu/prepare.sh            # -> .whl/ at the repo root
#   bash benchmarks/gpu/prepare.sh DIR        # another folder
#
# Idempotent: a wheel already there is not fetched again. Needs pip and PyPI here, nothing else.
set -euo pipefail
cd "$(dirname "$0")/../.."
DEST=${1:-.whl}
PY=${PYTHON:-python3}
BUDGET_MIB=64
mkdir -p "$DEST"

# Why each one travels (the image, read 2026-11: transformers 5.17.0, huggingface_hub 1.33.0, tokenizers 0.23.2,
# accelerate 1.15.0, no adapters / datasets / bitsandbytes / seqeval / dill / multiprocess / pydantic):
WHEELS=(
  transformers==4.57.6       # pinned; the image has 5.17.0
  adapters==1.3.0            # pinned; absent
  peft==0.21.2               # pinned; the image's version is unknown, so the pin travels
  datasets==5.0.1            # pinned; absent
  huggingface-hub==0.36.2    # pinned; the image's 1.33.0 breaks transformers 4.57.6 (huggingface-hub<1.0)
  tokenizers==0.22.2         # transformers 4.57.6 wants >=0.22.0,<=0.23.0; the image's 0.23.2 is outside it
  typer==0.29.2              # pinned; the image's version is unknown
  pydantic==2.14.4           # typer 0.29.2 needs pydantic>=2.5.3; absent
  pydantic-core==2.50.5      # pydantic 2.14.4 pins it
  annotated-types==0.8.0     # pydantic; absent
  typing-inspection==0.4.5   # pydantic; absent
  typing-extensions==4.16.0  # pydantic wants >=4.16.0; the image's version is unknown
  dill==0.4.1                # datasets (<0.4.2); absent
  multiprocess==0.70.19      # datasets (<0.70.20); absent
  fsspec==2026.6.0           # datasets wants <=2026.6.0; the image's version is unknown
  bitsandbytes==0.50.2       # pinned; absent; 4/8-bit only
)
# accelerate 1.15.0, safetensors, rich, pyyaml, numpy, matplotlib, xxhash, pyarrow, pandas, httpx, hf-xet,
# scikit-learn (seqeval), shellingham, annotated-doc and torch are the image's own and do not travel.

fetch() {  # fetch NAME==VERSION: one wheel, no dependencies (each one is named above)
  local spec=$1 name=${1%%==*} version=${1##*==} norm
  norm=$(echo "$name" | tr '-' '_')
  # also where an earlier run set aside a wheel over the travel budget: idempotent, no second download
  if compgen -G "$DEST/${norm}-${version}-*.whl" >/dev/null || compgen -G "$DEST.big/${norm}-${version}-*.whl" >/dev/null; then
    return 0
  fi
  "$PY" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_24_x86_64 \
    --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 --platform manylinux1_x86_64 \
    --platform any -d "$DEST" "$spec" >/dev/null 2>"$DEST/.pip-error" \
    || { echo "prepare.sh: could not download $spec for cp312 manylinux x86_64: $(tail -1 "$DEST/.pip-error")" >&2; exit 1; }
}
for spec in "${WHEELS[@]}"; do fetch "$spec"; done

# seqeval is an sdist only on PyPI: build its (pure-Python) wheel here.
if ! compgen -G "$DEST/seqeval-1.2.2-*.whl" >/dev/null; then
  "$PY" -m pip wheel -q --no-deps -w "$DEST" seqeval==1.2.2 >/dev/null 2>"$DEST/.pip-error" \
    || { echo "prepare.sh: could not build the seqeval 1.2.2 wheel: $(tail -1 "$DEST/.pip-error")" >&2; exit 1; }
fi
rm -f "$DEST/.pip-error"

# One version of each: two stop the whole install there.
dupes=$(ls "$DEST"/*.whl | xargs -n1 basename | cut -d- -f1 | tr 'A-Z-' 'a-z_' | sort | uniq -d)
[ -z "$dupes" ] || { echo "prepare.sh: two versions of $dupes in $DEST: remove the older one" >&2; exit 1; }

# Every wheel's Requires-Dist must be met by another wheel here or by the image (names from KINDS.md).
"$PY" - "$DEST" <<'PY'
import re, sys, zipfile
from pathlib import Path
IMAGE = set("""accelerate numpy safetensors matplotlib rich pyyaml pyarrow pandas xxhash requests tqdm filelock
packaging regex psutil torch httpx hf_xet scikit_learn shellingham annotated_doc aiohttp click""".split())
dest = Path(sys.argv[1])
norm = lambda n: re.sub(r"[-_.]+", "_", n).lower()
have = {norm(w.name.split("-")[0]) for w in dest.glob("*.whl")} | IMAGE
missing = []
for wheel in sorted(dest.glob("*.whl")):
    with zipfile.ZipFile(wheel) as z:
        meta = next(n for n in z.namelist() if n.endswith(".dist-info/METADATA"))
        for line in z.read(meta).decode().splitlines():
            if line.startswith("Requires-Dist:") and "extra ==" not in line and "Windows" not in line:
                name = norm(re.match(r"Requires-Dist:\s*([A-Za-z0-9_.-]+)", line).group(1))
                if name not in have:
                    missing.append(f"{wheel.name.split('-')[0]} needs {name}")
if missing:
    sys.exit("prepare.sh: requirements met by neither the wheelhouse nor the image: " + "; ".join(missing))
PY

# Sizes, and what the 64 MiB travel budget (the whole working tree, not only the wheels) leaves out.
total=0
for w in "$DEST"/*.whl; do
  size=$(stat -c %s "$w"); total=$((total + size))
  printf '%8.1f MiB  %s\n' "$(awk "BEGIN{print $size/1048576}")" "$(basename "$w")"
done
printf '%8.1f MiB  total (%s)\n' "$(awk "BEGIN{print $total/1048576}")" "$DEST"
bnb=$(compgen -G "$DEST/bitsandbytes-*.whl" | head -1 || true)
if [ $((total)) -gt $((BUDGET_MIB * 1048576 - 4 * 1048576)) ]; then
  rest=$((total - $(stat -c %s "$bnb")))
  if [ -n "$bnb" ] && [ $rest -le $((BUDGET_MIB * 1048576 - 4 * 1048576)) ]; then
    echo "does not fit $BUDGET_MIB MiB with the repo: $(basename "$bnb"); moved to $DEST.big/: the check runs without 4/8-bit"
    mkdir -p "$DEST.big" && mv "$bnb" "$DEST.big/"
  else
    echo "prepare.sh: the wheelhouse is over the $BUDGET_MIB MiB travel budget (less ~4 MiB for the repo) even without bitsandbytes" >&2; exit 1
  fi
else
  echo "fits the $BUDGET_MIB MiB travel budget (with ~4 MiB left for the repo)"
fi
if compgen -G "$DEST.big/*.whl" >/dev/null; then
  for w in "$DEST.big"/*.whl; do
    printf 'set aside, over the budget: %.1f MiB  %s (4/8-bit run without it)\n' \
      "$(awk "BEGIN{print $(stat -c %s "$w")/1048576}")" "$(basename "$w")"
  done
fi
