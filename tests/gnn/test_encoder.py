import pytest
import torch
from torch_geometric.data import Batch

import nngraph
from nngraph.gnn import NeuralGraphEncoder, NodeEdgeHead
from nngraph.testing import assert_equivariant, assert_invariant

from .models import MODELS, example

ARCHS = list(MODELS)


def encoder(dtype, **kw):
    torch.manual_seed(1)
    return NeuralGraphEncoder(out_dim=3, hidden_dim=16, num_layers=3, **kw).to(dtype)


def test_defaults_and_repr():
    enc = NeuralGraphEncoder(out_dim=10)
    assert (enc.hidden_dim, enc.num_layers, enc.probe_dim) == (64, 4, 0)
    assert repr(enc) == "NeuralGraphEncoder(out_dim=10, hidden_dim=64, num_layers=4, probe_dim=0)"
    g = nngraph.to_graph(example("mlp", torch.float32)[0])
    assert enc(g).shape == (1, 10)
    h, e = enc.encode(g)
    assert h.shape == (g.num_nodes, 64) and e.shape == (g.num_edges, 64)


@pytest.mark.parametrize("arch", ARCHS)
def test_invariant_float64(arch):
    model, inputs = example(arch)
    gen = torch.Generator().manual_seed(0)
    err = assert_invariant(encoder(torch.float64), model, inputs, generator=gen)
    assert err < 1e-10


@pytest.mark.parametrize("arch", ARCHS)
def test_equivariant_float64(arch):
    model, inputs = example(arch)
    gen = torch.Generator().manual_seed(0)
    torch.manual_seed(2)
    head = NodeEdgeHead(16).double()
    errs = assert_equivariant(encoder(torch.float64), model, inputs, generator=gen, head=head)
    assert max(errs.values()) < 1e-10


@pytest.mark.parametrize("arch", ARCHS)
def test_invariant_and_equivariant_float32(arch):
    model, inputs = example(arch, torch.float32)
    enc = encoder(torch.float32)
    assert assert_invariant(enc, model, inputs, generator=torch.Generator().manual_seed(3)) < 1e-4
    errs = assert_equivariant(enc, model, inputs, generator=torch.Generator().manual_seed(4))
    assert max(errs.values()) < 1e-4


@pytest.mark.parametrize("arch", ["mlp", "cnn3", "transformer"])
def test_output_changes_with_weights(arch):
    model, _ = example(arch)
    enc = encoder(torch.float64)
    g = nngraph.to_graph(model)
    y = enc(g)
    for field in ("edge_attr", "x"):
        g2 = g.clone()
        values = g2[field]
        k = int(values.abs().argmax())  # a real parameter, not padding
        values.view(-1)[k] += 0.5
        assert (enc(g2) - y).abs().max() > 1e-6, field  # float64 noise is ~1e-16
    # a different model of the same architecture is told apart too
    other = nngraph.to_graph(example(arch, seed=1)[0])
    assert (enc(other) - y).abs().max() > 1e-4  # untrained, on unscaled weights: 5e-4 to 4e-3 by init seed


def test_hidden_neurons_get_no_position():
    """Swapping two hidden nodes' rows (a relabelling) leaves the output unchanged, swapping two output
    nodes (not a symmetry: outputs are ordered) changes it."""
    model, _ = example("mlp")
    g = nngraph.to_graph(model)
    enc = encoder(torch.float64)
    y = enc(g)

    def swap(graph, i, j):
        perm = torch.arange(graph.num_nodes)
        perm[i], perm[j] = j, i
        out = graph.clone()
        for key in ("x", "node_type", "node_kind", "io_position", "layer", "act"):
            out[key] = graph[key][perm]
        out.edge_index = perm[graph.edge_index]
        return out

    hidden = (g.node_type == 1).nonzero().view(-1)
    outputs = (g.node_type == 2).nonzero().view(-1)
    assert (enc(swap(g, int(hidden[0]), int(hidden[1]))) - y).abs().max() < 1e-10
    # keep io_position attached to the position, so the outputs are really exchanged
    g_out = swap(g, int(outputs[0]), int(outputs[1]))
    g_out.io_position = g.io_position.clone()
    assert (enc(g_out) - y).abs().max() > 1e-4


def test_mixed_batch_rows_match_single_graphs():
    torch.manual_seed(0)
    graphs = [nngraph.to_graph(m, x) for m, x in (example(a, seed=s) for a, s in
                                                   [("mlp", 0), ("cnn3", 1), ("cnn5", 2), ("resnet", 3),
                                                    ("transformer", 4), ("mlp", 5)])]
    shapes = set().union(*({tuple(v) for v in g.kernel_shape.tolist()} for g in graphs))
    assert shapes == {(1, 1, 1), (1, 3, 3), (1, 5, 5)}
    batch = Batch.from_data_list(graphs)  # no padding: every kernel keeps its size
    assert batch.edge_attr.shape == (sum(g.edge_attr.size(0) for g in graphs), 1)
    enc = encoder(torch.float64)
    head = NodeEdgeHead(16).double()
    y = enc(batch)
    h, e = enc.encode(batch)
    dx, de = head(h, e, batch.kernel_shape, batch.edge_attr.size(0))
    assert y.shape == (len(graphs), 3) and de.shape == batch.edge_attr.shape
    rows = 0
    for i, g in enumerate(graphs):
        assert (enc(g)[0] - y[i]).abs().max() < 1e-10, i
        hi, ei = enc.encode(g)
        ns, es = slice(int(batch.ptr[i]), int(batch.ptr[i + 1])), batch.edge_index[0] >= batch.ptr[i]
        es = es & (batch.edge_index[0] < batch.ptr[i + 1])
        assert (h[ns] - hi).abs().max() < 1e-10
        assert (e[es] - ei).abs().max() < 1e-10
        # the deltas of the graph's kernels are its own rows of the batch's, whatever the other graphs hold
        dxi, dei = head(hi, ei, g.kernel_shape, g.edge_attr.size(0))
        assert dei.shape == g.edge_attr.shape
        assert (dx[ns] - dxi).abs().max() < 1e-12
        assert (de[rows:rows + dei.size(0)] - dei).abs().max() < 1e-12
        rows += dei.size(0)


def test_learns_on_a_tiny_mixed_batch():
    torch.manual_seed(0)
    graphs = [nngraph.to_graph(m, x) for m, x in (example(a, torch.float32, seed=s) for a, s in
                                                   [("mlp", 0), ("cnn3", 1), ("cnn5", 2), ("resnet", 3),
                                                    ("transformer", 4), ("mlp", 5)])]
    batch = nngraph.batch_graphs(graphs)
    target = torch.randn(len(graphs), 3)
    enc = encoder(torch.float32)
    opt = torch.optim.Adam(enc.parameters(), lr=3e-3)
    losses = []
    for _ in range(40):
        opt.zero_grad()
        loss = torch.nn.functional.mse_loss(enc(batch), target)
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0], losses


def test_kernels_larger_than_the_encoder_box_or_in_the_old_format_are_refused():
    g = nngraph.to_graph(*example("cnn3", torch.float32))
    old = g.clone()
    old.edge_attr = torch.zeros(g.num_edges, 9)  # the padded (E, K) format of older nngraph versions
    del old.kernel_shape
    with pytest.raises(ValueError, match="every kernel entry as a row"):
        encoder(torch.float32)(old)
    with pytest.raises(ValueError, match="max_kernel_box"):
        NeuralGraphEncoder(3, hidden_dim=8, max_kernel_box=(1, 3, 3))(nngraph.to_graph(*example("cnn5", torch.float32)))
