"""The names of the files nodeprune writes in a run folder, in one place.

A ``discover`` run folder (runs.py, checkpoint_io.py, runlock.py):

* ``circuit.json``: the result; ``circuit.empty.json`` instead when every node inside the
  layers was pruned (unless ``--allow-empty``).
* ``checkpoint.safetensors`` + ``checkpoint.json``: the run state.
* ``.nodeprune.lock`` while a run is on; ``.nodeprune-replaced/`` (and the
  ``-replacing``/``-restoring`` folders of a move in progress) while an ``--overwrite``
  run keeps the run it replaces.

``nodeprune edges RUN`` works in ``RUN/edges/``: ``edge_circuit.json`` (the edge circuit),
``edge_curve.json`` (with ``--curve``), its checkpoint files and its lock.

A ``compare`` folder: ``compare.json``, ``curves.json``, ``claim.json``, ``compare.txt``
and ``circuits/METHOD.json``. ``report`` adds ``report.html`` and ``figures/``;
``stability --out`` writes ``stability.json`` where asked. A sweep folder: ``sweep.json``,
``results.json``, ``results.csv``, ``sweep_curve.png`` and ``trials/HASH/circuit.json``.
"""

from pathlib import Path

from .errors import NodepruneError

CIRCUIT_FILE = "circuit.json"
EMPTY_CIRCUIT_FILE = "circuit.empty.json"
CHECKPOINT_TENSORS_FILE = "checkpoint.safetensors"
CHECKPOINT_META_FILE = "checkpoint.json"
LOCK_FILE = ".nodeprune.lock"
#: The run an --overwrite replaces, until the new run has produced something.
ASIDE_DIR = ".nodeprune-replaced"
#: The same while files are moved into it, or back out of it (undone after a kill).
MOVING_ASIDE_DIR = ".nodeprune-replacing"
MOVING_BACK_DIR = ".nodeprune-restoring"

EDGES_DIR = "edges"
EDGE_CIRCUIT_FILE = "edge_circuit.json"
#: ``nodeprune edges RUN --curve``: the edge-level faithfulness curve, CPR and CMD.
EDGE_CURVE_FILE = "edge_curve.json"

COMPARE_FILE = "compare.json"
CURVES_FILE = "curves.json"
CLAIM_FILE = "claim.json"
COMPARE_TEXT_FILE = "compare.txt"
CIRCUITS_DIR = "circuits"
#: A comparison's discoveries, each kept as soon as it is found, so that running the
#: same comparison into the same folder again continues a stopped one (compare_reuse.py).
DISCOVERIES_DIR = "discoveries"

REPORT_FILE = "report.html"
FIGURES_DIR = "figures"
STABILITY_FILE = "stability.json"

SWEEP_FILE = "sweep.json"
RESULTS_JSON = "results.json"
RESULTS_CSV = "results.csv"
CURVE_PNG = "sweep_curve.png"
TRIALS_DIR = "trials"


def circuit_path(path: str | Path) -> Path:
    """A run folder (holding circuit.json) or a circuit file."""
    p = Path(path)
    return p / CIRCUIT_FILE if p.is_dir() else p


def existing_circuit_file(path: str | Path) -> Path:
    """:func:`circuit_path`, refused in one line unless it is a file (checked before a
    command imports torch, so a wrong path is answered at once)."""
    p = circuit_path(path)
    if not p.is_file():
        raise NodepruneError(f"circuit file {p} does not exist")
    return p
