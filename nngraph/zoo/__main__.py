"""Command line: ``python -m nngraph.zoo {inr,classifiers,recurrent,import,summary} ...``.

Examples::

    python -m nngraph.zoo inr --out zoos/inr                 # default INR zoo
    python -m nngraph.zoo inr --out zoos/inr-small --small   # builds in seconds
    python -m nngraph.zoo inr --out zoos/mnist --source mnist.npz --resolution 28 --hidden 64,64
    python -m nngraph.zoo inr --out zoos/inr-dws --init dwsnets --lr 5e-4 --max-steps 1000 --target-psnr 40
    python -m nngraph.zoo classifiers --out zoos/clf --workers 2
    python -m nngraph.zoo classifiers --out zoos/clf --shard 3/8   # one of 8 shards
    python -m nngraph.zoo recurrent --out zoos/rnn --workers 2       # RNN / LSTM / GRU on digit rows
    python -m nngraph.zoo import dws-mnist-inrs --out zoos/dws            # DWSNets INRs (layout detected)
    python -m nngraph.zoo import cnn_zoo/mnist --out zoos/cnn --step 86   # Small CNN Zoo, final checkpoints
    python -m nngraph.zoo import ckpts --out zoos/mine --factory mypkg.models:make --input-shape 1,28,28 \
        --table labels.csv
    python -m nngraph.zoo import ckpts --out zoos/mine --program model.pt2 --table labels.csv
    python -m nngraph.zoo summary zoos/clf

Rerunning the same command continues an interrupted build.
"""
from __future__ import annotations

import argparse
import os
import sys
import time

from nngraph.commands import CommandError, add_common_args, debugging, one_line, set_threads
from nngraph.errors import NNGraphError

__all__ = ["main", "build_parser"]


def _ints(text: str) -> list[int]:
    return [int(t) for t in text.split(",") if t]


def _floats(text: str) -> list[float]:
    return [float(t) for t in text.split(",") if t]


IMPORT_DESCRIPTION = """Import models trained elsewhere into a zoo: a folder of state dicts (*.safetensors, *.pt,
*.pth anywhere under SRC) with their architecture (--spec, --factory, --hf-config, --program), the DWSNets
INRs or the Small CNN Zoo (found by --layout auto). Rerunning the same command resumes; zoo.json is written
once every model is stored, so an unfinished import is never read as a zoo. Symlinks under SRC are refused
(--follow-symlinks reads them); tensors of another dtype than the architecture's are cast and counted
(--no-cast refuses them).

table (--table): a CSV (.csv, .csv.gz) or JSON file (a list of objects, or an object of objects keyed by file),
one row per model file:
  file       required (or path): the file's path relative to SRC, its name, or its stem; one row per file
  test_acc   required for classifiers: a number, the accuracy-prediction target
  label      required for INRs unless label_N folders give it: an integer class >= 0
  split      optional: train, val or test (else drawn with --split; by run if given)
  run        optional: the training run; the checkpoints of a run share a split
  other      any other column is stored in the model's manifest entry (train_acc, epoch, ...)
The import sets id, index, sha256, spec, family, source and image_index itself: a column of one of
these names is an error. Without --table, splits and labels come from folder names (train/val/test,
training/testing, label_N).

example:
  file,test_acc,split
  run1/final.safetensors,0.91,train
  run2/final.safetensors,0.87,test"""

SUMMARY_DESCRIPTION = ("Print a zoo's statistics: its models and splits, the PSNR of an INR zoo or the test accuracies "
                       "of a classifier zoo (by family, as a text histogram and a PNG in the cache directory). Nothing "
                       "is written into the zoo, which may be read-only.")


def build_parser(prog: str = "python -m nngraph.zoo") -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=prog, description="Generate model zoos, import models trained elsewhere, and "
                                                       "summarize a zoo.")
    sub = p.add_subparsers(dest="command", required=True)

    def common(q):
        add_common_args(q)
        q.add_argument("--out", required=True, help="zoo directory (rerun to resume)")
        q.add_argument("--source", default=None, help="'digits' (default) or an .npz with images and labels")
        q.add_argument("--small", action="store_true", help="a small zoo that builds in well under a minute")
        q.add_argument("--seed", type=int, default=None, help="seed of the models and splits (default 0)")
        q.add_argument("--split", type=_floats, default=None, help="train,val,test fractions (default 0.7,0.1,0.2)")
        q.add_argument("--shard", default=None, help="i/n: build only shard i (0-based) of n")
        q.add_argument("--max-models", type=int, default=None, help="stop after storing this many models")
        q.add_argument("--no-progress", action="store_true", help="no progress bar")

    q = sub.add_parser("inr", help="SIRENs of images (several per image)",
                       description="Build (or resume) a zoo of SIRENs fitted to images: the digits of scikit-learn "
                                   "or an .npz of images and integer labels (--source).")
    common(q)
    q.add_argument("--resolution", type=int, default=None, help="image side length (default 16)")
    q.add_argument("--hidden", type=_ints, default=None, help="hidden widths, e.g. 32,32")
    q.add_argument("--w0", type=float, default=None, help="the SIRENs' omega_0, the scale of sin(w0 x) (default 30)")
    q.add_argument("--inrs-per-image", type=int, default=None,
                   help="SIRENs fitted to each image, from different seeds (default 4; --small: 2)")
    q.add_argument("--max-images", type=int, default=None,
                   help="use the first this many images of the source (default: all; --small: 200)")
    q.add_argument("--split-scope", choices=("zoo", "source"), default=None,
                   help="draw the splits over the zoo's images (zoo, default) or over all images of the source "
                        "before --max-images cuts them (source: the test images are those of the full zoo)")
    q.add_argument("--target-psnr", type=float, default=None,
                   help="a SIREN stops training once its PSNR (dB, pixels in [0, 1]) reaches this (default 45)")
    q.add_argument("--max-steps", type=int, default=None, help="Adam steps after which a SIREN stops (default 500)")
    q.add_argument("--lr", type=float, default=None, help="Adam's learning rate (default 1e-3)")
    q.add_argument("--chunk-size", type=int, default=None,
                   help="SIRENs fitted together in one batch (default 512; part of the result: keep it to resume)")
    q.add_argument("--init", choices=("siren", "dwsnets"), default=None,
                   help="initialisation: siren (default; random first-layer frequencies up to w0/in) or dwsnets "
                        "(small first layer, zero biases, as the DWSNets MNIST INRs)")
    q.add_argument("--device", default="cpu", help="torch device the SIRENs are fitted on (default cpu)")

    def runs(q):  # the zoos of training runs (classifiers, recurrent)
        q.add_argument("--resolution", type=int, default=None, help="image side length (default: native)")
        q.add_argument("--num-runs", type=int, default=None,
                       help="training runs, each an architecture and hyperparameters drawn at random (default 300; "
                            "--small: 24)")
        q.add_argument("--checkpoints", type=int, default=None, help="checkpoints stored per run")
        q.add_argument("--max-epochs", type=int, default=None,
                       help="upper end of the epochs a run trains, drawn per run (default 20; --small: 8)")
        q.add_argument("--max-params", type=int, default=None,
                       help="architectures with more parameters are drawn again (default 6000)")
        q.add_argument("--workers", type=int, default=1, help="training processes")
        q.add_argument("--png", default=None, help="where to save the accuracy histogram")
        q.add_argument("--first-run", type=int, default=None,
                       help="index of the first run (default 0): with the settings of another zoo and a first run "
                            "past its last, new runs of the same distribution, e.g. more training models with "
                            "--split 1,0,0")

    q = sub.add_parser("classifiers", help="small classifiers of mixed architectures",
                       description="Build (or resume) a zoo of small classifiers of mixed architectures trained on "
                                   "the digits, several checkpoints per run.")
    common(q)
    runs(q)
    q.add_argument("--wild", action="store_true",
                   help="the Wild-Park-style zoo: ~10,000 checkpoints of MLPs, CNNs and residual CNNs (3/5/7 "
                        "kernels), patch transformers and gated MLPs on 10-100%% of the data "
                        "(ClassifierZooConfig.wild; --num-runs etc. override it)")

    q = sub.add_parser("recurrent", help="RNN / LSTM / GRU classifiers reading the images row by row",
                       description="Build (or resume) a zoo of RNN, LSTM and GRU classifiers reading the digits "
                                   "row by row.")
    common(q)
    runs(q)

    q = sub.add_parser("import", help="import models trained elsewhere (state dicts, published zoo layouts)",
                       description=IMPORT_DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter)
    q.add_argument("src", help="the folder the models are in")
    q.add_argument("--out", required=True, help="zoo directory (rerun to resume)")
    q.add_argument("--layout", default="auto", choices=("auto", "folder", "dwsnets", "cnn_zoo"),
                   help="auto: cnn_zoo if SRC holds weights.npy + layout.csv, dwsnets for mnist_png_* folders, "
                        "else a folder of state dicts")
    q.add_argument("--spec", default=None, help="architecture: an nngraph.zoo spec (JSON or a .json file)")
    q.add_argument("--factory", default=None, help="architecture: package.module:function building the model")
    q.add_argument("--kwargs", default=None, help="JSON object of the factory's keyword arguments")
    q.add_argument("--hf-config", default=None, help="architecture: a transformers config.json (or its folder)")
    q.add_argument("--hf-class", default=None, help="the transformers model class, e.g. BertModel")
    q.add_argument("--program", default=None,
                   help="architecture: a torch.export program (.pt2 of torch.export.save), copied into the zoo; "
                        "its example inputs are the input shape unless --input-shape is given. It is code (a "
                        "pickle): a later process loads it only with NNGRAPH_TRUSTED_CODE=sha256:<hex of the file>")
    q.add_argument("--input-shape", type=_ints, default=None, help="one input without the batch dim, e.g. 1,28,28")
    q.add_argument("--input-dtype", default="float32", choices=("float32", "float64", "int64", "int32"),
                   help="dtype of the example input of --input-shape (int64 for token ids; default float32)")
    q.add_argument("--table", default=None,
                   help="CSV/JSON of labels, splits, metrics: a 'file' column, 'test_acc' for classifiers, 'label' "
                        "for INRs (the format is above)")
    q.add_argument("--kind", default=None, choices=("inr", "classifier"),
                   help="what the models are (default: the layout's; a folder: inr for SIRENs or with INR "
                        "coordinates, else classifier)")
    q.add_argument("--coord-range", type=_floats, default=None, help="INR coordinates: low,high (default -1,1)")
    q.add_argument("--coord-order", default=None, choices=("xy", "rowcol"), help="INR coordinate columns")
    q.add_argument("--w0", type=float, default=None, help="INR: the SIREN's omega_0")
    q.add_argument("--image-size", type=_ints, default=None, help="INR: height,width of the images")
    q.add_argument("--split", type=_floats, default=None, help="train,val,test fractions for models without one")
    q.add_argument("--val-fraction", type=float, default=None, help="move this share of train to val")
    q.add_argument("--seed", type=int, default=0, help="seed of the splits drawn with --split (default 0)")
    q.add_argument("--strides", type=_ints, default=None, help="cnn_zoo: conv strides (default 2,2,2)")
    q.add_argument("--step", type=int, default=None, help="cnn_zoo: keep only checkpoints of this step (86: final)")
    q.add_argument("--max-models", type=int, default=None,
                   help="store at most this many models now (the zoo is unfinished until a rerun stores the rest)")
    q.add_argument("--follow-symlinks", action="store_true",
                   help="read the files symlinks under SRC point to (refused by default: nothing outside SRC is read)")
    q.add_argument("--no-cast", action="store_true",
                   help="refuse tensors of another dtype than the architecture's (float64, int64, bool, ...) "
                        "instead of casting them and counting the casts")
    q.add_argument("--no-progress", action="store_true", help="no progress bar")
    add_common_args(q)

    q = sub.add_parser("summary", help="print a zoo's statistics (writes nothing into the zoo)",
                       description=SUMMARY_DESCRIPTION)
    add_common_args(q)
    q.add_argument("root", help="the zoo directory")
    q.add_argument("--png", default=None, help="where to save the accuracy histogram (default: in the cache dir)")
    q.add_argument("--cache-dir", default=None,
                   help="cache and report directory (default: $NNGRAPH_CACHE, else the user's cache dir)")
    return p


def _config(cls, args, names):
    overrides = {n: getattr(args, n) for n in names if getattr(args, n, None) is not None}
    if getattr(args, "wild", False):
        if args.small:
            raise SystemExit("--small and --wild are exclusive")
        return cls.wild(**overrides)
    return cls.small(**overrides) if args.small else cls(**overrides)


def _import(args) -> int:
    import json

    from nngraph.errors import ZooError
    from nngraph.zoo import INRMetadata, import_zoo

    from nngraph.zoo.layouts import detect_layout

    layout = detect_layout(args.src, args.follow_symlinks) if args.layout == "auto" else args.layout
    layout_options = {}
    if layout == "dwsnets":
        layout_options.update({k: v for k, v in (("w0", args.w0), ("image_size", args.image_size)) if v is not None})
    if layout == "cnn_zoo":
        layout_options.update({k: v for k, v in (("strides", args.strides), ("step", args.step)) if v is not None})
    inr = None
    if any(v is not None for v in (args.coord_range, args.coord_order)) or (layout == "folder" and (
            args.w0 is not None or args.image_size is not None)):
        inr = INRMetadata(tuple(args.coord_range or (-1.0, 1.0)), args.coord_order or "xy", args.w0,
                          tuple(args.image_size) if args.image_size else None)
    try:
        kwargs = json.loads(args.kwargs) if args.kwargs else None
    except json.JSONDecodeError as err:
        raise ZooError(f"--kwargs {args.kwargs!r} is not JSON ({err})") from None
    if kwargs is not None and not isinstance(kwargs, dict):
        raise ZooError(f"--kwargs {args.kwargs!r} is not a JSON object of keyword arguments")
    return import_zoo(args.src, args.out, layout, spec=args.spec, factory=args.factory,
                      factory_kwargs=kwargs, hf_config=args.hf_config,
                      hf_class=args.hf_class, program=args.program, input_shape=args.input_shape,
                      input_dtype=args.input_dtype, table=args.table, kind=args.kind, inr=inr,
                      split=args.split or (0.7, 0.1, 0.2), val_fraction=args.val_fraction, seed=args.seed,
                      max_models=args.max_models, progress=not args.no_progress,
                      follow_symlinks=args.follow_symlinks, casts="refuse" if args.no_cast else "report",
                      **layout_options)


def main(argv=None, prog: str = "python -m nngraph.zoo") -> int:
    """Run one command; a bad file, zoo or argument (an :class:`~nngraph.NNGraphError`, or the ``ValueError`` /
    ``OSError`` of a bad source or setting) ends it with one line on standard error and exit status 1
    (``--debug``: the traceback)."""
    args = build_parser(prog).parse_args(argv)
    try:
        set_threads(args.threads)
        return _run(args)
    except (NNGraphError, CommandError, ValueError, KeyError, OSError) as err:
        if debugging(args):
            raise
        print(f"{prog} {args.command}: error: {one_line(err)}", file=sys.stderr)
        return 1


def _run(args) -> int:
    from nngraph.zoo import (ClassifierZooConfig, INRZooConfig, RecurrentZooConfig, build_classifier_zoo, build_inr_zoo,
                             build_recurrent_zoo, summarize)

    if args.command == "summary":
        print(summarize(args.root, args.png, args.cache_dir))
        return 0
    start = time.perf_counter()
    if args.command == "import":
        n = _import(args)
        print(f"imported {n} new models in {time.perf_counter() - start:.1f} s")
        from nngraph.zoo.storage import CONFIG

        if not os.path.exists(os.path.join(args.out, CONFIG)):
            print(f"{args.out} is an unfinished import (--max-models): rerun the same command to import the rest")
            return 0
        print(summarize(args.out))
        return 0
    common = ["source", "seed", "split", "resolution"]
    if args.command == "inr":
        config = _config(INRZooConfig, args, common + ["hidden", "w0", "inrs_per_image", "max_images", "split_scope",
                                                       "target_psnr", "max_steps", "lr", "chunk_size", "init"])
        n = build_inr_zoo(args.out, config, args.shard, args.max_models, not args.no_progress, args.device)
    else:
        recurrent = args.command == "recurrent"
        config = _config(RecurrentZooConfig if recurrent else ClassifierZooConfig, args,
                         common + ["num_runs", "checkpoints", "max_epochs", "max_params", "first_run"])
        n = (build_recurrent_zoo if recurrent else build_classifier_zoo)(
            args.out, config, args.shard, args.max_models, not args.no_progress, args.workers)
    print(f"stored {n} new models in {time.perf_counter() - start:.1f} s")
    # after a build the zoo is this process's own: the histogram goes next to it unless --png says otherwise
    png = getattr(args, "png", None) or (os.path.join(args.out, "accuracy_histogram.png")
                                         if args.command in ("classifiers", "recurrent") else None)
    print(summarize(args.out, png))
    return 0


if __name__ == "__main__":
    sys.exit(main())
