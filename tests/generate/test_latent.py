"""The latent generator: the zoo aligned by weight matching, an exact linear code at full rank, samples that run,
relabelled samples that compute what the unrelabelled ones compute, and a file that samples the same."""
from __future__ import annotations

import pytest
import torch

import nngraph
from nngraph.generate import LatentFlowGenerator, WeightSpace, align_zoo, load_generator

from .zoo import INPUTS, Killed, dying, mlp, zoo


def _relabelled_copies(model, n: int):
    """``n`` graphs of ``model`` under random relabellings of its hidden neurons (the first not relabelled)."""
    layout = nngraph.build_layout(model, (INPUTS,))
    graph = layout.to_graph(model)
    generator = torch.Generator().manual_seed(0)
    return layout, [graph] + [layout.permute_graph(graph, layout.random_node_permutation(generator))
                              for _ in range(n - 1)]


def test_align_zoo_maps_relabellings_of_one_model_to_one_vector():
    model = mlp(0)
    layout, graphs = _relabelled_copies(model, 4)
    space = WeightSpace.of(model, INPUTS)
    raw = space.flatten(graphs).double()  # (4, D)
    assert (raw[1:] - raw[0]).abs().max() > 0.1  # the copies differ as vectors
    aligned = align_zoo(space, graphs, layout)
    torch.testing.assert_close(aligned, raw[:1].expand_as(aligned), rtol=0, atol=1e-6)


def _fit(tmp_path, rank: int, n: int = 8, **kw):
    models, graphs, acc = zoo(mlp, n=n)
    gen = LatentFlowGenerator(rank=rank, hidden_dim=16, num_layers=1, **kw)
    gen.fit(graphs, acc, template=models[0], example_inputs=INPUTS, out_dir=str(tmp_path / "run"), epochs=2,
            batch_size=4, repeats=2, progress=False)
    return gen, models, graphs


@pytest.mark.parametrize("whiten", [False, True])
def test_full_rank_code_reproduces_the_aligned_zoo(tmp_path, whiten):
    gen, models, graphs = _fit(tmp_path, rank=50, whiten=whiten)
    assert gen.latent_dim == len(graphs) - 1  # capped at M - 1 directions
    assert bool((gen.scales == gen.scales[0]).all()) != whiten  # one scale, or one per direction
    layout = nngraph.build_layout(models[0], (INPUTS,))
    z = gen.stats.normalize(align_zoo(gen.space, graphs, layout))  # (M, D)
    codes = (z - gen.mean) @ gen.basis.t() / gen.scales  # (M, r)
    torch.testing.assert_close(gen._decode(codes), gen.stats.denormalize(z), rtol=0, atol=1e-8)


def test_samples_run_and_relabelling_keeps_their_function(tmp_path):
    gen, models, _ = _fit(tmp_path, rank=4)
    cond = [0.2, 0.5, 0.8]
    relabelled = gen.sample(models[0], 3, condition=cond, steps=3, seed=0)
    gen.relabel = False
    plain = gen.sample(models[0], 3, condition=cond, steps=3, seed=0)
    for a, b in zip(relabelled, plain):
        ma, mb = nngraph.from_graph(a, models[0]), nngraph.from_graph(b, models[0])
        assert not torch.equal(ma[1].weight, mb[1].weight)  # relabelled: other weights ...
        torch.testing.assert_close(ma(INPUTS), mb(INPUTS), rtol=0, atol=1e-5)  # ... the same function
        assert torch.isfinite(ma(INPUTS)).all()
    loaded = load_generator(str(tmp_path / "run" / "generator.pt"))
    assert isinstance(loaded, LatentFlowGenerator) and loaded.rank == 4
    again = loaded.sample(models[0], 3, condition=cond, steps=3, seed=0)
    for a, b in zip(again, relabelled):
        torch.testing.assert_close(a.edge_attr, b.edge_attr, rtol=0, atol=1e-6)


def test_the_twin_without_a_frame_codes_the_zoo_as_trained(tmp_path):
    """``align=False``: the basis spans the zoo's vectors as trained, so a zoo of relabelled copies of one model is
    rebuilt exactly from its codes; with the frame the copies are one aligned model, and the vectors as trained
    are not in the span. The setting survives the file."""
    model = mlp(0)
    _, graphs = _relabelled_copies(model, 6)
    acc = torch.linspace(0.1, 0.9, 6)
    error = {}
    for align in (True, False):
        gen = LatentFlowGenerator(rank=5, hidden_dim=8, num_layers=1, align=align, relabel=align)
        gen.fit(graphs, acc, template=model, example_inputs=INPUTS, out_dir=str(tmp_path / f"a{align}"), epochs=1,
                batch_size=4, progress=False)
        raw = gen.space.flatten(graphs).double()  # (6, D) as trained
        codes = (gen.stats.normalize(raw) - gen.mean) @ gen.basis.t() / gen.scales  # (6, r)
        error[align] = float((gen._decode(codes) - raw).abs().max())
        assert load_generator(str(tmp_path / f"a{align}" / "generator.pt")).align == align
    assert error[False] < 1e-6 < 0.1 < error[True]


def test_encode_reads_the_code_whatever_the_neuron_order(tmp_path):
    """Codes come from the frame: a relabelled sample has the code of the sample, and the frame's reference
    (the decoded mean) in any order has code 0; without aligning (the twin's encode) relabelling changes it."""
    gen, models, _ = _fit(tmp_path, rank=4)
    gen.relabel = False
    plain = gen.sample(models[0], 3, condition=[0.2, 0.5, 0.8], steps=3, seed=0)
    layout = nngraph.build_layout(models[0], (INPUTS,))
    generator = torch.Generator().manual_seed(1)
    moved = [layout.permute_graph(g, layout.random_node_permutation(generator)) for g in plain]
    torch.testing.assert_close(gen.encode(moved), gen.encode(plain), rtol=0, atol=1e-8)
    reference = gen.space.graphs(gen.stats.denormalize(gen.mean.unsqueeze(0)))[0]
    ref_moved = layout.permute_graph(reference, layout.random_node_permutation(generator))
    assert gen.encode([ref_moved]).abs().max() < 1e-5  # the graph holds float32 weights
    gen.align = False
    assert (gen.encode(moved) - gen.encode(plain)).abs().max() > 1e-2


def test_project_rebuilds_the_aligned_zoo_at_full_rank_and_loses_detail_below(tmp_path):
    """At rank M - 1 every zoo model is in the code's span: projecting rebuilds it as aligned to the frame (its
    function unchanged); at rank 1 it does not."""
    for rank, exact in ((50, True), (1, False)):
        gen, models, graphs = _fit(tmp_path / str(rank), rank=rank)
        for model, g, p in zip(models, graphs, gen.project(graphs)):
            rebuilt = nngraph.from_graph(p, models[0])
            close = torch.allclose(rebuilt(INPUTS), model(INPUTS), rtol=0, atol=1e-4)
            assert close == exact


def test_code_noise_is_gaussian_in_code_units(tmp_path):
    """``code_noise``: the decoded samples differ from the noiseless ones by a code of that standard deviation
    (read back through the basis); 0 changes nothing; a negative one is an error."""
    gen, models, _ = _fit(tmp_path, rank=4)
    gen.relabel = False
    plain = gen.sample(models[0], 200, condition=0.5, steps=2, seed=3)
    same = gen.sample(models[0], 200, condition=0.5, steps=2, seed=3, code_noise=0.0)
    noisy = gen.sample(models[0], 200, condition=0.5, steps=2, seed=3, code_noise=0.5)
    flat = lambda gs: gen.stats.normalize(gen.space.flatten(gs).double())  # noqa: E731  (200, D)
    torch.testing.assert_close(flat(same), flat(plain), rtol=0, atol=0)
    noise = (flat(noisy) - flat(plain)) @ gen.basis.t() / gen.scales  # (200, r)
    assert abs(float(noise.std()) - 0.5) < 0.05 and abs(float(noise.mean())) < 0.05
    with pytest.raises(ValueError, match="code_noise"):
        gen.sample(models[0], 2, condition=0.5, code_noise=-1.0)


_DyingLatent = dying(LatentFlowGenerator)


def test_a_killed_class_conditional_fit_resumes_and_refuses_other_architectures(tmp_path):
    """Conditioned on a class (the INR task's digit): killed in epoch 3 of 4 and run again, the fit trains only
    the missing epochs and samples what the uninterrupted fit samples; another architecture or an unseen class is
    a one-line error."""
    from .zoo import cnn

    models, graphs, _ = zoo(mlp, n=10)
    classes = torch.arange(10) % 3  # (10,) integer: a class condition
    options = dict(template=models[0], example_inputs=INPUTS, epochs=4, batch_size=4, progress=False, seed=3)
    full = LatentFlowGenerator(rank=4, hidden_dim=8, num_layers=1)
    full.fit(graphs, classes, out_dir=str(tmp_path / "full"), **options)
    assert full.condition.kind == "class"
    _DyingLatent.calls, _DyingLatent.die_at = 0, 2 * 3 + 2  # 9 training models, batches of 4: 3 per epoch
    with pytest.raises(Killed):
        _DyingLatent(rank=4, hidden_dim=8, num_layers=1).fit(graphs, classes, out_dir=str(tmp_path / "cut"), **options)
    _DyingLatent.calls, _DyingLatent.die_at = 0, None
    resumed = _DyingLatent(rank=4, hidden_dim=8, num_layers=1)
    resumed.fit(graphs, classes, out_dir=str(tmp_path / "cut"), **options)
    assert _DyingLatent.calls == 2 * 3  # only epochs 3 and 4 were trained
    a = full.sample(models[0], 3, condition=[0, 1, 2], steps=3, seed=0)
    b = load_generator(str(tmp_path / "cut" / "generator.pt")).sample(models[0], 3, condition=[0, 1, 2], steps=3,
                                                                      seed=0)
    for x, y in zip(a, b):
        torch.testing.assert_close(x.edge_attr, y.edge_attr, rtol=0, atol=1e-5)
    with pytest.raises(nngraph.GraphMismatchError) as info:
        full.sample(cnn(0), 2, condition=1)
    assert "\n" not in str(info.value)
    with pytest.raises(ValueError, match="class conditions must be in 0..2"):
        full.sample(models[0], 2, condition=5)


def test_a_fit_run_again_reads_its_frame_back_instead_of_aligning_again(tmp_path, monkeypatch):
    """The flow in a run directory was trained on that run's codes: a finished or extended fit run again there
    decodes with the stored frame even when alignment would now give another (here: a stand-in that does not
    align), and samples what the first fit sampled; a new directory aligns."""
    import nngraph.generate.latent as latent

    models, graphs, acc = zoo(mlp, n=8)
    options = dict(template=models[0], example_inputs=INPUTS, batch_size=4, progress=False)
    first = LatentFlowGenerator(rank=4, hidden_dim=16, num_layers=1)
    first.fit(graphs, acc, out_dir=str(tmp_path / "run"), epochs=2, **options)
    assert len(list((tmp_path / "run").glob("frame-*.safetensors"))) == 1
    calls = []

    def other_frame(space, graphs_, layout, rounds=2):  # what another version of weight matching might give
        calls.append(len(graphs_))
        return space.flatten(graphs_).to(torch.float64)  # (M, D): the zoo as trained, not aligned

    monkeypatch.setattr(latent, "align_zoo", other_frame)
    again = LatentFlowGenerator(rank=4, hidden_dim=16, num_layers=1)
    again.fit(graphs, acc, out_dir=str(tmp_path / "run"), epochs=2, **options)
    assert calls == []
    for name in ("mean", "basis", "scales"):
        assert torch.equal(getattr(again, name), getattr(first, name))
    a = first.sample(models[0], 3, condition=[0.3, 0.5, 0.7], steps=3, seed=0)
    b = again.sample(models[0], 3, condition=[0.3, 0.5, 0.7], steps=3, seed=0)
    for x, y in zip(a, b):
        assert torch.equal(x.edge_attr, y.edge_attr)
    LatentFlowGenerator(rank=4, hidden_dim=16, num_layers=1).fit(graphs, acc, out_dir=str(tmp_path / "run"),
                                                                 epochs=3, **options)  # extended: same codes
    assert calls == []
    fresh = LatentFlowGenerator(rank=4, hidden_dim=16, num_layers=1)
    fresh.fit(graphs, acc, out_dir=str(tmp_path / "new"), epochs=2, **options)
    assert calls == [len(graphs)] and not torch.equal(fresh.basis, first.basis)
