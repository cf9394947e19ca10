"""Rotations inside attention heads: the continuous symmetry that permutations leave out.

A head's scores ``q . k`` stay the same when its queries and keys are rotated by one orthogonal ``R``
(``W_q <- R W_q``, ``W_k <- R W_k``, biases alike), and its output stays the same when its values are rotated by
``R'`` and the output projection's columns of the head by ``R'^T``. Two heads trained apart that attend alike
still write their queries and keys in unrelated bases: matching dimensions by permutation cannot line them up,
and averaging them mixes unrelated directions. :func:`rotate_heads` turns each head of ``model`` towards the
head of ``reference`` at the same position (after :func:`~nngraph.symmetry.match.align` has matched heads as
blocks and the residual stream), by orthogonal Procrustes on the weights (Schönemann 1966):
``R = U V^T`` for ``U S V^T = svd([W_q^ref W_k^ref] [W_q W_k]^T)``. The result computes the same function.

Handled: ``nn.MultiheadAttention`` with a packed ``in_proj_weight`` (queries, keys and values of one width).
"""
from __future__ import annotations

import copy

import torch
from torch import nn

__all__ = ["rotate_heads"]


def rotate_heads(reference: nn.Module, model: nn.Module, data=None) -> nn.Module:
    """A copy of ``model`` whose attention heads are rotated to look like ``reference``'s (module docstring).

    Both models have one architecture, aligned first (the same head at the same position); attention modules of
    other kinds are left as they are. ``data`` (a batch, or a tuple of model inputs): rotate by the heads' query,
    key and value activations on it (Procrustes on ``Q_ref^T Q + K_ref^T K``) instead of their weights.
    """
    out = copy.deepcopy(model)
    mine = dict(reference.named_modules())
    acts = (_head_values(reference, data), _head_values(out, data)) if data is not None else None
    with torch.no_grad():
        for name, attention in out.named_modules():
            if isinstance(attention, nn.MultiheadAttention) and attention.in_proj_weight is not None:
                _rotate(mine[name], attention, None if acts is None else (acts[0][name], acts[1][name]))
    return out


def _head_values(model: nn.Module, data) -> dict[str, tuple[torch.Tensor, ...]]:
    """Per ``nn.MultiheadAttention`` of ``model``: its queries, keys and values on ``data``, ``(n, E)`` each."""
    from .activations import _projections

    store, hooks = {}, []
    for name, m in model.named_modules():
        if isinstance(m, nn.MultiheadAttention) and m.in_proj_weight is not None:
            hooks.append(m.register_forward_pre_hook(_projections(store, name, m), with_kwargs=True))
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


def _procrustes(target: torch.Tensor, source: torch.Tensor) -> torch.Tensor:
    """``(d, d)`` orthogonal ``R`` minimising ``|R source - target|`` (both ``(d, n)``)."""
    u, _, vh = torch.linalg.svd(target.double() @ source.double().T)
    return u @ vh  # (d, d)


def _rotate(reference: nn.MultiheadAttention, attention: nn.MultiheadAttention, acts=None) -> None:
    """Rotate ``attention``'s heads in place towards ``reference``'s (by ``acts``: ``(reference's (q, k, v),
    attention's (q, k, v))``, ``(n, E)`` each, where given)."""
    e, h = attention.embed_dim, attention.num_heads
    d = e // h
    weight, bias = attention.in_proj_weight, attention.in_proj_bias  # (3E, E), (3E,)
    ref_weight, ref_bias = reference.in_proj_weight, reference.in_proj_bias
    out_w, ref_out_w = attention.out_proj.weight, reference.out_proj.weight  # (E, E): columns are head dims

    def rows(part: int, head: int) -> slice:  # rows of in_proj for one head of queries (0), keys (1), values (2)
        return slice(part * e + head * d, part * e + (head + 1) * d)

    def block(w, b, part, head):  # (d, E + 1): a head's projection with its bias as one more column
        r = rows(part, head)
        return torch.cat([w[r], (b[r] if b is not None else w.new_zeros(d)).unsqueeze(1)], 1)

    if acts is not None:
        dims = _match_heads(attention, acts, h, d)  # (E,): the head dimensions' new order
        acts = (acts[0], tuple(t[:, dims] for t in acts[1]))  # the model's activations, heads reordered alike
    for head in range(h):
        cols = slice(head * d, (head + 1) * d)
        if acts is not None:  # (n, d) activations of the head: rows are samples
            (rq_, rk_, rv_), (mq, mk, mv) = [[t[:, cols].T for t in side] for side in acts]  # (d, n) each
            rq = _procrustes(torch.cat([rq_, rk_], 1), torch.cat([mq, mk], 1)).to(weight.dtype)
            rv = _procrustes(rv_, mv).to(weight.dtype)
        else:
            q, k = block(weight, bias, 0, head), block(weight, bias, 1, head)  # (d, E + 1) each
            rq = _procrustes(torch.cat([block(ref_weight, ref_bias, 0, head), block(ref_weight, ref_bias, 1, head)],
                                       1), torch.cat([q, k], 1)).to(weight.dtype)  # (d, d): queries and keys
            v = block(weight, bias, 2, head)  # (d, E + 1)
            rv = _procrustes(torch.cat([block(ref_weight, ref_bias, 2, head), ref_out_w[:, cols].T], 1),
                             torch.cat([v, out_w[:, cols].T], 1)).to(weight.dtype)  # (d, d)
        for part, r in ((0, rq), (1, rq), (2, rv)):
            weight[rows(part, head)] = r @ weight[rows(part, head)]
            if bias is not None:
                bias[rows(part, head)] = r @ bias[rows(part, head)]
        out_w[:, cols] = out_w[:, cols] @ rv.T  # undo the values' rotation: the head's output is unchanged


def _match_heads(attention: nn.MultiheadAttention, acts, h: int, d: int) -> torch.Tensor:
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
    e = attention.embed_dim
    index = torch.cat([dims, dims + e, dims + 2 * e])  # (3E,): in_proj rows, queries, keys, values
    attention.in_proj_weight.copy_(attention.in_proj_weight[index])
    if attention.in_proj_bias is not None:
        attention.in_proj_bias.copy_(attention.in_proj_bias[index])
    attention.out_proj.weight.copy_(attention.out_proj.weight[:, dims])
    return dims

