"""Is a weight flow wrong, or is its prior hard? Zoo models noised to time t and integrated back, for a run of
``tasks.generation``.

For held-out zoo models :math:`\\mathbf{z}_1` (the validation split of the fit) and times
:math:`t_0`, the model is noised to :math:`\\mathbf{z}_{t_0} = (1 - t_0)\\,\\mathbf{z}_0 + t_0\\,\\mathbf{z}_1` and the
flow integrated from :math:`t_0` to 1 (Euler); the rows are the median test accuracy of the result against the
models' own. A flow that rebuilds working models from late times but not from early ones has learned the
local shape of the zoo and not its global layout. Also: the held-out flow loss per time against the loss of
the untrained (Gaussian-optimal) velocity, and samples at the zoo's 90th-percentile accuracy with Euler and
Heun steps.

    python -m tasks.diagnostics.flow_reconstruction --out runs/generation            # the flow of that run
    python -m tasks.diagnostics.flow_reconstruction --out runs/generation --method twin
"""
from __future__ import annotations

import argparse
import json
import os
import sys

import numpy as np
import torch

import nngraph
from nngraph.generate import load_generator
from nngraph.generate.denoisers import velocity
from nngraph.io import atomic_write
from nngraph.zoo import ClassifierZooConfig, build_model
from nngraph.zoo.classifiers import classifier_data, evaluate


def build_parser(prog: str = "python -m tasks.diagnostics.flow_reconstruction") -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=prog, description=__doc__.split("\n")[0])
    p.add_argument("--out", required=True, help="output directory of a finished python -m tasks.generation run")
    p.add_argument("--method", default="flow", choices=["flow", "twin"], help="which fitted flow to test")
    p.add_argument("--times", default="0.3,0.5,0.7,0.8,0.9,0.95", help="comma-separated start times t0")
    p.add_argument("--steps", type=int, default=20, help="Euler steps from t0 to 1")
    p.add_argument("--samples", type=int, default=48, help="samples per sampler setting")
    p.add_argument("--seed", type=int, default=0, help="seed of the noise")
    return p


def _integrate(gen, z, t0: float, feats, steps: int, heun: bool = False):
    """``z`` ``(B, D)`` at time ``t0`` moved to time 1 by the generator's velocity field."""
    ts = torch.linspace(t0, 1.0, steps + 1)
    for k in range(steps):
        t, h = torch.full((z.shape[0],), float(ts[k])), float(ts[k + 1] - ts[k])
        v = gen.model(z, t, feats)  # (B, D)
        if heun:
            v = (v + gen.model(z + h * v, torch.full_like(t, float(ts[k + 1])), feats)) / 2
        z = z + h * v
    return z


def run(args) -> dict:
    zoo = torch.load(os.path.join(args.out, "zoo.pt"), weights_only=True)
    key = zoo["key"]
    config = ClassifierZooConfig(checkpoints=4, max_epochs=key["zoo_epochs"], seed=key["seed"])
    images, train_mask = classifier_data(config)
    x_te, y_te = images.images[~train_mask], images.labels[~train_mask]
    template = build_model(zoo["spec"]).eval()
    gen = load_generator(os.path.join(args.out, "runs", args.method, "generator.pt"))
    graphs = []
    for state in zoo["states"]:
        m = build_model(zoo["spec"])
        m.load_state_dict(state)
        graphs.append(nngraph.to_graph(m.eval(), x_te[:2]))
    acc = zoo["test_acc"].to(torch.float64)  # (M,)
    m = len(graphs)
    order = torch.randperm(m, generator=torch.Generator().manual_seed(key["seed"]))  # the fit's split
    held = order[:min(max(1, round(0.1 * m)), m - 1)]
    z1 = gen.stats.normalize(gen.space.flatten([graphs[i] for i in held.tolist()]).to(torch.float64)).float()
    feats = gen.condition.features(acc[held], torch.zeros(len(held), dtype=torch.bool))  # (B, C)

    def accuracy(z):
        out = gen.space.graphs(gen.stats.denormalize(z.to(torch.float64)))
        return np.array([evaluate(nngraph.from_graph(g, template), x_te, y_te)[0] for g in out])

    torch.manual_seed(args.seed)
    result = {"out": args.out, "method": args.method, "held_out_models": len(held),
              "held_out_median_acc": float(acc[held].median()), "loss": {}, "reconstruction": {}, "sampling": {}}
    with torch.no_grad():
        for t0 in [float(t) for t in args.times.split(",")]:
            z0 = torch.randn_like(z1)
            zt = (1 - t0) * z0 + t0 * z1
            t = torch.full((len(held),), t0)
            v = gen.model(zt, t, feats)
            s2 = torch.full((len(held), 1), (1 - t0) ** 2 + t0 ** 2)
            gauss = velocity(zt, t, s2, torch.zeros_like(zt))  # the untrained field
            result["loss"][t0] = {"flow": float(((v - (z1 - z0)) ** 2).mean()),
                                  "gaussian": float(((gauss - (z1 - z0)) ** 2).mean())}
            back = accuracy(_integrate(gen, zt, t0, feats, args.steps))
            result["reconstruction"][t0] = {"median_acc": float(np.median(back)),
                                            "corr_with_own": float(np.corrcoef(back, acc[held].numpy())[0, 1])}
            loss = result["loss"][t0]
            print(f"t0={t0}: held-out loss {loss['flow']:.3f} (untrained {loss['gaussian']:.3f}); "
                  f"rebuilt median acc {np.median(back):.3f} (own {float(acc[held].median()):.3f})", flush=True)
        target = float(np.quantile(acc.numpy(), 0.9))
        cond = gen.condition.features(torch.full((args.samples,), target, dtype=torch.float64),
                                      torch.zeros(args.samples, dtype=torch.bool))
        noise = torch.randn(args.samples, gen.space.dim)
        for name, steps, heun in (("euler_40", 40, False), ("euler_200", 200, False), ("heun_40", 40, True)):
            a = accuracy(_integrate(gen, noise, 0.0, cond, steps, heun))
            result["sampling"][name] = {"median_acc": float(np.median(a)), "target": target}
            print(f"sampling {name}: median acc {np.median(a):.3f} at target {target:.3f}", flush=True)
    path = os.path.join(args.out, f"reconstruction_{args.method}.json")
    atomic_write(path, json.dumps(result, indent=2).encode())
    return result


def main(argv=None) -> int:
    run(build_parser().parse_args(argv))
    return 0


if __name__ == "__main__":
    sys.exit(main())
