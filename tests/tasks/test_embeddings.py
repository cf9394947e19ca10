"""Model embeddings: the contrastive loss and its views, invariance of the embedding, precision@k against slow
references, and ``embed`` -> ``search`` end to end on the tiny zoos."""
from __future__ import annotations

import argparse
import importlib
import json
import math
import os
import re

import numpy as np
import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file
from torch import nn

import nngraph
import nngraph.cli
from nngraph.testing import permuted_graphs
from nngraph.train import make_loader
from nngraph.zoo import Zoo
from tasks.embeddings import embed
from tasks.embeddings import task as embeddings
from tasks.embeddings import search
from tasks.embeddings.contrastive import ViewPairs, augment_view, group_ids, nt_xent, weight_noise
from tasks.embeddings.embedder import ContrastiveEncoder, EmbeddingError, embed_graphs, load_encoder
from tasks.embeddings.retrieval import cosine_neighbours, load_embeddings, precision_at_k
from tasks.common.scaling import GraphScaler
from tasks.common.splits import load_split


# -- the loss --------------------------------------------------------------------------------------
def slow_nt_xent(z1, z2, t, groups=None):
    z = torch.cat([z1, z2]).double()
    z = z / z.norm(dim=-1, keepdim=True)
    b = len(z1)
    g = None if groups is None else torch.cat([groups, groups]).tolist()
    total = 0.0
    for i in range(2 * b):
        p = (i + b) % (2 * b)
        den = 0.0
        for j in range(2 * b):
            if j == i or (g is not None and j != p and g[j] == g[i]):
                continue
            den += math.exp(float(z[i] @ z[j]) / t)
        total += -float(z[i] @ z[p]) / t + math.log(den)
    return total / (2 * b)


@pytest.mark.parametrize("grouped", [False, True])
def test_nt_xent_matches_a_slow_reference(grouped):
    g = torch.Generator().manual_seed(0)
    z1, z2 = torch.randn(6, 4, generator=g, dtype=torch.float64), torch.randn(6, 4, generator=g, dtype=torch.float64)
    groups = torch.tensor([0, 0, 1, 2, 2, 2]) if grouped else None
    assert float(nt_xent(z1, z2, 0.3, groups)) == pytest.approx(slow_nt_xent(z1, z2, 0.3, groups), abs=1e-12)
    if grouped:  # the masks matter: grouping changes the value
        assert abs(float(nt_xent(z1, z2, 0.3, groups)) - float(nt_xent(z1, z2, 0.3))) > 1e-3


def test_nt_xent_refuses_bad_inputs():
    with pytest.raises(ValueError, match="two"):
        nt_xent(torch.randn(3, 4), torch.randn(2, 4))
    with pytest.raises(ValueError, match="temperature"):
        nt_xent(torch.randn(3, 4), torch.randn(3, 4), 0.0)
    with pytest.raises(ValueError, match="groups"):
        nt_xent(torch.randn(3, 4), torch.randn(3, 4), groups=torch.tensor([0, 1]))


# -- the views -------------------------------------------------------------------------------------
def tanh_mlp() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(3, 6), nn.Tanh(), nn.Linear(6, 5), nn.ReLU(), nn.Linear(5, 2))


def test_weight_noise_touches_weights_and_biases_only_relative_to_their_scale():
    graph = nngraph.to_graph(tanh_mlp(), torch.randn(2, 3))
    scaler = GraphScaler().fit([graph])
    assert torch.equal(weight_noise(graph, 0.0, scaler).edge_attr, graph.edge_attr)
    noisy = weight_noise(graph, 0.1, scaler, torch.Generator().manual_seed(0))
    moved = (noisy.edge_attr - graph.edge_attr).abs().squeeze(-1)  # (W,)
    weight, _ = scaler._weight_entries(graph)
    assert bool((moved[weight] > 0).all()) and bool((moved[~weight] == 0).all())
    inputs = graph.node_type == int(nngraph.schema.NodeType.INPUT)
    dx = noisy.x - graph.x  # (N, F)
    assert bool((dx[inputs] == 0).all()) and bool((dx[~inputs, nngraph.schema.BIAS] != 0).all())
    assert torch.equal(dx[:, [c for c in range(dx.shape[1]) if c != nngraph.schema.BIAS]], torch.zeros_like(dx[:, 1:]))
    rel = (moved[weight] / scaler.edge_factor(graph).squeeze(-1)[weight]).std()
    assert 0.05 < float(rel) < 0.2  # sigma 0.1 in units of the layer's RMS weight
    with pytest.raises(ValueError, match="sigma"):
        weight_noise(graph, -1.0, scaler)


def test_a_sign_flip_view_computes_the_same_function():
    model = tanh_mlp().double()
    x = torch.randn(4, 3, dtype=torch.float64)
    graph = nngraph.to_graph(model, x)
    view = augment_view(graph, GraphScaler().double().fit([graph]), noise=0.0, flip=True,
                        generator=torch.Generator().manual_seed(1))
    assert not torch.equal(view.edge_attr, graph.edge_attr)  # some tanh neuron flipped
    flipped = nngraph.from_graph(view, model)
    assert torch.allclose(flipped(x), model(x), atol=1e-12)


def test_view_pairs_pair_members_of_one_group():
    graphs = [nngraph.to_graph(tanh_mlp(), torch.randn(2, 3)) for _ in range(5)]
    groups = group_ids([{"id": str(i), "run": r} for i, r in enumerate([7, 7, 3, 7, 9])], "run")
    assert groups == [0, 0, 1, 0, 2]
    pairs = ViewPairs(graphs, groups)
    torch.manual_seed(0)
    for i in range(5):
        j = pairs.partner(i)
        assert groups[j] == groups[i] and (j != i or groups.count(groups[i]) == 1)
    fixed = ViewPairs(graphs, groups, fixed=True)
    assert [fixed.partner(i) for i in range(5)] == [1, 3, 2, 0, 4]
    a, b = fixed[0]
    assert int(a.pair_group) == int(b.pair_group) == 0 and not hasattr(graphs[0], "pair_group")
    with pytest.raises(ValueError, match="no manifest field 'run'"):
        group_ids([{"id": "m"}], "run")


# -- the encoder -----------------------------------------------------------------------------------
def small_cnn() -> nn.Module:
    torch.manual_seed(2)
    return nn.Sequential(nn.Conv2d(1, 4, 3), nn.Tanh(), nn.Conv2d(4, 3, 3), nn.ReLU(), nn.AdaptiveAvgPool2d(1),
                         nn.Flatten(), nn.Linear(3, 2))


@pytest.mark.parametrize("make, inputs", [(tanh_mlp, (torch.randn(2, 3),)), (small_cnn, (torch.randn(2, 1, 7, 7),))])
def test_the_embedding_is_invariant_to_hidden_permutations(make, inputs):
    module = make().double()
    example = tuple(t.double() for t in inputs)
    g1, g2, _, _ = permuted_graphs(module, example, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    assert not torch.equal(g1.edge_attr, g2.edge_attr)  # a real relabelling
    torch.manual_seed(0)
    encoder = ContrastiveEncoder(GraphScaler().fit([g1]), embed_dim=8, hidden_dim=8, num_layers=2,
                                 kernel_box=(1, 3, 3)).double()
    e = embed_graphs(encoder, [g1, g2])  # (2, 8)
    assert e.dtype == torch.float64
    assert float((e[0] - e[1]).abs().max()) <= 1e-10 * max(1.0, float(e.abs().max()))
    other = nngraph.to_graph(make().double().apply(lambda m: m.reset_parameters() if hasattr(m, "reset_parameters") else None),
                             example)
    assert float((embed_graphs(encoder, [other])[0] - e[0]).abs().max()) > 1e-4  # not a constant map


def test_embeddings_of_diverged_models_are_nan():
    graph = nngraph.to_graph(tanh_mlp(), torch.randn(2, 3))
    bad = graph.clone()
    bad.edge_attr = bad.edge_attr.clone()
    bad.edge_attr[0] = float("nan")
    encoder = ContrastiveEncoder(GraphScaler().fit([graph]), embed_dim=4, hidden_dim=8, num_layers=1)
    e = embed_graphs(encoder, [graph, bad, graph])
    assert torch.isfinite(e[[0, 2]]).all() and torch.isnan(e[1]).all() and torch.equal(e[0], e[2])


def test_the_contrastive_loss_decreases_on_a_tiny_zoo(inr_zoo):
    split = load_split(inr_zoo, "train")
    torch.manual_seed(0)
    model = ContrastiveEncoder(GraphScaler().fit(split.graphs), embed_dim=16, hidden_dim=16, num_layers=2)
    batch = next(iter(make_loader(ViewPairs(split.graphs, list(range(len(split)))), len(split))))

    def loss():
        g = torch.Generator().manual_seed(5)  # the same views before and after training
        a, b = (augment_view(v, model.scaler, 0.05, True, g) for v in batch)
        return nt_xent(*model(a, b), 0.1, batch[0].pair_group)

    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    with torch.no_grad():
        before = float(loss())
    for _ in range(15):
        opt.zero_grad()
        loss().backward()
        opt.step()
    with torch.no_grad():
        after = float(loss())
    assert after < 0.8 * before, (before, after)


# -- retrieval -------------------------------------------------------------------------------------
def slow_precision(emb, labels, k):
    rows = [i for i in range(len(emb)) if all(math.isfinite(v) for v in emb[i])]
    cos = lambda a, b: sum(x * y for x, y in zip(a, b)) / math.sqrt(sum(x * x for x in a) * sum(y * y for y in b))  # noqa: E731
    total = 0.0
    for i in rows:
        ranked = sorted((j for j in rows if j != i), key=lambda j: (-cos(emb[i], emb[j]), j))[:k]
        total += sum(labels[j] == labels[i] for j in ranked) / len(ranked)
    return total / len(rows)


def test_precision_at_k_matches_a_slow_loop():
    g = torch.Generator().manual_seed(0)
    emb = torch.randn(25, 3, generator=g, dtype=torch.float64)
    emb[7] = float("nan")  # a diverged model: neither query nor neighbour
    labels = torch.randint(0, 4, (25,), generator=g).tolist()
    for k in (1, 5, 10):
        assert precision_at_k(emb, labels, k) == pytest.approx(slow_precision(emb.tolist(), labels, k), abs=1e-12)
    with pytest.raises(ValueError, match="labels"):
        precision_at_k(emb, labels[:3])


def test_retrieval_baselines_and_a_perfect_embedding():
    labels = ["a", "a", "a", "b", "b", "c"]
    chance, ceiling = embeddings.retrieval_baselines(labels, 3)
    assert chance == pytest.approx(np.mean([2 / 5] * 3 + [1 / 5] * 2 + [0]))
    onehot = torch.eye(3, dtype=torch.float64)[[0, 0, 0, 1, 1, 2]]  # (6, 3) the label as the embedding
    assert precision_at_k(onehot, labels, 3) == pytest.approx(ceiling)
    sims, idx = cosine_neighbours(onehot[:1], onehot, 2)
    assert idx.tolist() == [[0, 1]] and sims.tolist() == [[1.0, 1.0]]  # ties in database order


# -- embed -> search -------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def embedded(clf_zoo, tmp_path_factory):
    out = str(tmp_path_factory.mktemp("embed") / "emb.safetensors")
    assert embed.main(["--zoo", clf_zoo, "-o", out, "--epochs", "1", "--embed-dim", "8", "--hidden-dim", "8",
                       "--num-layers", "1", "--no-progress"]) == 0
    return out


def test_embed_writes_one_row_per_model_and_the_encoder_next_to_it(clf_zoo, embedded):
    emb, models, encoder_dir = load_embeddings(embedded)
    zoo = Zoo(clf_zoo)
    assert [m["id"] for m in models] == [e["id"] for e in zoo.entries] and emb.shape == (len(zoo), 8)
    assert os.path.samefile(encoder_dir, embed.encoder_dir(embedded)) and os.path.isfile(os.path.join(encoder_dir, "best.json"))
    encoder, settings = load_encoder(encoder_dir)
    assert settings["pair_field"] == "run" and settings["embed_dim"] == 8
    again = embedded.replace(".safetensors", "-again.safetensors")
    assert embed.main(["--zoo", clf_zoo, "-o", again, "--checkpoint", encoder_dir, "--no-progress"]) == 0
    assert torch.equal(load_file(again)["embeddings"], emb)  # the same encoder gives the same rows
    assert not os.path.exists(embed.encoder_dir(again))  # nothing trained


def test_search_returns_a_zoo_member_first(clf_zoo, embedded, tmp_path, capsys):
    zoo = Zoo(clf_zoo)
    for entry in zoo.entries[::3]:
        hits, member = search.search(clf_zoo, zoo.path(entry), 3, embedded)
        assert member["id"] == entry["id"] and hits[0]["id"] == entry["id"]
        assert hits[0]["similarity"] == pytest.approx(1.0, abs=1e-5) and len(hits) == 3
        assert [h["similarity"] for h in hits] == sorted((h["similarity"] for h in hits), reverse=True)
    # the same weights saved again (other bytes, no sha256 match): found by its architecture, still first
    entry = zoo.entries[1]
    copy_path = str(tmp_path / "copy.safetensors")
    save_file(zoo.load_state_dict(entry), copy_path, metadata={"note": "a copy"})
    hits, member = search.search(clf_zoo, copy_path, 2, embedded)
    assert member is None and hits[0]["id"] == entry["id"]
    # through the command
    assert search.main(["--zoo", clf_zoo, "--query", zoo.path(entry), "--embeddings", embedded, "-k", "4"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert f"(zoo model {entry['id']})" in lines[0] and lines[3].startswith(f"| 1 | {entry['id']} |")
    assert len(lines) == 3 + 4


def test_search_refuses_what_it_cannot_answer(clf_zoo, inr_zoo, embedded, tmp_path, capsys):
    with pytest.raises(EmbeddingError, match="another zoo"):
        search.search(inr_zoo, Zoo(inr_zoo).path(Zoo(inr_zoo).entries[0]), 3, embedded)
    odd = str(tmp_path / "odd.safetensors")
    save_file({"weight": torch.zeros(3, 3)}, odd)
    with pytest.raises(EmbeddingError, match="fit none of the architectures"):
        search.search(clf_zoo, odd, 3, embedded)
    with pytest.raises(EmbeddingError, match="at least one"):
        search.search(clf_zoo, odd, 0, embedded)
    with pytest.raises(EmbeddingError, match="not an encoder"):
        load_encoder(str(tmp_path))
    assert search.main(["--zoo", clf_zoo, "--query", str(tmp_path / "missing.safetensors"), "--embeddings",
                        embedded]) == 1
    assert "no such file" in capsys.readouterr().err
    assert embed.main(["--zoo", clf_zoo, "-o", str(tmp_path / "emb.npy")]) == 1


def test_the_cli_runs_embed_and_search_of_the_registered_package(monkeypatch, clf_zoo, embedded, capsys):
    monkeypatch.setattr(nngraph.cli, "task_packages", lambda: [importlib.import_module("tasks")])
    with pytest.raises(SystemExit) as exit:
        nngraph.cli.main(["embed", "--help"])
    assert exit.value.code == 0 and capsys.readouterr().out.startswith("usage: nngraph embed")
    entry = Zoo(clf_zoo).entries[0]
    assert nngraph.cli.main(["search", "--zoo", clf_zoo, "--query", Zoo(clf_zoo).path(entry), "--embeddings",
                             embedded, "-k", "2"]) == 0
    assert f"| 1 | {entry['id']} |" in capsys.readouterr().out
    monkeypatch.setattr(nngraph.cli, "task_packages", lambda: [])
    assert nngraph.cli.main(["search", "--zoo", clf_zoo]) == 2
    assert "no task package providing 'search'" in capsys.readouterr().err


# -- the evaluation --------------------------------------------------------------------------------
def test_the_evaluation_writes_probe_retrieval_rows_and_a_map(clf_zoo, tmp_path):
    out = str(tmp_path / "eval")
    args = embeddings.build_parser().parse_args(["--zoo", clf_zoo, "--out", out, "--epochs", "1", "-k", "3",
                                                 "--embed-dim", "8", "--hidden-dim", "8", "--num-layers", "1",
                                                 "--no-progress"])
    rows = embeddings.run(args)
    with open(os.path.join(out, "results.json")) as f:
        assert json.load(f) == json.loads(json.dumps(rows))
    metrics = {(r["method"], r["metric"]) for r in rows}
    for method in embeddings.METHODS:
        assert {(method, "probe_kendall_tau[test_acc]"), (method, "probe_acc[family]"),
                (method, "precision@3[run]"), (method, "precision@3[family]")} <= metrics
    assert ("chance", "precision@3[run]") in metrics and ("ceiling", "precision@3[run]") in metrics
    assert all(0.0 <= r["value"] <= 1.0 for r in rows if r["metric"].startswith(("precision", "probe_acc")))
    assert os.path.getsize(os.path.join(out, "map.png")) > 1000
    with safe_open(os.path.join(out, "embeddings.safetensors"), "pt") as f:  # nngraph search reads it
        assert f.metadata()["format"] == "nngraph-embeddings"
    with pytest.raises(nngraph.NNGraphError, match="Could not resolve methods"):
        embeddings.run(argparse.Namespace(**{**vars(args), "methods": ["pixels"]}))


def test_search_embeds_a_model_of_another_architecture_with_a_factory(clf_zoo, embedded, tmp_path, monkeypatch):
    (tmp_path / "queryfactory.py").write_text(
        "from torch import nn\n\ndef mlp():\n    return nn.Sequential(nn.Flatten(), nn.Linear(64, 7), nn.Tanh(), "
        "nn.Linear(7, 10))\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    torch.manual_seed(4)
    path = str(tmp_path / "q.safetensors")
    save_file(nn.Sequential(nn.Flatten(), nn.Linear(64, 7), nn.Tanh(), nn.Linear(7, 10)).state_dict(), path)
    hits, member = search.search(clf_zoo, path, 3, embedded, factory="queryfactory:mlp", inputs="2,1,8,8")
    assert member is None and len(hits) == 3 and len({h["id"] for h in hits}) == 3
    assert all(-1.0 <= h["similarity"] < 1.0 - 1e-6 for h in hits)


def test_the_evaluation_reuses_an_encoder_of_nngraph_embed(clf_zoo, embedded, tmp_path):
    out = str(tmp_path / "eval")
    rows = embeddings.run(embeddings.build_parser().parse_args(
        ["--zoo", clf_zoo, "--out", out, "--methods", "ssl,random_encoder", "--checkpoint", embed.encoder_dir(embedded),
         "--embed-dim", "8", "--hidden-dim", "8", "--num-layers", "1", "-k", "2", "--no-progress"]))
    assert {r["method"] for r in rows} == {"ssl", "random_encoder", "chance", "ceiling"}
    assert not os.path.exists(os.path.join(out, "runs", "ssl"))  # nothing trained


def _damaged(embedded, name, tensors=None, **meta_changes):
    """A copy of ``embedded`` next to it (so its relative encoder path holds) with changed tensors / metadata
    (``None`` drops a key)."""
    with safe_open(embedded, "pt") as f:
        meta = dict(f.metadata())
    for k, v in meta_changes.items():
        if v is None:
            meta.pop(k, None)
        else:
            meta[k] = v
    path = os.path.join(os.path.dirname(embedded), f"damaged-{name}.safetensors")
    save_file(tensors if tensors is not None else load_file(embedded), path, metadata=meta)
    return path


@pytest.mark.parametrize("name, damage, message", [
    ("no-models", dict(models=None), r"metadata lacks \['models'\]"),
    ("no-encoder", dict(encoder=None), r"metadata lacks \['encoder'\]"),
    ("bad-json", dict(models="[{"), r"metadata 'models' is not valid JSON"),
    ("models-dict", dict(models='{"a": 1}'), r"metadata 'models' is a dict, not a list"),
    ("no-label", dict(models="drop:label"), r"model 0 of its metadata 'models' lacks \['label'\]"),
    ("no-id", dict(models="drop:id"), r"model 0 of its metadata 'models' lacks \['id'\]"),
    ("no-format", dict(format=None), r"is not an embeddings file of nngraph embed"),
    ("narrow", "narrow", r"rows of width 4, but its encoder .* embeds in 8 dimensions"),
    ("nan", "nan", r"all \d+ rows are non-finite"),
    ("ints", "ints", r"the embeddings are torch.int64, not floating point"),
    ("short", "short", r"embeddings for \d+ models"),
    ("encoder-elsewhere", dict(encoder="nowhere"), r"holds no checkpoint 'best'"),
])
def test_search_on_a_malformed_embeddings_file_is_one_line(clf_zoo, embedded, capsys, name, damage, message):
    emb = load_file(embedded)["embeddings"]
    with safe_open(embedded, "pt") as f:
        models = json.loads(f.metadata()["models"])
    tensors = {"narrow": {"embeddings": emb[:, :4].contiguous()}, "nan": {"embeddings": torch.full_like(emb, math.nan)},
               "ints": {"embeddings": emb.long()}, "short": {"embeddings": emb[:-1].contiguous()}}.get(damage) if isinstance(damage, str) else None
    changes = {} if isinstance(damage, str) else dict(damage)
    if str(changes.get("models", "")).startswith("drop:"):
        drop = changes["models"][5:]
        changes["models"] = json.dumps([{k: v for k, v in m.items() if k != drop} for m in models])
    path = _damaged(embedded, name, tensors, **changes)
    query = Zoo(clf_zoo).path(Zoo(clf_zoo).entries[0])
    assert search.main(["--zoo", clf_zoo, "--query", query, "--embeddings", path]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err and re.search(message, err), err
    with pytest.raises(nngraph.NNGraphError):
        search.main(["--zoo", clf_zoo, "--query", query, "--embeddings", path, "--debug"])


def test_search_and_embed_take_threads(clf_zoo, embedded, monkeypatch):
    seen = []
    monkeypatch.setattr(torch, "set_num_threads", lambda n: seen.append(n))
    query = Zoo(clf_zoo).path(Zoo(clf_zoo).entries[0])
    assert search.main(["--zoo", clf_zoo, "--query", query, "--embeddings", embedded, "--threads", "2"]) == 0
    assert search.main(["--zoo", clf_zoo, "--query", query, "--embeddings", embedded]) == 0
    assert seen == [2, 1]  # one thread unless told otherwise
    assert embed.build_parser().parse_args(["--zoo", "z", "-o", "e.safetensors"]).threads == 1


def test_embed_reads_graph_files_and_a_blocked_graph_equals_its_plain_form(clf_zoo, embedded, tmp_path):
    from nngraph.blocks import materialize
    from nngraph.convert import build_layout
    from nngraph.graph_io import save_graph

    _, _, encoder_dir = load_embeddings(embedded)
    torch.manual_seed(5)
    model = nn.Sequential(nn.Flatten(), nn.Linear(64, 12), nn.ReLU(), nn.Linear(12, 10))
    layout = build_layout(model, (torch.randn(2, 1, 8, 8),))
    blocked = layout.to_graph(model, compact=True)
    save_graph(blocked, str(tmp_path / "blocked.safetensors"))
    save_graph(materialize(blocked), str(tmp_path / "plain.pt"))
    out = str(tmp_path / "files.safetensors")
    assert embed.main(["--graph", str(tmp_path / "blocked.safetensors"), str(tmp_path / "plain.pt"),
                       "--checkpoint", encoder_dir, "-o", out, "--no-progress"]) == 0
    emb, models, _ = load_embeddings(out)
    assert [m["id"] for m in models] == ["blocked.safetensors", "plain.pt"] and emb.shape == (2, 8)
    torch.testing.assert_close(emb[0], emb[1], rtol=1e-5, atol=1e-6)  # block by block = in memory
    assert embed.main(["--graph", str(tmp_path / "plain.pt"), "-o", out, "--no-progress"]) == 1  # no encoder


@pytest.mark.parametrize("robust", [False, True])
def test_a_scaler_scales_a_blocked_graph_as_it_is_read_like_the_plain_one(robust):
    from nngraph.blocks import materialize
    from nngraph.convert import build_layout
    from tasks.common.robust import RobustGraphScaler
    from tasks.common.scaling import GraphScaler

    class Net(nn.Module):  # an embedding (a grid read source-major), 3x3 kernels, a linear (target-major)
        def __init__(self):
            super().__init__()
            self.emb, self.conv, self.head = nn.Embedding(11, 6), nn.Conv1d(6, 5, 3, padding=1), nn.Linear(5, 4)

        def forward(self, ids):
            return self.head(torch.relu(self.conv(self.emb(ids).transpose(1, 2))).mean(-1))

    torch.manual_seed(0)
    model = Net().eval()
    layout = build_layout(model, (torch.zeros(2, 7, dtype=torch.long),))
    blocked = layout.to_graph(model, compact=True)
    plain = materialize(blocked)
    scaler = (RobustGraphScaler if robust else GraphScaler)().fit([plain])
    assert not torch.all(scaler.edge_scale == 1)  # the test scales something
    expected = scaler(plain).edge_attr  # (W, 1)
    lazy = scaler(blocked)
    got = torch.cat([lazy.edge_transform(c, blocked.edge_attr[c.entries.start:c.entries.stop])
                     for c in blocked.edge_blocks.chunks(7)])
    torch.testing.assert_close(got, expected, rtol=1e-6, atol=1e-7)
