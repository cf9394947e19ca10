"""One exception hierarchy the user can catch."""
import nngraph
import nngraph.zoo
from nngraph.errors import CheckpointError, NNGraphError, SpecError, ZooError


def test_errors_share_one_base_and_keep_their_builtin_bases():
    for cls, builtin in ((ZooError, RuntimeError), (CheckpointError, RuntimeError), (SpecError, ValueError)):
        assert issubclass(cls, NNGraphError) and issubclass(cls, builtin)
        assert getattr(nngraph, cls.__name__) is cls
    assert nngraph.NNGraphError is NNGraphError
    assert nngraph.zoo.ZooError is ZooError  # the old import path still works
