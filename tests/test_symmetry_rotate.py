"""nngraph.symmetry.rotate_heads: orthogonal rotations inside attention heads keep the function, and a copy whose
heads were reordered and rotated is turned back."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from nngraph import symmetry


def _model(seed: int) -> nn.Module:
    torch.manual_seed(seed)
    layer = nn.TransformerEncoderLayer(8, 2, dim_feedforward=12, dropout=0.0, batch_first=True, norm_first=True)
    return nn.Sequential(nn.Linear(3, 8), nn.TransformerEncoder(layer, 2, enable_nested_tensor=False)).double().eval()


def _gpt2(seed: int) -> nn.Module:
    import transformers

    torch.manual_seed(seed)
    config = transformers.GPT2Config(vocab_size=11, n_embd=8, n_layer=2, n_head=2, n_positions=8, use_cache=False,
                                     bos_token_id=0, eos_token_id=0)
    return transformers.GPT2LMHeadModel(config).double().eval()


def _projections(m: nn.Module):
    """``(qkv (3E, E_in), bias (3E,), out (E_out, E))`` of one attention, written out per class (views)."""
    if isinstance(m, nn.MultiheadAttention):
        return m.in_proj_weight, m.in_proj_bias, m.out_proj.weight
    if type(m).__name__ == "GPT2Attention":  # Conv1D stores x @ W: the transposes are the Linear weights
        return m.c_attn.weight.T, m.c_attn.bias, m.c_proj.weight.T
    return None


def _rotated_copy(model: nn.Module, seed: int) -> nn.Module:
    """``model`` with the heads of every attention swapped and each head's queries / keys and values rotated by
    random orthogonal matrices (the output projection undoing the values'): the same function."""
    import copy

    out = copy.deepcopy(model)
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in out.modules():
            if _projections(m) is None:
                continue
            w, b, o = _projections(m)
            e = w.shape[0] // 3
            d = e // 2  # two heads
            dims = torch.cat([torch.arange(d, e), torch.arange(d)])  # head 1 first, then head 0
            rows = torch.cat([dims, dims + e, dims + 2 * e])
            w.copy_(w[rows]), b.copy_(b[rows]), o.copy_(o[:, dims])
            for head in range(2):
                rq, rv = (torch.linalg.qr(torch.randn(d, d, generator=g, dtype=torch.float64))[0] for _ in "qv")
                for part, r in ((0, rq), (1, rq), (2, rv)):
                    sl = slice(part * e + head * d, part * e + (head + 1) * d)
                    w[sl] = r @ w[sl]
                    b[sl] = r @ b[sl]
                cols = slice(head * d, (head + 1) * d)
                o[:, cols] = o[:, cols] @ rv.T
    return out


def _outputs(model, x):
    with torch.no_grad():
        out = model(x)
    return out.logits if hasattr(out, "logits") else out


@pytest.mark.parametrize("by_data", [True, False])
@pytest.mark.parametrize("build, data", [(_model, lambda: torch.randn(16, 5, 3, dtype=torch.float64)),
                                         (_gpt2, lambda: torch.randint(0, 11, (16, 7)))], ids=["torch", "gpt2"])
def test_rotate_heads_turns_a_rotated_copy_back(by_data, build, data):
    model, x = build(0), data()
    other = _rotated_copy(model, seed=1)
    assert (_outputs(other, x) - _outputs(model, x)).abs().max() < 1e-12  # a symmetry: the test's premise
    assert any(float((p - q).abs().max()) > 0.5 * float(p.abs().max())
               for p, q in zip(model.parameters(), other.parameters()))
    back = symmetry.rotate_heads(model, other, x if by_data else None)
    if by_data:  # heads matched and rotated by their activations: the model itself
        for (key, p), q in zip(model.state_dict().items(), back.state_dict().values()):
            torch.testing.assert_close(q, p, atol=1e-9, rtol=0, msg=key)  # noqa: B023
    else:  # by weights the heads stay in their order; each head is rotated towards the reference's, function kept
        assert (_outputs(back, x) - _outputs(model, x)).abs().max() < 1e-12


def test_rotate_heads_keeps_the_function_of_an_independent_model():
    reference, model, x = _model(0), _model(3), torch.randn(16, 5, 3, dtype=torch.float64)
    for data in (x, None):
        back = symmetry.rotate_heads(reference, model, data)
        assert (_outputs(back, x) - _outputs(model, x)).abs().max() < 1e-12
        distance = lambda m: sum(float((p - q).detach().pow(2).sum())  # noqa: E731
                                 for p, q in zip(reference.parameters(), m.parameters()))
        assert distance(back) < distance(model)
