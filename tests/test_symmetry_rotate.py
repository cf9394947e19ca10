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


def _rotated_copy(model: nn.Module, seed: int) -> nn.Module:
    """``model`` with the heads of every attention swapped and each head's queries / keys and values rotated by
    random orthogonal matrices (the output projection undoing the values'): the same function."""
    import copy

    out = copy.deepcopy(model)
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in out.modules():
            if isinstance(m, nn.MultiheadAttention):
                e, d = m.embed_dim, m.head_dim
                dims = torch.cat([torch.arange(d, e), torch.arange(d)])  # head 1 first, then head 0
                rows = torch.cat([dims, dims + e, dims + 2 * e])
                m.in_proj_weight.copy_(m.in_proj_weight[rows]), m.in_proj_bias.copy_(m.in_proj_bias[rows])
                m.out_proj.weight.copy_(m.out_proj.weight[:, dims])
                for head in range(e // d):
                    rq, rv = (torch.linalg.qr(torch.randn(d, d, generator=g, dtype=torch.float64))[0] for _ in "qv")
                    for part, r in ((0, rq), (1, rq), (2, rv)):
                        sl = slice(part * e + head * d, part * e + (head + 1) * d)
                        m.in_proj_weight[sl] = r @ m.in_proj_weight[sl]
                        m.in_proj_bias[sl] = r @ m.in_proj_bias[sl]
                    cols = slice(head * d, (head + 1) * d)
                    m.out_proj.weight[:, cols] = m.out_proj.weight[:, cols] @ rv.T
    return out


def _outputs(model, x):
    with torch.no_grad():
        return model(x)


@pytest.mark.parametrize("by_data", [True, False])
def test_rotate_heads_turns_a_rotated_copy_back(by_data):
    model, x = _model(0), torch.randn(16, 5, 3, dtype=torch.float64)
    other = _rotated_copy(model, seed=1)
    assert (_outputs(other, x) - _outputs(model, x)).abs().max() < 1e-12  # a symmetry: the test's premise
    assert (other.state_dict()["1.layers.0.self_attn.in_proj_weight"] - model.state_dict()[
        "1.layers.0.self_attn.in_proj_weight"]).abs().max() > 0.1
    back = symmetry.rotate_heads(model, other, x if by_data else None)
    if by_data:  # heads matched and rotated by their activations: the model itself
        for (key, p), q in zip(model.state_dict().items(), back.state_dict().values()):
            torch.testing.assert_close(q, p, atol=1e-9, rtol=0, msg=key)
    else:  # by weights the heads stay in their order; each head is rotated towards the reference's, function kept
        assert (_outputs(back, x) - _outputs(model, x)).abs().max() < 1e-12


def test_rotate_heads_keeps_the_function_of_an_independent_model():
    reference, model, x = _model(0), _model(3), torch.randn(16, 5, 3, dtype=torch.float64)
    for data in (x, None):
        back = symmetry.rotate_heads(reference, model, data)
        assert (_outputs(back, x) - _outputs(model, x)).abs().max() < 1e-12
        distance = lambda m: sum(float((p - q).pow(2).sum()) for p, q in zip(reference.parameters(), m.parameters()))  # noqa: E731
        assert distance(back) < distance(model)
