"""A step size per role of an entry in the graph (``role_offsets``): the roles are what the graph records, the
offsets act per role and nowhere else, the option keeps the optimizer equivariant, and networks saved without it
(the shipped one) load and step as before."""
from __future__ import annotations

import math

import pytest
import torch
from torch import nn

import nngraph
from nngraph import symmetry
from nngraph.optim import (ROLE_SIZES, GraphUpdateNetwork, LearnedOptimizer, Segments, advance_state, entry_features,
                           entry_roles, init_state, load_network, place, save_network, shipped_checkpoint)
from nngraph.optim.output import bounded_log
from nngraph.schema import NODE_FEATURE_DIM, NODE_FEATURES, NUM_EDGE_TYPES, NUM_NODE_KINDS, EdgeType, NodeKind

from .models import MODELS, build


class _Transformer(nn.Module):
    """A linear embedding, one transformer layer and a head on the mean over positions."""

    def __init__(self):
        super().__init__()
        self.embed = nn.Linear(4, 8)
        self.body = nn.TransformerEncoderLayer(8, 2, 16, dropout=0.0, batch_first=True)
        self.head = nn.Linear(8, 3)

    def forward(self, x):
        return self.head(self.body(self.embed(x)).mean(1))  # (B, 3)


def _roles_by_loop(graph, read_slots):
    """The roles one entry at a time, walking the edges' kernels (the slow reference of ``entry_roles``)."""
    kinds = graph.node_kind.tolist()
    node_slots = len(kinds) * NODE_FEATURE_DIM
    owner, start = {}, 0
    for e, shape in enumerate(graph.kernel_shape.tolist()):
        for r in range(start, start + math.prod(shape)):
            owner[r] = e
        start += math.prod(shape)
    out = []
    for slot in read_slots.tolist():
        if slot < node_slots:
            out.append([NUM_EDGE_TYPES + slot % NODE_FEATURE_DIM, NUM_NODE_KINDS, kinds[slot // NODE_FEATURE_DIM]])
        else:
            e = owner[slot - node_slots]
            src, dst = graph.edge_index[:, e].tolist()
            out.append([int(graph.edge_type[e]), kinds[src], kinds[dst]])
    return torch.tensor(out)


def _named_roles(model, inputs):
    """``{parameter: set of (where, from, to) names}`` and the graph, placement and roles."""
    params = list(model.parameters())
    graph, placement = place(model, params, inputs)
    roles = entry_roles(graph, placement.read_slots)
    names, out, offset = [n for n, _ in model.named_parameters()], {}, 0
    for name, p in zip(names, params):
        rows = roles[offset:offset + p.numel()].tolist()
        offset += p.numel()
        out[name] = {(EdgeType(w).name if w < NUM_EDGE_TYPES else NODE_FEATURES[w - NUM_EDGE_TYPES],
                      "-" if f == NUM_NODE_KINDS else NodeKind(f).name, NodeKind(t).name) for w, f, t in rows}
    return out, graph, placement, roles


@pytest.mark.parametrize("name", [*sorted(MODELS), "transformer"])
def test_roles_match_a_loop_over_the_edges(name):
    torch.manual_seed(0)
    model, inputs = (_Transformer(), (torch.randn(2, 5, 4),)) if name == "transformer" else build(name)
    _, graph, placement, roles = _named_roles(model, inputs)
    assert torch.equal(roles, _roles_by_loop(graph, placement.read_slots))
    assert (roles >= 0).all() and (roles < torch.tensor(ROLE_SIZES)).all()


def test_the_roles_tell_the_tensors_of_a_transformer_and_an_lstm_apart():
    torch.manual_seed(0)
    roles, *_ = _named_roles(_Transformer(), (torch.randn(2, 5, 4),))
    assert roles["body.self_attn.in_proj_weight"] == {("WEIGHT", "LINEAR", k) for k in ("QUERY", "KEY", "VALUE")}
    assert roles["body.linear1.weight"] == {("WEIGHT", "NORM", "LINEAR")}  # reads the normalised residual stream
    assert roles["body.norm1.weight"] == {("norm_weight", "-", "NORM")}
    assert roles["body.norm1.bias"] == {("norm_bias", "-", "NORM")}
    assert roles["embed.bias"] == {("bias", "-", "LINEAR")}
    model, inputs = build("lstm")
    roles, *_ = _named_roles(model, inputs)
    hh = next(n for n in roles if "weight_hh" in n)
    assert roles[hh] == {("RECURRENT", "RECURRENT_HIDDEN", "LINEAR")}


def _step_inputs(model, inputs, dtype=torch.float32):
    params = list(model.parameters())
    segments = Segments([p.numel() for p in params])
    state = init_state(segments.num_entries, 3, dtype)
    for _ in range(2):
        model.zero_grad()
        model(*inputs).square().mean().backward()
        grad = torch.cat([p.grad.reshape(-1) for p in params])  # (P,)
        state = advance_state(state, grad)
    weight = torch.cat([p.detach().reshape(-1) for p in params])  # (P,)
    graph, placement = place(model, params, inputs)
    return entry_features(weight, grad, state, segments), segments, graph, placement


def _network(role_offsets: bool) -> GraphUpdateNetwork:
    torch.manual_seed(0)
    return GraphUpdateNetwork(hidden_dim=8, num_layers=1, context_dim=2, output_dim=8, init_lr=1e-2, rule="cone",
                              progress=True, role_offsets=role_offsets)


def test_untrained_offsets_leave_the_step_unchanged():
    model, inputs = build("lstm")
    features, segments, graph, placement = _step_inputs(model, inputs)
    plain, per_role = _network(False), _network(True)
    assert set(per_role.state_dict()) - set(plain.state_dict()) == {"output.role_offset"}
    per_role.load_state_dict(plain.state_dict(), strict=False)
    with torch.no_grad():
        a = plain(features, segments, graph, placement, torch.tensor(0.3))
        b = per_role(features, segments, graph, placement, torch.tensor(0.3))
    assert a.abs().max() > 0 and torch.equal(a, b)


def test_an_offset_scales_the_step_of_its_role_only():
    """Raising the offset of the QUERY kind by log 2 doubles the step of the entries that end at a query
    dimension (in-projection rows and biases of the queries) and leaves every other entry's step as it was."""
    torch.manual_seed(0)
    model, inputs = _Transformer(), (torch.randn(2, 5, 4),)
    features, segments, graph, placement = _step_inputs(model, inputs)
    network = _network(True)
    with torch.no_grad():
        before = network(features, segments, graph, placement, torch.tensor(0.3))
        network.output.role_offset[ROLE_SIZES[0] + ROLE_SIZES[1] + NodeKind.QUERY] = math.log(2.0)
        after = network(features, segments, graph, placement, torch.tensor(0.3))
    query = placement.roles(graph)[:, 2] == NodeKind.QUERY  # (P,)
    assert 0 < int(query.sum()) < query.numel()
    assert torch.allclose(after[query], 2 * before[query], rtol=1e-5)
    assert torch.equal(after[~query], before[~query])
    assert before[query].abs().max() > 0


def test_a_network_with_offsets_needs_the_roles():
    network = _network(True)
    model, inputs = build("mlp")
    features, segments, *_ = _step_inputs(model, inputs)
    with pytest.raises(ValueError, match="pass roles"):
        network.output(features, segments, torch.zeros(len(features), 2), torch.tensor(0.0))


@pytest.mark.parametrize("name", sorted(MODELS))
def test_the_optimizer_with_offsets_is_equivariant(name):
    """The relabelled model's step is the relabelled step (float64), with every offset drawn nonzero."""
    model, inputs = build(name, dtype=torch.float64)
    layout = nngraph.build_layout(model, inputs)
    perm = symmetry.random_permutation(layout, torch.Generator().manual_seed(3))
    permuted = symmetry.permute_model(model, perm, inputs, layout)
    assert torch.allclose(model(*inputs), permuted(*inputs), atol=1e-12)
    torch.manual_seed(0)
    network = GraphUpdateNetwork(hidden_dim=16, num_layers=2, context_dim=4, output_dim=16, rule="cone",
                                 progress=True, role_offsets=True).double()
    with torch.no_grad():
        for p in network.parameters():
            p.normal_(0, 0.3)
        network.output.log_lr.fill_(-3.0)
    target = torch.randn(model(*inputs).shape, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    before = [p.detach().clone() for p in model.parameters()]
    for m in (model, permuted):
        opt = LearnedOptimizer(m, network=network, example_inputs=inputs, total_steps=5)
        for _ in range(3):
            opt.zero_grad()
            ((m(*inputs) - target) ** 2).sum().backward()
            opt.step()
    assert max(float((p.detach() - b).abs().max()) for p, b in zip(model.parameters(), before)) > 1e-3
    moved = dict(symmetry.permute_model(model, perm, inputs, layout).named_parameters())
    assert max(float((p - moved[n]).detach().abs().max()) for n, p in permuted.named_parameters()) < 1e-10


def test_offsets_survive_a_file(tmp_path):
    network = _network(True)
    with torch.no_grad():
        network.output.role_offset.normal_()
    for suffix in (".safetensors", ".pt"):
        path = str(tmp_path / f"net{suffix}")
        save_network(network, path)
        loaded = load_network(path, "graph")
        assert loaded.output.role_offsets
        assert torch.equal(loaded.output.role_offset, network.output.role_offset)


def test_the_shipped_network_loads_without_offsets_and_steps_by_the_cone_rule():
    """A network saved before the option (the shipped one) has no offsets, loads every weight it saved, and its
    step is the cone rule written out by hand from its own outputs."""
    network = load_network(shipped_checkpoint("graph"), "graph")
    assert "role_offsets" not in network.config or not network.config["role_offsets"]
    assert not network.output.role_offsets and not hasattr(network.output, "role_offset")
    model, inputs = build("mlp")
    features, segments, graph, placement = _step_inputs(model, inputs)
    captured = {}
    handle = network.output.mlp.register_forward_hook(lambda m, i, o: captured.update(out=o))
    with torch.no_grad():
        step = network(features, segments, graph, placement, torch.tensor(0.2))
    handle.remove()
    out, out_ = captured["out"], network.output
    adam = features[:, out_.base]
    rms = segments.mean_square(adam.unsqueeze(0)).sqrt()[0][segments.ids]  # (P,)
    b = out_.max_additive * torch.tanh(out_.additive)
    factor = bounded_log(out[:, 1], out_.min_log_scale, out_.max_log_scale).exp()
    expected = -out_.log_lr.exp() * (adam + b * rms * torch.tanh(out[:, 0])) * factor  # (P,)
    assert torch.allclose(step, expected, rtol=1e-6, atol=0)
