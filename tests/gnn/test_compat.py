"""Encoder checkpoints saved before enum values were appended load strictly and compute the same."""
import pytest
import torch
from torch import nn
from torch_geometric.data import Batch

import nngraph


def _graphs():
    torch.manual_seed(0)
    mlp = nn.Sequential(nn.Linear(3, 8), nn.ReLU(), nn.Linear(8, 2))
    cnn = nn.Sequential(nn.Conv2d(1, 4, 3), nn.Tanh(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 2))
    return Batch.from_data_list([nngraph.to_graph(mlp), nngraph.to_graph(cnn, torch.zeros(1, 1, 6, 6))])


@pytest.mark.parametrize("cut", [1, 3])
def test_tables_with_fewer_rows_load_and_compute_the_same(cut):
    torch.manual_seed(1)
    old = nngraph.NeuralGraphEncoder(3, hidden_dim=16, num_layers=2).eval()
    batch = _graphs()
    state = old.state_dict()
    tables = ("node_encoder.emb_kind.weight", "node_encoder.emb_act.weight", "edge_encoder.emb_type.weight")
    for key in tables:
        assert key in state, sorted(state)
    used = {"node_encoder.emb_kind.weight": batch.node_kind, "node_encoder.emb_act.weight": batch.act,
            "edge_encoder.emb_type.weight": batch.edge_type}
    for key in tables:  # an "older format": the last rows (values no graph here uses) did not exist
        rows = state[key].shape[0] - cut
        assert int(used[key].max()) < rows, key
        state[key] = state[key][:rows].clone()
    torch.manual_seed(2)
    new = nngraph.NeuralGraphEncoder(3, hidden_dim=16, num_layers=2).eval()
    new.load_state_dict(state)  # strict
    for key in tables:
        rows = state[key].shape[0]
        assert torch.equal(new.state_dict()[key][:rows], state[key])
    with torch.no_grad():
        assert torch.equal(new(batch), old(batch))


def test_tables_of_another_width_or_with_more_rows_are_refused():
    enc = nngraph.NeuralGraphEncoder(3, hidden_dim=16, num_layers=2)
    state = enc.state_dict()
    key = "node_encoder.emb_kind.weight"
    wider = {**state, key: torch.zeros(state[key].shape[0] - 1, 17)}
    with pytest.raises(RuntimeError, match="emb_kind"):
        nngraph.NeuralGraphEncoder(3, hidden_dim=16, num_layers=2).load_state_dict(wider)
    longer = {**state, key: torch.zeros(state[key].shape[0] + 1, 16)}
    with pytest.raises(RuntimeError, match="emb_kind"):
        nngraph.NeuralGraphEncoder(3, hidden_dim=16, num_layers=2).load_state_dict(longer)


def test_pool_table_saved_before_pool_kinds_were_appended_loads_and_computes_the_same():
    """``emb_pool`` has one group of rows per slot: an old table's rows move to today's slots."""
    from nngraph.schema import MAX_POOLS, NUM_POOLS

    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(1, 4, 3), nn.Tanh(), nn.MaxPool2d(2), nn.AvgPool2d(2), nn.Flatten(), nn.Linear(4, 2))
    batch = Batch.from_data_list([nngraph.to_graph(net, torch.zeros(1, 1, 6, 6))])
    assert int((batch.pool[:, 1] > 0).sum()) > 0  # slot 1 is used: the remap is tested
    torch.manual_seed(1)
    old = nngraph.NeuralGraphEncoder(3, hidden_dim=16, num_layers=2).eval()
    state = old.state_dict()
    key = "node_encoder.emb_pool.weight"
    kinds, cut = NUM_POOLS - 1, 2  # the saved format had two kinds fewer
    table = state[key]
    groups = [table[1 + s * kinds: 1 + s * kinds + kinds - cut] for s in range(MAX_POOLS)]
    state[key] = torch.cat([table[:1], *groups]).clone()
    torch.manual_seed(2)
    new = nngraph.NeuralGraphEncoder(3, hidden_dim=16, num_layers=2).eval()
    new.load_state_dict(state)  # strict
    with torch.no_grad():
        assert torch.equal(new(batch), old(batch))
