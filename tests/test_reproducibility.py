"""Same seed and config, same circuit file (timings aside, which live in their own field);
the file records the versions it was made with."""

from __future__ import annotations

import json
import platform

import torch
import transformers

import nodeprune
from nodeprune import Circuit, Discovery, DiscoveryConfig


def _config(seed: int) -> DiscoveryConfig:
    return DiscoveryConfig(
        model="tiny", steps=8, n_train=16, n_val=0, n_test=8, filter=False, batch_size=8,
        lr=0.3, lam=0.5, seed=seed,
    )  # fmt: skip


def test_two_runs_with_the_same_seed_write_the_same_file(llama_model, tmp_path):
    a = Discovery(llama_model, _config(4)).run(progress=False).save(tmp_path / "a.json")
    b = Discovery(llama_model, _config(4)).run(progress=False).save(tmp_path / "b.json")
    ja, jb = json.loads(a.read_text()), json.loads(b.read_text())
    from nodeprune.summary import PHASES

    assert set(ja["timings"]) == {key for key, _ in PHASES} | {"measure_seconds"}
    timing_keys = list(ja.pop("timings"))
    jb.pop("timings")
    assert json.dumps(ja, sort_keys=True) == json.dumps(jb, sort_keys=True)
    # Only the timings field carries wall-clock numbers.
    assert not any(key in json.dumps(ja) for key in timing_keys)
    # Loading and saving again changes nothing either.
    again = json.dumps(Circuit.load(a).comparable_json(), sort_keys=True)
    assert again == json.dumps(ja, sort_keys=True)


def test_another_seed_gives_another_run(llama_model):
    a = Discovery(llama_model, _config(4))
    b = Discovery(llama_model, _config(5))
    a.run(progress=False), b.run(progress=False)
    assert not torch.equal(a.gates.log_alpha, b.gates.log_alpha)


def test_the_file_records_versions(llama_model, tmp_path):
    path = Discovery(llama_model, _config(0)).run(progress=False).save(tmp_path / "c.json")
    versions = json.loads(path.read_text())["versions"]
    assert versions == {
        "nodeprune": nodeprune.__version__,
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "python": platform.python_version(),
    }


def test_another_seed_keeps_the_prompts_and_another_data_seed_changes_them(llama_model):
    # seed moves the gates, the noise and the batch order; the prompts belong to data_seed,
    # so circuits found at several seeds are compared on the same test prompts.
    base = Discovery(llama_model, _config(4))
    other_seed = Discovery(llama_model, _config(5))
    other_data = Discovery(llama_model, DiscoveryConfig(**{**_config(4).to_dict(), "data_seed": 1}))
    for d in (base, other_seed, other_data):
        d.gated.remove()
    assert torch.equal(base.data.test.clean_ids, other_seed.data.test.clean_ids)
    assert not torch.equal(base.data.test.clean_ids, other_data.data.test.clean_ids)


def test_a_config_saved_before_data_seed_draws_its_prompts_with_seed():
    old = {k: v for k, v in _config(7).to_dict().items() if k != "data_seed"}
    assert DiscoveryConfig.from_saved(old).data_seed == 7
    assert DiscoveryConfig.from_saved({**old, "data_seed": 2}).data_seed == 2
    assert DiscoveryConfig.from_dict(old).data_seed == 0


def test_a_config_saved_before_optimizer_existed_trains_with_adamw_as_it_did():
    old = {k: v for k, v in _config(7).to_dict().items() if k != "optimizer"}
    assert DiscoveryConfig.from_saved(old).optimizer == "adamw"
    assert DiscoveryConfig.from_saved({**old, "optimizer": "granular_adam"}).optimizer == (
        "granular_adam"
    )
    assert DiscoveryConfig.from_dict(old).optimizer == "granular_adam"  # today's default
