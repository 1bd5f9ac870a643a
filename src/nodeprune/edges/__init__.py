"""The edge phase: hard-concrete gates on the edges between the nodes a node circuit kept."""

from .forward import EdgeModel
from .graph import EdgeGraph
from .layout import EDGE_LAYOUTS, edge_layout

__all__ = ["EDGE_LAYOUTS", "EdgeGraph", "EdgeModel", "edge_layout"]
