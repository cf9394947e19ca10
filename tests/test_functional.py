"""The differentiable inverse: ``Layout.gather_params`` and ``nngraph.batched_forward``.

Gradients of a loss on ``functional_call`` outputs with respect to the graph features must be the
gradients of the same loss on the real modules' parameters, moved to where each entry lives.
"""
from __future__ import annotations

import copy

import pytest
import torch
from torch import nn
from torch_geometric.data import Batch

import nngraph
from benchmarks.resnet import ResNet
from nngraph.zoo import build_model, siren_spec


def _siren():
    return build_model(siren_spec(2, [8, 6], 1, 30.0)).double(), torch.rand(10, 2, dtype=torch.float64)


def _cnn_bn():
    model = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(), nn.Conv2d(4, 5, 3),
                          nn.BatchNorm2d(5), nn.ReLU(), nn.Flatten(), nn.Linear(5 * 4 * 4, 3)).double()
    return model, torch.randn(4, 1, 6, 6, dtype=torch.float64)


def _resnet():
    return (ResNet(widths=(4, 6, 8, 8), blocks=(2, 1, 1, 1), num_classes=3, norm=True).double(),
            torch.randn(2, 3, 16, 16, dtype=torch.float64))


class Tied(nn.Module):
    """A linear layer read twice (tied weights): one place in the graph reads back, the other is tied."""

    def __init__(self):
        super().__init__()
        self.a, self.b = nn.Linear(4, 4), nn.Linear(4, 2)
        self.c = self.a

    def forward(self, x):
        return self.b(torch.tanh(self.c(torch.tanh(self.a(x)))))


class RefBatchNorm(nn.Module):
    """A slow evaluation-mode batch norm whose running statistics are parameters (the reference for their
    gradients: torch's batch norm passes none to them)."""

    def __init__(self, bn: nn.BatchNorm2d):
        super().__init__()
        self.eps = bn.eps
        for k in ("weight", "bias", "running_mean", "running_var"):
            setattr(self, k, nn.Parameter(getattr(bn, k).detach().clone()))

    def forward(self, x):
        out = torch.empty_like(x)
        for c in range(x.shape[1]):
            out[:, c] = (x[:, c] - self.running_mean[c]) / (self.running_var[c] + self.eps).sqrt() \
                * self.weight[c] + self.bias[c]
        return out


def _reference(model: nn.Module) -> nn.Module:
    """A copy of ``model`` with every BatchNorm2d replaced by :class:`RefBatchNorm`."""
    model = copy.deepcopy(model)
    for name, sub in list(model.named_modules()):
        for child_name, child in list(sub.named_children()):
            if isinstance(child, nn.BatchNorm2d):
                setattr(sub, child_name, RefBatchNorm(child))
    return model


def _models(make, n=3):
    out = []
    for seed in range(n):
        torch.manual_seed(seed)
        model, x = make()
        with torch.no_grad():
            for m in model.modules():
                if isinstance(m, nn.BatchNorm2d):
                    m.running_mean.uniform_(-1, 1), m.running_var.uniform_(0.5, 2)
                    m.weight.uniform_(0.5, 1.5), m.bias.uniform_(-0.5, 0.5)
        out.append(model.eval())
    return out, x


MAKERS = {"siren": _siren, "cnn_bn": _cnn_bn, "resnet": _resnet}


@pytest.mark.parametrize("name", list(MAKERS))
def test_gradients_through_the_graph_equal_gradients_of_the_modules(name):
    models, x = _models(MAKERS[name])
    batch = Batch.from_data_list([nngraph.to_graph(m, x) for m in models])
    node_x = batch.x.clone().requires_grad_(True)
    edge_attr = batch.edge_attr.clone().requires_grad_(True)
    params = nngraph.gather_params(batch, models[0], x=node_x, edge_attr=edge_attr)  # {name: (B, *shape)}
    out = nngraph.batched_forward(models[0], params, x)  # (B, *out)
    target = torch.randn(out.shape, dtype=out.dtype, generator=torch.Generator().manual_seed(0))
    (out - target).pow(2).sum().backward()

    layout = nngraph.build_layout(models[0], (x,))
    expected = []
    for b, m in enumerate(models):
        m = _reference(m)  # running statistics as parameters: they are graph features too
        with torch.no_grad():
            torch.testing.assert_close(out[b], m(x), rtol=0, atol=1e-12)  # the forward itself
        (m(x) - target[b]).pow(2).sum().backward()
        grads = {n: t.grad if t.grad is not None else torch.zeros_like(t)
                 for n, t in [*m.named_parameters(), *m.named_buffers()] if t.is_floating_point()}
        # the gradients placed where their entries live: the graph of the gradients
        dx = torch.zeros(layout.num_nodes * 5, dtype=torch.float64)
        de = torch.zeros(layout.num_entries, dtype=torch.float64)
        for p in layout.node_placements:
            dx[p.nodes * 5 + p.column] = grads[p.name].reshape(-1)
        for p in layout.edge_placements:
            de[p.positions] = grads[p.name].reshape(-1)
        expected.append((dx.view(-1, 5), de.view(-1, 1)))
    torch.testing.assert_close(node_x.grad, torch.cat([e[0] for e in expected]), rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(edge_attr.grad, torch.cat([e[1] for e in expected]), rtol=1e-10, atol=1e-12)
    assert edge_attr.grad.abs().sum() > 0 and node_x.grad.abs().sum() > 0


@pytest.mark.parametrize("name", [*MAKERS, "tied"])
def test_gathered_tensors_are_from_graphs_tensors_bit_for_bit(name):
    if name == "tied":
        torch.manual_seed(0)
        models, x = [Tied().double() for _ in range(2)], torch.randn(3, 4, dtype=torch.float64)
    else:
        models, x = _models(MAKERS[name], 2)
    graphs = [nngraph.to_graph(m, x) for m in models]
    gen = torch.Generator().manual_seed(1)
    for g in graphs:  # edited features, as an editor would give
        g.x = g.x + 0.01 * torch.randn(g.x.shape, generator=gen, dtype=g.x.dtype)
        g.edge_attr = g.edge_attr + 0.01 * torch.randn(g.edge_attr.shape, generator=gen, dtype=g.edge_attr.dtype)
    params = nngraph.gather_params(Batch.from_data_list(graphs), models[0])
    for b, g in enumerate(graphs):
        loaded = dict(nngraph.from_graph(g, models[0]).state_dict())
        for key, value in params.items():
            assert torch.equal(value[b], loaded[key]), key
        # the forward of the gathered tensors is the loaded module's (vmap batches the matmuls: not bit for bit)
        torch.testing.assert_close(nngraph.batched_forward(models[0], params, x)[b], loaded_forward(models[0], g, x),
                                   rtol=0, atol=1e-12)


def loaded_forward(model, graph, x):
    with torch.no_grad():
        return nngraph.from_graph(graph, model)(x)


def test_tied_weights_stay_tied_through_functional_call():
    torch.manual_seed(0)
    model, x = Tied().double(), torch.randn(3, 4, dtype=torch.float64)
    params = nngraph.gather_params(nngraph.to_graph(model, x), model)
    assert sum(k in params for k in ("a.weight", "c.weight")) == 1  # one place reads back
    with torch.no_grad():
        edited = {k: v + 0.1 for k, v in params.items()}
        torch.testing.assert_close(nngraph.batched_forward(model, edited, x)[0],
                                   nngraph.batched_forward(model, edited, x, vectorize=False)[0])
        m = copy.deepcopy(model)
        for k, v in edited.items():
            m.get_parameter(k).copy_(v[0])
        torch.testing.assert_close(nngraph.batched_forward(model, edited, x)[0], m(x), rtol=0, atol=1e-12)


def test_vmap_and_the_loop_agree_with_per_model_inputs():
    models, x = _models(_cnn_bn, 2)
    params = nngraph.gather_params(Batch.from_data_list([nngraph.to_graph(m, x) for m in models]), models[0])
    xs = torch.stack([x, x.flip(0)])  # (B, n, 1, 6, 6)
    fast = nngraph.batched_forward(models[0], params, xs, per_model_inputs=True)
    slow = nngraph.batched_forward(models[0], params, xs, per_model_inputs=True, vectorize=False)
    torch.testing.assert_close(fast, slow, rtol=0, atol=1e-12)
    with torch.no_grad():
        torch.testing.assert_close(fast[1], models[1](x.flip(0)), rtol=0, atol=1e-12)


def test_a_batch_of_two_architectures_is_refused():
    (sirens, _), (wider, _) = _models(_siren, 1), _models(lambda: (build_model(siren_spec(2, [8, 7], 1, 30.0)).double(), None), 1)
    mixed = Batch.from_data_list([nngraph.to_graph(sirens[0]), nngraph.to_graph(wider[0])])
    layout = nngraph.build_layout(sirens[0])
    with pytest.raises(nngraph.GraphMismatchError, match="architecture"):
        layout.gather_params(mixed.x, mixed.edge_attr, mixed.batch)
    with pytest.raises(nngraph.GraphMismatchError, match="architecture"):
        nngraph.gather_params(mixed, sirens[0])
    # the same sizes, another function (tanh for sine): only the structure check sees it
    same_size = nn.Sequential(nn.Linear(2, 8), nngraph.Sine(), nn.Linear(8, 6), nngraph.Sine(), nn.Linear(6, 1)).double()
    swapped = nn.Sequential(nn.Linear(2, 8), nngraph.Sine(), nn.Linear(8, 6), nn.Tanh(), nn.Linear(6, 1)).double()
    batch = Batch.from_data_list([nngraph.to_graph(same_size), nngraph.to_graph(swapped)])
    l2 = nngraph.build_layout(same_size)
    assert l2.gather_params(batch.x, batch.edge_attr, batch.batch)  # the sizes alone fit ...
    with pytest.raises(nngraph.GraphMismatchError, match="architecture"):
        l2.check_batch(batch)  # ... the structure does not
    with pytest.raises(nngraph.GraphMismatchError, match="architecture"):
        nngraph.gather_params(batch, same_size)


def test_a_batch_norm_in_training_mode_leaves_the_graph_features_alone():
    models, x = _models(_cnn_bn, 2)
    batch = Batch.from_data_list([nngraph.to_graph(m, x) for m in models])
    before = batch.x.clone()
    model = models[0].train()
    out = nngraph.batched_forward(model, nngraph.gather_params(batch, model), x)
    model.eval()
    assert torch.equal(batch.x, before)  # the running statistics the forward updated were copies
    with torch.no_grad():
        torch.testing.assert_close(out[1], copy.deepcopy(models[1]).train()(x), rtol=0, atol=1e-12)
