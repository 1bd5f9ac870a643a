"""nodeprune: circuit discovery by multi-granular node pruning."""

__version__ = "0.1.0"

from .circuit import Circuit  # noqa: E402
from .config import DiscoveryConfig  # noqa: E402
from .discovery import Discovery, discover  # noqa: E402
from .errors import NodepruneError  # noqa: E402
from .models import load_model, wrap_model  # noqa: E402

__all__ = [
    "Circuit",
    "Discovery",
    "DiscoveryConfig",
    "NodepruneError",
    "__version__",
    "discover",
    "load_model",
    "wrap_model",
]
