"""Rotations inside attention heads: the continuous symmetry that permutations leave out.

A head's scores ``q . k`` stay the same when its queries and keys are rotated by one orthogonal ``R``
(``W_q <- R W_q``, ``W_k <- R W_k``, biases alike), and its output stays the same when its values are rotated by
``R'`` and the output projection's columns of the head by ``R'^T``. Two heads trained apart that attend alike
still write their queries and keys in unrelated bases: matching dimensions by permutation cannot line them up,
and averaging them mixes unrelated directions. :func:`rotate_heads` turns each head of ``model`` towards the
head of ``reference`` at the same position (after :func:`~nngraph.symmetry.match.align` has matched heads as
blocks and the residual stream), by orthogonal Procrustes on the weights (Schönemann 1966):
``R = U V^T`` for ``U S V^T = svd([W_q^ref W_k^ref] [W_q W_k]^T)``. The result computes the same function.

Handled: ``nn.MultiheadAttention`` with a packed ``in_proj_weight`` (queries, keys and values of one width) and
Hugging Face's ``GPT2Attention`` (``c_attn`` / ``c_proj``, self-attention).
"""
from __future__ import annotations

import copy
from typing import NamedTuple

import torch
from torch import nn

__all__ = ["rotate_heads"]


def rotate_heads(reference: nn.Module, model: nn.Module, data=None) -> nn.Module:
    """A copy of ``model`` whose attention heads are rotated to look like ``reference``'s (module docstring).

    Both models have one architecture, aligned first (the same head at the same position); attention modules of
    other kinds are left as they are. ``data`` (a batch, or a tuple of model inputs): reorder the heads and rotate
    them by their query, key and value activations on it (Procrustes on ``Q_ref^T Q + K_ref^T K``) instead of by
    their weights (which keep the heads' order).
    """
    out = copy.deepcopy(model)
    mine = dict(reference.named_modules())
    acts = (_head_values(reference, data), _head_values(out, data)) if data is not None else None
    with torch.no_grad():
        for name, module in out.named_modules():
            heads = _heads(module)
            if heads is not None:
                _rotate(_heads(mine[name]), heads, None if acts is None else (acts[0][name], acts[1][name]))
    return out


class _Heads(NamedTuple):
    """An attention's parameters as views: ``qkv`` ``(3E, E_in)`` (rows: queries, keys, values, head after head),
    ``bias`` ``(3E,)`` or ``None``, ``out`` ``(E_out, E)`` (the output projection; columns: head dimensions)."""

    qkv: torch.Tensor
    bias: torch.Tensor | None
    out: torch.Tensor
    num_heads: int


def _heads(module: nn.Module) -> _Heads | None:
    if isinstance(module, nn.MultiheadAttention) and module.in_proj_weight is not None:
        return _Heads(module.in_proj_weight, module.in_proj_bias, module.out_proj.weight, module.num_heads)
    if type(module).__name__ == "GPT2Attention" and not module.is_cross_attention:  # Conv1D: x @ W + b
        return _Heads(module.c_attn.weight.T, module.c_attn.bias, module.c_proj.weight.T, module.num_heads)
    return None


def _head_values(model: nn.Module, data) -> dict[str, tuple[torch.Tensor, ...]]:
    """Per attention of ``model`` (:func:`_heads`): its queries, keys and values on ``data``, ``(n, E)`` each."""
    from .activations import _projections

    store, hooks = {}, []
    for name, m in model.named_modules():
        if isinstance(m, nn.MultiheadAttention) and m.in_proj_weight is not None:
            hooks.append(m.register_forward_pre_hook(_projections(store, name, m), with_kwargs=True))
        elif _heads(m) is not None:  # GPT-2: the packed projection's output, split in three
            hooks.append(m.c_attn.register_forward_hook(_split(store, name)))
    was = model.training
    model.eval()
    try:
        with torch.no_grad():
            model(*((data,) if isinstance(data, torch.Tensor) else tuple(data)))
    finally:
        model.train(was)
        for hook in hooks:
            hook.remove()
    names = {key.rsplit(".", 1)[0] for key in store}
    return {n: tuple(store[f"{n}.{p}"].reshape(-1, store[f"{n}.{p}"].shape[-1]) for p in ("query", "key", "value"))
            for n in names}  # (n, E) each


def _split(store: dict, name: str):
    def hook(module, args, output):  # output (..., 3E): queries, keys, values
        for part, value in zip(("query", "key", "value"), output.chunk(3, dim=-1)):
            store[f"{name}.{part}"] = value
    return hook


def _procrustes(target: torch.Tensor, source: torch.Tensor) -> torch.Tensor:
    """``(d, d)`` orthogonal ``R`` minimising ``|R source - target|`` (both ``(d, n)``)."""
    u, _, vh = torch.linalg.svd(target.double() @ source.double().T)
    return u @ vh  # (d, d)


def _rotate(reference: _Heads, mine: _Heads, acts=None) -> None:
    """Rotate ``mine``'s heads in place towards ``reference``'s (by ``acts``: ``(reference's (q, k, v), mine's
    (q, k, v))``, ``(n, E)`` each, where given)."""
    e = mine.qkv.shape[0] // 3
    h = mine.num_heads
    d = e // h
    weight, bias, out_w = mine.qkv, mine.bias, mine.out  # (3E, E_in), (3E,), (E_out, E)

    def rows(part: int, head: int) -> slice:  # rows of qkv for one head of queries (0), keys (1), values (2)
        return slice(part * e + head * d, part * e + (head + 1) * d)

    def block(heads: _Heads, part: int, head: int) -> torch.Tensor:  # (d, E_in + 1): with the bias as a column
        r = rows(part, head)
        b = heads.bias[r] if heads.bias is not None else heads.qkv.new_zeros(d)
        return torch.cat([heads.qkv[r], b.unsqueeze(1)], 1)

    if acts is not None:
        dims = _match_heads(mine, acts, h, d)  # (E,): the head dimensions' new order
        acts = (acts[0], tuple(t[:, dims] for t in acts[1]))  # mine's activations, heads reordered alike
    for head in range(h):
        cols = slice(head * d, (head + 1) * d)
        if acts is not None:  # (n, d) activations of the head: rows are samples
            (rq_, rk_, rv_), (mq, mk, mv) = [[t[:, cols].T for t in side] for side in acts]  # (d, n) each
            rq = _procrustes(torch.cat([rq_, rk_], 1), torch.cat([mq, mk], 1)).to(weight.dtype)
            rv = _procrustes(rv_, mv).to(weight.dtype)
        else:
            rq = _procrustes(torch.cat([block(reference, 0, head), block(reference, 1, head)], 1),
                             torch.cat([block(mine, 0, head), block(mine, 1, head)], 1)).to(weight.dtype)  # (d, d)
            rv = _procrustes(torch.cat([block(reference, 2, head), reference.out[:, cols].T], 1),
                             torch.cat([block(mine, 2, head), out_w[:, cols].T], 1)).to(weight.dtype)  # (d, d)
        for part, r in ((0, rq), (1, rq), (2, rv)):
            weight[rows(part, head)] = r @ weight[rows(part, head)]
            if bias is not None:
                bias[rows(part, head)] = r @ bias[rows(part, head)]
        out_w[:, cols] = out_w[:, cols] @ rv.T  # undo the values' rotation: the head's output is unchanged


def _match_heads(attention: _Heads, acts, h: int, d: int) -> torch.Tensor:
    """Reorder ``attention``'s heads in place so that head ``p`` is the one most like the reference's head ``p``
    up to a rotation: the score of two heads is the nuclear norm of ``Q_ref^T Q + K_ref^T K`` plus that of
    ``V_ref^T V`` (what the best rotation reaches), the order a linear assignment on it. Returns the new order
    of the head dimensions ``(E,)``."""
    from scipy.optimize import linear_sum_assignment

    (rq, rk, rv), (mq, mk, mv) = [[t.double() for t in side] for side in acts]  # (n, E) each
    score = torch.zeros(h, h, dtype=torch.float64)
    for p in range(h):
        a = slice(p * d, (p + 1) * d)
        for q in range(h):
            b = slice(q * d, (q + 1) * d)
            score[p, q] = torch.linalg.matrix_norm(rq[:, a].T @ mq[:, b] + rk[:, a].T @ mk[:, b], "nuc") + \
                torch.linalg.matrix_norm(rv[:, a].T @ mv[:, b], "nuc")
    rows, cols = linear_sum_assignment(score.numpy(), maximize=True)
    order = torch.as_tensor(cols)[torch.argsort(torch.as_tensor(rows))]  # reference head p takes head order[p]
    dims = (order.unsqueeze(1) * d + torch.arange(d)).reshape(-1)  # (E,): the new order of the head dimensions
    e = h * d
    index = torch.cat([dims, dims + e, dims + 2 * e])  # (3E,): qkv rows, queries, keys, values
    attention.qkv.copy_(attention.qkv[index])
    if attention.bias is not None:
        attention.bias.copy_(attention.bias[index])
    attention.out.copy_(attention.out[:, dims])
    return dims

