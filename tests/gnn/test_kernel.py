import pytest
import torch

from nngraph.gnn import KernelDecoder, KernelLinear
from nngraph.gnn.kernel import centred_positions

from .handmade import pad_box


def test_centred_positions():
    # a 1x1 kernel sits at the centre of a 1x3x3 box; a 3x3 kernel covers all of it
    assert centred_positions((1, 1, 1), (1, 3, 3)).tolist() == [4]
    assert centred_positions((1, 3, 3), (1, 3, 3)).tolist() == list(range(9))
    assert centred_positions((1, 1, 3), (1, 3, 3)).tolist() == [3, 4, 5]
    with pytest.raises(ValueError, match="larger max_kernel_box"):
        centred_positions((1, 9, 9), (3, 7, 7))


def test_kernel_linear_equals_linear_on_padding():
    torch.manual_seed(0)
    lin = KernelLinear(6, max_kernel_box=(3, 7, 7)).double()
    w = torch.randn(10, 9, dtype=torch.float64)  # ten 3x3 kernels
    y3 = lin(w, torch.tensor([[1, 3, 3]]))
    for box in [(1, 5, 5), (3, 5, 5), (3, 7, 7)]:
        g = _graph(w, (1, 3, 3))
        padded = pad_box(g, box)
        assert torch.allclose(lin(padded.edge_attr, padded.kernel_box), y3, atol=1e-12, rtol=0)
    # and it is a plain linear map on the kernel zero-padded into max_kernel_box
    full = pad_box(_graph(w, (1, 3, 3)), (3, 7, 7)).edge_attr
    assert torch.allclose(full @ lin.weight + lin.bias, y3, atol=1e-12, rtol=0)


def test_kernel_decoder_crops_centre():
    torch.manual_seed(0)
    dec = KernelDecoder(4, max_kernel_box=(1, 5, 5)).double()
    h = torch.randn(7, 4, dtype=torch.float64)
    big = dec(h, (1, 5, 5), 25).view(7, 5, 5)
    small = dec(h, torch.tensor([[1, 3, 3], [1, 3, 3]]), 9).view(7, 3, 3)
    one = dec(h, (1, 1, 1), 1).view(7)
    assert torch.allclose(big[:, 1:4, 1:4], small, atol=1e-12, rtol=0)
    assert torch.allclose(big[:, 2, 2], one, atol=1e-12, rtol=0)
    with pytest.raises(ValueError, match="does not match"):
        dec(h, (1, 3, 3), 25)
    assert "max_kernel_box=(1, 5, 5)" in repr(dec)


def _graph(edge_attr, box):
    from torch_geometric.data import Data
    return Data(edge_attr=edge_attr, kernel_box=torch.tensor([box]))
