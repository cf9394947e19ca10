"""Summaries of a built zoo: mean PSNR of INRs, histogram of classifier accuracies (text and PNG)."""
from __future__ import annotations

import math
import os

import torch

from nngraph.io import zoo_cache_dir
from nngraph.errors import ZooError
from nngraph.zoo.storage import Zoo

__all__ = ["text_histogram", "save_histogram_png", "summarize"]


def text_histogram(values, bins: int = 10, lo: float = 0.0, hi: float = 1.0, width: int = 40) -> str:
    """A text histogram of ``values`` over ``[lo, hi]``, one line per bin."""
    v = torch.as_tensor(list(values), dtype=torch.float64)
    counts = torch.histc(v, bins=bins, min=lo, max=hi).long().tolist()
    top = max(counts) or 1
    edges = torch.linspace(lo, hi, bins + 1).tolist()
    return "\n".join(f"[{edges[b]:.2f}, {edges[b + 1]:.2f}{']' if b == bins - 1 else ')'} {counts[b]:5d} "
                     + "#" * round(width * counts[b] / top) for b in range(bins))


def save_histogram_png(values, path: str, title: str, bins: int = 20, xlabel: str = "test accuracy") -> None:
    """Save a histogram plot (needs matplotlib; a backend the user chose is kept)."""
    from nngraph.plotting import pyplot

    plt = pyplot()

    fig, ax = plt.subplots(figsize=(6, 3.5))
    ax.hist(list(values), bins=bins, range=(0, 1), color="#4477aa", edgecolor="white")
    ax.set_xlabel(xlabel)
    ax.set_ylabel("models")
    ax.set_title(title)
    fig.tight_layout()
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)


def _number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def summarize(root: str, png: str | None = None, cache_dir: str | None = None) -> str:
    """A text summary of the zoo in ``root``; for classifier zoos also a histogram PNG (default
    ``accuracy_histogram.png`` in :func:`nngraph.io.zoo_cache_dir` ``(root, "reports", cache_dir)``:
    nothing is written into the zoo, which may be read-only)."""
    zoo = Zoo(root)
    expected = zoo.config.get("num_models")
    if not zoo.entries:
        raise ZooError(f"{root} holds no models: no complete line in its manifest*.jsonl"
                       + (f" ({expected} expected)" if expected else "")
                       + "; an empty or unfinished build: rerun the command that built it to resume")
    lines = [repr(zoo)]
    if isinstance(expected, int) and len(zoo) < expected:
        lines.append(f"unfinished: {len(zoo)} of {expected} models stored (a build stopped early, by a kill or "
                     "--max-models, or a shard of several); rerun the command that built it to finish it")
    splits = {s: len(zoo.split(s)) for s in ("train", "val", "test")}
    lines.append(f"splits: {splits}")
    if zoo.config["kind"] == "inr" and "imported" in zoo.config:
        lines.append(f"imported ({zoo.config['imported']['layout']}) from {zoo.config['imported']['source']}; "
                     f"coordinates {zoo.config.get('inr')}")
    elif zoo.config["kind"] == "inr" and not all(_number(e.get("psnr")) and _number(e.get("steps"))
                                                 for e in zoo.entries):
        lines.append("PSNR dB: not recorded for every model")
    elif zoo.config["kind"] == "inr":
        p = torch.tensor([e["psnr"] for e in zoo.entries])
        steps = torch.tensor([e["steps"] for e in zoo.entries], dtype=torch.float)
        reached = sum(e["psnr"] >= zoo.config["target_psnr"] for e in zoo.entries)
        lines.append(f"PSNR dB: mean {p.mean():.2f}  min {p.min():.2f}  max {p.max():.2f}  "
                     f"(target {zoo.config['target_psnr']}, reached by {reached}/{len(p)})")
        lines.append(f"Adam steps: mean {steps.mean():.1f}  max {int(steps.max())}")
    else:
        bad = [e for e in zoo.entries if not _number(e.get("test_acc"))]
        if bad:
            raise ZooError(f"{root}: model {bad[0]['id']} has test_acc {bad[0].get('test_acc')!r}, not a number "
                           f"({len(bad)} of {len(zoo)} models like this); a classifier zoo's manifest gives every "
                           "model its test accuracy")
        acc = [e["test_acc"] for e in zoo.entries]
        final = [e["test_acc"] for e in zoo.entries if e.get("final", True)]
        t = torch.tensor(acc)
        lines.append(f"test accuracy over {len(acc)} checkpoints ({len(final)} runs): mean {t.mean():.3f}  "
                     f"std {t.std():.3f}  min {t.min():.3f}  max {t.max():.3f}")
        fams: dict[str, list[float]] = {}
        for e in zoo.entries:
            fams.setdefault(str(e.get("family")), []).append(e["test_acc"])
        lines.append("by family: " + ", ".join(f"{f} n={len(a)} mean={sum(a) / len(a):.3f}"
                                              for f, a in sorted(fams.items())))
        lines.append(text_histogram(acc))
        png = png or os.path.join(zoo_cache_dir(root, "reports", cache_dir), "accuracy_histogram.png")
        try:
            save_histogram_png(acc, png, f"test accuracy of {len(acc)} classifiers")
            lines.append(f"histogram plot: {png}")
        except ImportError:
            lines.append("histogram plot skipped: matplotlib is not installed")
    return "\n".join(lines)
