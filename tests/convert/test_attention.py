import pytest
import torch
import torch.nn.functional as F
from torch import nn

import nngraph
from nngraph.schema import BIAS, Activation, EdgeType, NodeKind

from .graph_checks import (
    assert_falls_back,
    assert_function_preserved,
    assert_round_trip,
    assert_same_up_to_relabelling,
    edge_dict,
    nodes_of,
)

E, H, FF = 8, 2, 12


class SelfAttention(nn.Module):
    def __init__(self, batch_first=True, bias=True):
        super().__init__()
        self.attn = nn.MultiheadAttention(E, H, batch_first=batch_first, bias=bias)
        self.head = nn.Linear(E, 3)

    def forward(self, x):
        out, _ = self.attn(x, x, x)
        return self.head(out)


class Encoder(nn.Module):
    """Linear -> TransformerEncoderLayer -> Linear: the residual stream is hidden (permutable)."""

    def __init__(self, norm_first=False, activation="relu", batch_first=True):
        super().__init__()
        self.embed = nn.Linear(3, E)
        self.enc = nn.TransformerEncoderLayer(E, H, FF, dropout=0.0, activation=activation,
                                              norm_first=norm_first, batch_first=batch_first)
        self.head = nn.Linear(E, 2)

    def forward(self, x):
        return self.head(self.enc(self.embed(x)))


class Cross(nn.Module):
    def __init__(self):
        super().__init__()
        self.a, self.b = nn.Linear(3, E), nn.Linear(5, E)
        self.attn = nn.MultiheadAttention(E, H, batch_first=True)
        self.head = nn.Linear(E, 2)

    def forward(self, x, y):
        kv = self.b(y)
        out, _ = self.attn(self.a(x), kv, kv)
        return self.head(out)


def seq(batch_first=True, dtype=torch.float32, features=E):
    shape = (3, 5, features) if batch_first else (5, 3, features)
    return torch.randn(*shape, dtype=dtype)


def randomize_norms(model):
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.LayerNorm):
                m.weight.copy_(torch.randn_like(m.weight))
                m.bias.copy_(torch.randn_like(m.bias))
    return model


# ----------------------------------------------------------------------- reference


def test_multihead_attention_against_reference_loop():
    torch.manual_seed(0)
    model = SelfAttention()
    x = seq()
    g = nngraph.to_graph(model, x)
    mha = model.attn
    inp = torch.arange(E)  # the model input's neurons are the first nodes
    q, k, v = (nodes_of(model, f"attn.{p}", x) for p in ("query", "key", "value"))
    heads, out = nodes_of(model, "attn.heads", x), nodes_of(model, "attn", x)
    rows = torch.cat([q, k, v])
    expected = {}
    for r in range(3 * E):
        for c in range(E):
            expected[(int(inp[c]), int(rows[r]), int(EdgeType.WEIGHT))] = mha.in_proj_weight[r, c].item()
        expected[(int(heads[(r % E) // (E // H)]), int(rows[r]), int(EdgeType.HEAD_MEMBER))] = 1.0
        assert g.x[rows[r], BIAS].item() == mha.in_proj_bias[r].item()
    for j in range(E):
        expected[(int(q[j]), int(k[j]), int(EdgeType.QK_PAIR))] = 1.0
        for o in range(E):
            expected[(int(v[j]), int(out[o]), int(EdgeType.WEIGHT))] = mha.out_proj.weight[o, j].item()
    for o in range(E):
        assert g.x[out[o], BIAS].item() == mha.out_proj.bias[o].item()
    head_nodes = set(nodes_of(model, "head", x).tolist())
    got = {key: a.item() for key, a in edge_dict(g).items() if key[1] not in head_nodes}
    assert got == expected
    kinds = g.node_kind
    assert (kinds[q] == NodeKind.QUERY).all() and (kinds[k] == NodeKind.KEY).all()
    assert (kinds[v] == NodeKind.VALUE).all() and (kinds[heads] == NodeKind.HEAD).all()


def test_encoder_layer_structure():
    model = Encoder(activation="gelu")
    g = nngraph.to_graph(model)
    assert g.num_nodes == 3 + E + 3 * E + H + E + E + E + FF + E + E + E + 2
    assert (g.act[nodes_of(model, "enc.linear1")] == Activation.GELU).all()
    assert (g.node_kind == NodeKind.SUM).sum() == 2 * E and (g.node_kind == NodeKind.NORM).sum() == 2 * E
    assert (g.edge_type == EdgeType.RESIDUAL).sum() == 4 * E


# ----------------------------------------------------------------------- round trips


@pytest.mark.parametrize("batch_first", [True, False])
@pytest.mark.parametrize("bias", [True, False])
def test_round_trip_multihead_attention(batch_first, bias):
    torch.manual_seed(1)
    assert_round_trip(SelfAttention(batch_first, bias), seq(batch_first))


def test_round_trip_bare_multihead_attention_and_cross_attention():
    x = seq()
    assert_round_trip(nn.MultiheadAttention(E, H, batch_first=True), x, x, x)
    assert_round_trip(Cross(), seq(features=3), seq(features=5))


@pytest.mark.parametrize("norm_first", [False, True])
@pytest.mark.parametrize("activation", ["relu", "gelu", nn.GELU()])
@pytest.mark.parametrize("batch_first", [True, False])
def test_round_trip_encoder_layer(norm_first, activation, batch_first):
    torch.manual_seed(2)
    model = randomize_norms(Encoder(norm_first, activation, batch_first))
    assert_round_trip(model, seq(batch_first, features=3))


def test_round_trip_bare_encoder_layer_and_stack():
    torch.manual_seed(3)
    layer = randomize_norms(nn.TransformerEncoderLayer(E, H, FF, dropout=0.0, batch_first=True))
    assert_round_trip(layer, seq())
    stack = nn.TransformerEncoder(nn.TransformerEncoderLayer(E, H, FF, dropout=0.0), 2, norm=nn.LayerNorm(E),
                                  enable_nested_tensor=False)
    g = assert_round_trip(randomize_norms(stack), seq(False))
    assert (g.node_kind == NodeKind.HEAD).sum() == 2 * H


# ----------------------------------------------------------------------- symmetries


def _head_perm(head_order, within):
    """Row permutation keeping heads whole: new row i * d + j is old row head_order[i] * d + within[i, j]."""
    d = E // H
    return (head_order.unsqueeze(1) * d + within).reshape(-1)  # (E,)


@pytest.mark.parametrize("norm_first", [False, True])
def test_hand_permuted_encoder_layer_gives_relabelled_graph(norm_first):
    torch.manual_seed(4)
    model = randomize_norms(Encoder(norm_first)).double()
    permuted = Encoder(norm_first).double()
    permuted.load_state_dict(model.state_dict())
    d = E // H
    head_order = torch.tensor([1, 0])
    p_qk = _head_perm(head_order, torch.stack([torch.randperm(d) for _ in range(H)]))
    p_v = _head_perm(head_order, torch.stack([torch.randperm(d) for _ in range(H)]))  # values may differ
    p_ff = torch.randperm(FF)
    src, dst = model.enc, permuted.enc
    with torch.no_grad():
        w, b = src.self_attn.in_proj_weight, src.self_attn.in_proj_bias  # (3E, E), (3E,)
        rows = torch.cat([p_qk, E + p_qk, 2 * E + p_v])  # (3E,)
        dst.self_attn.in_proj_weight.copy_(w[rows]); dst.self_attn.in_proj_bias.copy_(b[rows])
        dst.self_attn.out_proj.weight.copy_(src.self_attn.out_proj.weight[:, p_v])
        dst.linear1.weight.copy_(src.linear1.weight[p_ff]); dst.linear1.bias.copy_(src.linear1.bias[p_ff])
        dst.linear2.weight.copy_(src.linear2.weight[:, p_ff])
    x = seq(dtype=torch.float64, features=3)
    assert_function_preserved(model, permuted, x)
    g1, g2 = nngraph.to_graph(model), nngraph.to_graph(permuted)
    perm = torch.arange(g1.num_nodes)
    for name, p in (("enc.self_attn.query", p_qk), ("enc.self_attn.key", p_qk), ("enc.self_attn.value", p_v),
                    ("enc.self_attn.heads", head_order), ("enc.linear1", p_ff)):
        nodes = nodes_of(model, name)
        perm[nodes[p]] = nodes  # neuron p[j] of the original is neuron j of the permuted model
    assert_same_up_to_relabelling(g1, g2, perm)
    # the test can fail: heads not moving with their neurons
    heads = nodes_of(model, "enc.self_attn.heads")
    wrong = perm.clone()
    wrong[heads] = wrong[heads.flip(0)]
    with pytest.raises(AssertionError):
        assert_same_up_to_relabelling(g1, g2, wrong)


def test_permutations_outside_the_symmetry_change_the_function():
    """The symmetry tests check themselves: moving neurons across heads, or queries without keys, is not a symmetry."""
    torch.manual_seed(5)
    model = SelfAttention().double()
    x = seq(dtype=torch.float64)
    for rows in (torch.arange(E).roll(1),  # query/key/value neuron moves into the other head
                 None):  # queries permuted within a head, keys not
        changed = SelfAttention().double()
        changed.load_state_dict(model.state_dict())
        with torch.no_grad():
            w = model.attn.in_proj_weight  # (3E, E)
            if rows is not None:
                full = torch.cat([rows, E + rows, 2 * E + rows])
                changed.attn.in_proj_weight.copy_(w[full])
                changed.attn.in_proj_bias.copy_(model.attn.in_proj_bias[full])
                changed.attn.out_proj.weight.copy_(model.attn.out_proj.weight[:, rows])
            else:
                q_only = torch.cat([torch.tensor([1, 0, 2, 3]), torch.arange(4, 3 * E)])
                changed.attn.in_proj_weight.copy_(w[q_only])
                changed.attn.in_proj_bias.copy_(model.attn.in_proj_bias[q_only])
        with pytest.raises(AssertionError):
            assert_function_preserved(model, changed, x)


@pytest.mark.parametrize("make, inputs", [
    (lambda: SelfAttention(True), lambda: (seq(True, torch.float64),)),
    (lambda: SelfAttention(False, bias=False), lambda: (seq(False, torch.float64),)),
    (lambda: Encoder(False, "relu", True), lambda: (seq(True, torch.float64, 3),)),
    (lambda: Encoder(True, "gelu", False), lambda: (seq(False, torch.float64, 3),)),
    (lambda: nn.TransformerEncoderLayer(E, H, FF, dropout=0.0, batch_first=True), lambda: (seq(True, torch.float64),)),
    (lambda: Cross(), lambda: (seq(True, torch.float64, 3), seq(True, torch.float64, 5))),
])
def test_random_hidden_permutation_preserves_function_and_relabels(make, inputs):
    torch.manual_seed(6)
    model = randomize_norms(make()).double()
    x = inputs()
    g = nngraph.to_graph(model, x)
    layout = nngraph.build_layout(model, x)
    query = layout.module_nodes[[k for k in layout.module_nodes if k.endswith("query")][0]]
    moved = False
    for seed in range(4):
        permuted, perm = nngraph.random_hidden_permutation(model, torch.Generator().manual_seed(seed), x)
        assert_function_preserved(model, permuted, *x)
        assert_same_up_to_relabelling(g, nngraph.to_graph(permuted, x), perm)
        moved |= not torch.equal(perm[query], query)
    assert moved, "the attention neurons were never permuted"


# ----------------------------------------------------------------------- refusals


@pytest.mark.parametrize("attn, match", [
    (nn.MultiheadAttention(E, H, kdim=4, vdim=4), "kdim"),
    (nn.MultiheadAttention(E, H, add_bias_kv=True), "add_bias_kv"),
    (nn.MultiheadAttention(E, H, add_zero_attn=True), "add_zero_attn"),
])
def test_unsupported_attention_options_fall_back(attn, match):
    x = torch.randn(5, 2, E)
    assert_falls_back(attn, (x, torch.randn(5, 2, attn.kdim), torch.randn(5, 2, attn.vdim)), match=match)


def test_unsupported_feed_forward_activation_falls_back():
    assert_falls_back(nn.TransformerEncoderLayer(E, H, FF, activation=F.silu), None, match="TransformerEncoderLayer")


class _InputMask(nn.Module):
    def __init__(self):
        super().__init__()
        self.attn = nn.MultiheadAttention(E, H, batch_first=True)

    def forward(self, x, mask):
        return self.attn(x, x, x, key_padding_mask=mask)[0]


class _ComputedMask(_InputMask):
    def forward(self, x, mask):
        return self.attn(x, x, x, key_padding_mask=x[:, :, 0] > 0)[0]  # (B, L) mask from the activations


def test_mask_computed_from_activations_falls_back_but_input_masks_work():
    x, mask = seq(), torch.zeros(3, 5, dtype=torch.bool)
    assert_round_trip(_InputMask(), x, mask)
    x[:, 0, 0] = -1.0  # the computed mask keeps key 0 of every sequence (a fully masked one gives NaN)
    assert_falls_back(_ComputedMask(), (x, mask), match="indexing|at fx node .gt.")


class _LearnedMask(_InputMask):
    def __init__(self):
        super().__init__()
        self.proj = nn.Linear(E, 5)

    def forward(self, x, mask):
        return self.attn(x, x, x, attn_mask=self.proj(x))[0]  # (L, L) float mask from a layer


def test_mask_from_a_layer_falls_back():
    assert_falls_back(_LearnedMask(), (torch.randn(5, E), torch.zeros(5, 5)),
                      match="computed from the model's activations")


class TinyLM(nn.Module):
    """Embedding -> TransformerEncoder (2 pre-norm layers) -> Linear: tokens in, logits out."""

    def __init__(self):
        super().__init__()
        self.emb = nn.Embedding(11, E)
        layer = nn.TransformerEncoderLayer(E, H, FF, dropout=0.0, batch_first=True, norm_first=True)
        self.enc = nn.TransformerEncoder(layer, 2, enable_nested_tensor=False)
        self.out = nn.Linear(E, 11)

    def forward(self, ids):
        return self.out(self.enc(self.emb(ids)))


def test_tiny_language_model_round_trips_and_symmetries():
    torch.manual_seed(7)
    model = randomize_norms(TinyLM()).double()
    ids = torch.randint(0, 11, (2, 7))
    g = assert_round_trip(model, ids)
    assert len(nngraph.build_layout(model, (ids,)).symmetries) == 5  # residual stream, 2 x (heads, FF)
    for seed in range(3):
        permuted, perm = nngraph.random_hidden_permutation(model, torch.Generator().manual_seed(seed), ids)
        assert_function_preserved(model, permuted, ids)
        assert_same_up_to_relabelling(g, nngraph.to_graph(permuted, ids), perm)
