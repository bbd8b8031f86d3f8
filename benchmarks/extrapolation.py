"""Length extrapolation: train on the adding problem at one length, run serially to far longer.

The adding problem (``spikelib.data.adding``; Hochreiter & Schmidhuber 1997): channel 0 holds
U[0, 1] values, channel 1 marks one position in each half, the target is the sum of the two
marked values; readout 'last' (the sum is known only at the end), mean-squared error. Predicting
the constant 1 gives MSE 1/6 — the line a model must beat to have learned anything.

1. Train every model with ``spikelib.train.train(RunConfig(dataset='adding', length=L_train))``
   — the library's loop, optimizer and schedule — into a work folder (default
   ``runs/extrapolation-<device>/``), then load its last checkpoint with
   ``spikelib.checkpoint.load_checkpoint`` (which checks that it belongs to this configuration).
2. Evaluate the trained model with ``forward_serial`` (a loop over ``step``; O(1) state per
   layer: nothing in it grows with L) on fresh adding sequences at each evaluation length (new
   seeds: 10,000 + L), in eval mode, fp32 — twice: on the plain problem of length L (its marks
   spread over the whole sequence, so it asks for memory over L steps, which training at
   L_train never did), and with both marks in the last L_train steps (``recent``: the training
   question asked after L − L_train unmarked steps — a test of whether the long run disturbs
   the state, with nothing new to remember).

Measured at each length, over every step, layer, sequence and channel: ``mse`` — of the
last-step prediction (NaN, written as null, if any prediction is); ``nan_count`` — non-finite
predictions; ``max_abs_y`` — the S4D output y_t entering the spiking module (for ``frssm``
this is the membrane: Θ(y − θ) acts on y directly; for ``s4d`` the GELU's input);
``max_abs_membrane`` — the neuron's own membrane read from its step state: ``ddsn`` h_t
(state['h']), ``sif`` V_t after the soft reset (state['v']), ``frssm`` y_t; None for ``s4d``
(no neuron); ``nonfinite_state`` — non-finite entries of y and of the membrane, summed over
steps. The models' steps are wrapped only to observe these values; the computation is
``forward_serial`` unchanged.

A model has **learned** the task when its serial MSE at the training length is at most
``MSE_BOUND`` = 0.2 × the baseline (0.0333); the script reports it per model
(``models.<name>.learned``) and never fails on it.

Defaults — CPU: L_train 64 (the first 4,096 of the 20,000 generated sequences, batch 32,
24 epochs = 3,072 steps), eval L ∈ {64, 128, …, 2048} (32 × L_train; 256 sequences each),
d_model 32, 2 layers, d_state 16, one thread — a small run, labelled profile 'cpu',
deterministic on one machine; every model of the default set meets the bound (see
``SPIKING_LEVERS`` and ``PER_MODEL`` for the two settings that make the spiking models learn:
θ initialised at 0.25, and frssm with R = 0). GPU: L_train 2048 (12,800 sequences per epoch,
batch 64, up to 12 epochs), eval L ∈ {2048, 4096, 8192, 16384, 30000} (the Dynamic Decay Spiking
Neuron paper's "trained at 2k, stable to 30k" setting), d_model 64, 2 layers, the same levers
(not yet run on a GPU). With ``--max-seconds`` (the GPU runbook's way) every model trains the
same number of epochs (equal steps: a fair comparison), the most, up to ``--epochs``, whose
projected time — each model's training step measured on a throwaway copy — fits 60% of the
budget; evaluation lengths that would not fit in a model's share of the rest are skipped and
recorded as skipped.

    python benchmarks/extrapolation.py                     # auto device, its defaults
    python benchmarks/extrapolation.py --device cpu --threads 1 --models frssm \
        --model-set frssm:refractory=2 --out results/extrapolation-cpu-frssm-refractory=2.json

Writes results/extrapolation-<device>.json (with provenance).
"""
from __future__ import annotations

import argparse
import contextlib
import shutil
import sys
import time
from pathlib import Path

import torch

from _bench import clock, common_args, measure, record, result_path, run_stem, setup, tf32_state
from spikelib import data as sdata
from spikelib import train as T
from spikelib.checkpoint import load_checkpoint
from spikelib.config import identity, parse_override, resolve
from spikelib.device import device_name
from spikelib.models import MODELS, ModelConfig, build
from spikelib.results import find_root, write_result

DEFAULT_MODELS = ("ddsn", "frssm", "sif", "s4d")
BASELINE_MSE = 1.0 / 6.0          # predicting the constant 1
MSE_BOUND = 0.2                   # learned: serial MSE at the training length <= 0.2 x baseline
TRAIN_FRACTION = 0.6              # of a model's share of --max-seconds: training; the rest: eval
# The spiking models' levers, from a CPU screening (seed 0, L_train 64, one run each; ours):
# with θ initialised at 1.0 frssm did not learn the task in 3,840 steps nor sif in 1,536; at 0.25
# and 3,072 steps sif and ddsn do. frssm with its default refractory period R = 2 does not
# (validation MSE 0.13 against the bound 0.033):
# after the second marker its last layer is driven by a constant and fires every R + 1 steps, so
# whether the last step — the one the readout sees — carries a spike depends on a phase the
# model cannot know. With R = 0 it learns. `--model-set frssm:refractory=2` runs the default.
SPIKING_LEVERS = {"theta_init": 0.25}
PER_MODEL = {"frssm": {"refractory": 0}}
PROFILES = {   # train length, eval lengths, train sequences, max epochs, batch, eval batch,
    #            model (shared; per_model: one model's own fields), time budget of the whole
    #            script (None: train every epoch, eval every L)
    "gpu": dict(train_length=2048, eval_lengths=[2048, 4096, 8192, 16384, 30000],
                train_sequences=12800, epochs=12, batch=64, eval_batch=64,
                model={"d_model": 64, "n_layers": 2, "d_state": 64, **SPIKING_LEVERS},
                per_model=PER_MODEL, max_seconds=None),
    "cpu": dict(train_length=64, eval_lengths=[64, 128, 256, 512, 1024, 2048],
                train_sequences=4096, epochs=24, batch=32, eval_batch=256,
                model={"d_model": 32, "n_layers": 2, "d_state": 16, **SPIKING_LEVERS},
                per_model=PER_MODEL, max_seconds=None),
    "smoke": dict(train_length=16, eval_lengths=[16, 48], train_sequences=64, epochs=1,
                  batch=32, eval_batch=4, model={"d_model": 8, "n_layers": 1, "d_state": 4},
                  per_model={}, max_seconds=None),
}


class Watch:
    """Running maxima of |y| and |membrane| and a count of non-finite entries, kept on the
    device (no synchronisation per step)."""

    def __init__(self, device, membrane_is_y: bool):
        zero = torch.zeros((), device=device)
        self.max_y, self.max_m, self.bad = zero.clone(), zero.clone(), zero.clone()
        self.membrane_is_y, self.has_membrane = membrane_is_y, membrane_is_y

    def see(self, y_t, state):
        y_t = y_t.detach().float()
        self.max_y = torch.maximum(self.max_y, y_t.abs().amax())
        self.bad = self.bad + (~torch.isfinite(y_t)).sum()
        m = y_t if self.membrane_is_y else None
        if m is None and isinstance(state, dict):
            m = state.get("h", state.get("v"))
        if m is not None:
            m = m.detach().float()
            self.has_membrane = True
            self.max_m = torch.maximum(self.max_m, m.abs().amax())
            if not self.membrane_is_y:
                self.bad = self.bad + (~torch.isfinite(m)).sum()


@contextlib.contextmanager
def watching(model, watch: Watch):
    """Wrap each layer's spike ``step`` (an instance attribute shadowing the method) so that
    ``watch`` sees its input y_t and returned state; removed on exit."""
    wrapped = []
    for layer in model.layers:
        spike = layer.spike
        inner = spike.step

        def step(y_t, state=None, _inner=inner):
            s_t, new = _inner(y_t, state)
            watch.see(y_t, new)
            return s_t, new
        spike.step = step
        wrapped.append(spike)
    try:
        yield watch
    finally:
        for spike in wrapped:
            del spike.step


@torch.no_grad()
def evaluate_serial(model, name: str, length: int, batch: int, device, seed: int,
                    window: int | None = None) -> dict:
    """One serial pass over ``batch`` fresh adding sequences of ``length`` (marks in the last
    ``window`` steps when given): MSE, NaN count, largest |y| and |membrane|, seconds."""
    ds = sdata.adding(batch, length, seed, window=window)
    x, y = ds.batch(torch.arange(batch))
    x, y = x.to(device), y.to(device)                          # (B, L, 2), (B,)
    model.eval()
    watch = Watch(device, membrane_is_y=name == "frssm")
    t0 = clock()
    with watching(model, watch):
        pred = model.forward_serial(x).squeeze(-1).float()     # (B,)
    seconds = clock() - t0
    nan = int((~torch.isfinite(pred)).sum())
    mse = torch.mean((pred - y) ** 2).item()                   # NaN if any prediction is
    return {"length": length, "mse": mse, "nan_count": nan,
            "max_abs_membrane": watch.max_m.item() if watch.has_membrane else None,
            "max_abs_y": watch.max_y.item(), "nonfinite_state": int(watch.bad.item()),
            "seconds": seconds, "steps_per_s": length / seconds, "batch": batch,
            "seed": seed}


def learned(rows: list[dict], train_length: int) -> dict:
    """Whether a model learned the task: its serial MSE at the training length is at most
    ``MSE_BOUND`` × the predict-the-mean baseline (None when that length was not evaluated)."""
    row = next((r for r in rows if r["length"] == train_length and "skipped" not in r), None)
    mse = None if row is None else row["mse"]
    met = None if row is None else (mse is not None and mse <= MSE_BOUND * BASELINE_MSE)
    return {"mse_at_train_length": mse, "bound": MSE_BOUND * BASELINE_MSE, "met": met}


def step_seconds(mcfg, a, device) -> float:
    """Seconds of one training step at the training shape: ``spikelib.train.train_epoch`` on
    one batch of a throwaway model, the mean of two steps after the Timer's warm-up."""
    model = build(**mcfg.to_dict()).to(device)
    opt, sched = T.make_optimizer(model, a.lr, 0.01, 4, device)
    ds = sdata.adding(a.batch, a.train_length, seed=99).to(device)
    one = torch.arange(a.batch)
    return measure(lambda: T.train_epoch(model, opt, sched, ds, a.batch, "regression", one,
                                         device, progress=False), 2).mean


def shown(path, root: Path) -> str:
    """``path`` relative to the repository root when inside it (no machine paths in results)."""
    p = Path(path).resolve()
    return str(p.relative_to(root.resolve())) if p.is_relative_to(root.resolve()) else str(p)


def run_config(name: str, a, work: Path, device, model_config: dict, epochs: int):
    """The RunConfig of model ``name``: the shared ``model_config`` plus its own overrides
    (``a.per_model``), which its run name also carries."""
    own = a.per_model.get(name, {})
    sets = "".join(f"-{k}={v}" for k, v in sorted(own.items()))
    shared = {k: v for k, v in model_config.items() if k in ModelConfig.reads(name)}
    return T.RunConfig(model=name, dataset="adding", length=a.train_length,
                       model_config={**shared, **own}, profile="full", seed=a.seed,
                       epochs=epochs, batch_size=a.batch, lr=a.lr,
                       limit_train=a.train_sequences, limit_eval=a.eval_batch * 4,
                       device=str(device), out=str(work / "runs"),
                       results=str(work / "results"), run_name=f"adding-{name}-L{a.train_length}"
                       f"-s{a.seed}{sets}", progress=False, commit=a.commit,
                       overwrite=True)


def parse_model_set(text: str) -> tuple[str, str, object]:
    """``--model-set frssm:refractory=2`` -> ('frssm', 'refractory', 2), typed by ModelConfig."""
    name, sep, rest = text.partition(":")
    if not sep or name not in MODELS:
        raise ValueError(f"--model-set: expected MODEL:KEY=VALUE with MODEL one of "
                         f"{', '.join(MODELS)}, got {text!r}")
    return (name, *parse_override(rest))


def train_model(cfg: T.RunConfig, device) -> tuple:
    """Train with spikelib.train.train; return (trained model, train result dict)."""
    run_dir = Path(cfg.out) / cfg.run_name
    shutil.rmtree(run_dir, ignore_errors=True)                 # a fresh run, not appended logs
    t0, c0 = time.perf_counter(), time.process_time()
    res = T.train(cfg)
    seconds, cpu_seconds = time.perf_counter() - t0, time.process_time() - c0
    resolved, mcfg = resolve(cfg)
    ck = load_checkpoint(run_dir / "checkpoint.pt", identity(resolved, mcfg))
    model = build(**mcfg.to_dict()).to(device)
    model.load_state_dict(ck["model"])
    return model, {"run": cfg.run_name, "epochs": cfg.epochs,
                   "steps": cfg.epochs * -(-cfg.limit_train // cfg.batch_size),
                   "train_seconds": seconds, "train_cpu_seconds": cpu_seconds,
                   "test_mse_parallel": res["test_loss"],
                   "history": res["history"], "params": res["params"],
                   "checkpoint": str(run_dir / "checkpoint.pt"), "model_config": mcfg.to_dict()}


def plan_epochs(a, work: Path, device, model_config: dict) -> tuple[int, dict]:
    """The same number of epochs for every model (a fair comparison: equal steps): the most,
    up to ``--epochs``, whose projected training time — measured step × steps, plus 15% for the
    per-epoch evaluation, summed over the models — fits ``TRAIN_FRACTION × --max-seconds``.
    Decided before training, so each cosine schedule is that of a run of that many epochs."""
    if a.max_seconds is None:
        return a.epochs, {}
    step_s = {name: step_seconds(resolve(run_config(name, a, work, device, model_config, 1))[1],
                                 a, device)
              for name in a.models}
    per_epoch = 1.15 * -(-a.train_sequences // a.batch) * sum(step_s.values())
    return max(1, min(a.epochs, int(TRAIN_FRACTION * a.max_seconds / per_epoch))), step_s


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--models", nargs="+", default=list(DEFAULT_MODELS), choices=MODELS)
    p.add_argument("--train-length", type=int, default=None)
    p.add_argument("--eval-lengths", type=int, nargs="+", default=None)
    p.add_argument("--train-sequences", type=int, default=None,
                   help="training sequences per epoch (of the 20,000 generated)")
    p.add_argument("--epochs", type=int, default=None,
                   help="epochs (the most, when --max-seconds sets a time budget)")
    p.add_argument("--batch", type=int, default=None, help="training batch")
    p.add_argument("--eval-batch", type=int, default=None, help="sequences per eval length")
    p.add_argument("--lr", type=float, default=0.01)
    p.add_argument("--model-set", action="append", default=[], metavar="MODEL:KEY=VALUE",
                   help="a ModelConfig field for one model only, e.g. frssm:refractory=2 "
                        "(repeatable; replaces the profile's value for that model)")
    p.add_argument("--max-seconds", type=float, default=None,
                   help="time budget of the whole script: every model trains the same "
                        "number of epochs (at most --epochs), chosen from measured steps to "
                        f"fit {TRAIN_FRACTION:.0%}% of it; eval lengths whose projected time "
                        "exceeds a model's share of the rest are skipped and recorded as "
                        "skipped (default: none)")
    p.add_argument("--work", default=None,
                   help="checkpoints of the training runs (default runs/extrapolation-<device>)")
    return common_args(p, PROFILES, model_overrides=True)


def main(argv: list[str] | None = None) -> int:
    a = parser().parse_args(argv)
    command, device, profile = setup(a, "extrapolation", argv)
    d = PROFILES[profile]
    for k in ("train_length", "eval_lengths", "train_sequences", "epochs", "batch",
              "eval_batch", "max_seconds"):
        if getattr(a, k) is None:
            setattr(a, k, d[k])
    model_config = dict(d["model"])
    model_config.update({k: v for k, v in (("d_model", a.d_model), ("n_layers", a.n_layers),
                                           ("d_state", a.d_state)) if v is not None})
    a.per_model = {m: dict(v) for m, v in d["per_model"].items() if m in a.models}
    for text in a.model_set:
        m, key, value = parse_model_set(text)
        a.per_model.setdefault(m, {})[key] = value
    root = find_root(Path(__file__).parent)
    work = Path(a.work) if a.work else root / "runs" / run_stem("extrapolation", device, profile)
    tf32 = tf32_state()
    print(f"extrapolation on {device_name(device)} ({device.type}), profile {profile}: train "
          f"L={a.train_length} ({a.train_sequences} sequences x {'at most ' * bool(a.max_seconds)}"
          f"{a.epochs} epochs, batch "
          f"{a.batch}), eval L={a.eval_lengths} (batch {a.eval_batch}, forward_serial, fp32), "
          f"model {model_config}, per model {a.per_model}, time budget {a.max_seconds} s, "
          f"{torch.get_num_threads()} "
          f"threads; TF32: {tf32}", flush=True)

    models, t_start = {}, time.perf_counter()
    epochs, step_s = plan_epochs(a, work, device, model_config)
    if step_s:
        print(f"time budget {a.max_seconds:g} s: measured step (s) {step_s} -> {epochs} epochs "
              f"for every model", flush=True)
    per_epoch = 1.15 * -(-a.train_sequences // a.batch)
    for i, name in enumerate(a.models):
        model, info = train_model(run_config(name, a, work, device, model_config, epochs),
                                  device)
        info.update(epochs_max=a.epochs, measured_step_s=step_s.get(name),
                    checkpoint=shown(info["checkpoint"], root))
        t_model = time.perf_counter()
        share = None if a.max_seconds is None else \
            (a.max_seconds - (t_model - t_start) - sum(
                per_epoch * epochs * step_s[m] for m in a.models[i + 1:])) / (len(a.models) - i)
        print(f"{name:6s} trained {info['epochs']} epochs ({info['steps']} steps) in "
              f"{info['train_seconds']:.1f} s: test MSE at L_train (parallel forward) "
              f"{info['test_mse_parallel']:.4f} (baseline {BASELINE_MSE:.4f})", flush=True)
        rows, rate = [], None
        for L in a.eval_lengths:
            spent = time.perf_counter() - t_model
            if share is not None and rate is not None and spent + L / rate > share:
                rows.append({"length": L, "skipped": f"time budget: --max-seconds "
                                                     f"{a.max_seconds:g} over all models"})
                print(f"{name:6s} L={L:6d} skipped (time budget)", flush=True)
                continue
            r = evaluate_serial(model, name, L, a.eval_batch, device, 10_000 + L)
            recent = evaluate_serial(model, name, L, a.eval_batch, device, 20_000 + L,
                                     window=a.train_length)
            r["recent"] = {k: recent[k] for k in ("mse", "nan_count", "max_abs_membrane",
                                                  "max_abs_y", "nonfinite_state", "seed")}
            r["recent"]["window"] = a.train_length
            rate = r["steps_per_s"] / 2                         # two passes per length
            rows.append(r)
            mem = "-" if r["max_abs_membrane"] is None else f"{r['max_abs_membrane']:.3g}"
            print(f"{name:6s} L={L:6d} MSE {r['mse']:.4f} (marks in the last "
                  f"{a.train_length}: {recent['mse']:.4f})  max|membrane| {mem}  max|y| "
                  f"{r['max_abs_y']:.3g}  NaN {r['nan_count']}  {r['seconds']:.1f} s", flush=True)
        models[name] = {**info, "rows": rows, "learned": learned(rows, a.train_length)}
        del model

    head = f"{'model':6s} " + " ".join(f"{'L=' + str(L):>9s}" for L in a.eval_lengths)
    cell = lambda r, k, f: f"{'-' if r.get(k) is None else format(r[k], f):>9s}"  # noqa: E731
    print(f"\n{head}   (MSE, serial; baseline 1/6 = 0.1667; '-': skipped)")
    for name, m in models.items():
        print(f"{name:6s} " + " ".join(cell(r, "mse", ".4f") for r in m["rows"]))
    print(f"{head}   (MSE, serial, marks in the last {a.train_length} steps)")
    for name, m in models.items():
        print(f"{name:6s} " + " ".join(cell(r.get("recent", {}), "mse", ".4f")
                                       for r in m["rows"]))
    print(f"{head}   (max |membrane|; '-': none or skipped)")
    for name, m in models.items():
        print(f"{name:6s} " + " ".join(cell(r, "max_abs_membrane", ".3g") for r in m["rows"]) +
              f"   NaN {sum(r.get('nan_count', 0) for r in m['rows'])}")
    verdict = {None: "not evaluated", True: "met", False: "NOT met"}
    print(f"learned (serial MSE at L_train={a.train_length} <= {MSE_BOUND} x baseline = "
          f"{MSE_BOUND * BASELINE_MSE:.4f}): " + ", ".join(
              f"{name} {verdict[m['learned']['met']]}" for name, m in models.items()))

    path = write_result(result_path(a, "extrapolation", device, profile), {
        "benchmark": "extrapolation", "profile": profile, "synthetic": False,
        "task": "adding problem (spikelib.data.adding), readout 'last', MSE",
        "baseline_mse": BASELINE_MSE,
        "learned_bound": {"fraction_of_baseline": MSE_BOUND, "mse": MSE_BOUND * BASELINE_MSE,
                          "measured": "serial MSE at the training length (eval rows)",
                          "per_model": "models.<name>.learned.met"},
        "precision": "training: bf16 autocast on CUDA (FFTs and scans fp32), fp32 on CPU; "
                     "evaluation: forward_serial in fp32",
        "train": {"length": a.train_length, "sequences": a.train_sequences,
                  "epochs_max": a.epochs, "batch": a.batch, "lr": a.lr,
                  "epochs": epochs, "measured_step_s": step_s,
                  "time_budget": f"--max-seconds {a.max_seconds}: the same number of epochs "
                                 f"for every model, projected to fit {TRAIN_FRACTION:.0%} of it"
                  if a.max_seconds else None,
                  "model_config": model_config, "per_model": a.per_model},
        "eval": {"lengths": a.eval_lengths, "batch": a.eval_batch, "mode": "forward_serial",
                 "max_seconds": a.max_seconds,
                 "seeds": "adding(batch, L, seed=10000 + L); recent: adding(batch, L, "
                          "seed=20000 + L, window=L_train)"},
        "measured": {"mse": "last-step prediction vs target",
                     "recent": "the same, on sequences whose two marks lie in the last L_train "
                               "steps (the training question after L - L_train unmarked steps)",
                     "nan_count": "non-finite predictions",
                     "max_abs_y": "max |S4D output y_t| entering the spiking module",
                     "max_abs_membrane": "ddsn: h_t (step state 'h'); sif: V_t after soft "
                                         "reset (state 'v'); frssm: y_t; s4d: None",
                     "nonfinite_state": "non-finite entries of y_t and the membrane, all steps"},
        "models": models,
        "goal_reported_not_asserted": "Dynamic Decay Spiking Neuron: trained at 2k, stable to "
                                      "30k (arXiv 2602.01133 abstract)",
        **record(a, device, command)})
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
