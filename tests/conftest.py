import pytest
import torch


@pytest.fixture(autouse=True)
def one_thread():
    """The test models and graphs are tiny: threads only add synchronisation, and stall when the
    machine's other core is busy."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
