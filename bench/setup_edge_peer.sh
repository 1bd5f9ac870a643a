#!/usr/bin/env bash
# Build the virtual environment of the edge-level peer (auto-circuit) for bench/edge_peer.py.
# Idempotent: does nothing when .venv-peer already holds exactly bench/requirements-edge-peer.txt.
#
#   bench/setup_edge_peer.sh            # creates ./.venv-peer from the repository root
#   PEER_VENV=/tmp/v PYTHON=python3.11 bench/setup_edge_peer.sh
#
# It is separate from nodeprune's .venv because auto-circuit needs TransformerLens < 3,
# numpy < 2 and transformers 4.x. torch==2.13.0 goes in first, on its own: that resolves to
# the local CPU wheel, where any other version would download a multi-GB CUDA build; the
# requirements pin the same version so nothing installed after it can replace it.
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="${PEER_VENV:-$repo/.venv-peer}"
python="${PYTHON:-python3.11}"
requirements="$repo/bench/requirements-edge-peer.txt"
stamp="$venv/.requirements-edge-peer.txt"

if [[ -f "$stamp" ]] && cmp -s "$requirements" "$stamp" \
    && "$venv/bin/python" -c "import auto_circuit, transformer_lens" 2>/dev/null; then
    echo "edge peer venv up to date: $venv"
    exit 0
fi

if [[ ! -x "$venv/bin/python" ]]; then
    "$python" -m venv "$venv"
fi
torch_pin="$(grep -E '^torch==' "$requirements")"
"$venv/bin/python" -m pip install --quiet "$torch_pin"
"$venv/bin/python" -m pip install --quiet -r "$requirements"
"$venv/bin/python" -m pip check
"$venv/bin/python" -c "import auto_circuit, transformer_lens, torch; print('torch', torch.__version__)"
cp "$requirements" "$stamp"
echo "edge peer venv ready: $venv"
