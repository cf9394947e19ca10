"""tasks.diagnostics.optimizer_steps: the effective step size reads Adam's learning rate on the untrained rule (whose
step is Adam's), and ``adam_on`` swaps the network's step for Adam's on the named tensors only."""
from __future__ import annotations

import pytest
import torch

from nngraph.optim import GraphUpdateNetwork, load_network, save_network, shipped_checkpoint
from tasks.diagnostics import optimizer_steps


def test_the_untrained_rule_reads_its_learning_rate(tmp_path):
    torch.manual_seed(0)
    path = str(tmp_path / "adam.safetensors")
    save_network(GraphUpdateNetwork(init_lr=0.01, progress=True), path)
    out = optimizer_steps.run_steps("mlp-48", steps=5, checkpoint=path)
    assert out["names"] == ["1.weight", "1.bias", "3.weight", "3.bias"] and out["effective"].shape == (5, 4)
    # the untrained cone rule: factor 1 and additive term b = 0, so the step is -0.01 a on every entry
    assert torch.allclose(out["effective"], torch.full((5, 4), 0.01), rtol=1e-5)


def test_adam_on_swaps_the_named_tensors_only():
    plain = optimizer_steps.run_steps("gru-32", steps=8)  # the shipped network
    swapped = optimizer_steps.run_steps("gru-32", steps=8, adam_on="weight_hh")
    j = plain["names"].index("body.weight_hh_l0")
    lr = swapped["effective"][:, j]
    learned = float(load_network(shipped_checkpoint("graph")).output.log_lr.detach().exp())
    assert torch.allclose(lr, torch.full_like(lr, learned), rtol=1e-4)  # Adam at the learned rate, every step
    assert not torch.allclose(plain["effective"][:, j], lr, rtol=1e-3)  # the network's own step differs
    # the first step (same state, same batch) is the network's on every other tensor
    others = [i for i in range(len(plain["names"])) if i != j]
    assert torch.allclose(plain["effective"][0, others], swapped["effective"][0, others], rtol=1e-5)
    assert swapped["loss"] != plain["loss"]
    with pytest.raises(ValueError, match="Could not resolve problem"):
        optimizer_steps.run_steps("gru-33")


def test_lr_scale_multiplies_the_whole_step(tmp_path):
    torch.manual_seed(0)
    path = str(tmp_path / "adam.safetensors")
    save_network(GraphUpdateNetwork(init_lr=0.01, progress=True), path)
    out = optimizer_steps.run_steps("mlp-48", steps=3, checkpoint=path, lr_scale=2.5)
    assert torch.allclose(out["effective"], torch.full((3, 4), 0.025), rtol=1e-5)
    window = optimizer_steps.run_steps("mlp-48", steps=5, checkpoint=path, lr_scale=2.5, scale_steps=(1, 3))
    expected = torch.tensor([0.01, 0.025, 0.025, 0.01, 0.01])[:, None].expand(5, 4)  # (steps, T): steps 1 and 2 only
    assert torch.allclose(window["effective"], expected, rtol=1e-5)


def test_adam_loss_is_the_tasks_adam_on_the_same_start():
    from tasks.learned_optimizer import task

    for split in ("evaluation", "validation"):
        problem = task.evaluation_problem("mlp-48", task.IN_DISTRIBUTION["mlp-48"], 1, split)
        run = task.train_with(lambda m: torch.optim.Adam(m.parameters(), lr=0.03), problem, task.digits(), 20, 64)
        assert optimizer_steps.adam_loss("mlp-48", 0.03, 1, 20, split) == task.loss_at(run["curve"], 20)
    assert optimizer_steps.adam_loss("mlp-48", 0.03, 1, 20) != optimizer_steps.adam_loss("mlp-48", 0.03, 1, 20,
                                                                                         "validation")
