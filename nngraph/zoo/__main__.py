"""Command line: ``python -m nngraph.zoo {inr,classifiers,summary} ...``.

Examples::

    python -m nngraph.zoo inr --out zoos/inr                 # default INR zoo
    python -m nngraph.zoo inr --out zoos/inr-small --small   # builds in seconds
    python -m nngraph.zoo inr --out zoos/mnist --source mnist.npz --resolution 28 --hidden 64,64
    python -m nngraph.zoo inr --out zoos/inr-dws --init dwsnets --lr 5e-4 --max-steps 1000 --target-psnr 40
    python -m nngraph.zoo classifiers --out zoos/clf --workers 2
    python -m nngraph.zoo classifiers --out zoos/clf --shard 3/8   # one of 8 shards
    python -m nngraph.zoo summary zoos/clf

Rerunning the same command continues an interrupted build.
"""
from __future__ import annotations

import argparse
import os
import sys
import time

__all__ = ["main", "build_parser"]


def _ints(text: str) -> list[int]:
    return [int(t) for t in text.split(",") if t]


def _floats(text: str) -> list[float]:
    return [float(t) for t in text.split(",") if t]


def build_parser(prog: str = "python -m nngraph.zoo") -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=prog, description="Generate model zoos.")
    sub = p.add_subparsers(dest="command", required=True)

    def common(q):
        q.add_argument("--out", required=True, help="zoo directory (rerun to resume)")
        q.add_argument("--source", default=None, help="'digits' (default) or an .npz with images and labels")
        q.add_argument("--small", action="store_true", help="a small zoo that builds in well under a minute")
        q.add_argument("--seed", type=int, default=None)
        q.add_argument("--split", type=_floats, default=None, help="train,val,test fractions (default 0.7,0.1,0.2)")
        q.add_argument("--shard", default=None, help="i/n: build only shard i (0-based) of n")
        q.add_argument("--max-models", type=int, default=None, help="stop after storing this many models")
        q.add_argument("--no-progress", action="store_true")

    q = sub.add_parser("inr", help="SIRENs of images (several per image)")
    common(q)
    q.add_argument("--resolution", type=int, default=None, help="image side length (default 16)")
    q.add_argument("--hidden", type=_ints, default=None, help="hidden widths, e.g. 32,32")
    q.add_argument("--w0", type=float, default=None)
    q.add_argument("--inrs-per-image", type=int, default=None)
    q.add_argument("--max-images", type=int, default=None)
    q.add_argument("--target-psnr", type=float, default=None)
    q.add_argument("--max-steps", type=int, default=None)
    q.add_argument("--lr", type=float, default=None)
    q.add_argument("--chunk-size", type=int, default=None)
    q.add_argument("--init", choices=("siren", "dwsnets"), default=None,
                   help="initialisation: siren (default; random first-layer frequencies up to w0/in) or dwsnets "
                        "(small first layer, zero biases, as the DWSNets MNIST INRs)")
    q.add_argument("--device", default="cpu")

    q = sub.add_parser("classifiers", help="small classifiers of mixed architectures")
    common(q)
    q.add_argument("--resolution", type=int, default=None, help="image side length (default: native)")
    q.add_argument("--num-runs", type=int, default=None)
    q.add_argument("--checkpoints", type=int, default=None, help="checkpoints stored per run")
    q.add_argument("--max-epochs", type=int, default=None)
    q.add_argument("--max-params", type=int, default=None)
    q.add_argument("--workers", type=int, default=1, help="training processes")
    q.add_argument("--png", default=None, help="where to save the accuracy histogram")

    q = sub.add_parser("summary", help="print a zoo's statistics (writes nothing into the zoo)")
    q.add_argument("root", help="the zoo directory")
    q.add_argument("--png", default=None, help="where to save the accuracy histogram (default: in the cache dir)")
    q.add_argument("--cache-dir", default=None,
                   help="cache and report directory (default: $NNGRAPH_CACHE, else the user's cache dir)")
    return p


def _config(cls, args, names):
    overrides = {n: getattr(args, n) for n in names if getattr(args, n, None) is not None}
    return cls.small(**overrides) if args.small else cls(**overrides)


def main(argv=None, prog: str = "python -m nngraph.zoo") -> int:
    args = build_parser(prog).parse_args(argv)
    from nngraph.zoo import ClassifierZooConfig, INRZooConfig, build_classifier_zoo, build_inr_zoo, summarize

    if args.command == "summary":
        print(summarize(args.root, args.png, args.cache_dir))
        return 0
    start = time.perf_counter()
    common = ["source", "seed", "split", "resolution"]
    if args.command == "inr":
        config = _config(INRZooConfig, args, common + ["hidden", "w0", "inrs_per_image", "max_images",
                                                       "target_psnr", "max_steps", "lr", "chunk_size", "init"])
        n = build_inr_zoo(args.out, config, args.shard, args.max_models, not args.no_progress, args.device)
    else:
        config = _config(ClassifierZooConfig, args, common + ["num_runs", "checkpoints", "max_epochs",
                                                              "max_params"])
        n = build_classifier_zoo(args.out, config, args.shard, args.max_models, not args.no_progress,
                                 args.workers)
    print(f"stored {n} new models in {time.perf_counter() - start:.1f} s")
    # after a build the zoo is this process's own: the histogram goes next to it unless --png says otherwise
    png = getattr(args, "png", None) or (os.path.join(args.out, "accuracy_histogram.png")
                                         if args.command == "classifiers" else None)
    print(summarize(args.out, png))
    return 0


if __name__ == "__main__":
    sys.exit(main())
