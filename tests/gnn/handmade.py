"""Hand-built neural graphs for developing the GNN without the converter (schema.py format).

Only plain ``nn.Sequential`` MLPs (Linear + activation modules) and a synthetic conv graph; the real
converter (``nngraph.to_graph``) replaces these where it is available.
"""
from __future__ import annotations

import copy
import math

import torch
from torch import nn
from torch_geometric.data import Data

from nngraph.kernels import KERNEL_SHAPE_DTYPE, reorder_kernels
from nngraph.modules import Sine
from nngraph.schema import Activation, EdgeType, NodeKind, NodeType

ACTS = {nn.ReLU: Activation.RELU, nn.Tanh: Activation.TANH, Sine: Activation.SINE, nn.GELU: Activation.GELU,
        nn.SiLU: Activation.SILU, nn.Sigmoid: Activation.SIGMOID}


def mlp_graph(model: nn.Sequential) -> Data:
    """The neural graph of a ``nn.Sequential`` of ``nn.Linear`` and activation modules."""
    layers = list(model)
    linears = [i for i, m in enumerate(layers) if isinstance(m, nn.Linear)]
    first = layers[linears[0]]
    dtype = first.weight.dtype
    x, ntype, kind, index, layer, act = [], [], [], [], [], []
    n_in = first.in_features
    x.append(torch.zeros(n_in, 5, dtype=dtype))
    ntype += [NodeType.INPUT] * n_in
    kind += [NodeKind.INPUT] * n_in
    index += list(range(n_in))
    layer += [0] * n_in
    act += [Activation.NONE] * n_in
    src, dst, attr = [], [], []
    offset_in, offset = 0, n_in
    for depth, li in enumerate(linears, start=1):
        lin = layers[li]
        nxt = layers[li + 1] if li + 1 < len(layers) else None
        a = ACTS.get(type(nxt), Activation.NONE)
        last = depth == len(linears)
        n_out = lin.out_features
        xb = torch.zeros(n_out, 5, dtype=dtype)
        if lin.bias is not None:
            xb[:, 0] = lin.bias.detach()
        x.append(xb)
        ntype += [NodeType.OUTPUT if last else NodeType.HIDDEN] * n_out
        kind += [NodeKind.LINEAR] * n_out
        index += list(range(n_out)) if last else [-1] * n_out
        layer += [depth] * n_out
        act += [a] * n_out
        o, i = torch.meshgrid(torch.arange(n_out), torch.arange(lin.in_features), indexing="ij")
        src.append(i.reshape(-1) + offset_in)
        dst.append(o.reshape(-1) + offset)
        attr.append(lin.weight.detach().reshape(-1, 1))
        offset_in, offset = offset, offset + n_out
    lt = lambda v: torch.tensor([int(t) for t in v], dtype=torch.long)
    E = sum(s.numel() for s in src)
    return Data(x=torch.cat(x), node_type=lt(ntype), node_kind=lt(kind), io_position=lt(index), layer=lt(layer),
                act=lt(act), edge_index=torch.stack([torch.cat(src), torch.cat(dst)]), edge_attr=torch.cat(attr),
                edge_type=torch.full((E,), int(EdgeType.WEIGHT)),
                kernel_shape=torch.ones(E, 3, dtype=KERNEL_SHAPE_DTYPE))


def permute_mlp(model: nn.Sequential, generator: torch.Generator | None = None,
                example_inputs=None) -> tuple[nn.Sequential, torch.Tensor]:
    """Randomly relabels hidden neurons: returns the permuted copy and ``node_perm`` (old -> new node)."""
    model = copy.deepcopy(model)
    linears = [m for m in model if isinstance(m, nn.Linear)]
    node_perm = [torch.arange(linears[0].in_features)]
    offset = linears[0].in_features
    for k, lin in enumerate(linears):
        n = lin.out_features
        if k == len(linears) - 1:
            node_perm.append(torch.arange(n) + offset)
            break
        q = torch.randperm(n, generator=generator)  # new neuron j = old neuron q[j]
        with torch.no_grad():
            lin.weight.copy_(lin.weight[q])
            if lin.bias is not None:
                lin.bias.copy_(lin.bias[q])
            linears[k + 1].weight.copy_(linears[k + 1].weight[:, q])
        node_perm.append(torch.argsort(q) + offset)  # old i -> new argsort(q)[i]
        offset += n
    return model, torch.cat(node_perm)


def conv_graph(channels=(3, 4, 5), k=3, classes=3, generator=None, dtype=torch.float32) -> Data:
    """A synthetic CNN-like graph: conv layers (channel-pair edges, k x k kernels) then a 1x1 classifier.

    The classifier edges carry one weight each (1x1 kernels), as the converter stores them.
    """
    chans = list(channels) + [classes]
    n = sum(chans)
    offs = [0] + list(torch.tensor(chans).cumsum(0).tolist())
    K = k * k
    x = torch.zeros(n, 5, dtype=dtype)
    x[chans[0]:, 0] = torch.randn(n - chans[0], generator=generator, dtype=dtype)
    ntype = torch.full((n,), int(NodeType.HIDDEN))
    ntype[:chans[0]] = NodeType.INPUT
    ntype[offs[-2]:] = NodeType.OUTPUT
    kind = torch.full((n,), int(NodeKind.CONV))
    kind[:chans[0]] = NodeKind.INPUT
    kind[offs[-2]:] = NodeKind.LINEAR
    index = torch.full((n,), -1)
    index[:chans[0]] = torch.arange(chans[0])
    index[offs[-2]:] = torch.arange(classes)
    layer = torch.cat([torch.full((c,), d) for d, c in enumerate(chans)])
    act = torch.where(ntype == NodeType.HIDDEN, int(Activation.RELU), 0)
    src, dst, attr, shapes = [], [], [], []
    for d in range(len(chans) - 1):
        o, i = torch.meshgrid(torch.arange(chans[d + 1]), torch.arange(chans[d]), indexing="ij")
        src.append(i.reshape(-1) + offs[d])
        dst.append(o.reshape(-1) + offs[d + 1])
        if d == len(chans) - 2:
            w, shape = torch.randn(o.numel(), 1, generator=generator, dtype=dtype), (1, 1, 1)
        else:
            w, shape = torch.randn(o.numel(), K, generator=generator, dtype=dtype) / math.sqrt(K), (1, k, k)
        attr.append(w.reshape(-1, 1))  # (E_d * K_d, 1): the kernels one after another
        shapes.append(torch.tensor([shape], dtype=KERNEL_SHAPE_DTYPE).expand(o.numel(), 3))
    E = sum(s.numel() for s in src)
    return Data(x=x, node_type=ntype, node_kind=kind, io_position=index, layer=layer, act=act,
                edge_index=torch.stack([torch.cat(src), torch.cat(dst)]), edge_attr=torch.cat(attr),
                edge_type=torch.zeros(E, dtype=torch.long), kernel_shape=torch.cat(shapes))


def permute_graph(graph: Data, generator=None) -> tuple[Data, torch.Tensor]:
    """Relabels the hidden nodes of a graph directly (and shuffles its edge order): ``(graph2, node_perm)``."""
    n = graph.num_nodes
    hidden = (graph.node_type == NodeType.HIDDEN).nonzero().view(-1)
    node_perm = torch.arange(n)
    node_perm[hidden] = hidden[torch.randperm(hidden.numel(), generator=generator)]
    inv = torch.argsort(node_perm)  # new node -> old node
    out = graph.clone()
    for key in ("x", "node_type", "node_kind", "io_position", "layer", "act"):
        out[key] = graph[key][inv]
    eperm = torch.randperm(graph.num_edges, generator=generator)
    out.edge_index = node_perm[graph.edge_index][:, eperm]
    out.edge_attr = reorder_kernels(graph.edge_attr, graph.kernel_shape, eperm)
    out.edge_type = graph.edge_type[eperm]
    out.kernel_shape = graph.kernel_shape[eperm]
    return out, node_perm
