"""A layer the export path cannot collapse back into one call (cross-attention, masks, attention weights used)
stays the ATen operations it was exported as: converters and the fallback take them one by one, and the model
converts soundly instead of being refused (``nn.Transformer``, whose forward fx cannot follow)."""
import torch
from torch import nn

import nngraph

from nngraph.testing import assert_equivariant, assert_invariant


def _transformer():
    torch.manual_seed(0)
    return nn.Transformer(d_model=16, nhead=2, num_encoder_layers=1, num_decoder_layers=1, dim_feedforward=32,
                          dropout=0.0, batch_first=True).eval().double()


def test_nn_transformer_converts_soundly_and_reads_equivariantly():
    model = _transformer()
    x = (torch.randn(2, 5, 16, dtype=torch.float64), torch.randn(2, 4, 16, dtype=torch.float64))
    report = nngraph.verify(model, x)
    assert report.ok and report.round_trip_error == 0.0, report
    assert report.num_permutable > 0, report  # not every neuron fixed: the self-attention and MLPs keep theirs
    layout = nngraph.build_layout(model, x)
    assert any("linear" in line for line in layout.fallbacks)  # the cross-attention's sliced projections
    # the helpers permute hidden neurons, check the model's outputs first, then the encoder, in float64
    encoder = nngraph.NeuralGraphEncoder(4, hidden_dim=8, num_layers=2).double()
    assert assert_invariant(encoder, model, x, generator=torch.Generator().manual_seed(0)) < 1e-10
    errors = assert_equivariant(encoder, model, x, generator=torch.Generator().manual_seed(1))
    assert max(errors.values()) < 1e-10
