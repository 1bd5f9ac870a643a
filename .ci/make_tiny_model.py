"""Save a tiny random GPT-2 and a byte-level BPE tokenizer trained on IOI-like text to a
folder, as ``save_pretrained`` does: a model that ``nodeprune discover --model FOLDER``
loads with no hub access. Used by .ci/fresh_install.sh on the installed package.

    python .ci/make_tiny_model.py FOLDER
"""

from __future__ import annotations

import random
import sys

import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import GPT2Config, GPT2LMHeadModel, PreTrainedTokenizerFast

from nodeprune.tasks.ioi import NAMES, OBJECTS, PLACES, TEMPLATES_ABBA


def corpus() -> list[str]:
    rng = random.Random(0)
    lines = []
    for _ in range(300):
        a, b = rng.sample(NAMES, 2)
        template = rng.choice(TEMPLATES_ABBA)
        lines.append(
            template.format(A=a, B=b, PLACE=rng.choice(PLACES), OBJECT=rng.choice(OBJECTS))
        )
    lines += [" " + " ".join(NAMES)] * 20  # every name one token, with its leading space
    return lines


def main(folder: str) -> None:
    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=512,
        special_tokens=["<|endoftext|>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    bpe.train_from_iterator(corpus(), trainer)
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=bpe, eos_token="<|endoftext|>")
    torch.manual_seed(0)
    eos = tokenizer.eos_token_id
    config = GPT2Config(
        vocab_size=512, n_layer=2, n_head=4, n_embd=32, n_positions=64,
        bos_token_id=eos, eos_token_id=eos,
    )  # fmt: skip
    GPT2LMHeadModel(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)


if __name__ == "__main__":
    main(sys.argv[1])
