"""What the latent generator's code can represent of an INR zoo: the zoo's INRs encoded and decoded.

    python -m tasks.diagnostics.latent_projection --out runs/gen_inr_s0

Reads a finished ``python -m tasks.generation.inr`` run (its ``zoo.pt`` and ``runs/latent/generator.pt``), passes
every zoo INR through the fitted generator's code (:meth:`nngraph.generate.LatentFlowGenerator.project`: aligned to
its frame, projected on its basis, decoded) and prints the median PSNR of the renders against the INRs' own, and the
rate at which the run's pixel classifier reads them as their digit, beside the same for the unprojected INRs. It
separates what the code loses from what the flow on the code loses.
"""
from __future__ import annotations

import argparse
import os
import sys

import numpy as np
import torch

import nngraph
from nngraph.generate import load_generator
from nngraph.zoo import build_model
from nngraph.zoo.images import coordinate_grid

from ..generation import inr
from ..generation.task import zoo_modules

__all__ = ["project_zoo", "main"]


def project_zoo(out: str) -> dict:
    """``{"rank", "psnr", "recognised", "recognised_own"}`` of the zoo of the INR generation run in ``out``."""
    zoo_path, gen_path = os.path.join(out, "zoo.pt"), os.path.join(out, "runs", "latent", "generator.pt")
    for path in (zoo_path, gen_path):
        if not os.path.exists(path):
            raise FileNotFoundError(f"{path} not found: give the --out of a finished tasks.generation.inr run with "
                                    "the latent method")
    key = torch.load(zoo_path, weights_only=True)["key"]
    args = inr.build_parser().parse_args(["--out", out, "--images", str(key["images"]), "--resolution",
                                          str(key["resolution"]), "--hidden", str(key["spec"]["hidden"][0]),
                                          "--init", key["init"], "--seed", str(key["seed"])])
    zoo = inr.build_zoo(args)  # the cached zoo (same key)
    template = build_model(zoo["spec"]).eval()
    coords = coordinate_grid(args.resolution, args.resolution)  # (P, 2)
    graphs = [nngraph.to_graph(m, coords[:2]) for m in zoo_modules(zoo)]
    gen = load_generator(gen_path)
    own = inr.render(graphs, template, args.resolution)  # (M, R, R)
    projected = inr.render(gen.project(graphs, template), template, args.resolution)  # (M, R, R)
    mse = ((projected - own) ** 2).flatten(1).mean(1).clamp_min(1e-12)  # (M,)
    clf, _ = inr.pixel_classifier(args)
    labels = zoo["labels"].numpy()
    read = lambda images: float((clf.predict(images.flatten(1).numpy()) == labels).mean())  # noqa: E731
    return {"rank": gen.latent_dim, "psnr": float(torch.median(-10 * torch.log10(mse))),
            "recognised": read(projected), "recognised_own": read(own)}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m tasks.diagnostics.latent_projection", description=__doc__.split("\n")[0])
    p.add_argument("--out", required=True, help="a finished tasks.generation.inr run")
    args = p.parse_args(argv)
    r = project_zoo(args.out)
    print(f"zoo INRs through the rank-{r['rank']} code: median PSNR {r['psnr']:.1f} dB against their own renders; "
          f"recognised {r['recognised']:.3f} (unprojected {r['recognised_own']:.3f})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
