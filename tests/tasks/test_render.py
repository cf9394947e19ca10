"""The differentiable renderer equals rendering the module that from_graph builds, and passes gradients."""
from __future__ import annotations

import pytest
import torch
from torch_geometric.data import Batch

import nngraph
from nngraph.zoo import build_model, siren_forward, siren_spec
from nngraph.zoo.inr_meta import INRMetadata
from tasks.common.splits import load_split
from tasks.inr_editing.render import INRRenderer, dilate, render_module


def small_sirens(n: int = 3) -> list:
    """``n`` SIRENs 2 -> 8 -> 6 -> 1 (w0 30), seeded 0, 1, ..."""
    spec = siren_spec(2, [8, 6], 1, 30.0)
    out = []
    for s in range(n):
        torch.manual_seed(s)
        out.append(build_model(spec))
    return out


def test_renderer_matches_from_graph_module_on_edited_graphs():
    models = small_sirens()
    batch = Batch.from_data_list([nngraph.to_graph(m) for m in models])
    g = torch.Generator().manual_seed(0)
    x = (batch.x + 0.05 * torch.randn(batch.x.shape, generator=g)).requires_grad_(True)
    edge_attr = (batch.edge_attr + 0.05 * torch.randn(batch.edge_attr.shape, generator=g)).requires_grad_(True)
    renderer = INRRenderer(models[0], 12)
    images = renderer(x, edge_attr, batch.num_graphs)  # (B, 1, 12, 12)
    assert images.shape == (3, 1, 12, 12)
    edited = batch.clone()
    edited.x, edited.edge_attr = x.detach(), edge_attr.detach()
    for i, graph in enumerate(edited.to_data_list()):
        real = render_module(nngraph.from_graph(graph, models[0]), 12)  # (1, 12, 12)
        torch.testing.assert_close(images[i].detach(), real, rtol=0, atol=1e-5)
        assert not torch.allclose(real, render_module(models[i], 12), atol=1e-3)  # the edit mattered
    images.sum().backward()
    assert edge_attr.grad.abs().sum() > 0 and x.grad[:, 0].abs().sum() > 0


def test_renders_zoo_inrs_as_the_stacked_siren_forward(inr_zoo):
    """The renderer (the module's own forward) against ``siren_forward`` (the hand-written SIREN forward
    the zoo fits with) on stored zoo INRs."""
    split = load_split(inr_zoo, "train", max_items=4)
    spec = split.entries[0]["spec"]
    renderer = INRRenderer(build_model(spec), 16, INRMetadata.of_zoo(split.dataset.zoo.config))
    batch = Batch.from_data_list(split.graphs)
    ours = renderer(batch.x, batch.edge_attr, 4)  # (4, 1, 16, 16)
    params = renderer.params(batch.x, batch.edge_attr, 4)
    stacked = [params[n] for n in renderer.names]  # [W_0 (B, out, in), b_0 (B, out), ...]
    ref = siren_forward(stacked, renderer.coords, spec["w0"])  # (4, P, 1)
    ref = ref.transpose(1, 2).reshape(4, 1, 16, 16)  # (B, C, H, W)
    torch.testing.assert_close(ours, ref, rtol=0, atol=1e-6)
    assert ours.std() > 0.05  # real images, not zeros


def test_renderer_refuses_a_batch_of_another_architecture():
    other = build_model(siren_spec(2, [5], 1, 30.0))
    batch = Batch.from_data_list([nngraph.to_graph(m) for m in small_sirens(2)])
    with pytest.raises(nngraph.GraphMismatchError, match="architecture"):
        INRRenderer(other, 4)(batch.x, batch.edge_attr, 2)


def test_flat_round_trip_follows_named_parameters():
    models = small_sirens(2)
    batch = Batch.from_data_list([nngraph.to_graph(m) for m in models])
    renderer = INRRenderer(models[0], 4)
    flat = renderer.flat(batch.x, batch.edge_attr, 2)  # (2, P)
    expected = torch.stack([torch.cat([p.detach().reshape(-1) for p in m.parameters()]) for m in models])
    assert torch.equal(flat, expected) and flat.shape[1] == renderer.num_params
    params = renderer.params(batch.x, batch.edge_attr, 2)
    assert all(torch.equal(v, params[k]) for k, v in renderer.unflat(flat).items())


def test_dilation_matches_scipy():
    from scipy.ndimage import grey_dilation

    img = torch.rand(2, 1, 16, 16)
    ours = dilate(img, 3)
    ref = torch.stack([torch.from_numpy(grey_dilation(img[i, 0].numpy(), size=(3, 3))) for i in range(2)])
    torch.testing.assert_close(ours[:, 0], ref)
