"""Zoo splits as in-memory neural graphs with their models and manifest entries."""
from __future__ import annotations

from dataclasses import dataclass, field

from torch import nn

import nngraph
from nngraph.data import ZooDataset
from nngraph.errors import ZooError
from nngraph.zoo import Zoo
from nngraph.zoo.inr_meta import INRMetadata

from .features import probe_inputs_for

__all__ = ["Split", "open_zoo", "load_split", "check_more_runs", "RUN_RANGE_KEYS"]


@dataclass
class Split:
    """One split of a zoo: graphs (with ``probe`` if asked), the models, their manifest entries."""

    graphs: list
    models: list[nn.Module]
    entries: list[dict]
    dataset: ZooDataset = field(repr=False)

    def __len__(self) -> int:
        return len(self.graphs)

    def select(self, indices) -> "Split":
        """The models at ``indices`` (in that order), as a split of the same dataset."""
        indices = list(indices)
        return Split([self.graphs[i] for i in indices], [self.models[i] for i in indices],
                     [self.entries[i] for i in indices], self.dataset)

    def where(self, keep) -> "Split":
        """The models whose manifest entry ``keep(entry)`` accepts."""
        return self.select(i for i, e in enumerate(self.entries) if keep(e))

    @staticmethod
    def concat(splits: list["Split"]) -> "Split":
        """The models of ``splits`` one after another (the first split's dataset)."""
        return Split(sum((s.graphs for s in splits), []), sum((s.models for s in splits), []),
                     sum((s.entries for s in splits), []), splits[0].dataset)


def open_zoo(root: str, kind: str, task: str) -> Zoo:
    """The zoo at ``root`` if it is of ``kind`` (``"inr"`` or ``"classifier"``), checked before a task
    converts anything or creates its output directory.

    Raises:
        ZooError: naming ``root`` if it is not a zoo, or a zoo of another kind.
    """
    zoo = Zoo(root)
    if zoo.config["kind"] != kind:
        build = {"inr": "inr", "classifier": "classifiers"}[kind]
        raise ZooError(f"{root} is a {zoo.config['kind']} zoo; {task} needs a {kind} zoo "
                       f"(python -m nngraph.zoo {build} --out ...)")
    return zoo


def load_split(root: str, split: str, num_probes: int = 0, families=None, max_items: int | None = None,
               probe_seed: int = 0, probe_placement: str = "grid") -> Split:
    """The graphs and models of ``split`` of the zoo at ``root``, in memory.

    With ``num_probes > 0`` every graph gets ``probe`` ``(N, num_probes)`` from the same probe inputs
    (:func:`probe_inputs_for` with ``probe_placement`` and the coordinates the zoo's ``zoo.json`` records).
    Models the converter refuses are left out (with a warning from :class:`~nngraph.data.ZooDataset`).
    """
    ds = ZooDataset(root, split, families=families, in_memory=True, progress=False, skip_unsupported=True)
    n = len(ds) if max_items is None else min(len(ds), max_items)
    inr = INRMetadata.of_zoo(ds.zoo.config)
    graphs, models, entries = [], [], []
    for i in range(n):
        g = ds[i]
        model = ds.load_model(i)
        if num_probes > 0:
            inputs = probe_inputs_for(ds.entry(i)["spec"], num_probes, probe_seed, probe_placement, inr)
            g.probe = nngraph.probe_features(model, inputs).float()  # (N, P)
        graphs.append(g)
        models.append(model)
        entries.append(ds.entry(i))
    return Split(graphs, models, entries, ds)


#: zoo.json settings that may differ between a zoo and a zoo of more of its runs
RUN_RANGE_KEYS = frozenset({"num_runs", "first_run", "split"})


def check_more_runs(root: str, more: str) -> None:
    """Check that the zoo at ``more`` holds more runs of the zoo at ``root``: the same settings (architecture
    distribution, training recipe, images and the classifiers' own train/test images, so its accuracies
    measure the same thing) apart from which runs it holds and how they split
    (:data:`RUN_RANGE_KEYS`), and none of ``root``'s runs.

    Raises:
        ZooError: naming the settings that differ, or the runs the two zoos share.
    """
    a, b = Zoo(root).config, Zoo(more).config
    differ = sorted(k for k in set(a) | set(b) if k not in RUN_RANGE_KEYS and a.get(k) != b.get(k))
    if differ:
        what = ", ".join(f"{k} {b.get(k)!r} vs {a.get(k)!r}" for k in differ)
        raise ZooError(f"{more} is not more runs of {root}: {what} (build it with the same settings and "
                       "--first-run past the last run)")
    span = lambda c: range(c.get("first_run", 0), c.get("first_run", 0) + c["num_runs"])  # noqa: E731
    ra, rb = span(a), span(b)
    if ra.start < rb.stop and rb.start < ra.stop:
        raise ZooError(f"{more} holds runs {rb.start}-{rb.stop - 1}, and {root} runs {ra.start}-{ra.stop - 1}: "
                       "the same runs, the same models (build it with --first-run past the last run)")
