"""Initial node embeddings of a neural graph."""
from __future__ import annotations

import torch
from torch import Tensor, nn

from nngraph.schema import (
    ACT_ARGS_DIM,
    CONV_ARGS_DIM,
    MAX_POOLS,
    NODE_FEATURE_DIM,
    NUM_ACTIVATIONS,
    NUM_NODE_KINDS,
    NUM_POOLS,
    OP_CATEGORIES,
    POOL_ARGS_DIM,
    NodeType,
)

from .compat import load_appended_rows, load_slotted_rows
from .utils import make_mlp


class NodeEncoder(nn.Module):
    r"""Embeds every neuron from its own features, nothing positional for hidden neurons.

    .. math::
        \mathbf{h}^{(0)}_v = \mathrm{MLP}\Big(\mathbf{W}_x \mathbf{x}_v + \mathbf{e}_{\text{kind}(v)}
        + \mathbf{e}_{\text{type}(v)} + \mathbf{e}_{\text{act}(v)} + \mathbf{e}_{\text{layer}(v)}
        + \mathbf{e}_{\text{io}(v)} + \mathbf{W}_a \mathbf{a}_v + \mathbf{W}_c \mathbf{c}_v
        + \textstyle\sum_s \mathbf{e}_{s,\text{pool}_s(v)} + \mathbf{W}_q \mathbf{q}_v + \mathbf{e}_{\text{op}(v)}
        \,[+\, \mathbf{W}_p \mathbf{p}_v]\Big)

    where :math:`\mathbf{e}_{\text{io}(v)}` is a learned embedding of an input or output neuron's
    ``io_position`` (separate tables for inputs and outputs; zero for hidden neurons, whose
    ``io_position`` is ``-1``); :math:`\mathbf{a}_v`, :math:`\mathbf{c}_v` and :math:`\mathbf{q}_v` are the
    activation's parameters ``act_args``, the convolution's ``conv_args`` and the poolings' ``pool_args``
    (flattened), squashed by :math:`\operatorname{asinh}` and read by bias-free linear maps (so that zeros, "none", add nothing), and
    :math:`\mathbf{e}_{s,\text{pool}_s(v)}` embeds the kind of the pooling in slot :math:`s` (zero for
    an empty slot), :math:`\mathbf{e}_{\text{op}(v)}` the category of an operation no converter names
    (``op_code[:, 0]``, :mod:`nngraph.convert.fallback`; zero for none), and the ``eps`` of a normalization
    (``norm_eps``, read as :math:`-\log_{10}(\epsilon) / 10`). Graphs without these fields read them
    as zeros. :math:`\mathbf{p}_v` are optional probe features (``data.probe``,
    see :func:`nngraph.convert.probe_features`). ``layer`` is the same for every neuron of an activation
    space, so it is invariant under permutations of hidden neurons.

    Args:
        hidden_dim (int): embedding width.
        num_io_embeddings (int): rows of each input / output index table; larger indices wrap
            around (``io_position % num_io_embeddings``). (default: :obj:`1024`)
        max_layers (int): rows of the layer table; deeper layers share the last row. (default: :obj:`256`)
        probe_dim (int): width :math:`P` of ``data.probe``, or 0 for no probe features. (default: :obj:`0`)
        act (str): activation of the MLP. (default: :obj:`"silu"`)

    Shapes:
        - **input:** ``x`` :math:`(N, 5)`, ``node_kind``, ``node_type``, ``act``, ``layer``,
          ``io_position`` :math:`(N,)` long; optional ``act_args`` :math:`(N, 2)`, ``conv_args``
          :math:`(N, 17)`, ``pool`` :math:`(N, 3)` long, ``pool_args`` :math:`(N, 3, 17)`, ``norm_eps``
          :math:`(N,)`, ``op_code``
          :math:`(N, 2)` long;
          ``probe`` :math:`(N, P)` (if ``probe_dim > 0``)
        - **output:** :math:`(N, \text{hidden\_dim})`
    """

    def __init__(self, hidden_dim: int, num_io_embeddings: int = 1024, max_layers: int = 256,
                 probe_dim: int = 0, act: str = "silu"):
        super().__init__()
        self.hidden_dim = hidden_dim
        self.num_io_embeddings = num_io_embeddings
        self.max_layers = max_layers
        self.probe_dim = probe_dim
        self.lin_x = nn.Linear(NODE_FEATURE_DIM, hidden_dim)
        self.emb_kind = nn.Embedding(NUM_NODE_KINDS, hidden_dim)
        self.emb_type = nn.Embedding(len(NodeType), hidden_dim)
        self.emb_act = nn.Embedding(NUM_ACTIVATIONS, hidden_dim)
        self.emb_layer = nn.Embedding(max_layers, hidden_dim)
        # rows [0, M) inputs, [M, 2M) outputs, row 2M hidden (fixed zero).
        self.emb_io = nn.Embedding(2 * num_io_embeddings + 1, hidden_dim, padding_idx=2 * num_io_embeddings)
        self.lin_probe = nn.Linear(probe_dim, hidden_dim) if probe_dim > 0 else None
        self.mlp = make_mlp(hidden_dim, hidden_dim, hidden_dim, act)
        self.lin_act_args = nn.Linear(ACT_ARGS_DIM, hidden_dim, bias=False)
        self.lin_conv_args = nn.Linear(CONV_ARGS_DIM, hidden_dim, bias=False)
        # row 0 for an empty slot (fixed zero), then NUM_POOLS - 1 kinds per slot
        self.emb_pool = nn.Embedding(1 + MAX_POOLS * (NUM_POOLS - 1), hidden_dim, padding_idx=0)
        self.lin_pool_args = nn.Linear(MAX_POOLS * POOL_ARGS_DIM, hidden_dim, bias=False)
        # row 0 for "no such operation" (fixed zero), then one row per hashed operation category
        self.emb_op = nn.Embedding(OP_CATEGORIES, hidden_dim, padding_idx=0)
        self.lin_norm_eps = nn.Linear(1, hidden_dim, bias=False)  # reads -log10(eps) / 10
        self.reset_parameters()

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        load_appended_rows(self, state_dict, prefix, ("emb_kind", "emb_act"))  # checkpoints of older formats
        load_slotted_rows(self, state_dict, prefix, "emb_pool", MAX_POOLS)  # saved before Pool grew
        if f"{prefix}emb_pool.weight" in state_dict and f"{prefix}emb_op.weight" not in state_dict:
            # saved before op_code: a zero table adds nothing, as no graph of that format has an opaque operation
            state_dict[f"{prefix}emb_op.weight"] = torch.zeros_like(self.emb_op.weight)
        if f"{prefix}emb_pool.weight" in state_dict and f"{prefix}lin_norm_eps.weight" not in state_dict:
            state_dict[f"{prefix}lin_norm_eps.weight"] = torch.zeros_like(self.lin_norm_eps.weight)  # before norm_eps
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def reset_parameters(self):
        # Balanced scales: the five tables sum to unit variance, and a unit-sized feature (weights and biases
        # scaled per layer, as the tasks' GraphScaler does) or probe vector adds as much again, so the part of
        # the embedding that depends on the model's values is as large as the part that describes its structure.
        tables = (self.emb_kind, self.emb_type, self.emb_act, self.emb_layer, self.emb_io)
        for emb in tables:
            nn.init.normal_(emb.weight, std=len(tables) ** -0.5)
        with torch.no_grad():
            self.emb_io.weight[self.emb_io.padding_idx].zero_()
        nn.init.normal_(self.lin_x.weight, std=1.0)  # one feature column is used per neuron kind
        nn.init.zeros_(self.lin_x.bias)
        if self.lin_probe is not None:
            nn.init.normal_(self.lin_probe.weight, std=self.probe_dim ** -0.5)
            nn.init.zeros_(self.lin_probe.bias)
        for m in self.mlp:
            if isinstance(m, nn.Linear):
                m.reset_parameters()
        nn.init.normal_(self.emb_pool.weight, std=len(tables) ** -0.5)
        nn.init.zeros_(self.emb_op.weight)  # learned from zero (draws no random numbers: seeds keep their models)
        nn.init.zeros_(self.lin_norm_eps.weight)
        with torch.no_grad():
            self.emb_pool.weight[0].zero_()
        for lin in (self.lin_act_args, self.lin_conv_args, self.lin_pool_args):
            nn.init.normal_(lin.weight, std=lin.in_features ** -0.5)

    def op_embedding(self, data, h: Tensor) -> Tensor:
        """``(N, H)``: the embedding of the operations' descriptions (``act_args``, ``conv_args``,
        ``pool``, ``pool_args``), zeros for the fields ``data`` does not have."""
        n = h.size(0)
        out = torch.zeros_like(h)
        for key, lin in (("act_args", self.lin_act_args), ("conv_args", self.lin_conv_args),
                         ("pool_args", self.lin_pool_args)):
            value = getattr(data, key, None)
            if value is not None:
                out = out + lin(torch.asinh(value.reshape(n, -1).to(h.dtype)))  # injective, tames thresholds of 20
        pool = getattr(data, "pool", None)
        if pool is not None:
            slot = torch.arange(MAX_POOLS, device=pool.device) * (NUM_POOLS - 1)  # (S,)
            rows = torch.where(pool > 0, pool + slot, torch.zeros_like(pool))  # (N, S)
            out = out + self.emb_pool(rows).sum(1)
        op_code = getattr(data, "op_code", None)
        if op_code is not None:
            out = out + self.emb_op(op_code[:, 0])
        eps = getattr(data, "norm_eps", None)
        if eps is not None:  # (N,): 1e-5 -> 0.5, 1e-12 -> 1.2, none -> 0
            eps = eps.to(h.dtype)
            scaled = torch.where(eps > 0, -torch.log10(eps.clamp_min(1e-30)) / 10, torch.zeros_like(eps))
            out = out + self.lin_norm_eps(scaled.unsqueeze(-1))
        return out  # (N, H)

    def io_index(self, node_type: Tensor, io_position: Tensor) -> Tensor:
        """Row of the input/output table of every node (the zero row for hidden neurons)."""
        m = self.num_io_embeddings
        idx = io_position.clamp(min=0) % m  # (N,)
        hidden = torch.full_like(idx, 2 * m)
        out = torch.where(node_type == NodeType.OUTPUT, idx + m, hidden)
        return torch.where(node_type == NodeType.INPUT, idx, out)  # (N,)

    def forward(self, data) -> Tensor:
        h = self.lin_x(data.x)  # (N, H)
        h = h + self.emb_kind(data.node_kind) + self.emb_type(data.node_type) + self.emb_act(data.act)
        h = h + self.emb_layer(data.layer.clamp(0, self.max_layers - 1))
        h = h + self.emb_io(self.io_index(data.node_type, data.io_position))
        h = h + self.op_embedding(data, h)
        if self.lin_probe is not None:
            probe = getattr(data, "probe", None)
            if probe is None:
                raise ValueError("the encoder was built with probe_dim > 0 but the graph has no 'probe'; "
                                 "set data.probe = nngraph.probe_features(module, inputs)")
            h = h + self.lin_probe(probe.to(h.dtype))
        return self.mlp(h)  # (N, H)

    def __repr__(self) -> str:
        return (f"{self.__class__.__name__}({self.hidden_dim}, num_io_embeddings={self.num_io_embeddings}, "
                f"probe_dim={self.probe_dim})")
