"""Every real-world-suite graph writes each ``edge_attr`` entry exactly once, and ``to_graph`` knows it (so it skips
zeroing), checked against counting the written positions."""
import pytest
import torch

from tests.convert.test_every_entry import _check

from .hf_models import MODELS


@pytest.mark.parametrize("name", list(MODELS))
def test_every_entry_written_once(name):
    torch.manual_seed(0)
    model, inputs = MODELS[name]()
    assert _check(model, inputs)
