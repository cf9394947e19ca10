"""Edge blocks (nngraph.blocks): the grid a dense layer's edges are stored as against the obvious list of
edges, on every trap model; blocked graphs round-trip, compare and save like plain ones."""
import pytest
import torch
from torch import nn

import nngraph
from nngraph.blocks import EdgeBlock, EdgeBlocks, is_blocked, materialize
from nngraph.convert import api, build_layout

from .traps import TRAPS

CONVERTED = [t for t in TRAPS if t.expected != "refused"]


def _as_lists(monkeypatch):
    """Make the builder store every block as a plain list of edges and find every weight's positions edge by edge
    (the slow, obvious reference)."""
    def plain(src, dst, edge_type, kernel_shape=(1, 1, 1)):
        return EdgeBlock(src.reshape(-1).int().clone(), dst.reshape(-1).int().clone(), int(edge_type),
                         tuple(int(k) for k in kernel_shape))

    def plain_grid(src, dst, edge_type, kernel_shape=(1, 1, 1), src_major=False):
        s, d = src.reshape(-1), dst.reshape(-1)
        if src_major:  # edge i * D + j
            return plain(s.repeat_interleave(d.numel()), d.repeat(s.numel()), edge_type, kernel_shape)
        return plain(s.repeat(d.numel()), d.repeat_interleave(s.numel()), edge_type, kernel_shape)  # j * S + i

    monkeypatch.setattr(EdgeBlock, "from_ends", staticmethod(plain))
    monkeypatch.setattr(EdgeBlock, "grid_of", staticmethod(plain_grid))
    monkeypatch.setattr("nngraph.convert.builder._block_view", lambda *args: None)
    monkeypatch.setattr("nngraph.convert.builder._grid_axis_nodes", lambda *args: None)


@pytest.mark.parametrize("trap", CONVERTED, ids=[t.name for t in CONVERTED])
def test_grid_blocks_equal_plain_edge_lists(trap, monkeypatch):
    torch.manual_seed(0)
    _check_against_lists(trap.build().eval(), trap.inputs(), monkeypatch)


def _gpt2():
    transformers = pytest.importorskip("transformers")
    cfg = transformers.GPT2Config(vocab_size=20, n_embd=8, n_layer=1, n_head=2, n_positions=8, use_cache=False)
    return transformers.GPT2LMHeadModel(cfg), (torch.randint(0, 20, (2, 5)),)


GRID_CASES = {  # weights placed as views of a grid: transposed, grouped, flattened and 3-D layouts
    "conv_transpose": lambda: (nn.Sequential(nn.Conv2d(2, 4, 3), nn.ReLU(), nn.ConvTranspose2d(4, 3, (2, 3)),
                                             nn.ReLU(), nn.ConvTranspose2d(3, 2, 2, groups=1)),
                               (torch.randn(2, 2, 6, 6),)),
    "grouped": lambda: (nn.Sequential(nn.Conv2d(4, 6, 3, groups=2), nn.ReLU(), nn.Conv2d(6, 6, 1, groups=6)),
                        (torch.randn(2, 4, 6, 6),)),
    "flatten_linear": lambda: (nn.Sequential(nn.Conv2d(2, 3, 3), nn.ReLU(), nn.Flatten(), nn.Linear(3 * 4 * 4, 5)),
                               (torch.randn(2, 2, 6, 6),)),
    "conv3d_1d": lambda: (nn.Sequential(nn.Conv3d(2, 3, (1, 2, 3)), nn.ReLU(), nn.Flatten(2), nn.Conv1d(3, 2, 2)),
                          (torch.randn(2, 2, 3, 4, 5),)),
    "gpt2_conv1d": _gpt2,
    "embedding_attention": lambda: (_EmbedAttend(), (torch.randint(0, 11, (2, 5)),)),
    "cross_attention": lambda: (_CrossAttend(), (torch.randn(2, 5, 8), torch.randn(2, 3, 6))),
    "weight_norm": lambda: (nn.Sequential(
        nn.utils.parametrizations.weight_norm(nn.Conv2d(2, 3, 3)), nn.ReLU(), nn.Flatten(),
        nn.utils.parametrizations.weight_norm(nn.Linear(3 * 4 * 4, 5)), nn.ReLU(),
        nn.utils.parametrizations.weight_norm(nn.Linear(5, 2))), (torch.randn(2, 2, 6, 6),)),
}


class _EmbedAttend(nn.Module):
    def __init__(self):
        super().__init__()
        self.embed, self.attend = nn.Embedding(11, 8), nn.MultiheadAttention(8, 2, batch_first=True)

    def forward(self, ids):
        h = self.embed(ids)
        return self.attend(h, h, h, need_weights=False)[0]


class _CrossAttend(nn.Module):
    def __init__(self):
        super().__init__()
        self.memory = nn.Linear(6, 8)
        self.attend = nn.MultiheadAttention(8, 2, batch_first=True)

    def forward(self, x, m):
        m = self.memory(m)
        return self.attend(x, m, m, need_weights=False)[0]


@pytest.mark.parametrize("case", list(GRID_CASES))
def test_grid_views_equal_plain_edge_lists(case, monkeypatch):
    torch.manual_seed(0)
    model, inputs = GRID_CASES[case]()
    _check_against_lists(model.eval(), inputs, monkeypatch)


def _check_against_lists(model, inputs, monkeypatch):
    fast = build_layout(model, inputs, cache=False, check=False)
    _as_lists(monkeypatch)
    slow = build_layout(model, inputs, cache=False, check=False)
    assert all(not b.grid for b in slow.edge_blocks.blocks)
    for key in ("edge_index", "edge_type", "kernel_shape", "identity_positions"):
        assert torch.equal(getattr(fast, key), getattr(slow, key)), key
    assert [p.name for p in fast.edge_placements] == [p.name for p in slow.edge_placements]
    for a, b in zip(fast.edge_placements, slow.edge_placements):
        assert torch.equal(a.positions, b.positions), a.name
    assert len(fast.symmetries) == len(slow.symmetries)  # tied parameters tie the same neurons
    for a, b in zip(fast.symmetries, slow.symmetries):
        assert torch.equal(a.rows, b.rows) and a.block_size == b.block_size
    g_fast, g_slow = fast.to_graph(model), slow.to_graph(model)
    assert torch.equal(g_fast.x, g_slow.x) and torch.equal(g_fast.edge_attr, g_slow.edge_attr)


def test_a_linear_layer_is_one_grid():
    block = EdgeBlock.from_ends(torch.arange(3).repeat_interleave(4), torch.arange(10, 14).repeat(3), 2)
    assert block.grid and block.src_major and block.count == 12 and block.src.numel() == 3
    src, dst = block.range_ends(0, 12)
    assert torch.equal(src, torch.arange(3).repeat_interleave(4)) and torch.equal(dst, torch.arange(10, 14).repeat(3))
    other = EdgeBlock.from_ends(torch.arange(3).repeat(4), torch.arange(10, 14).repeat_interleave(3), 2)
    assert other.grid and not other.src_major
    assert torch.equal(torch.stack(other.range_ends(0, 12)),
                       torch.stack([torch.arange(3).repeat(4), torch.arange(10, 14).repeat_interleave(3)]))
    assert not EdgeBlock.from_ends(torch.tensor([0, 1, 2, 3]), torch.tensor([5, 5, 6, 7]), 0).grid


def test_lookups_by_edge_id_match_the_materialised_tensors():
    blocks = EdgeBlocks([
        EdgeBlock.from_ends(torch.arange(3).repeat_interleave(4), torch.arange(3, 7).repeat(3), 1, (1, 3, 3)),
        EdgeBlock.from_ends(torch.tensor([0, 2, 5]), torch.tensor([8, 8, 9]), 4),
        EdgeBlock.from_ends(torch.arange(4).repeat(2), torch.arange(7, 9).repeat_interleave(4), 1),
    ])
    edges = torch.tensor([[0, 13, 20], [11, 12, 5]])
    src, dst = blocks.ends(edges)
    ei = blocks.edge_index()
    assert torch.equal(src, ei[0][edges]) and torch.equal(dst, ei[1][edges])
    shapes = blocks.kernel_shape()
    assert torch.equal(blocks.kernel_shapes_of(edges), shapes[edges])
    sizes = shapes.prod(1).long()
    assert torch.equal(blocks.entry_offsets(edges), (sizes.cumsum(0) - sizes)[edges])
    chunks = list(blocks.chunks(5))
    assert torch.equal(torch.cat([c.src for c in chunks]), ei[0]) and all(len(c.edges) <= 5 for c in chunks)
    in_deg, out_deg = blocks.degrees(10)
    assert torch.equal(in_deg, torch.bincount(ei[1], minlength=10))
    assert torch.equal(out_deg, torch.bincount(ei[0], minlength=10))
    again = EdgeBlocks.from_state(blocks.state())
    assert again.same_as(blocks) and torch.equal(again.edge_index(), ei)


def test_a_blocked_graph_round_trips_and_costs_about_its_parameters():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(256, 512), nn.ReLU(), nn.Linear(512, 512), nn.ReLU(), nn.Linear(512, 10))
    graph = nngraph.to_graph(model, torch.randn(2, 256))
    assert not is_blocked(graph)  # 400k edges: plain PyG tensors
    layout = build_layout(model, (torch.randn(2, 256),))
    blocked = layout.to_graph(model, compact=True)
    assert is_blocked(blocked) and "edge_index" not in blocked
    back = nngraph.from_graph(blocked, model, torch.randn(2, 256))
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), back.state_dict().values()))
    params = sum(p.numel() * p.element_size() for p in model.parameters())
    total = sum(v.numel() * v.element_size() for _, v in blocked.items() if torch.is_tensor(v))
    total += blocked.edge_blocks.nbytes
    # the edges cost their weights' bytes plus a constant per block; every node about 400 bytes of fields
    assert total < 1.01 * params + 400 * blocked.num_nodes, total / params
    plain = materialize(blocked)
    assert torch.equal(plain.edge_index, graph.edge_index) and torch.equal(plain.kernel_shape, graph.kernel_shape)
    layout.check_fits(plain)


def test_large_graphs_are_blocked_by_default(monkeypatch):
    monkeypatch.setattr("nngraph.convert.layout.COMPACT_EDGES", 100)
    api.clear_cache()
    model = nn.Sequential(nn.Linear(20, 30), nn.ReLU(), nn.Linear(30, 2))
    assert is_blocked(nngraph.to_graph(model, torch.randn(1, 20)))
    with pytest.raises(nngraph.GraphMismatchError, match="edge blocks"):
        other = nn.Sequential(nn.Linear(20, 31), nn.ReLU(), nn.Linear(31, 2))
        build_layout(other, (torch.randn(1, 20),)).from_graph(nngraph.to_graph(model, torch.randn(1, 20)), other)
    api.clear_cache()


@pytest.mark.parametrize("suffix", [".safetensors", ".pt"])
def test_graph_files_hold_the_blocks(tmp_path, suffix):
    from nngraph.graph_io import load_graph, save_graph
    from nngraph.gnn import NeuralGraphEncoder, stream_forward

    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 8, 3), nn.ReLU(), nn.Flatten(), nn.Linear(8 * 4 * 4, 5))
    x = torch.randn(1, 3, 6, 6)
    layout = build_layout(model, (x,))
    graph = layout.to_graph(model, compact=True)
    path = str(tmp_path / f"g{suffix}")
    save_graph(graph, path)
    again = load_graph(path)
    assert is_blocked(again) and again.edge_blocks.same_as(graph.edge_blocks)
    assert torch.equal(again.x, graph.x) and torch.equal(again.edge_attr, graph.edge_attr)
    back = layout.from_graph(again, model)
    assert torch.equal(back(x), model(x))
    encoder = NeuralGraphEncoder(4, hidden_dim=8, num_layers=2).eval()
    torch.testing.assert_close(stream_forward(encoder, again, max_edges=16), encoder(materialize(graph)))


@pytest.mark.parametrize("trap", CONVERTED, ids=[t.name for t in CONVERTED])
def test_a_blocked_graph_permutes_as_its_plain_form(trap):
    torch.manual_seed(0)
    model, inputs = trap.build().eval(), trap.inputs()
    layout = build_layout(model, inputs, cache=False)
    perm = layout.random_node_permutation(torch.Generator().manual_seed(1))
    plain = layout.permute_graph(layout.to_graph(model), perm)
    blocked = layout.permute_graph(layout.to_graph(model, compact=True), perm)
    assert is_blocked(blocked)
    assert torch.equal(blocked.x, plain.x) and torch.equal(blocked.edge_attr, plain.edge_attr)


def test_verify_runs_on_blocked_graphs(monkeypatch):
    """verify on a model whose graph is blocked (as a large model's is) permutes it block by block."""
    monkeypatch.setattr("nngraph.convert.layout.COMPACT_EDGES", 100)
    api.clear_cache()
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(8, 16), nn.Tanh(), nn.Linear(16, 16), nn.ReLU(), nn.Linear(16, 3))
    x = torch.randn(4, 8)
    assert is_blocked(nngraph.to_graph(model, x))
    report = nngraph.verify(model, x)
    assert report.ok and report.round_trip_error == 0.0
    api.clear_cache()
