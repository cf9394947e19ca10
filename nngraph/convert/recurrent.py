"""Recurrent layers: nn.RNN (tanh, relu), nn.LSTM and nn.GRU; stacked, bidirectional, batch first.

Per layer ``l`` and direction (``H`` hidden units, ``G`` gates: 1 for RNN, 4 for LSTM ``(i, f, g, o)``,
3 for GRU ``(r, z, n)``, ``I`` input neurons):

- ``G * H`` :attr:`NodeKind.LINEAR` neurons, one per row of ``weight_ih_l{l}`` (gate-major, as stored),
  with a :attr:`EdgeType.WEIGHT` edge from every input neuron and ``bias_ih_l{l}`` as their bias;
- ``G * H`` :attr:`NodeKind.LINEAR` neurons, one per row of ``weight_hh_l{l}``, with a
  :attr:`EdgeType.RECURRENT` edge from every hidden unit of the same layer and direction (its value at
  the previous step: the graph has a cycle) and ``bias_hh_l{l}`` as their bias. GRU's ``b_hn`` sits
  inside ``r * (W_hn h + b_hn)``, so keeping the two biases on their own neurons keeps it apart from
  ``b_in``;
- the gates, one neuron per gate and unit, with :attr:`EdgeType.RESIDUAL` edges from their two row
  neurons (the gate's pre-activation is their sum) and the gate's activation recorded:
  RNN: the hidden unit itself (``tanh`` or ``relu``); LSTM: :attr:`~NodeKind.GATE_INPUT`,
  :attr:`~NodeKind.GATE_FORGET`, :attr:`~NodeKind.GATE_OUTPUT` (sigmoid) and :attr:`~NodeKind.CANDIDATE`
  (tanh); GRU: :attr:`~NodeKind.GATE_RESET`, :attr:`~NodeKind.GATE_UPDATE` (sigmoid) and
  :attr:`~NodeKind.CANDIDATE` (tanh) with a :attr:`EdgeType.GATE` edge from ``r`` (the reset multiplies
  the hidden row's part);
- the states, with :attr:`EdgeType.GATE` edges from what makes them: LSTM's :attr:`NodeKind.LSTM_CELL`
  ``c = f * c_prev + i * g`` from ``i``, ``f``, ``g``; the :attr:`NodeKind.RECURRENT_HIDDEN` unit
  ``h = o * tanh(c)`` from ``o`` and ``c`` (LSTM) or ``h = (1 - z) * n + z * h_prev`` from ``z`` and
  ``n`` (GRU).

Symmetry: permuting the hidden units of one layer and direction (rows of every gate block of
``weight_ih`` / ``weight_hh`` / the biases, columns of ``weight_hh``, the next layer's input columns)
preserves the function when the initial state is zero, so every neuron above of one layer and
direction is tied to its unit (gate ``k`` of unit ``j`` moves with unit ``j``); the two directions and
the layers are separate classes. An initial state passed in (a model input or a constant) fixes the
units; one computed from activations is refused, as are ``proj_size`` and packed sequences. Dropout
between layers is element-wise noise in training (as ``nn.Dropout``) and nothing in evaluation.

The output ``(B, T, D * H)`` (or ``(T, B, D * H)``) holds the last layer's units, forward then
backward, on its last axis; ``h_n`` / ``c_n`` ``(L * D, B, H)`` hold every layer's and direction's
units split into ``L * D`` groups along axis 0, so ``h_n[-1]`` reads one layer's units whole and keeps
their symmetry (``nngraph.convert.movement``); a Linear on ``h_n`` itself is refused.
"""
from __future__ import annotations

import torch
from torch import nn

from ..schema import BIAS, Activation, EdgeType, NodeKind
from .errors import UnsupportedError, describe
from .registry import register_module
from .values import Opaque, TensorValue

#: Gate kinds in the row order of ``weight_ih`` / ``weight_hh``, with their activations.
_GATES = {
    nn.LSTM: ((NodeKind.GATE_INPUT, Activation.SIGMOID), (NodeKind.GATE_FORGET, Activation.SIGMOID),
              (NodeKind.CANDIDATE, Activation.TANH), (NodeKind.GATE_OUTPUT, Activation.SIGMOID)),
    nn.GRU: ((NodeKind.GATE_RESET, Activation.SIGMOID), (NodeKind.GATE_UPDATE, Activation.SIGMOID),
             (NodeKind.CANDIDATE, Activation.TANH)),
}


def num_gates(module: nn.RNNBase) -> int:
    """Rows of ``weight_ih`` per hidden unit: 1 (RNN), 4 (LSTM), 3 (GRU)."""
    return {nn.RNN: 1, nn.LSTM: 4, nn.GRU: 3}[type(module)]


def check_recurrent(node, module: nn.RNNBase) -> None:
    """Refuse what the representation does not cover."""
    if getattr(module, "proj_size", 0):
        raise UnsupportedError(
            f"{describe(node)} projects its hidden state (proj_size={module.proj_size}): h = W_hr (o * tanh(c)) "
            "feeds the recurrence through another space, which nngraph does not represent; use proj_size=0"
        )


def _row_neurons(builder, name: str, src: torch.Tensor, gates: int, units: int, layer: int,
                 edge_type: EdgeType) -> torch.Tensor:
    """``gates * units`` LINEAR neurons (one activation space per gate, to be tied to the units) reading
    every neuron of ``src`` ``(C,)`` through weight ``name`` ``(gates * units, C)`` (edge ``r * C + c``
    carries ``weight[r, c]``); returns their ids ``(gates * units,)``."""
    out = torch.cat([builder.add_nodes(units, NodeKind.LINEAR, layer) for _ in range(gates)])
    rows = gates * units
    edges = builder.add_edges(src.repeat(rows), out.repeat_interleave(src.numel()), edge_type)  # (rows * C,)
    builder.place_edge_param(name, edges.view(rows, src.numel()))  # (rows, C)
    return out


def recurrent_direction(builder, module: nn.RNNBase, name: str, layer: int, suffix: str,
                        in_nodes: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
    """The neurons of layer ``layer`` and direction ``suffix`` (``""`` or ``"_reverse"``) of ``module``
    (parameters ``name.*``) reading ``in_nodes`` ``(I,)``; returns ``(hidden (H,), cell (H,) or None)``."""
    h, g = module.hidden_size, num_gates(module)
    base = builder.node_layer(in_nodes)
    kind = type(module)
    depth = {nn.RNN: 2, nn.GRU: 3, nn.LSTM: 4}[kind]  # the units come after the rows, the gates (and the cell)
    hidden = builder.add_nodes(h, NodeKind.RECURRENT_HIDDEN, base + depth)
    ih = _row_neurons(builder, f"{name}.weight_ih_l{layer}{suffix}", in_nodes, g, h, base + 1, EdgeType.WEIGHT)
    hh = _row_neurons(builder, f"{name}.weight_hh_l{layer}{suffix}", hidden, g, h, base + 1, EdgeType.RECURRENT)
    if module.bias:
        builder.place_node_param(f"{name}.bias_ih_l{layer}{suffix}", ih, BIAS)
        builder.place_node_param(f"{name}.bias_hh_l{layer}{suffix}", hh, BIAS)
    ih_rows, hh_rows = ih.view(g, h), hh.view(g, h)  # (G, H): row k * H + j is gate k of unit j
    moving = list(ih_rows) + list(hh_rows)  # every space that moves with the units
    gates, cell = [hidden], None
    if kind is nn.RNN:  # the unit is the gate: h = act(ih + hh)
        builder.add_edges(torch.cat([ih, hh]), hidden.repeat(2), EdgeType.RESIDUAL, identity=True)
        builder.set_activation(hidden, Activation.TANH if module.nonlinearity == "tanh" else Activation.RELU)
    else:
        gates = []
        for k, (gate_kind, act) in enumerate(_GATES[kind]):
            gate = builder.add_nodes(h, gate_kind, base + 2)
            builder.add_edges(torch.cat([ih_rows[k], hh_rows[k]]), gate.repeat(2), EdgeType.RESIDUAL, identity=True)
            builder.set_activation(gate, act)
            gates.append(gate)
        moving += gates
        if kind is nn.LSTM:  # c = f * c_prev + i * g, h = o * tanh(c)
            i, f, c_in, o = gates
            cell = builder.add_nodes(h, NodeKind.LSTM_CELL, base + 3)
            builder.add_edges(torch.cat([i, f, c_in]), cell.repeat(3), EdgeType.GATE, identity=True)
            builder.add_edges(torch.cat([o, cell]), hidden.repeat(2), EdgeType.GATE, identity=True)
            moving.append(cell)
            builder.mark_read_inside(cell)
        else:  # n = tanh(ih_n + r * hh_n), h = (1 - z) * n + z * h_prev
            r, z, n = gates
            builder.add_edges(r, n, EdgeType.GATE, identity=True)
            builder.add_edges(torch.cat([z, n]), hidden.repeat(2), EdgeType.GATE, identity=True)
    for space in moving:
        builder.tie(hidden, space)
    builder.mark_read_inside(hidden)
    key = f"{name}.l{layer}{suffix}"
    builder.record_module_nodes(key, hidden)
    builder.record_module_nodes(f"{key}.ih", ih)
    builder.record_module_nodes(f"{key}.hh", hh)
    builder.record_module_nodes(f"{key}.gates", torch.cat(gates))  # (G * H,) in row order; RNN: the units
    if cell is not None:
        builder.record_module_nodes(f"{key}.cell", cell)
    return hidden, cell


def _initial_state(node, hx) -> bool:
    """Whether an initial state was passed. A model input or a constant is accepted (the units are then
    fixed: the state does not move with them); one computed from the model's activations is refused."""
    if hx is None:
        return False
    parts = list(hx) if isinstance(hx, (tuple, list)) else [hx]
    for part in parts:
        if isinstance(part, TensorValue) and part.nodes is not None:
            raise UnsupportedError(
                f"{describe(node)} starts from an initial state computed from the model's activations; nngraph "
                "supports a zero initial state (no hx), or one that is a model input or a constant (the hidden "
                "units are then fixed)"
            )
        if not isinstance(part, (TensorValue, Opaque)):
            raise UnsupportedError(f"{describe(node)} receives an initial state {part!r}")
    return True


def _states(nodes: list[torch.Tensor], batch: tuple[int, ...], size: int, source) -> TensorValue:
    """``h_n`` / ``c_n`` ``(L * D, *batch, H)``: one group of ``H`` neurons per layer and direction."""
    shape = (len(nodes), *batch, size)
    value = TensorValue(nodes=torch.cat(nodes), shape=shape, axis=len(shape) - 1, source=source)
    return value.with_(heads=len(nodes), head_axis=0) if len(nodes) > 1 else value


@register_module(nn.RNN, nn.LSTM, nn.GRU)
def convert_recurrent(ctx, node, x, hx=None, *args, **kwargs):
    """Returns ``(output, h_n)`` (RNN, GRU) or ``(output, (h_n, c_n))`` (LSTM) like the module."""
    module: nn.RNNBase = ctx.module_of(node)
    hx = kwargs.pop("hx", hx)
    check_recurrent(node, module)
    if not isinstance(x, TensorValue):
        raise UnsupportedError(
            f"{describe(node)} reads a {type(x).__name__}; nngraph supports a padded tensor input (a "
            "PackedSequence is refused: pass the padded batch and select the steps you need)"
        )
    if args or kwargs:
        raise UnsupportedError(f"{describe(node)} is called with extra arguments {list(kwargs) or len(args)}")
    fixed = _initial_state(node, hx)
    if x.spatial:
        raise UnsupportedError(f"{describe(node)} reads a flattened feature map; recurrent layers read features")
    x = ctx.neurons(x, -1, node)
    if x.num_neurons != module.input_size:
        raise UnsupportedError(f"{describe(node)}: {x.num_neurons} input features, input_size={module.input_size}")
    builder, name = ctx.builder, node.target
    directions = ("", "_reverse") if module.bidirectional else ("",)
    in_nodes, hidden, cells = x.nodes, [], []
    for layer in range(module.num_layers):
        outs = []
        for suffix in directions:
            h, c = recurrent_direction(builder, module, name, layer, suffix, in_nodes)
            outs.append(h)
            hidden.append(h)
            if c is not None:
                cells.append(c)
        in_nodes = torch.cat(outs)  # (D * H,) forward then backward: the next layer's input
    if fixed:
        for nodes in hidden + cells:
            builder.fix(nodes)
    builder.record_module_nodes(name, in_nodes)
    shape = tuple(x.shape[:-1]) + (in_nodes.numel(),)
    batch = () if len(shape) == 2 else (shape[0] if module.batch_first else shape[1],)
    out = TensorValue(nodes=in_nodes, shape=shape, axis=len(shape) - 1, source=node)
    h_n = _states(hidden, batch, module.hidden_size, node)
    if type(module) is nn.LSTM:
        return out, (h_n, _states(cells, batch, module.hidden_size, node))
    return out, h_n
