import pytest
import torch
from torch import nn

import nngraph
from nngraph.schema import EdgeType, NodeKind, NodeType

from .graph_checks import (
    assert_falls_back,
    assert_function_preserved,
    assert_round_trip,
    assert_same_up_to_relabelling,
    edge_dict,
    nodes_of,
)


def token_model(dtype=torch.float32, padding_idx=None):
    torch.manual_seed(0)
    return nn.Sequential(nn.Embedding(7, 4, padding_idx=padding_idx), nn.LayerNorm(4), nn.ReLU(),
                         nn.Linear(4, 3)).to(dtype)


def test_embedding_against_reference_loop():
    model = token_model()
    g = nngraph.to_graph(model)
    tokens, dims = nodes_of(model, "0.tokens"), nodes_of(model, "0")
    assert (g.node_type[tokens] == NodeType.INPUT).all() and (g.node_kind[tokens] == NodeKind.TOKEN).all()
    assert g.io_position[tokens].tolist() == list(range(7))
    assert (g.node_type[dims] == NodeType.HIDDEN).all() and (g.node_kind[dims] == NodeKind.EMBEDDING).all()
    expected = {}
    for t in range(7):
        for d in range(4):
            expected[(int(tokens[t]), int(dims[d]), int(EdgeType.WEIGHT))] = model[0].weight[t, d].item()
    got = {k: v.item() for k, v in edge_dict(g).items() if k[1] in set(dims.tolist())}
    assert got == expected
    assert g.num_nodes == 7 + 4 + 4 + 3  # no nodes for the integer token-id tensor


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("padding_idx", [None, 0])
def test_round_trip(dtype, padding_idx):
    assert_round_trip(token_model(dtype, padding_idx), torch.randint(0, 7, (2, 5)))


def test_round_trip_bare_embedding():
    assert_round_trip(nn.Embedding(5, 3), torch.randint(0, 5, (4,)))


def test_hand_permuted_embedding_gives_relabelled_graph():
    model = token_model(torch.float64)
    permuted = token_model(torch.float64)
    p = torch.randperm(4)
    with torch.no_grad():
        permuted[0].weight.copy_(model[0].weight[:, p])
        permuted[1].weight.copy_(model[1].weight[p]); permuted[1].bias.copy_(model[1].bias[p])
        permuted[3].weight.copy_(model[3].weight[:, p])
    ids = torch.randint(0, 7, (3, 6))
    assert_function_preserved(model, permuted, ids)
    g1, g2 = nngraph.to_graph(model), nngraph.to_graph(permuted)
    perm = torch.arange(g1.num_nodes)
    for name in ("0", "1"):
        nodes = nodes_of(model, name)
        perm[nodes[p]] = nodes
    assert_same_up_to_relabelling(g1, g2, perm)


def test_random_hidden_permutation_keeps_tokens_and_function():
    model = token_model(torch.float64)
    ids = torch.randint(0, 7, (3, 6))
    permuted, perm = nngraph.random_hidden_permutation(model, torch.Generator().manual_seed(1))
    assert_function_preserved(model, permuted, ids)
    assert_same_up_to_relabelling(nngraph.to_graph(model), nngraph.to_graph(permuted), perm)
    tokens = nodes_of(model, "0.tokens")
    assert torch.equal(perm[tokens], tokens)
    assert not torch.equal(perm, torch.arange(perm.numel()))


def test_max_norm_falls_back():
    assert_falls_back(nn.Sequential(nn.Embedding(5, 3, max_norm=1.0), nn.Linear(3, 2)), None, match="max_norm")
