"""Two tiny Hugging Face GPT-2 models trained apart on a synthetic sequence task, for the merging task.

The task is reversal: ``a_1 ... a_L SEP a_L ... a_1`` with ``L`` digits drawn uniformly; the model reads the whole
sequence (causal attention) and is scored on predicting the reversed half, next token by next token. GPT-2 comes
from a small :class:`transformers.GPT2Config` with random weights (nothing is downloaded); two models differ in
their initialisation and in the order of their training batches.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["SEP", "VOCAB", "evaluate", "reversal", "tiny_gpt2", "train"]

#: digits 0-9 and the separator
VOCAB = 11
SEP = 10


def reversal(n: int, length: int = 6, seed: int = 0) -> torch.Tensor:
    """``(n, 2 length + 1)`` int64 sequences ``digits, SEP, the digits reversed``."""
    digits = torch.randint(0, 10, (n, length), generator=torch.Generator().manual_seed(seed))  # (n, L)
    return torch.cat([digits, torch.full((n, 1), SEP), digits.flip(1)], 1)  # (n, 2L + 1)


def tiny_gpt2(width: int = 64, layers: int = 2, heads: int = 4, positions: int = 16) -> nn.Module:
    """A GPT-2 language model from a small config, random weights, no dropout."""
    import transformers

    config = transformers.GPT2Config(vocab_size=VOCAB, n_embd=width, n_layer=layers, n_head=heads,
                                     n_positions=positions, resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0,
                                     use_cache=False, bos_token_id=SEP, eos_token_id=SEP)
    return transformers.GPT2LMHeadModel(config)


def _answer_logits(model: nn.Module, sequences: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``(logits (n, L, V), targets (n, L))``: the predictions of the reversed half and its tokens."""
    length = (sequences.shape[1] - 1) // 2
    logits = model(sequences[:, :-1]).logits  # (n, 2L, V): position i predicts token i + 1
    return logits[:, length:], sequences[:, length + 1:]  # (n, L, V), (n, L)


def train(model: nn.Module, sequences: torch.Tensor, seed: int, epochs: int, batch: int = 64,
          lr: float = 3e-3) -> nn.Module:
    """AdamW (weight decay 0.01), linear warm-up over 10 % of the steps then cosine decay to 0, cross-entropy on
    the reversed half, batches in a ``seed``-dependent order."""
    generator = torch.Generator().manual_seed(seed)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.01)
    steps = epochs * math.ceil(len(sequences) / batch)
    warm = max(1, steps // 10)
    schedule = torch.optim.lr_scheduler.LambdaLR(opt, lambda i: (i + 1) / warm if i < warm else
                                                 0.5 * (1 + math.cos(math.pi * (i - warm) / max(1, steps - warm))))
    model.train()
    for _ in range(epochs):
        for idx in torch.randperm(len(sequences), generator=generator).split(batch):
            logits, targets = _answer_logits(model, sequences[idx])
            opt.zero_grad()
            F.cross_entropy(logits.reshape(-1, VOCAB), targets.reshape(-1)).backward()
            opt.step()
            schedule.step()
    return model.eval()


def evaluate(model: nn.Module, sequences: torch.Tensor) -> tuple[float, float]:
    """``(cross-entropy, token accuracy)`` on the reversed halves of ``sequences``."""
    with torch.no_grad():
        logits, targets = _answer_logits(model.eval(), sequences)
    loss = F.cross_entropy(logits.reshape(-1, VOCAB), targets.reshape(-1))
    return float(loss), float((logits.argmax(-1) == targets).float().mean())
