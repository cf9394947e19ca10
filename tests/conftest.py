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


@pytest.fixture(autouse=True, scope="session")
def private_cache(tmp_path_factory):
    """Caches and reports go to the user's cache dir by default: the tests use their own (subprocesses
    inherit it)."""
    import os

    old = os.environ.get("NNGRAPH_CACHE")
    os.environ["NNGRAPH_CACHE"] = str(tmp_path_factory.mktemp("nngraph-cache"))
    yield
    if old is None:
        os.environ.pop("NNGRAPH_CACHE", None)
    else:
        os.environ["NNGRAPH_CACHE"] = old
