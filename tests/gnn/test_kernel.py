import pytest
import torch

from nngraph.gnn import KernelDecoder, KernelLinear
from nngraph.gnn.kernel import centred_positions
from nngraph.kernels import KERNEL_SHAPE_DTYPE


def test_centred_positions():
    # a 1x1 kernel sits at the centre of a 1x3x3 box; a 3x3 kernel covers all of it
    assert centred_positions((1, 1, 1), (1, 3, 3)).tolist() == [4]
    assert centred_positions((1, 3, 3), (1, 3, 3)).tolist() == list(range(9))
    assert centred_positions((1, 1, 3), (1, 3, 3)).tolist() == [3, 4, 5]
    with pytest.raises(ValueError, match="larger max_kernel_box"):
        centred_positions((1, 9, 9), (3, 7, 7))


def pad_into(kernels: torch.Tensor, shape, box) -> torch.Tensor:
    """Reference: ``(E, prod(shape))`` kernels zero-padded, centred, into ``box``: ``(E, prod(box))``."""
    out = torch.zeros(kernels.size(0), *box, dtype=kernels.dtype)
    o = [(m - k) // 2 for k, m in zip(shape, box)]
    out[:, o[0]:o[0] + shape[0], o[1]:o[1] + shape[1], o[2]:o[2] + shape[2]] = kernels.view(-1, *shape)
    return out.reshape(kernels.size(0), -1)


def mixed_kernels(generator=None):
    """Edges of four shapes, interleaved: ``(edge_attr (W, 1), kernel_shape (E, 3), [(shape, kernel), ...])``."""
    shapes = [(1, 3, 3), (1, 1, 1), (1, 7, 7), (3, 1, 2), (1, 1, 1), (1, 3, 3), (1, 4, 4)]
    kernels = [torch.randn(1, shape[0] * shape[1] * shape[2], generator=generator, dtype=torch.float64)
               for shape in shapes]
    edge_attr = torch.cat([k.view(-1, 1) for k in kernels])  # (W, 1)
    return edge_attr, torch.tensor(shapes, dtype=KERNEL_SHAPE_DTYPE), list(zip(shapes, kernels))


def test_kernel_linear_is_a_linear_map_on_the_padded_kernel():
    torch.manual_seed(0)
    lin = KernelLinear(6, max_kernel_box=(3, 7, 7)).double()
    edge_attr, kernel_shape, pieces = mixed_kernels(torch.Generator().manual_seed(0))
    y = lin(edge_attr, kernel_shape)  # (E, 6)
    assert y.shape == (len(pieces), 6)
    for e, (shape, kernel) in enumerate(pieces):
        full = pad_into(kernel, shape, (3, 7, 7))  # (1, 147)
        assert torch.allclose(y[e], (full @ lin.weight + lin.bias)[0], atol=1e-12, rtol=0), e
    # 1x1-only input (W == E): the one-product path gives what the grouped path gives
    ones = torch.randn(5, 1, dtype=torch.float64)
    assert torch.allclose(lin(ones, torch.ones(5, 3, dtype=KERNEL_SHAPE_DTYPE)),
                          pad_into(ones, (1, 1, 1), (3, 7, 7)) @ lin.weight + lin.bias, atol=1e-12, rtol=0)
    assert torch.equal(lin(ones, None), lin(ones, torch.ones(5, 3, dtype=KERNEL_SHAPE_DTYPE)))
    with pytest.raises(ValueError, match="every kernel entry as a row"):
        lin(torch.randn(5, 9, dtype=torch.float64), None)  # the old padded (E, K) format


def test_kernel_decoder_crops_each_edge_to_its_shape():
    torch.manual_seed(0)
    dec = KernelDecoder(4, max_kernel_box=(3, 7, 7)).double()
    edge_attr, kernel_shape, pieces = mixed_kernels()
    h = torch.randn(len(pieces), 4, dtype=torch.float64)
    out = dec(h, kernel_shape)  # (W, 1), laid out as edge_attr
    assert out.shape == edge_attr.shape
    full = (h @ dec.weight.t() + dec.bias).view(-1, 3, 7, 7)  # every edge's kernel in the whole box
    start = 0
    for e, (shape, _) in enumerate(pieces):
        k = shape[0] * shape[1] * shape[2]
        o = [(m - s) // 2 for s, m in zip(shape, (3, 7, 7))]
        centre = full[e, o[0]:o[0] + shape[0], o[1]:o[1] + shape[1], o[2]:o[2] + shape[2]]
        assert torch.allclose(out[start:start + k, 0], centre.reshape(-1), atol=1e-12, rtol=0), e
        start += k
    one = dec(h, None)  # every kernel 1x1: the centre of the box
    assert torch.allclose(one[:, 0], full[:, 1, 3, 3], atol=1e-12, rtol=0)
    assert "max_kernel_box=(3, 7, 7)" in repr(dec)


def test_kernel_decoder_channels_are_single_channel_decoders():
    """Output channel j of a k-channel decoder is the decoder of weight block j and bias column j."""
    torch.manual_seed(0)
    dec = KernelDecoder(4, max_kernel_box=(3, 7, 7), out_channels=3).double()
    dec.bias.data.normal_()  # zero at initialisation: make it count
    assert dec.weight.shape == (147, 12) and dec.bias.shape == (441,)
    assert repr(dec) == "KernelDecoder(in_channels=4, max_kernel_box=(3, 7, 7), out_channels=3)"
    edge_attr, kernel_shape, pieces = mixed_kernels()
    h = torch.randn(len(pieces), 4, dtype=torch.float64)
    out = dec(h, kernel_shape)  # (W, 3)
    one_by_one = dec(h, None)  # (E, 3): every kernel 1x1
    assert out.shape == (edge_attr.size(0), 3) and one_by_one.shape == (len(pieces), 3)
    for j in range(3):
        single = KernelDecoder(4, max_kernel_box=(3, 7, 7)).double()
        single.weight.data.copy_(dec.weight[:, 4 * j:4 * (j + 1)])
        single.bias.data.copy_(dec.bias.view(147, 3)[:, j])
        assert torch.allclose(out[:, j:j + 1], single(h, kernel_shape), atol=1e-12, rtol=0), j
        assert torch.allclose(one_by_one[:, j:j + 1], single(h, None), atol=1e-12, rtol=0), j
    with pytest.raises(ValueError, match="out_channels"):
        KernelDecoder(4, out_channels=0)
