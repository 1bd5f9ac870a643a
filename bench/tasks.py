"""Full-model behaviour on every built-in task: accuracy, mean task metric (clean and
corrupted) on the test split, and how many examples survive filtering.

    nice -n 10 python bench/tasks.py                 # SmolLM2-135M, 64 test prompts each
    python bench/tasks.py --n 32 --tasks ioi,sva     # fewer / chosen tasks
"""

from __future__ import annotations

import argparse
import sys
import time

import torch


@torch.no_grad()
def task_row(gated, task, n: int, seed: int, batch_size: int) -> dict[str, float]:
    from nodeprune.splits import generate_split

    tokenizer = gated.loaded.tokenizer
    batch = task.encode(generate_split(task, "test", n, seed, tokenizer), tokenizer)
    correct, clean_metric, corrupted_metric = [], [], []
    for part in batch.batches(batch_size):
        clean = gated.plain_logits(part.clean_ids, part.attention_mask, part.answer_pos)
        corrupted = gated.plain_logits(part.corrupted_ids, part.attention_mask, part.answer_pos)
        correct.append(task.correct(clean, part))
        clean_metric.append(task.metric(clean, part))
        corrupted_metric.append(task.metric(corrupted, part))
    ok = torch.cat(correct)
    return {
        "generated": len(batch),
        "kept": int(ok.sum()),
        "accuracy": float(ok.float().mean()),
        "metric": float(torch.cat(clean_metric).mean()),
        "metric_corrupted": float(torch.cat(corrupted_metric).mean()),
    }


def main(argv: list[str] | None = None) -> int:
    from nodeprune.intervention import GatedModel
    from nodeprune.models import load_model
    from nodeprune.tasks import TASKS, get_task

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="smollm2-135m")
    parser.add_argument("--n", type=int, default=64, help="test prompts per task")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--tasks", default=",".join(TASKS), help="comma-separated task names")
    args = parser.parse_args(argv)

    loaded = load_model(args.model)
    gated = GatedModel(loaded)
    print(f"model {args.model}, {args.n} test prompts per task, seed {args.seed}\n")
    print(
        "| task | metric | accuracy | mean metric (clean) | mean metric (corrupted) "
        "| kept after filtering | seconds |"
    )
    print("|---|---|---|---|---|---|---|")
    for name in args.tasks.split(","):
        task = get_task(name)
        start = time.perf_counter()
        row = task_row(gated, task, args.n, args.seed, args.batch_size)
        kind = "P(greater) - P(<= YY)" if task.name == "greater_than" else "logit diff"
        print(
            f"| {task.name} | {kind} | {row['accuracy']:.3f} | {row['metric']:.3f} "
            f"| {row['metric_corrupted']:.3f} | {row['kept']}/{row['generated']} "
            f"| {time.perf_counter() - start:.1f} |",
            flush=True,
        )
    gated.remove()
    return 0


if __name__ == "__main__":
    sys.exit(main())
