"""Flags shared by the subcommands: every DiscoveryConfig field as a flag (so each
hyperparameter has one and can also come from a TOML file), the large-model loading
flags, and bounded integers. Nothing here imports torch."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from dataclasses import fields
from typing import Any

from ..ablations import ABLATIONS
from ..config import (
    COMMAND_TARGET,
    LAM_G_PREFIX,
    DiscoveryConfig,
    layered_settings,
    load_toml,
    with_command_target,
)
from ..granularity import GRANULARITIES

HELP = {
    "model": "smollm2-135m (offline default), a Hugging Face hub name, a folder or a .gguf file",
    "task": "built-in task name (see `nodeprune tasks`)",
    "task_file": "JSONL file of prompt pairs (a custom task)",
    "ablation": "what pruned nodes take: "
    + "; ".join(f"{a.name}: {a.description}" for a in ABLATIONS.values()),
    "granularities": "comma-separated granularities to gate, or all",
    "lam": "weight of sparsity vs faithfulness, in [0, 1]; given without a target (or "
    "--lam-* alone), discovery runs in lam mode: no target, this fixed weight",
    "sparsity_warmup": "fraction of steps over which lam ramps up from 0",
    "margin_weight": "weight of the task-margin term in the faithfulness loss",
    "init_log_alpha": "mean initial gate log-alpha (higher = gates start more open)",
    "init_spread": "half-width of the spread of initial log-alphas around init_log_alpha",
    "gate_init": "where the gates start in that interval: uniform (at random, from --seed) "
    "or attribution (in the order of their attribution scores on the train prompts)",
    "seed": "seed of the gates' initialisation, hard-concrete noise and batch order",
    "data_seed": "seed of the prompts (train, validation, test); fixed when only --seed changes",
    "filter": "keep only examples the full model answers correctly",
    "device": "cpu, cuda, cuda:1, mps ...",
    "dtype": "float32, bfloat16 or float16 model weights (gates stay fp32)",
    "autocast": "auto, off, bfloat16 or float16: mixed precision for the training and "
    "validation passes (test scores stay in --dtype); auto is bfloat16 on hardware with "
    "native bf16 (x86 avx512_bf16 or amx_bf16, CUDA with bf16) and off elsewhere",
    "target_faithfulness": "find the smallest circuit whose normalized faithfulness on the "
    "validation prompts is at least this (in (0, 1]); the sparsity weight is then steered "
    "and lam only sets its starting point",
    "target_kl": "find the smallest circuit whose KL to the full model is at most this",
    "target_size": "find the circuit that keeps this fraction of attention + MLP neurons",
    "optimizer": "granular_adam (default): Adam with one second moment per granularity, so "
    "a gate moves in proportion to how much the objective cares about it; or adamw",
    "n_val": "validation prompts; a target's final selection is measured on all of them",
    "n_val_controller": "how many of the validation prompts the target controller measures "
    "every --target-every steps",
    "target_every": "steps between the target controller's validation measurements",
    "target_rate": "step of the target controller's log sparsity weight",
}


def flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def add_config_flags(parser: argparse.ArgumentParser, command_target: bool = False) -> None:
    """Every DiscoveryConfig field as a flag. ``command_target``: the command aims at
    COMMAND_TARGET by default (config_from_args adds it), and its help says so."""
    defaults = DiscoveryConfig()
    for f in fields(DiscoveryConfig):
        default = getattr(defaults, f.name)
        helptext = HELP.get(f.name, f.name.replace("_", " "))
        if f.name == "lam_g":
            for g in GRANULARITIES:
                parser.add_argument(
                    flag(f"lam_{g}"),
                    dest=LAM_G_PREFIX + g,
                    type=float,
                    default=argparse.SUPPRESS,
                    help=f"sparsity weight lam_g of {g} (default {default[g]})",
                )
            continue
        kwargs: dict[str, Any] = {"dest": f.name, "default": argparse.SUPPRESS}
        if isinstance(default, bool):
            kwargs["action"] = argparse.BooleanOptionalAction
        elif isinstance(default, list):
            kwargs["type"] = lambda s: [x for x in s.split(",") if x]
        elif default is None:  # optional settings: task_file (a path) or a target (a number)
            kwargs["type"] = str if f.name == "task_file" else float
        else:
            kwargs["type"] = type(default)
        shown = ",".join(default) if isinstance(default, list) else default
        if command_target and f.name == COMMAND_TARGET[0]:
            shown = f"{COMMAND_TARGET[1]}, unless --lam, --lam-* or another target is given"
        parser.add_argument(flag(f.name), help=f"{helptext} (default {shown})", **kwargs)


def config_from_args(args: argparse.Namespace) -> DiscoveryConfig:
    """Defaults, then the TOML file, then flags given on the command line."""
    data, source = given_config(args)
    return DiscoveryConfig.from_dict(with_command_target(data), source=source).validate()


def given_config(args: argparse.Namespace) -> tuple[dict[str, Any], str]:
    """The settings the user gave (TOML file, then flags), without defaults; the source."""
    if getattr(args, "config", None):
        data, source = load_toml(args.config), str(args.config)
    else:
        data, source = {}, "config"
    return layered_settings(data, vars(args), source), source


def add_large_model_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--device-map",
        help="shard the model over the visible GPUs with accelerate: auto, balanced, "
        "sequential, or a JSON object {module: device}; replaces --device",
    )
    parser.add_argument(
        "--gradient-checkpointing",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="recompute each layer in the backward pass: less memory for long prompts, "
        "about one more forward pass of time",
    )


def bounded_int(low: int, high: int) -> Callable[[str], int]:
    """An argparse type: an integer in [low, high] (the same bounds as DiscoveryConfig's
    sizes and seed), so that `--n 10**12` is an argument error, not hours of prompts."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"invalid int value: {text!r}") from None
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(f"must be in [{low}, {high}], got {value}")
        return value

    return parse
