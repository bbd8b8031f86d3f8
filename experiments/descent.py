"""Does the gradient a spiking model trains with point downhill? Measured on trained weights.

    python experiments/descent.py                      # every committed weights/fmnist-*-cpu-*.pt
    python experiments/descent.py weights/fmnist-frssm-cpu-s0.pt --n 256

For each trained model (eval mode: no dropout), on a fixed batch of the first ``--n`` training
images, take the gradient g of the cross-entropy that training backpropagates (surrogate
spikes, the model's own refractory gradient rule; exact for S4D) and measure the slope of the
loss along -g/|g| by a central difference, (L(w + eps u) - L(w - eps u)) / (2 eps) with
u = g/|g|, against the slope the gradient claims, |g|. For an exact gradient the ratio tends to
1 as eps shrinks (the central difference cancels the curvature term); for a network of discrete
spikes the loss is a staircase, so only steps that flip many spikes measure a slope, and the
ratio says how much of the descent the surrogate promises is there. Central differences along
``--random`` unit directions at the same ``eps`` give the noise floor (their true slope is
about |g| / sqrt(#parameters), near 0).

``--refractory-grad RULE`` measures spikingFRssm weights under another refractory gradient
rule than the one they were trained with (the forward pass, hence the loss, is the same; only
g changes): at one point of the landscape, does the rule decide how far the slope is
overstated? Weights without a refractory spike are skipped then.

The task loss alone is measured (the rate penalty of some runs is left out), and every step is
applied to all trainable parameters at once. Results go to ``results/descent-cpu.json``, one
entry per weights file and gradient rule; an entry whose weights, batch, steps and library
sources are unchanged is kept, not re-measured (``--overwrite`` re-measures those named), and
entries of weights not named in this call stay while their file is unchanged. The refractory
chapter of the book reads the file.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from spikelib import data
from spikelib.checkpoint import load_weights
from spikelib.models import FixedRefractorySpike
from spikelib.provenance import provenance
from spikelib.resultfiles import write_result

ROOT = Path(__file__).resolve().parent.parent
RULES = ("mask", "fired", "straight_through")


def task_loss(model, x, y) -> torch.Tensor:
    out = model(x)
    return F.cross_entropy(out[0] if isinstance(out, tuple) else out, y)


def slopes(model, params, direction, x, y, eps) -> list[float]:
    """(L(w + e d) - L(w - e d)) / (2 e) for each e in ``eps`` (parameters restored after)."""
    start = [p.detach().clone() for p in params]
    out = []
    with torch.no_grad():
        for e in eps:
            side = []
            for sign in (1, -1):
                for p, w, d in zip(params, start, direction):
                    p.copy_(w + sign * e * d)
                side.append(float(task_loss(model, x, y)))
            out.append((side[0] - side[1]) / (2 * e))
        for p, w in zip(params, start):
            p.copy_(w)
    return out


def refractory_spikes(model) -> list[FixedRefractorySpike]:
    return [m for m in model.modules() if isinstance(m, FixedRefractorySpike)]


def measure(path: Path, x, y, eps, n_random: int, seed: int, rule: str | None = None,
            loaded: tuple | None = None) -> dict:
    """One entry: loss, |g|, the slopes along -g/|g| and along random directions; ``rule``
    replaces the refractory gradient rule of every spikingFRssm spike (None: the model's own);
    ``loaded``: ``load_weights(path)`` when the caller has it already."""
    model, meta = loaded or load_weights(path)
    model.eval()
    for m in refractory_spikes(model):
        m.grad = rule or m.grad
    params = [p for p in model.parameters() if p.requires_grad]
    t0 = time.perf_counter()
    loss = task_loss(model, x, y)
    grads = torch.autograd.grad(loss, params)
    norm = float(torch.sqrt(sum(g.square().sum() for g in grads)))
    slope = slopes(model, params, [g / norm for g in grads], x, y, eps)
    gen = torch.Generator().manual_seed(seed)
    rand = []
    for _ in range(n_random):
        d = [torch.randn(p.shape, generator=gen, dtype=p.dtype) for p in params]
        n = torch.sqrt(sum(t.square().sum() for t in d))
        rand.append(slopes(model, params, [t / n for t in d], x, y, eps))
    return {"run": meta["run"], "model": model.cfg.name,
            "refractory_grad": model.cfg.refractory_grad if model.cfg.name == "frssm" else None,
            "grad_rule": rule, "loss": float(loss.detach()),
            "grad_norm": norm, "slope": slope, "random_slope": rand,
            "n_params": sum(p.numel() for p in params), "seconds": time.perf_counter() - t0}


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()[:16]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("weights", nargs="*", type=Path,
                   help="weights files (default: every weights/fmnist-*-cpu-*.pt)")
    p.add_argument("--n", type=int, default=512, help="training images in the fixed batch")
    p.add_argument("--eps", type=float, nargs="+", default=[0.01, 0.03, 0.1],
                   help="step sizes (parameter-space distance)")
    p.add_argument("--random", type=int, default=1, help="random directions (noise floor)")
    p.add_argument("--seed", type=int, default=0, help="seed of the random directions")
    p.add_argument("--out", type=Path, default=ROOT / "results" / "descent-cpu.json")
    p.add_argument("--refractory-grad", choices=RULES, default=None,
                   help="measure spikingFRssm weights under this gradient rule (default: "
                        "their own); other weights are skipped")
    p.add_argument("--overwrite", action="store_true", help="re-measure the named entries")
    a = p.parse_args(argv)
    if a.n < 1 or a.random < 0 or any(e <= 0 for e in a.eps):
        p.error("--n must be >= 1, --random >= 0 and every --eps > 0")
    paths = a.weights or sorted((ROOT / "weights").glob("fmnist-*-cpu-*.pt"))
    if not paths:
        p.error("no weights files: pass some, or commit weights/fmnist-*-cpu-*.pt")
    torch.set_num_threads(1)
    prov = provenance(device="cpu")          # at the start: the tree as it was when measured
    setup = {"n": a.n, "eps": a.eps, "random": a.random, "seed": a.seed,
             "source_hash": prov["source_hash"]}
    old = json.loads(a.out.read_text())["entries"] if a.out.is_file() else []
    folders = {ROOT / "weights", *(path.parent for path in paths)}

    def unchanged(e):                       # same setup, its weights file still the same
        return {k: e.get(k) for k in setup} == setup and any(
            (d / e["weights"]).is_file() and sha256(d / e["weights"]) == e["weights_sha"]
            for d in folders)
    fresh = [e for e in old if unchanged(e)]
    kept = {(e["weights"], e.get("grad_rule")): e for e in fresh}
    x, y = data.load("fmnist").train.batch(torch.arange(a.n))
    measured = 0
    for path in paths:
        rule, loaded = a.refractory_grad, None
        if rule:
            loaded = load_weights(path)
            model = loaded[0]
            if not refractory_spikes(model):
                print(f"skipped   {path.name}: no refractory spike for --refractory-grad")
                continue
            rule = None if rule == model.cfg.refractory_grad else rule   # its own rule
        key = (path.name, rule)
        if key in kept and not a.overwrite:
            print(f"kept      {path.name}" + (f" ({rule})" if rule else ""))
            continue
        row = measure(path, x.float(), y, a.eps, a.random, a.seed, rule, loaded)
        kept[key] = {"weights": path.name, "weights_sha": sha256(path), **setup, **row}
        measured += 1
        ratio = " ".join(f"{v / row['grad_norm']:+.2f}" for v in row["slope"])
        noise = " ".join(f"{max(map(abs, col)) / row['grad_norm']:.2f}"
                         for col in zip(*row["random_slope"]))
        print(f"measured  {path.name}" + (f" ({rule})" if rule else "")
              + f": slope / |g| at eps {a.eps}: {ratio}; random: {noise} "
              f"({row['seconds']:.0f} s)", flush=True)
    entries = sorted(kept.values(), key=lambda e: (e["weights"], e.get("grad_rule") or ""))
    write_result(a.out, {"kind": "descent", "dataset": "fmnist", **setup, "entries": entries,
                         "provenance": prov})
    dropped = len(old) - len(fresh)
    print(f"wrote {a.out}: {len(entries)} entries, {measured} measured"
          + (f", {dropped} earlier ones not kept (other weights or settings)" if dropped else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
