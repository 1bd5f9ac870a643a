"""Every hyperparameter of a discovery run, with validation and TOML loading."""

from __future__ import annotations

import copy
import math
import tomllib
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, get_type_hints

from .dtypes import AUTOCAST_CHOICES, DTYPES
from .errors import NodepruneError
from .granularity import DEFAULT_GRANULARITIES, GRANULARITIES, check_granularity_names
from .suggest import closest

# No torch import at module level: the command line builds its flags from this module,
# and `nodeprune --help` must not wait seconds for torch.

#: Upper bound on the number of prompts per split: far beyond any sensible run, and it
#: stops a typo from generating examples for hours.
MAX_EXAMPLES = 1_000_000
#: Upper bound on the optimisation steps (and batch sizes), for the same reason: a
#: mistyped ``steps = 1e23`` is refused instead of running "step 985 of 10**23".
MAX_STEPS = 10_000_000
#: Device types that hold no data (``meta``) cannot run a model.
DATALESS_DEVICES = ("meta",)


#: Per-granularity sparsity weights lam_g in sum_g lam_g * E[L0]_g / N_g. 0.2 each is the
#: calibrated default (measured on SmolLM2 IOI, see README "Calibration"): with the
#: size normalisation, a larger weight makes AdamW prune faster than the KL signal can
#: hold important nodes, and the binarised circuit loses faithfulness.
DEFAULT_LAM_G = {g: 0.2 for g in GRANULARITIES}
#: ``--optimizer`` values (optim.py builds them): AdamW, or Adam with one second moment
#: per granularity.
OPTIMIZERS = ("adamw", "granular_adam")
#: Where the gates start (gate_init.py): a seeded uniform spread, or the attribution order.
GATE_INITS = ("uniform", "attribution")


@dataclass
class DiscoveryConfig:
    model: str = "smollm2-135m"
    task: str = "ioi"
    task_file: str | None = None
    ablation: str = "corrupted"
    granularities: list[str] = field(default_factory=lambda: list(DEFAULT_GRANULARITIES))
    lam: float = 0.95
    lam_g: dict[str, float] = field(default_factory=lambda: dict(DEFAULT_LAM_G))
    sparsity_warmup: float = 0.33
    margin_weight: float = 0.0
    steps: int = 150
    batch_size: int = 16
    lr: float = 0.5
    weight_decay: float = 0.0
    grad_clip: float = 1.0
    init_log_alpha: float = 2.0
    init_spread: float = 0.5
    #: uniform: log-alphas spread at random (from ``seed``) over init_log_alpha +-
    #: init_spread; attribution: the same interval in the order of the gates'
    #: attribution scores on the train prompts (gate_init.py).
    gate_init: str = "uniform"
    n_train: int = 128
    #: Validation prompts: the target's final selection is measured on all of them. On
    #: SmolLM2 IOI, 123 left validation and test 0.06-0.10 apart on every one of 8 coarse
    #: circuits (one sample's luck, shared by every circuit scored on it), so a target met
    #: on validation missed on test; the error falls as 1/sqrt(n). 375 agreed with test to
    #: within 0.01; 256 keeps ``make demo`` near 10 minutes.
    n_val: int = 256
    #: The target controller measures the first of them every ``target_every`` steps: a
    #: rough reading steers training, and it costs a pass per measurement.
    n_val_controller: int = 128
    #: Held-out test prompts: on SmolLM2 IOI 64 gave a 95% faithfulness interval of about
    #: +-0.14; its width falls as 1/sqrt(n), so seeds are compared above evaluation noise.
    n_test: int = 256
    filter: bool = True
    eval_batch_size: int = 32
    seed: int = 0
    #: Seed of the prompts (train, validation and test splits). Kept apart from ``seed``
    #: (gate initialisation, hard-concrete noise, batch order) so that a run at another
    #: seed is compared on the same prompts; a saved config without it used ``seed``.
    data_seed: int = 0
    device: str = "cpu"
    dtype: str = "float32"
    #: Mixed precision for the training passes only (evaluation stays in ``dtype``).
    autocast: str = "off"
    #: Target modes (at most one; see targets.py): the smallest circuit whose normalized
    #: faithfulness on the validation prompts is at least this, ...
    target_faithfulness: float | None = None
    #: ... or whose KL to the full model is at most this, ...
    target_kl: float | None = None
    #: ... or that keeps at most this fraction of attention + MLP neurons.
    target_size: float | None = None
    #: granular_adam (one second moment per granularity; see optim.py), or adamw. Granular
    #: Adam is the default since it removes the cause of the collapses: AdamW moves a gate
    #: only the sparsity term pushes at the full learning rate (README "Calibration").
    optimizer: str = "granular_adam"
    #: Steps between the controller's measurements of the binarised circuit.
    target_every: int = 10
    #: Step of the controller's log sparsity weight per measurement (at full slack).
    target_rate: float = 0.5

    def validate(self) -> DiscoveryConfig:
        from .ablations import parse_ablation
        from .hard_concrete import LOG_ALPHA_LIMIT

        current = {f.name: getattr(self, f.name) for f in fields(self)}
        for key, value in check_types(current, "config").items():
            setattr(self, key, value)
        self.granularities = check_granularity_names(list(self.granularities))
        parse_ablation(self.ablation)
        if self.dtype not in DTYPES:
            raise NodepruneError(f"dtype must be one of {', '.join(DTYPES)}, not {self.dtype!r}")
        if self.autocast not in AUTOCAST_CHOICES:
            raise NodepruneError(
                f"autocast must be one of {', '.join(AUTOCAST_CHOICES)}, not {self.autocast!r}"
            )
        if self.gate_init not in GATE_INITS:
            raise NodepruneError(
                f"gate_init must be one of {', '.join(GATE_INITS)}, not {self.gate_init!r}"
            )
        if self.optimizer not in OPTIMIZERS:
            raise NodepruneError(
                f"optimizer must be one of {', '.join(OPTIMIZERS)}, not {self.optimizer!r}"
            )
        for key in self.lam_g:
            if key not in GRANULARITIES:
                raise NodepruneError(
                    f"lam_g has unknown granularity {key!r}{closest(key, GRANULARITIES)}"
                )
        self.lam_g = complete_lam_g({k: float(v) for k, v in self.lam_g.items()})
        lim = LOG_ALPHA_LIMIT
        checks = [
            ("lam", 0.0 <= self.lam <= 1.0, "in [0, 1]"),
            ("sparsity_warmup", 0.0 <= self.sparsity_warmup <= 1.0, "in [0, 1]"),
            ("steps", 0 < self.steps <= MAX_STEPS, f"in [1, {MAX_STEPS}]"),
            ("batch_size", 0 < self.batch_size <= MAX_EXAMPLES, f"in [1, {MAX_EXAMPLES}]"),
            (
                "eval_batch_size",
                0 < self.eval_batch_size <= MAX_EXAMPLES,
                f"in [1, {MAX_EXAMPLES}]",
            ),
            ("lr", self.lr > 0, "> 0"),
            ("weight_decay", self.weight_decay >= 0, ">= 0"),
            ("grad_clip", self.grad_clip > 0, "> 0"),
            ("margin_weight", self.margin_weight >= 0, ">= 0"),
            ("init_spread", 0 <= self.init_spread <= 2 * LOG_ALPHA_LIMIT, f"in [0, {2 * lim}]"),
            ("init_log_alpha", abs(self.init_log_alpha) <= lim, f"in [-{lim}, {lim}]"),
            ("n_train", 0 < self.n_train <= MAX_EXAMPLES, f"in [1, {MAX_EXAMPLES}]"),
            ("n_val", 0 <= self.n_val <= MAX_EXAMPLES, f"in [0, {MAX_EXAMPLES}]"),
            ("n_val_controller", self.n_val_controller > 0, "> 0"),
            ("n_test", 0 < self.n_test <= MAX_EXAMPLES, f"in [1, {MAX_EXAMPLES}]"),
            ("seed", 0 <= self.seed < 2**63, "in [0, 2**63)"),
            ("data_seed", 0 <= self.data_seed < 2**63, "in [0, 2**63)"),
            ("target_every", self.target_every > 0, "> 0"),
            ("target_rate", self.target_rate >= 0, ">= 0"),
            ("model", self.model.strip() != "", "a model name or path"),
        ]
        for name, ok, rule in checks:
            if not ok:
                raise NodepruneError(f"{name} must be {rule}, got {getattr(self, name)!r}")
        for key, value in self.lam_g.items():
            if value < 0:
                raise NodepruneError(f"lam_g.{key} must be >= 0, got {value}")
        from .target_spec import target_from_config

        target_from_config(self)  # one target at most, and one that can be met
        check_device(self.device)
        return self

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any], source: str = "config") -> DiscoveryConfig:
        if not isinstance(data, dict):
            raise NodepruneError(
                f"{source}: expected a table of settings, not {type(data).__name__}"
            )
        known = {f.name for f in fields(cls)}
        for key in data:
            if key not in known:
                raise NodepruneError(f"{source}: unknown key {key!r}{closest(str(key), known)}")
        values = check_types(data, source)
        for key in values.get("lam_g", {}):
            if key not in GRANULARITIES:
                raise NodepruneError(
                    f"{source}: unknown key {key!r} in [lam_g]{closest(key, GRANULARITIES)}"
                )
        return cls(**values)

    @classmethod
    def from_saved(cls, data: dict[str, Any], source: str = "config") -> DiscoveryConfig:
        """A config read back from a circuit or a checkpoint, as it ran: those written
        before ``data_seed`` existed drew their prompts with ``seed``, and those written
        before ``optimizer`` existed trained with AdamW; they keep doing so."""
        if isinstance(data, dict) and "data_seed" not in data and "seed" in data:
            data = {**data, "data_seed": data["seed"]}
        if isinstance(data, dict) and "optimizer" not in data:
            data = {**data, "optimizer": "adamw"}
        return cls.from_dict(data, source)


def complete_lam_g(lam_g: Mapping[str, float]) -> dict[str, float]:
    """Every granularity's weight: the given ones over the defaults."""
    return {**DEFAULT_LAM_G, **lam_g}


def config_with(config: DiscoveryConfig, changes: Mapping[str, Any]) -> DiscoveryConfig:
    """A new config: ``config``'s settings with ``changes`` over them (DiscoveryConfig
    fields; a misspelt one is an error, not a setting silently ignored). ``config``
    itself is left as it was."""
    if not changes:
        return copy.deepcopy(config)
    return DiscoveryConfig.from_dict({**asdict(config), **changes}, source="settings")


#: How a per-granularity weight is spelt as one flat key: ``lam_g.<granularity>`` (the
#: flags' destinations, the sweep axes, the result table's columns).
LAM_G_PREFIX = "lam_g."


#: The target that the ``discover`` and ``compare`` commands aim at when given neither a
#: target nor a sparsity weight (lam, lam_g): ask for the behaviour, get the smallest
#: circuit that keeps it, so circuits of two methods, tasks or models are compared at the
#: same faithfulness. 0.85 is the faithfulness the lam-mode default (lam 0.95) reached on
#: SmolLM2 IOI (0.83), at about the same size. The Python API keeps lam mode by default.
COMMAND_TARGET = ("target_faithfulness", 0.85)
TARGET_KEYS = ("target_faithfulness", "target_kl", "target_size")


def with_command_target(settings: Mapping[str, Any]) -> dict[str, Any]:
    """``settings`` (a command's TOML file and flags, defaults not filled in) with the
    commands' default target added when they ask for neither a target nor a lam (nor
    for no validation prompts, ``n_val = 0``)."""
    out = dict(settings)
    if any(out.get(key) is not None for key in TARGET_KEYS):
        return out
    if "lam" in out or out.get("lam_g"):
        return out  # a sparsity weight given alone means lam mode, as it always has
    if out.get("n_val") == 0:
        return out  # no validation prompts: nothing to measure a target on
    key, value = COMMAND_TARGET
    out[key] = value
    return out


def lam_g_key(key: str) -> str | None:
    """The granularity of a flat ``lam_g.<granularity>`` key, else None."""
    return key[len(LAM_G_PREFIX) :] if key.startswith(LAM_G_PREFIX) else None


def setting(config: Mapping[str, Any], key: str) -> Any:
    """A config dict's value of a plain key or of a flat ``lam_g.<granularity>`` key."""
    granularity = lam_g_key(key)
    if granularity is not None:
        return (config.get("lam_g") or {}).get(granularity)
    return config.get(key)


def merge_settings(base: Mapping[str, Any], over: Mapping[str, Any]) -> dict[str, Any]:
    """``over``'s settings over ``base``'s; the [lam_g] tables are merged key by key, and
    ``over`` may spell weights as flat ``lam_g.<granularity>`` keys (flags do). Keys that
    are no DiscoveryConfig field are kept as they are (from_dict refuses them)."""
    out = dict(base)
    lam_g = dict(base.get("lam_g") or {})
    for key, value in over.items():
        granularity = lam_g_key(key)
        if granularity is not None:
            lam_g[granularity] = value
        elif key == "lam_g":
            lam_g.update(value or {})
        else:
            out[key] = value
    if lam_g or "lam_g" in base:
        out["lam_g"] = lam_g
    return out


def layered_settings(data: dict[str, Any], flags: Mapping[str, Any], source: str) -> dict[str, Any]:
    """The one config layering: a settings table (a TOML file's, or empty), then the
    flags given on the command line (argparse destinations: DiscoveryConfig fields and
    ``lam_g.<granularity>``; others are ignored). Defaults are not filled in."""
    if not isinstance(data.get("lam_g", {}), dict):
        raise NodepruneError(f"{source}: lam_g must be a table ([lam_g]) of granularity = weight")
    known = {f.name for f in fields(DiscoveryConfig)}
    given = {k: v for k, v in flags.items() if k in known or lam_g_key(k) is not None}
    return merge_settings(data, given)


def _show(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _check_value(key: str, hint: Any, value: Any, source: str) -> Any:
    """``value`` as the type ``hint`` of field ``key`` (ints become floats where a float
    is due, a comma-separated string becomes a list), or a one-line error."""

    def bad(expected: str) -> NodepruneError:
        return NodepruneError(f"{source}: {key} must be {expected}, got {_show(value)}")

    def number(v: Any, name: str) -> float:
        if isinstance(v, bool) or not isinstance(v, int | float):
            raise NodepruneError(f"{source}: {name} must be a number, got {_show(v)}")
        if not math.isfinite(v):
            raise NodepruneError(f"{source}: {name} must be a finite number, got {_show(v)}")
        return float(v)

    if hint is int:
        if isinstance(value, float) and value.is_integer():
            return int(value)
        if isinstance(value, bool) or not isinstance(value, int):
            raise bad("an integer")
        return value
    if hint is float:
        return number(value, key)
    if hint is bool:
        if not isinstance(value, bool):
            raise bad("true or false")
        return value
    if hint is str:
        if not isinstance(value, str):
            raise bad("a string")
        return value
    if hint == float | None:
        return None if value is None else number(value, key)
    if hint == str | None:
        if value is not None and not isinstance(value, str):
            raise bad("a string")
        return value
    if hint == list[str]:
        if isinstance(value, str):
            return [x for x in value.split(",") if x.strip()]
        if not isinstance(value, list | tuple) or not all(isinstance(x, str) for x in value):
            raise bad("a list of strings")
        return list(value)
    if hint == dict[str, float]:
        if not isinstance(value, dict):
            raise bad("a table of numbers")
        return {str(k): number(v, f"{key}.{k}") for k, v in value.items()}
    return value  # a field type this checker does not know: left to validate()


def check_types(values: dict[str, Any], source: str) -> dict[str, Any]:
    """Check every known field of ``values`` against DiscoveryConfig's annotations."""
    hints = get_type_hints(DiscoveryConfig)
    return {
        key: _check_value(key, hints[key], value, source) if key in hints else value
        for key, value in values.items()
    }


def check_device(device: str, what: str = "device") -> str:
    """``device`` if torch can run a model on it, else a one-line error."""
    if device == "cpu":
        return device  # always there: no need to import torch to say so
    import torch

    try:
        kind = torch.device(device).type
    except (RuntimeError, ValueError, TypeError) as exc:
        raise NodepruneError(
            f"{what} {device!r} is not a device name (cpu, cuda, cuda:1, mps, ...)"
        ) from exc
    if kind in DATALESS_DEVICES:
        raise NodepruneError(
            f"{what} {device!r} holds no data (shapes only), so no model can run on it; "
            "use cpu, cuda, cuda:1, mps, ..."
        )
    return device


#: Deepest nesting of tables and arrays a config file may have. nodeprune's own files
#: nest two levels ([sweep.lam_g]); tomllib recurses once per level and a file nested
#: thousands deep would otherwise end in a RecursionError.
MAX_TOML_DEPTH = 32


def load_toml(path: str | Path) -> dict[str, Any]:
    p = Path(path)
    if not p.is_file():
        raise NodepruneError(f"config file {p} does not exist")
    try:
        data = tomllib.loads(p.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise NodepruneError(f"{p}: not valid TOML ({exc})") from exc
    except RecursionError:
        raise NodepruneError(
            f"{p}: nested too deeply to read (more than {MAX_TOML_DEPTH} levels of tables "
            "or arrays); a nodeprune config needs two"
        ) from None
    if _depth(data) > MAX_TOML_DEPTH:
        raise NodepruneError(
            f"{p}: nested more than {MAX_TOML_DEPTH} levels deep; a nodeprune config needs two"
        )
    return data


def _depth(value: Any) -> int:
    """Nesting depth of tables and arrays, iteratively (a recursive walk would overflow on
    the very input it is meant to catch)."""
    deepest, stack = 0, [(value, 0)]
    while stack:
        item, level = stack.pop()
        deepest = max(deepest, level)
        if isinstance(item, dict):
            stack.extend((v, level + 1) for v in item.values())
        elif isinstance(item, list):
            stack.extend((v, level + 1) for v in item)
    return deepest
