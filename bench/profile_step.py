"""Where the time of one discovery step goes: torch.profiler's table of the top ops.

python bench/profile_step.py --model smollm2-135m --batch 16 [--rows 25]
"""

from __future__ import annotations

import argparse

import torch
from torch.profiler import ProfilerActivity, profile, record_function

import nodeprune
from nodeprune.config import DiscoveryConfig
from nodeprune.discovery import Discovery
from nodeprune.prompts import encode_examples
from nodeprune.splits import TaskData, generate_split
from nodeprune.tasks import get_task


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="smollm2-135m")
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--rows", type=int, default=25)
    p.add_argument("--device", default="cpu")
    args = p.parse_args()
    loaded = nodeprune.load_model(args.model, device=args.device)
    examples = generate_split(get_task("ioi"), "train", args.batch, 0, loaded.tokenizer)
    batch = encode_examples(examples, loaded.tokenizer)
    cfg = DiscoveryConfig(
        model=args.model,
        steps=100,
        batch_size=args.batch,
        n_train=args.batch,
        n_val=0,
        n_test=1,
        filter=False,
        device=args.device,
    )
    discovery = Discovery(loaded, cfg, data=TaskData(batch, None, batch, {}))
    discovery.train_step()  # warm-up
    activities = [ProfilerActivity.CPU]
    if args.device.startswith("cuda"):
        activities.append(ProfilerActivity.CUDA)
    with profile(activities=activities) as prof:
        with record_function("discovery_step"):
            discovery.train_step()
    sort = "cuda_time_total" if args.device.startswith("cuda") else "cpu_time_total"
    print(prof.key_averages().table(sort_by=sort, row_limit=args.rows))
    if args.device == "cpu":
        print(f"threads: {torch.get_num_threads()}")


if __name__ == "__main__":
    main()
