"""What a training run is: :class:`RunConfig`, the profiles, and the command line built from it.

Each :class:`RunConfig` field is declared once — type, default and help together
(``field(metadata={"help": ...})``) — and :func:`parser` derives every ``--flag`` from the
dataclass: ``model_config`` becomes ``--set KEY=VALUE``, typed by the :class:`ModelConfig`
field; a ``bool`` becomes a switch. Fields tagged ``operational`` (where files go, how to show
progress) may differ when a run is resumed; every other field is part of its :func:`identity`
and, where it differs from the profile's default, of the run's name (:func:`default_run_name`).

Profiles (``--profile``, default ``$SPIKELIB_PROFILE``, else ``smoke``):

- ``smoke``: a small model (d_model 32, 2 layers, d_state 16) on 512 training and 256 val/test
  sequences for 2 epochs: checks the pipeline, measures nothing.
- ``cpu``: the same small model on the whole dataset for 3 epochs: real numbers of a small
  model trained briefly (the book's CPU table).
- ``full``: the model defaults (d_model 128, 4 layers, d_state 64), the whole dataset and
  ``FULL_EPOCHS``: the runs the book reports as results (a GPU's work).
"""
from __future__ import annotations

import argparse
import dataclasses
import math
import os
import re
import typing
from dataclasses import asdict, dataclass, field

from spikelib import data as sdata
from spikelib.models import MODELS, ModelConfig

__all__ = ["RunConfig", "PROFILES", "FULL_EPOCHS", "SMALL_MODEL", "profile_of", "resolve",
           "default_run_name", "name_parts", "identity", "parser", "config_from_args",
           "parse_value", "parse_override", "set_keys_help"]

SMALL_MODEL = {"d_model": 32, "n_layers": 2, "d_state": 16}
PROFILES = {     # epochs None: FULL_EPOCHS[dataset]; limits None: the whole split
    "smoke": {"epochs": 2, "limit_train": 512, "limit_eval": 256, "model": SMALL_MODEL},
    "cpu": {"epochs": 3, "limit_train": None, "limit_eval": None, "model": SMALL_MODEL},
    "full": {"epochs": None, "limit_train": None, "limit_eval": None, "model": {}},
}
FULL_EPOCHS = {"fmnist": 20, "fmnist-rows": 20, "cifar10": 100, "cifar10-grey": 100, "adding": 30}


def _arg(default, help: str, *, operational: bool = False, **cli):
    """A RunConfig field: default, help and command-line details (``flag``, ``choices``)."""
    meta = {"help": help, "operational": operational, **cli}
    if isinstance(default, dict):
        return field(default_factory=dict, metadata=meta)
    return field(default=default, metadata=meta)


@dataclass
class RunConfig:
    """One training run. ``None`` fields take the profile's default in :func:`resolve`."""
    model: str = _arg("frssm", "the model", choices=MODELS)
    dataset: str = _arg("fmnist", "the dataset", choices=sdata.DATASETS)
    model_config: dict = _arg({}, "override a ModelConfig field, e.g. --set d_model=64 "
                                  "(repeatable)", flag="--set")
    profile: str | None = _arg(None, "default: $SPIKELIB_PROFILE, else smoke",
                               choices=tuple(PROFILES))
    seed: int = _arg(0, "seed of the initialisation, the epoch order and dropout")
    epochs: int | None = _arg(None, "default: from the profile")
    batch_size: int = _arg(64, "global batch (under torchrun: split over the processes)")
    lr: float = _arg(0.01, "AdamW learning rate (SSM parameters keep their own)")
    weight_decay: float = _arg(0.01, "AdamW weight decay on weight matrices")
    limit_train: int | None = _arg(None, "first N training sequences (after the seeded split)")
    limit_eval: int | None = _arg(None, "first N val and N test sequences")
    length: int | None = _arg(None, "sequence length of 'adding' (the other datasets have a "
                                    "fixed length)")
    synthetic: bool = _arg(False, "SYNTHETIC full-size random data: timing only, no accuracy "
                                  "reported")
    verify: bool = _arg(True, "check CIFAR pickles with torchvision's MD5 sums; --no-verify "
                              "reads them unchecked (generated fixtures only)", flag="--no-verify")
    device: str = _arg("auto", "auto | cpu | cuda | cuda:1 ...", operational=True)
    out: str = _arg("runs", "checkpoints and logs: <out>/<run_name>/", operational=True)
    results: str = _arg("runs/results", "result JSON folder: <results>/<run_name>.json (pass "
                                        "--results results for the committed table)",
                        operational=True)
    run_name: str | None = _arg(None, "default: <dataset>-<model>-<profile>-s<seed>, then "
                                      "-key=value for each setting that differs from the "
                                      "profile's default", operational=True)
    resume: bool = _arg(False, "continue from <out>/<run_name>/checkpoint.pt", operational=True)
    overwrite: bool = _arg(False, "replace an existing result file and checkpoint of this run "
                                  "(without it such a run stops)", operational=True)
    compile: bool = _arg(False, "train the model wrapped in torch.compile", operational=True)
    stop_after_epoch: int | None = _arg(None, "stop after this epoch's checkpoint",
                                        operational=True)
    commit: str | None = _arg(None, "commit to record when there is no .git", operational=True)
    data_root: str | None = _arg(None, "default: $SPIKELIB_DATA, else ./data", operational=True)
    download: bool = _arg(False, "let torchvision download data (needs internet)",
                          operational=True)
    progress: bool | None = _arg(None, "tqdm bars (by default only on a terminal); "
                                       "--no-progress turns them off",
                                 operational=True, flag="--no-progress")
    threads: int | None = _arg(None, "torch.set_num_threads on CPU", operational=True)
    dist_timeout: float = _arg(1800.0, "torchrun: seconds a process waits for the others in a "
                                       "collective before it stops with an error",
                               operational=True)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> RunConfig:
        unknown = set(d) - {f.name for f in dataclasses.fields(cls)}
        if unknown:
            raise ValueError(f"RunConfig: unknown fields {sorted(unknown)}")
        return cls(**d)


def profile_of(cfg: RunConfig) -> str:
    """The run's profile: ``cfg.profile``, else ``$SPIKELIB_PROFILE``, else 'smoke'."""
    return cfg.profile or os.environ.get("SPIKELIB_PROFILE") or "smoke"


def resolve(cfg: RunConfig) -> tuple[RunConfig, ModelConfig]:
    """Fill the profile defaults and build the :class:`ModelConfig`; validates everything."""
    profile = profile_of(cfg)
    if profile not in PROFILES:
        raise ValueError(f"profile: expected one of {tuple(PROFILES)}, got {profile!r}")
    if cfg.model not in MODELS:
        raise ValueError(f"model: expected one of {', '.join(MODELS)}, got {cfg.model!r}")
    if cfg.dataset not in sdata.DATASETS:
        raise ValueError(f"dataset: expected one of {', '.join(sdata.DATASETS)}, "
                         f"got {cfg.dataset!r}")
    prof = PROFILES[profile]
    c = dataclasses.replace(
        cfg, profile=profile,
        epochs=_default(cfg.epochs, prof["epochs"] or FULL_EPOCHS[cfg.dataset]),
        limit_train=_default(cfg.limit_train, prof["limit_train"]),
        limit_eval=_default(cfg.limit_eval, prof["limit_eval"]),
        length=_default(cfg.length, sdata.ADDING_LENGTH) if cfg.dataset == "adding" else None)
    for name in ("limit_train", "limit_eval", "length", "threads"):
        v = getattr(c, name)
        if v is not None and (isinstance(v, bool) or not isinstance(v, int) or v < 1):
            raise ValueError(f"{name}: expected a positive integer or None, got {v!r}")
    for name in ("epochs", "batch_size", "seed"):
        v = getattr(c, name)
        if isinstance(v, bool) or not isinstance(v, int) or v < (0 if name == "seed" else 1):
            raise ValueError(f"{name}: expected an integer >= {0 if name == 'seed' else 1}, "
                             f"got {v!r}")
    for name in ("lr", "weight_decay", "dist_timeout"):
        v, low = getattr(c, name), ("> 0" if name == "dist_timeout" else ">= 0")
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not (
                (v > 0 if name == "dist_timeout" else v >= 0) and math.isfinite(v)):
            raise ValueError(f"{name}: expected a finite number {low}, got {v!r}")
    if c.resume and c.overwrite:
        raise ValueError("resume, overwrite: choose one (--resume continues the run, "
                         "--overwrite replaces it)")
    if c.stop_after_epoch is not None and not 1 <= c.stop_after_epoch <= c.epochs:
        raise ValueError(f"stop_after_epoch: expected 1..{c.epochs}, got {c.stop_after_epoch}")
    if cfg.length is not None and cfg.dataset != "adding":
        raise ValueError(f"length: {cfg.dataset!r} has a fixed length; --length sets only the "
                         "length of 'adding'")
    _check_reads(c.model, c.model_config)
    info = sdata.info(c.dataset, c.length)
    fixed = {"name": c.model, "d_input": info.d_input, "n_classes": info.n_classes}
    for k, v in fixed.items():
        if k in c.model_config and c.model_config[k] != v:
            raise ValueError(f"model_config: {k}={c.model_config[k]!r} contradicts "
                             f"--model/--dataset ({v!r})")
    base = dict(prof["model"])
    if c.dataset == "adding":
        base["readout"] = "last"           # the sum is known only after the second marker
    base["seq_len"] = info.length          # used only by the masked PSN (weights T×T)
    mcfg = ModelConfig.from_dict({**asdict(ModelConfig()), **base, **c.model_config, **fixed})
    return c, mcfg.validate()


def _default(value, default):
    return default if value is None else value


_FIXED = ("name", "d_input", "n_classes")      # set by --model and --dataset


def _check_reads(model: str, overrides: dict) -> None:
    """ValueError for a ``--set`` key that ``model`` does not read (it would change nothing)."""
    reads = ModelConfig.reads(model)
    for k in sorted(overrides):
        if k not in reads and k not in _FIXED and k in ModelConfig.__dataclass_fields__:
            raise ValueError(f"model_config: --set {k} is not read by model {model!r}; "
                             f"{model} reads: {', '.join(x for x in reads if x not in _FIXED)}")


_BASE = ("dataset", "model", "profile", "seed", "synthetic", "model_config")


def name_parts(cfg: RunConfig) -> dict:
    """What makes a run differ from its profile's default run: every non-operational field
    (after :func:`resolve`) and every ``--set`` value that differs from it, by name (sorted)."""
    c, m = resolve(cfg)
    d, dm = resolve(RunConfig(model=c.model, dataset=c.dataset, profile=c.profile,
                              seed=c.seed, synthetic=c.synthetic))
    keep = [f.name for f in dataclasses.fields(RunConfig)
            if not f.metadata["operational"] and f.name not in _BASE]
    parts = {k: getattr(c, k) for k in keep if getattr(c, k) != getattr(d, k)}
    parts |= {k: v for k, v in c.model_config.items() if getattr(dm, k) != getattr(m, k)}
    return dict(sorted(parts.items()))


def default_run_name(cfg: RunConfig) -> str:
    """``<dataset>-<model>-<profile>-s<seed>``, then ``-<key>=<value>`` for each part of
    :func:`name_parts` (e.g. ``-epochs=1``, ``-refractory=4``), then ``-synthetic`` for
    synthetic data: two runs that compute different things never share a file, and the same
    command gives the same name (so ``--resume`` finds it)."""
    parts = "".join(f"-{k}={re.sub(r'[^A-Za-z0-9._-]+', '_', str(v))}"
                    for k, v in name_parts(cfg).items())
    return f"{cfg.dataset}-{cfg.model}-{profile_of(cfg)}-s{cfg.seed}{parts}" + \
        ("-synthetic" if cfg.synthetic else "")


def identity(cfg: RunConfig, mcfg: ModelConfig) -> dict:
    """What must match for a checkpoint to be resumed: the computation, not the bookkeeping
    (the fields tagged ``operational``)."""
    keep = {f.name for f in dataclasses.fields(RunConfig) if not f.metadata["operational"]}
    d = {k: v for k, v in cfg.to_dict().items() if k in keep}
    d["model_config"] = mcfg.to_dict()
    return d


# ---------------------------------------------------------------------------------------------
# the command line, derived from the dataclasses

def parse_value(kind, text: str, name: str):
    """``text`` as a value of the annotation ``kind`` (bool, int, float, str or ``X | None``)."""
    options = typing.get_args(kind) or (kind,)
    low = text.strip().lower()
    if low == "none" and type(None) in options:
        return None
    for t in options:
        if t is bool and low in ("true", "1", "yes", "false", "0", "no"):
            return low in ("true", "1", "yes")
        if t in (int, float, str):
            try:
                return t(text.strip())
            except ValueError:
                continue
    raise ValueError(f"{name}: {text!r} is not a valid {kind}")


def parse_override(text: str) -> tuple[str, object]:
    """``key=value`` -> (key, value typed by the ModelConfig field); ValueError if unknown."""
    if "=" not in text:
        raise ValueError(f"--set: expected key=value, got {text!r}")
    key, raw = (s.strip() for s in text.split("=", 1))
    hints = typing.get_type_hints(ModelConfig)
    if key not in hints:
        raise ValueError(f"--set: unknown model field {key!r}; fields: {', '.join(hints)}")
    try:
        return key, parse_value(hints[key], raw, f"--set {key}")
    except ValueError as err:
        raise ValueError(f"--set: {key}={raw!r} is not a valid {hints[key]}") from err


def _converter(kind, name: str):
    def convert(text: str):
        return parse_value(kind, text, name)
    convert.__name__ = getattr(kind, "__name__", str(kind))    # argparse's "invalid int value"
    return convert


class _Help(argparse.ArgumentDefaultsHelpFormatter, argparse.RawDescriptionHelpFormatter):
    def _get_help_string(self, action):              # no "(default: ...)" after a switch
        return action.help if action.nargs == 0 else super()._get_help_string(action)


def set_keys_help() -> str:
    """Every ``--set`` key with its default, meaning and the models that read it (from the
    :class:`ModelConfig` field metadata)."""
    lines = ["--set keys (ModelConfig fields; a key the model does not read is an error):"]
    for f in dataclasses.fields(ModelConfig):
        if f.name in _FIXED:
            continue
        models = f.metadata["models"]
        who = "all models" if set(models) == set(MODELS) else ", ".join(models)
        lines.append(f"  {f.name}={f.default!r}: {f.metadata['help']} [{who}]")
    return "\n".join(lines)


def parser() -> argparse.ArgumentParser:
    """``python -m spikelib.train``'s parser: one flag per :class:`RunConfig` field; the epilog
    lists the ``--set`` keys (:func:`set_keys_help`)."""
    p = argparse.ArgumentParser(prog="python -m spikelib.train",
                                description="Train a spikelib model (see spikelib.train).",
                                epilog=set_keys_help(), formatter_class=_Help)
    hints = typing.get_type_hints(RunConfig)
    for f in dataclasses.fields(RunConfig):
        meta = dict(f.metadata)
        flag = meta.get("flag", "--" + f.name.replace("_", "-"))
        kw = {"dest": f.name, "help": meta["help"]}
        if f.name == "model_config":
            p.add_argument(flag, action="append", default=[], metavar="KEY=VALUE", **kw)
        elif bool in (typing.get_args(hints[f.name]) or (hints[f.name],)):
            on = not (f.default is True or flag.startswith("--no-"))
            p.add_argument(flag, action="store_true" if on else "store_false", default=f.default,
                           **kw)
        else:
            p.add_argument(flag, type=_converter(hints[f.name], flag), default=f.default,
                           choices=meta.get("choices"), **kw)
    return p


def config_from_args(argv: list[str] | None = None) -> RunConfig:
    """A :class:`RunConfig` from command-line arguments (``sys.argv[1:]`` by default)."""
    args = vars(parser().parse_args(argv))
    args["model_config"] = dict(parse_override(s) for s in args["model_config"])
    return RunConfig(**args)
