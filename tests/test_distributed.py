"""Data-parallel training under torchrun (gloo on CPU, 2 processes): the same training as one
process, exact resume, rank 0 alone writing, and a clear error instead of a hang.

Each torchrun launch is a subprocess (OMP_NUM_THREADS=1) of about 10-20 s here; the launches
are shared by the tests through a module fixture.
"""
import json
import os
import subprocess
import sys
import time

import pytest
import torch

from conftest import fmnist_root
from spikelib import distributed as D
from spikelib import train as T

# one xdist worker runs the whole module, so the shared launches happen once (--dist loadgroup)
pytestmark = pytest.mark.xdist_group("torchrun")
TINY = {"d_model": 8, "n_layers": 1, "d_state": 4}
# the adding problem, L = 24, 96 training sequences, batch 32, dropout 0.1 (random per rank)
ADDING = dict(model="frssm", dataset="adding", length=24, model_config=TINY, profile="smoke",
              seed=3, epochs=2, batch_size=32, limit_train=96, limit_eval=32, device="cpu",
              progress=False)
ADDING_CLI = ["--model", "frssm", "--dataset", "adding", "--length", "24", "--set", "d_model=8",
              "--set", "n_layers=1", "--set", "d_state=4", "--profile", "smoke", "--seed", "3",
              "--epochs", "2", "--batch-size", "32", "--limit-train", "96", "--limit-eval", "32",
              "--device", "cpu", "--no-progress"]
# the smoke profile on Fashion-MNIST without dropout, stopped after its first epoch
SMOKE = dict(model="frssm", dataset="fmnist", profile="smoke", seed=0, device="cpu",
             model_config={"dropout": 0.0}, stop_after_epoch=1, progress=False)
DRIVER = """import json, sys
import spikelib.train as T
for kw in json.loads(sys.argv[1]):
    T.train(T.RunConfig(**kw))
"""


def torchrun(*args, timeout=300) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "SPIKELIB_DATA": str(fmnist_root())}
    return subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone",
                           "--nproc_per_node=2", *map(str, args)], env=env, text=True,
                          capture_output=True, timeout=timeout)


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Launch 1 (a script calling train three times): the smoke epoch, the adding run
    uninterrupted ('full') and stopped after epoch 1 ('split'). Launch 2: the CLI resumes
    'split'. Returns the folder."""
    tmp = tmp_path_factory.mktemp("ddp")
    where = {"out": str(tmp / "runs"), "results": str(tmp / "results")}
    (tmp / "driver.py").write_text(DRIVER)
    first = torchrun(tmp / "driver.py", json.dumps([
        {**SMOKE, **where, "run_name": "smoke", "data_root": str(fmnist_root())},
        {**ADDING, **where, "run_name": "full"},
        {**ADDING, **where, "run_name": "split", "stop_after_epoch": 1}]))
    assert first.returncode == 0, first.stderr[-3000:]
    second = torchrun("-m", "spikelib.train", *ADDING_CLI, "--out", where["out"], "--results",
                      where["results"], "--run-name", "split", "--resume")
    assert second.returncode == 0, second.stderr[-3000:]
    return tmp


def test_two_processes_train_like_one(runs):
    """With dropout 0, one epoch of the smoke profile on 2 processes (global batch 64 = 2 × 32)
    gives the parameters of one process with batch 64. Not bit for bit: DDP sums the two
    halves' gradients after each half was reduced on its own, another order of float32 sums
    (relative error ~1e-7 per gradient). AdamW divides by √v, so where a gradient is mostly
    rounding noise the update differs by a fraction of lr = 0.01; measured here after 8 steps:
    largest difference 6.4e-6 (a LayerNorm bias). Bound: 1e-4, about 10× that."""
    single = T.train(T.RunConfig(**SMOKE, out=str(runs / "single"), results=str(runs / "res1"),
                                 run_name="single", data_root=str(fmnist_root())))
    ddp = torch.load(runs / "runs" / "smoke" / "checkpoint.pt", weights_only=True)
    one = torch.load(single["checkpoint"], weights_only=True)
    assert ddp["model"].keys() == one["model"].keys()
    for k, v in one["model"].items():
        torch.testing.assert_close(ddp["model"][k], v, rtol=0, atol=1e-4, msg=k)
    a, b = ddp["history"][0], one["history"][0]
    assert a["train_loss"] == pytest.approx(b["train_loss"], rel=1e-5)   # same examples seen
    assert a["val_loss"] == pytest.approx(b["val_loss"], rel=1e-4)
    assert len(ddp["rng_ranks"]) == 2 and ddp["segments"][0]["world_size"] == 2


def _final(path):
    r = json.loads(path.read_text())
    hist = [{k: v for k, v in h.items() if k not in ("train_s", "wall_s")} for h in r["history"]]
    return [r[k] for k in ("test_loss", "firing_rate", "sops", "params")], hist


def test_resume_under_torchrun_continues_exactly(runs):
    """Stopped after epoch 1 and resumed by a new torchrun launch (the CLI): every metric and
    the per-epoch history equal the uninterrupted 2-process run bit for bit (gloo sums in a
    fixed order; every rank restores its own random state: dropout 0.1 draws per rank)."""
    res = runs / "results"
    assert _final(res / "split.json") == _final(res / "full.json")
    split = json.loads((res / "split.json").read_text())
    assert split["provenance"]["world_size"] == 2
    assert [s["epochs"] for s in split["segments"]] == [[0, 1], [1, 2]]
    # rank 0 alone writes: one result per run, one log line per epoch
    assert sorted(p.name for p in res.iterdir()) == ["full.json", "split.json"]
    assert len((runs / "runs" / "split" / "log.jsonl").read_text().splitlines()) == 2


def test_resume_with_another_number_of_processes_is_refused(runs):
    with pytest.raises(ValueError, match="2 process.*this run has 1"):
        T.train(T.RunConfig(**ADDING, out=str(runs / "runs"), results=str(runs / "res2"),
                            run_name="split", resume=True))


def test_a_hung_rank_stops_the_run_with_an_error(tmp_path):
    """Rank 1 never reaches the first gradient all-reduce; rank 0 gives up after
    --dist-timeout (5 s) with an error naming the cause, and torchrun ends rank 1."""
    (tmp_path / "hang.py").write_text(
        "import os, sys, time\nimport spikelib.train as T\n"
        "if os.environ['RANK'] == '1':\n    T.train_epoch = lambda *a, **k: time.sleep(600)\n"
        "sys.exit(T.main(sys.argv[1:]))\n")
    t0 = time.monotonic()
    out = torchrun(tmp_path / "hang.py", *ADDING_CLI, "--out", tmp_path / "runs", "--results",
                   tmp_path / "results", "--dist-timeout", "5", timeout=240)
    assert out.returncode != 0 and time.monotonic() - t0 < 200
    assert "rank 0 of 2" in out.stderr and "another process has failed or hangs" in out.stderr
    assert not (tmp_path / "results").exists()


def test_shards_cover_each_global_batch_in_order():
    batch = torch.arange(10, 17)                     # a shorter last batch of 7
    for world in (1, 2, 3):
        parts = [D.shard(batch, D.Context(rank, world)) for rank in range(world)]
        assert torch.equal(torch.cat(parts), batch)                  # consecutive, complete
        assert max(map(len, parts)) - min(map(len, parts)) <= 1
    D.check_batches(100, 64, D.Context(0, 2))        # 64 = 2 × 32; last batch 36 = 2 × 18
    with pytest.raises(ValueError, match="does not divide by the 3 processes"):
        D.check_batches(96, 64, D.Context(0, 3))
    with pytest.raises(ValueError, match="last batch.*1 of 65"):
        D.check_batches(65, 64, D.Context(0, 2))
