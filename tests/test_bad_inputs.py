"""Bad inputs to the encoder and the converter's entry points give errors that say what and how to fix."""
import copy

import pytest
import torch
from torch import nn

import nngraph
from nngraph.gnn import NeuralGraphEncoder


def mlp() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(2, 5), nn.ReLU(), nn.Linear(5, 3))


@pytest.fixture
def batch():
    return nngraph.batch_graphs([nngraph.to_graph(mlp()), nngraph.to_graph(mlp())])


def encoder(**kw) -> NeuralGraphEncoder:
    torch.manual_seed(0)
    return NeuralGraphEncoder(out_dim=2, hidden_dim=8, num_layers=1, **kw)


def broken(batch, **fields):
    out = copy.copy(batch)
    for key, value in fields.items():
        if value is None:
            delattr(out, key)
        else:
            setattr(out, key, value)
    return out


def test_a_good_batch_passes_in_both_dtypes(batch):
    assert encoder()(batch).shape == (2, 2)
    double = broken(batch, x=batch.x.double(), edge_attr=batch.edge_attr.double())
    assert encoder().double()(double).dtype == torch.float64


@pytest.mark.parametrize("case, error, message", [
    ("float64 graph", TypeError, r"graph.x is torch.float64 but the encoder's parameters are torch.float32.*encoder.to"),
    ("float64 edges", TypeError, r"graph.edge_attr is torch.float64"),
    ("edge out of range", ValueError, r"edge_index refers to node 999 but the graph has 20 nodes.*batch_graphs"),
    ("negative edge", ValueError, r"edge_index refers to node -1"),
    ("edge_index int32", ValueError, r"edge_index must be a \(2, E\) long tensor"),
    ("node_type 7", ValueError, r"graph.node_type holds 7, outside 0..2 \(nngraph.schema.NodeType\)"),
    ("node_kind", ValueError, r"graph.node_kind holds 99"),
    ("act", ValueError, r"graph.act holds -3"),
    ("edge_type", ValueError, r"graph.edge_type holds 50"),
    ("no edge_attr", ValueError, r"the graph has no \['edge_attr'\]; convert the model with nngraph.to_graph"),
    ("no node_type", ValueError, r"the graph has no \['node_type'\]"),
    ("x of 3 columns", ValueError, r"graph.x has shape \(20, 3\), expected \(N, 5\)"),
    ("short edge_attr", ValueError, r"graph.edge_attr has shape \(10, 1\), but the kernels of its 50 edges"),
    ("short node_type", ValueError, r"graph.node_type has shape \(19,\), expected \(20,\)"),
])
def test_encoder_bad_graphs(batch, case, error, message):
    bad = {
        "float64 graph": dict(x=batch.x.double()),
        "float64 edges": dict(edge_attr=batch.edge_attr.double()),
        "edge out of range": dict(edge_index=torch.cat([batch.edge_index[:, :-1], torch.tensor([[0], [999]])], 1)),
        "negative edge": dict(edge_index=torch.cat([torch.tensor([[-1], [0]]), batch.edge_index[:, 1:]], 1)),
        "edge_index int32": dict(edge_index=batch.edge_index.int()),
        "node_type 7": dict(node_type=torch.where(torch.arange(20) == 4, 7, batch.node_type)),
        "node_kind": dict(node_kind=torch.full_like(batch.node_kind, 99)),
        "act": dict(act=torch.full_like(batch.act, -3)),
        "edge_type": dict(edge_type=torch.full_like(batch.edge_type, 50)),
        "no edge_attr": dict(edge_attr=None),
        "no node_type": dict(node_type=None),
        "x of 3 columns": dict(x=batch.x[:, :3].contiguous()),
        "short edge_attr": dict(edge_attr=batch.edge_attr[:10]),
        "short node_type": dict(node_type=batch.node_type[:-1]),
    }[case]
    with pytest.raises(error, match=message):
        encoder()(broken(batch, **bad))


def test_encoder_probe_of_the_wrong_width_or_missing(batch):
    with pytest.raises(ValueError, match=r"graph.probe has shape \(20, 3\), the encoder expects \(20, 4\)"):
        encoder(probe_dim=4)(broken(batch, probe=torch.zeros(20, 3)))
    with pytest.raises(ValueError, match="probe_dim=4 but the graph has no 'probe'"):
        encoder(probe_dim=4)(batch)
    assert encoder(probe_dim=4)(broken(batch, probe=torch.zeros(20, 4))).shape == (2, 2)


def test_encode_checks_too(batch):
    with pytest.raises(TypeError, match="float64"):
        encoder().encode(broken(batch, x=batch.x.double()))


def test_batch_graphs_of_nothing():
    with pytest.raises(ValueError, match="at least one graph, got an empty sequence"):
        nngraph.batch_graphs([])


def test_to_graph_refuses_a_meta_model_and_non_modules():
    with torch.device("meta"):
        meta = nn.Sequential(nn.Linear(2, 4), nn.ReLU(), nn.Linear(4, 1))
    with pytest.raises(ValueError, match=r"'0.weight' on the meta device.*to_empty"):
        nngraph.to_graph(meta)
    with pytest.raises(ValueError, match="meta device"):
        nngraph.from_graph(nngraph.to_graph(mlp()), mlp().to("meta"))
    with pytest.raises(TypeError, match="to_graph needs a torch.nn.Module, got OrderedDict"):
        nngraph.to_graph(mlp().state_dict())
    with pytest.raises(TypeError, match="from_graph needs a torch.nn.Module, got Data"):
        nngraph.from_graph(mlp(), nngraph.to_graph(mlp()))  # arguments swapped
    with pytest.raises(TypeError, match="graph must be a torch_geometric Data"):
        nngraph.from_graph({"x": torch.zeros(3)}, mlp())


def test_a_misspelt_split_of_a_zoo_is_an_error(tmp_path):
    from nngraph.errors import ZooError
    from nngraph.zoo import Zoo, build_inr_zoo
    from tests.zoo.tiny import tiny_inr

    build_inr_zoo(str(tmp_path / "zoo"), tiny_inr(), progress=False)
    zoo = Zoo(str(tmp_path / "zoo"))
    assert len(zoo.split("all")) == 12 and len(zoo.split("train")) + len(zoo.split("val")) + len(zoo.split("test")) == 12
    with pytest.raises(ZooError, match="no split 'trian'"):
        zoo.split("trian")


def test_unknown_methods_end_a_task_with_one_line(capsys):
    from tasks.inr_classification.task import main

    assert main(["--zoo", "/nonexistent", "--methods", "encoder,bogus"]) == 1
    err = capsys.readouterr().err
    assert "bogus" in err and "Traceback" not in err and len(err.strip().splitlines()) == 1
