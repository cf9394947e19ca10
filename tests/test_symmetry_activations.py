"""nngraph.symmetry.activations.neuron_samples: every neuron's values over inputs and positions, checked against
values computed by hand, and activation matching on models whose layers the converter takes whole."""
from __future__ import annotations

import pytest
import torch
from torch import nn

import nngraph
from nngraph import symmetry
from nngraph.symmetry.activations import neuron_samples


def _standardised(values: torch.Tensor) -> torch.Tensor:
    """``(C, S)`` rows centred and scaled to norm 1 (the slow reference's)."""
    centred = values.double() - values.double().mean(1, keepdim=True)
    return centred / centred.norm(dim=1, keepdim=True)


def _encoder(seed: int) -> nn.Module:
    torch.manual_seed(seed)
    layer = nn.TransformerEncoderLayer(8, 2, dim_feedforward=12, dropout=0.0, batch_first=True, norm_first=True)
    encoder = nn.TransformerEncoder(layer, 1, enable_nested_tensor=False)
    return nn.Sequential(nn.Linear(8, 8), encoder).double().eval()  # fx traces it with the encoder as one layer


def test_conv_channels_are_correlated_over_every_image_and_pixel():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(2, 3, 3, padding=1), nn.ReLU(), nn.Conv2d(3, 4, 3)).double().eval()
    x = torch.randn(5, 2, 6, 6, dtype=torch.float64)
    layout = nngraph.build_layout(model, (x,))
    samples = neuron_samples(model, x, layout)
    with torch.no_grad():
        hidden = torch.relu(model[0](x))  # (5, 3, 6, 6)
    rows = layout.symmetries[0].rows.reshape(-1)
    expected = _standardised(hidden.transpose(0, 1).reshape(3, -1))  # (3, 5 * 36): channel x (image, pixel)
    assert samples.shape[1] == 5 * 36
    torch.testing.assert_close(samples[rows].double(), expected, atol=1e-6, rtol=0)


def test_attention_and_feed_forward_inside_an_encoder_layer_get_their_values():
    """``nn.TransformerEncoderLayer`` is converted whole: its queries, keys, values and feed-forward neurons are
    read by hooks, and equal the projections computed by hand."""
    model = _encoder(0)
    x = torch.randn(4, 5, 8, dtype=torch.float64)
    layout = nngraph.build_layout(model, (x,))
    samples = neuron_samples(model, x, layout)
    layer = model[1].layers[0]
    with torch.no_grad():
        x = model[0](x)  # (4, 5, 8): the encoder's input
        normed = layer.norm1(x)  # (4, 5, 8)
        qkv = normed @ layer.self_attn.in_proj_weight.T + layer.self_attn.in_proj_bias  # (4, 5, 24)
        ff_in = layer.norm2(x + layer._sa_block(normed, None, None))
        ff = layer.linear1(ff_in)  # (4, 5, 12)
    for part, values in (("query", qkv[..., :8]), ("key", qkv[..., 8:16]), ("value", qkv[..., 16:]),
                         ("linear1", ff)):
        name = f"1.layers.0.self_attn.{part}" if part != "linear1" else "1.layers.0.linear1"
        nodes = layout.module_nodes[name]
        expected = _standardised(values.reshape(-1, values.shape[-1]).T)  # (C, 4 * 5)
        torch.testing.assert_close(samples[nodes, :20].double(), expected, atol=1e-6, rtol=0, msg=part)


def _gpt2(seed: int) -> nn.Module:
    import transformers

    torch.manual_seed(seed)
    config = transformers.GPT2Config(vocab_size=11, n_embd=8, n_layer=1, n_head=2, n_positions=8, use_cache=False,
                                     bos_token_id=0, eos_token_id=0)
    return transformers.GPT2LMHeadModel(config).double().eval()


@pytest.mark.parametrize("build, data, probed", [
    (_encoder, lambda: torch.randn(6, 5, 8, dtype=torch.float64), "1.layers.0.self_attn.query"),
    # converted through torch.export: values from the submodules' hooks only
    (_gpt2, lambda: torch.randint(0, 11, (6, 7)), "transformer_h_0_mlp_c_fc"),
])
def test_activation_matching_recovers_a_relabelled_transformer(build, data, probed):
    model, x = build(1), data()
    layout = nngraph.build_layout(model, (x,))
    perm = symmetry.random_permutation(layout, torch.Generator().manual_seed(4))
    other = symmetry.permute_model(model, perm, (x,), layout)
    original, moved = neuron_samples(model, x, layout), neuron_samples(other, x, layout)
    assert bool(original[layout.module_nodes[probed]].abs().sum(1).gt(0).all())
    torch.testing.assert_close(moved[perm], original, atol=1e-6, rtol=0)  # the values move with their nodes
    aligned = symmetry.align(model, other, (x,), data=(x,))
    for (key, p), q in zip(model.state_dict().items(), aligned.state_dict().values()):
        torch.testing.assert_close(p, q, atol=0, rtol=0, msg=key)
