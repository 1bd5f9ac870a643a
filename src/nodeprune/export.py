"""Export a circuit for other tools.

* ``eap-ig``: the graph JSON of EAP-IG (``{"cfg", "nodes", "edges"}``; nodes ``input``,
  ``a{L}.h{H}``, ``m{L}``, ``logits``; edges ``parent->child``, with ``<q>``/``<k>``/``<v>``
  on edges into heads). Kept nodes are in the graph and so is every edge between two
  kept nodes.
* ``tl-hooks``: the TransformerLens hook names of the kept nodes, with the head and
  neuron indices that are kept at each hook.
* ``mib``: a submission folder for the MIB circuit-localization track
  (:mod:`nodeprune.export_mib`).

Every format reads the circuit's effective masks (:meth:`Circuit.effective_masks`): a
head of a pruned attention block or layer is pruned even where head gates were off.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from .circuit import Circuit
from .export_eap import (
    BOS_KEY,
    BOS_NOTE,
    PARALLEL_FAMILIES,
    bos_fields,
    eap_config,
    eap_edges,
    eap_graph,
    eap_node_names,
    guess_parallel_attn_mlp,
    node_kept,
    node_neurons,
    node_scores,
    prompts_start_with_bos,
    resolve_parallel,
)
from .export_formats import EXPORT_OPTIONS, check_format
from .export_tl import tl_hooks
from .fsutil import write_json

__all__ = [
    "BOS_KEY",
    "BOS_NOTE",
    "EXPORT_FORMATS",
    "PARALLEL_FAMILIES",
    "bos_fields",
    "eap_config",
    "eap_edges",
    "eap_graph",
    "eap_node_names",
    "export_circuit",
    "guess_parallel_attn_mlp",
    "node_kept",
    "node_neurons",
    "node_scores",
    "prompts_start_with_bos",
    "resolve_parallel",
    "tl_hooks",
    "write_export",
]


def _mib(circuit: Circuit, **options: Any) -> dict[str, Any]:
    from .export_mib import mib_graph

    return mib_graph(circuit, **options)[1]


#: The writer of each format of export_formats.EXPORT_OPTIONS (which owns the names and
#: their options): name -> function(circuit, **options) -> JSON-able dict.
_WRITERS: dict[str, Callable[..., dict[str, Any]]] = {
    "eap-ig": eap_graph,
    "tl-hooks": tl_hooks,
    "mib": _mib,
}
EXPORT_FORMATS = {name: _WRITERS[name] for name in EXPORT_OPTIONS}


def _options(fmt: str, options: dict[str, Any]) -> dict[str, Any]:
    # Options belong to one format each; a format ignores the others' options.
    return {k: v for k, v in options.items() if k in EXPORT_OPTIONS[fmt]}


def export_circuit(circuit: Circuit, fmt: str, **options: Any) -> dict[str, Any]:
    """The JSON document of one format (for ``mib``: the importance-score file)."""
    check_format(fmt)
    return EXPORT_FORMATS[fmt](circuit, **_options(fmt, options))


def write_export(circuit: Circuit, fmt: str, out: str | Path, **options: Any) -> Path:
    """Write one format to ``out``: a file, or for ``mib`` the submission folder, under
    which ``<task>_<model>/importances.json`` is written. Returns the file written."""
    check_format(fmt)
    if fmt == "mib":
        from .export_mib import write_mib

        return write_mib(circuit, out, **_options(fmt, options))[0]
    # Atomically and never through a link, so a failed write leaves no 0-byte or
    # half-written file (see fsutil).
    return write_json(Path(out), export_circuit(circuit, fmt, **options), indent=None)
