#!/usr/bin/env bash
# A user's install, without the Makefile: a fresh venv in a temporary folder,
# `pip install torch==2.13.0` then `pip install .` (no extras), then `nodeprune --help`, a
# tiny discovery on a tiny random model saved to a folder (no hub access), `evaluate` on
# its circuit, and `report`, which needs the plots extra and must say so in one line.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
PYTHON="${PYTHON:-python3.11}"
work="$(mktemp -d "${TMPDIR:-/tmp}/nodeprune-fresh.XXXXXX")"
trap 'rm -rf "$work"' EXIT
start=$SECONDS

# The working tree's files (tracked and new, not ignored), not the folder itself: pip's
# build would leave build/ and *.egg-info in it, and a developer's .venv would come along.
mkdir "$work/src"
(cd "$root" && git ls-files -z --cached --others --exclude-standard \
  | tar --null --files-from=- --ignore-failed-read -cf - 2>/dev/null) | tar -xf - -C "$work/src"

"$PYTHON" -m venv "$work/venv"
bin="$work/venv/bin"
# --no-compile: no .pyc for all of torch and transformers up front (imports compile theirs)
"$bin/python" -m pip install -q --no-compile torch==2.13.0
"$bin/python" -m pip install -q --no-compile "$work/src"
echo "fresh-install: installed in $((SECONDS - start)) s: $("$bin/python" -m pip list 2>/dev/null \
  | grep -iE '^(torch|transformers|tokenizers|numpy) ' | tr -s ' ' | paste -sd, -)"

cd "$work"  # away from the source tree: what runs is the installed package
export OMP_NUM_THREADS=1 MKL_NUM_THREADS=1
TIMEFORMAT=%R
help_s="$( { time "$bin/nodeprune" --help >/dev/null; } 2>&1 )"
echo "fresh-install: nodeprune --help answered in $help_s s"
"$bin/python" "$root/.ci/make_tiny_model.py" "$work/tiny"
"$bin/nodeprune" discover --model "$work/tiny" --task ioi --steps 2 --n-train 8 --n-val 0 \
  --n-test 8 --batch-size 4 --eval-batch-size 8 --no-filter --quiet --allow-empty \
  --out "$work/run" >"$work/discover.log" 2>&1 || { cat "$work/discover.log"; exit 1; }
test -s "$work/run/circuit.json"
"$bin/nodeprune" evaluate "$work/run/circuit.json" --json >"$work/evaluate.log" 2>&1 \
  || { cat "$work/evaluate.log"; exit 1; }

# Without the plots extra, `report` is one line naming it (exit 2), not a traceback.
status=0
"$bin/nodeprune" report "$work/run" 2>"$work/report.err" || status=$?
if [ "$status" -ne 2 ] || [ "$(wc -l <"$work/report.err")" -ne 1 ] \
  || ! grep -q "nodeprune\[plots\]" "$work/report.err"; then
  echo "fresh-install: report without matplotlib should be one line naming nodeprune[plots]:"
  cat "$work/report.err"
  exit 1
fi
echo "fresh-install: ok in $((SECONDS - start)) s (help, discover, evaluate, report hint)"
