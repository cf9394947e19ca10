"""Convolutions: nn.Conv1d/2d/3d and nn.ConvTranspose1d/2d/3d.

The neurons of a convolution are its channels (:attr:`NodeKind.CONV`, on axis 1 of
``(B, C, *spatial)``). Every (in-channel, out-channel) pair that the groups connect is one
:attr:`EdgeType.WEIGHT` edge carrying the whole kernel, flattened in C order with the kernel shape
padded to three dimensions: ``(1, 1, k)`` for 1d, ``(1, kh, kw)`` for 2d, ``(kd, kh, kw)`` for 3d.
The bias is the ``BIAS`` feature of the out-channel's node.

Stride, padding, dilation and ``padding_mode`` act on positions, never on channels: they do not
change the edges, and are recorded in the out-channels' ``conv_args`` (:data:`~nngraph.schema.CONV_ARGS`)
so that two convolutions walking over positions differently never give one graph. With ``groups``
``g``, out-channel ``o`` reads only the in-channels of its group, so a layer has
``C_out * C_in / g`` edges (``C`` for a depthwise convolution). A grouped convolution is symmetric
only under permutations that keep its groups together, which the layout's symmetry classes record
conservatively (see :func:`constrain_groups`).

A transposed convolution stores its weight as ``(C_in, C_out / g, *k)``; its edges go from
in-channel ``i`` to the out-channels of ``i``'s group, each carrying ``weight[i, j]`` as stored
(not flipped into the equivalent forward convolution).
"""
from __future__ import annotations

import torch
from torch import nn

from ..schema import BIAS, PADDING_MODES, EdgeType, NodeKind
from .errors import UnsupportedError, describe
from .registry import register_module
from .values import TensorValue

_CONVS = (nn.Conv1d, nn.Conv2d, nn.Conv3d)
_TRANSPOSED = (nn.ConvTranspose1d, nn.ConvTranspose2d, nn.ConvTranspose3d)


def kernel_shape_3d(kernel_size: tuple[int, ...]) -> tuple[int, int, int]:
    """``(k,) -> (1, 1, k)``, ``(kh, kw) -> (1, kh, kw)``, ``(kd, kh, kw)`` unchanged."""
    if not 1 <= len(kernel_size) <= 3:
        raise ValueError(f"kernel of {len(kernel_size)} dimensions; 1 to 3 are supported")
    return tuple([1] * (3 - len(kernel_size)) + [int(k) for k in kernel_size])  # type: ignore[return-value]


def conv_args(module: nn.modules.conv._ConvNd, padded: tuple[int, ...] = ()) -> tuple[float, ...]:
    """The :data:`~nngraph.schema.CONV_ARGS` row of ``module``: per axis ``(d, h, w)`` (right-aligned,
    missing axes the identity) the stride, the padding before and after, the dilation and the
    output padding, then the padding mode and whether it is transposed. ``padded`` are the zeros
    ``F.pad`` added to the input first (``(left_w, right_w, left_h, right_h, ...)``): the same
    function as a convolution padding that much more, so they are recorded as its padding."""
    dims = len(module.kernel_size)

    def axes(values, fill) -> list[float]:
        return [float(fill)] * (3 - dims) + [float(v) for v in values]

    if module.padding == "valid":
        before = after = [0] * dims
    elif module.padding == "same":
        pairs = module._reversed_padding_repeated_twice  # (left_w, right_w, left_h, right_h, ...)
        before = [pairs[2 * (dims - 1 - i)] for i in range(dims)]
        after = [pairs[2 * (dims - 1 - i) + 1] for i in range(dims)]
    else:
        before = after = list(module.padding)
    before, after = [int(v) for v in before], [int(v) for v in after]
    for i in range(len(padded) // 2):  # pair i pads the i-th axis from the end
        before[dims - 1 - i] += int(padded[2 * i])
        after[dims - 1 - i] += int(padded[2 * i + 1])
    output_padding = module.output_padding if module.transposed else (0,) * dims
    return (*axes(module.stride, 1), *axes(before, 0), *axes(after, 0), *axes(module.dilation, 1),
            *axes(output_padding, 0), float(PADDING_MODES.index(module.padding_mode)), float(module.transposed))


def grouped_pairs(n_in: int, n_out: int, groups: int, transposed: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """Channel indices of every (in, out) pair the groups connect, in the order of the weight's
    first two dimensions.

    Returns:
        ``(in_idx, out_idx)``, both ``(C_out, C_in / g)`` for a convolution (weight
        ``(C_out, C_in / g, *k)``) and ``(C_in, C_out / g)`` for a transposed one (weight
        ``(C_in, C_out / g, *k)``).
    """
    cin_g, cout_g = n_in // groups, n_out // groups
    if not transposed:
        o = torch.arange(n_out).view(-1, 1)  # (C_out, 1)
        j = torch.arange(cin_g).view(1, -1)  # (1, C_in / g)
        in_idx = (o // cout_g) * cin_g + j  # (C_out, C_in / g)
        return in_idx, o.expand(n_out, cin_g)
    i = torch.arange(n_in).view(-1, 1)  # (C_in, 1)
    j = torch.arange(cout_g).view(1, -1)  # (1, C_out / g)
    out_idx = (i // cin_g) * cout_g + j  # (C_in, C_out / g)
    return i.expand(n_in, cout_g), out_idx


def constrain_groups(builder, in_nodes: torch.Tensor, out_nodes: torch.Tensor, groups: int) -> None:
    """Restrict the symmetries of a grouped layer's channels to ones that keep its groups intact.

    With ``C_in / g == C_out / g`` (depthwise with multiplier 1 included) the in- and out-channels
    are permuted together by one permutation that keeps blocks of ``C_in / g`` channels whole
    (tie + block constraint): every such permutation preserves the function. Otherwise (channel
    multipliers) the two spaces cannot share one permutation, and both classes are frozen:
    conservative, so :func:`~nngraph.convert.random_hidden_permutation` never proposes a
    permutation that changes the function.
    """
    if groups == 1:
        return
    cin_g, cout_g = in_nodes.numel() // groups, out_nodes.numel() // groups
    if cin_g == cout_g:
        builder.tie(in_nodes, out_nodes)
        if cin_g > 1:
            builder.constrain_blocks(out_nodes, cin_g)
        return
    for nodes in (in_nodes, out_nodes):
        builder.fix(nodes)  # no permutation of these classes is sampled


def _convert(ctx, node, x, transposed: bool) -> TensorValue:
    module = ctx.module_of(node)
    name = node.target
    dims = len(module.kernel_size)
    if isinstance(x, TensorValue) and x.spatial:
        raise UnsupportedError(
            f"{describe(node)} convolves a flattened tensor (neurons spanning positions {x.spatial}); "
            "convolutions need (B, C, *spatial) inputs with the channels on axis 1"
        )
    padded = x.padded if isinstance(x, TensorValue) else ()
    if padded:
        if module.padding_mode != "zeros" or len(padded) // 2 > dims:
            raise UnsupportedError(f"{describe(node)} reads an input zero-padded by {list(padded)} but pads "
                                   f"with {module.padding_mode!r} itself (or pads other axes)")
        x = x.with_(padded=())
    x = ctx.neurons(x, -(dims + 1), node)  # channels: axis 1 of (B, C, *S), axis 0 of unbatched (C, *S)
    if x.num_neurons != module.in_channels:
        raise ValueError(f"{x.num_neurons} input channels, the layer expects in_channels={module.in_channels}")
    builder = ctx.builder
    n_in, n_out, groups = module.in_channels, module.out_channels, module.groups
    out = builder.add_nodes(n_out, NodeKind.CONV, layer=builder.node_layer(x.nodes) + 1)
    kernel_shape = kernel_shape_3d(module.kernel_size)
    weight_shape = tuple(module.weight.shape)  # (W0, W1, *k)
    # weight[a, b, *k] -> edge a * W1 + b, kernel position = flat index of *k (C order)
    if groups == 1:  # every channel pair: a grid (sources major for a transposed conv's (C_in, C_out) weight)
        start, _, pair_strides = builder.add_grid(x.nodes, out, EdgeType.WEIGHT, kernel_shape, transposed)
        edge_of_entry = (start, weight_shape, (*pair_strides, *[0] * dims))  # (W0, W1, *k), broadcast over k
    else:
        in_idx, out_idx = grouped_pairs(n_in, n_out, groups, transposed)  # each (W0, W1): weight.shape[:2]
        edges = builder.add_edges(x.nodes[in_idx], out[out_idx], EdgeType.WEIGHT, kernel_shape=kernel_shape)
        edge_of_entry = edges.view(*weight_shape[:2], *[1] * dims)  # (W0, W1, 1, ...), broadcast over k
    position = torch.arange(module.weight[0, 0].numel()).view(1, 1, *module.kernel_size)  # (1, 1, *k)
    builder.place_edge_param(f"{name}.weight", edge_of_entry, position, kernel_shape)
    if module.bias is not None:
        builder.place_node_param(f"{name}.bias", out, BIAS)
    builder.set_conv_args(out, conv_args(module, padded))
    constrain_groups(builder, x.nodes, out, groups)
    builder.record_module_nodes(name, out)
    shape = ctx.shape_of(node)
    return TensorValue(nodes=out, shape=shape, axis=len(shape) - dims - 1, source=node)


@register_module(*_CONVS)
def convert_conv(ctx, node, x, *args, **kwargs) -> TensorValue:
    """``(B, C_in, *S) -> (B, C_out, *S')``: one CONV node per out-channel, one edge per connected
    channel pair carrying its kernel."""
    return _convert(ctx, node, x, transposed=False)


@register_module(*_TRANSPOSED)
def convert_conv_transpose(ctx, node, x, *args, **kwargs) -> TensorValue:
    """Like :func:`convert_conv`, with the weight's ``(C_in, C_out / g)`` layout."""
    return _convert(ctx, node, x, transposed=True)
