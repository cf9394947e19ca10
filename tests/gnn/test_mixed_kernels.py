"""One batch of an MLP, a 3x3 CNN and a 7x7-stem CNN, from a plain PyG DataLoader: the encoder embeds
every kernel at its own size, and stays invariant / equivariant on the mixed batch (float64)."""
import pytest
import torch
from torch import nn
from torch_geometric.data import Batch
from torch_geometric.loader import DataLoader

import nngraph
from nngraph.gnn import NeuralGraphEncoder, NodeEdgeHead
from nngraph.kernels import reorder_kernels
from nngraph.testing import TOLERANCES, permuted_graphs


def stem_cnn() -> nn.Module:
    return nn.Sequential(nn.Conv2d(3, 4, 7, stride=2, padding=3), nn.ReLU(), nn.Conv2d(4, 5, 3, padding=1), nn.ReLU(),
                         nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(5, 3))


def models():
    torch.manual_seed(0)
    return [
        (nn.Sequential(nn.Linear(3, 6), nn.ReLU(), nn.Linear(6, 6), nn.Tanh(), nn.Linear(6, 2)), torch.randn(4, 3)),
        (nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.Conv2d(4, 5, 3), nn.ReLU(), nn.Flatten(),
                       nn.Linear(5 * 4 * 4, 3)), torch.randn(2, 3, 8, 8)),
        (stem_cnn(), torch.randn(2, 3, 16, 16)),
    ]


def encoder(dtype=torch.float64):
    torch.manual_seed(1)
    return NeuralGraphEncoder(out_dim=3, hidden_dim=16, num_layers=3).to(dtype)


def test_plain_dataloader_batches_an_mlp_a_3x3_and_a_7x7_stem_cnn():
    graphs = [nngraph.to_graph(m, x) for m, x in models()]
    shapes = [{tuple(s) for s in g.kernel_shape.tolist()} for g in graphs]
    assert shapes == [{(1, 1, 1)}, {(1, 3, 3), (1, 4, 4)}, {(1, 7, 7), (1, 3, 3), (1, 1, 1)}]
    batch = next(iter(DataLoader(graphs, batch_size=3)))
    assert batch.num_graphs == 3
    assert torch.equal(batch.edge_attr, torch.cat([g.edge_attr for g in graphs]))
    enc = encoder(torch.float32)
    y = enc(batch)  # (3, 3)
    h, e = enc.encode(batch)
    assert y.shape == (3, 3) and e.shape == (batch.num_edges, 16)
    for i, g in enumerate(graphs):  # every graph's row is what it gets on its own
        assert (enc(g)[0] - y[i]).abs().max() < 1e-5, i
    # and the batch splits back into graphs that convert back exactly
    for (m, x), g in zip(models(), batch.to_data_list()):
        back = nngraph.from_graph(g, m, x)
        assert all(torch.equal(a, b) for a, b in zip(m.state_dict().values(), back.state_dict().values()))


def _permuted_batches(dtype=torch.float64):
    """Batches of the models and of their randomly permuted copies, with the batch-level node and edge
    permutations (``batch2`` row ``node_perm[i]`` is ``batch1`` row ``i``)."""
    gen = torch.Generator().manual_seed(0)
    parts = [permuted_graphs(m, x, generator=gen, dtype=dtype) for m, x in models()]
    b1, b2 = Batch.from_data_list([p[0] for p in parts]), Batch.from_data_list([p[1] for p in parts])
    node_perm, edge_perm, nodes, edges = [], [], 0, 0
    for g1, _, n_perm, e_perm in parts:
        node_perm.append(n_perm + nodes)
        edge_perm.append(e_perm + edges)
        nodes, edges = nodes + g1.num_nodes, edges + g1.num_edges
    return b1, b2, torch.cat(node_perm), torch.cat(edge_perm)


def test_encoder_is_invariant_and_equivariant_on_a_mixed_batch_float64():
    b1, b2, node_perm, edge_perm = _permuted_batches()
    assert not torch.equal(node_perm, torch.arange(node_perm.numel()))  # the permutation is not trivial
    enc = encoder()
    torch.manual_seed(2)
    head = NodeEdgeHead(16).double()
    tol = TOLERANCES[torch.float64]
    with torch.no_grad():
        y1, y2 = enc(b1), enc(b2)
        (h1, e1), (h2, e2) = enc.encode(b1), enc.encode(b2)
        (dx1, de1), (dx2, de2) = head(h1, e1, b1.kernel_shape), head(h2, e2, b2.kernel_shape)
    assert (y1 - y2).abs().max() <= tol * max(1.0, float(y1.abs().max()))
    assert (h2[node_perm] - h1).abs().max() <= tol * max(1.0, float(h1.abs().max()))
    assert (e2[edge_perm] - e1).abs().max() <= tol * max(1.0, float(e1.abs().max()))
    assert (dx2[node_perm] - dx1).abs().max() <= tol
    assert de1.shape == b1.edge_attr.shape
    assert (reorder_kernels(de2, b2.kernel_shape, edge_perm) - de1).abs().max() <= tol
    # the check can fail: reading the permuted batch's edges in the original order does not match
    assert (e2 - e1).abs().max() > 1e3 * tol
    assert (de2 - de1).abs().max() > 1e3 * tol


def test_each_kernel_size_has_its_own_embedding():
    """A 3x3 kernel and a 7x7 kernel equal to it zero-padded embed alike; the 7x7 kernel's outer ring
    changes the embedding (the outer positions are read)."""
    enc = encoder()
    k3 = torch.randn(9, 1, dtype=torch.float64)
    k7 = torch.zeros(7, 7, dtype=torch.float64)
    k7[2:5, 2:5] = k3.view(3, 3)
    shapes = torch.tensor([[1, 3, 3], [1, 7, 7]], dtype=torch.int32)
    emb = enc.edge_encoder.kernel(torch.cat([k3, k7.view(49, 1)]), shapes)  # (2, 16)
    assert torch.allclose(emb[0], emb[1], atol=1e-12, rtol=0)
    k7[0, 0] = 1.0
    emb2 = enc.edge_encoder.kernel(torch.cat([k3, k7.view(49, 1)]), shapes)
    assert (emb2[1] - emb2[0]).abs().max() > 1e-3


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_one_by_one_graphs_take_the_single_product_path(dtype):
    """All-1x1 batches (SIRENs) keep ``edge_attr (E, 1)``; their embedding equals the grouped path's."""
    torch.manual_seed(0)
    mlp = nn.Sequential(nn.Linear(2, 8), nngraph.Sine(), nn.Linear(8, 1)).to(dtype)
    g = nngraph.to_graph(mlp)
    assert g.edge_attr.shape == (g.num_edges, 1)
    enc = encoder(dtype)
    cnn = nngraph.to_graph(stem_cnn().to(dtype), torch.randn(1, 3, 16, 16, dtype=dtype))
    mixed = Batch.from_data_list([g, cnn])  # grouped path: W > E
    e_alone = enc.edge_encoder(g)
    e_mixed = enc.edge_encoder(mixed)[: g.num_edges]
    assert torch.allclose(e_alone, e_mixed, atol=TOLERANCES[dtype], rtol=0)
