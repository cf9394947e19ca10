"""The learned optimizer as a drop-in optimizer of models from the real-world suite (Hugging Face models built
from tiny configs, ``tests/realworld``)."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from nngraph.optim import GraphUpdateNetwork, LearnedOptimizer, save_network

pytest.importorskip("transformers")
from tests.realworld.hf_models import build  # noqa: E402


@pytest.mark.realworld
@pytest.mark.parametrize("network", ["shipped", "hand-set"])
@pytest.mark.parametrize("name", ["ViTForImageClassification", "GPT2LMHeadModel"])
def test_trains_a_real_model_in_a_plain_loop(name, network, tmp_path):
    """The shipped meta-trained network (no Hugging Face model in its meta-training) and a hand-set one (Adam at
    3e-3) both train the model."""
    model, inputs = build(name)
    model.train()
    torch.manual_seed(0)
    path = None
    if network == "hand-set":
        path = str(tmp_path / "lopt.pt")
        save_network(GraphUpdateNetwork(hidden_dim=8, num_layers=1, context_dim=2, output_dim=8, init_lr=3e-3), path)
    opt = LearnedOptimizer(model, path, example_inputs=inputs, total_steps=15)
    if name.startswith("ViT"):
        labels = torch.arange(inputs[0].shape[0]) % model.config.num_labels

        def loss_fn():
            return F.cross_entropy(model(*inputs).logits, labels)
    else:
        def loss_fn():
            return model(*inputs, labels=inputs[0]).loss
    losses = []
    for _ in range(15):
        opt.zero_grad()
        loss = loss_fn()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.7 * losses[0], losses
