"""Every hyperparameter of a discovery run, with validation and TOML loading."""

from __future__ import annotations

import tomllib
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from .errors import NodepruneError
from .granularity import GRANULARITIES, check_granularity_names
from .suggest import closest

#: Per-granularity sparsity weights lam_g. MLP hidden neurons are many (tens of
#: thousands) and individually weak, so they get a larger weight by default.
DEFAULT_LAM_G = {
    "embedding": 1.0,
    "layer": 1.0,
    "attention_block": 1.0,
    "mlp_block": 1.0,
    "attention_head": 1.0,
    "attention_neuron": 1.0,
    "mlp_neuron": 1.0,
    "mlp_output": 1.0,
}


@dataclass
class DiscoveryConfig:
    model: str = "smollm2-135m"
    task: str = "ioi"
    task_file: str | None = None
    ablation: str = "corrupted"
    granularities: list[str] = field(default_factory=lambda: list(GRANULARITIES))
    lam: float = 0.95
    lam_g: dict[str, float] = field(default_factory=lambda: dict(DEFAULT_LAM_G))
    sparsity_warmup: float = 0.33
    margin_weight: float = 0.0
    steps: int = 200
    batch_size: int = 16
    lr: float = 0.5
    weight_decay: float = 0.0
    grad_clip: float = 1.0
    init_log_alpha: float = 2.0
    init_spread: float = 0.5
    n_train: int = 128
    n_val: int = 32
    n_test: int = 64
    filter: bool = True
    eval_batch_size: int = 32
    seed: int = 0
    device: str = "cpu"
    dtype: str = "float32"

    def validate(self) -> DiscoveryConfig:
        from .ablations import parse_ablation
        from .models import DTYPES

        self.granularities = check_granularity_names(list(self.granularities))
        parse_ablation(self.ablation)
        if self.dtype not in DTYPES:
            raise NodepruneError(f"dtype must be one of {', '.join(DTYPES)}, not {self.dtype!r}")
        for key in self.lam_g:
            if key not in GRANULARITIES:
                raise NodepruneError(
                    f"lam_g has unknown granularity {key!r}{closest(key, GRANULARITIES)}"
                )
        self.lam_g = {**DEFAULT_LAM_G, **{k: float(v) for k, v in self.lam_g.items()}}
        checks = [
            ("lam", 0.0 <= self.lam <= 1.0, "in [0, 1]"),
            ("sparsity_warmup", 0.0 <= self.sparsity_warmup <= 1.0, "in [0, 1]"),
            ("steps", self.steps > 0, "> 0"),
            ("batch_size", self.batch_size > 0, "> 0"),
            ("eval_batch_size", self.eval_batch_size > 0, "> 0"),
            ("lr", self.lr > 0, "> 0"),
            ("weight_decay", self.weight_decay >= 0, ">= 0"),
            ("grad_clip", self.grad_clip > 0, "> 0"),
            ("margin_weight", self.margin_weight >= 0, ">= 0"),
            ("init_spread", self.init_spread >= 0, ">= 0"),
            ("n_train", self.n_train > 0, "> 0"),
            ("n_val", self.n_val >= 0, ">= 0"),
            ("n_test", self.n_test > 0, "> 0"),
        ]
        for name, ok, rule in checks:
            if not ok:
                raise NodepruneError(f"{name} must be {rule}, got {getattr(self, name)!r}")
        for key, value in self.lam_g.items():
            if value < 0:
                raise NodepruneError(f"lam_g.{key} must be >= 0, got {value}")
        return self

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any], source: str = "config") -> DiscoveryConfig:
        known = {f.name for f in fields(cls)}
        for key in data:
            if key not in known:
                raise NodepruneError(f"{source}: unknown key {key!r}{closest(key, known)}")
        return cls(**data)


def load_toml(path: str | Path) -> dict[str, Any]:
    p = Path(path)
    if not p.is_file():
        raise NodepruneError(f"config file {p} does not exist")
    try:
        return tomllib.loads(p.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise NodepruneError(f"{p}: not valid TOML ({exc})") from exc
