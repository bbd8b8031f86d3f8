"""torch.compile: with the value checks off (``spikelib.temporal.finite_checks(False)``, as in
training) every model's training forward + loss is one graph — 0 graph breaks, checked with
``torch._dynamo.explain`` — and the compiled function matches eager: logits and loss, and the
loss's gradients. The breaks the switch removes are the NaN scans' host reads."""
import pytest
import torch
import torch.nn.functional as F

from spikelib.models import MODELS, build
from spikelib.temporal import finite_checks

B, L = 2, 16
SMALL = dict(d_input=3, n_classes=4, d_model=8, n_layers=1, d_state=4, psn_order=3,
             rate_penalty=0.1, dropout=0.0)
CASES = [(m, {}) for m in MODELS] + [("pssm", {"psn_kind": "masked", "seq_len": L}),
                                     ("frssm", {"polarity": "on_off"})]
IDS = list(MODELS) + ["pssm-masked", "frssm-on_off"]


def _setup(name, kw):
    """A small model in training mode, a batch, and its training objective (the task's loss
    plus the rate penalty, as ``spikelib.train`` forms it) as a function of (x, y)."""
    torch.manual_seed(0)
    model = build(name, **{**SMALL, **kw}).train()
    x = torch.randn(B, L, SMALL["d_input"], generator=torch.Generator().manual_seed(1))
    y = torch.tensor([0, 3])

    def objective(x, y):
        out, spikes = model(x, return_spikes=True)
        return out, F.cross_entropy(out.float(), y) + model.rate_penalty(spikes)
    return model, objective, x, y


@pytest.fixture(autouse=True)
def _fresh_dynamo():
    torch._dynamo.reset()
    yield
    torch._dynamo.reset()


@pytest.mark.parametrize("name, kw", CASES, ids=IDS)
def test_training_forward_and_loss_have_no_graph_break(name, kw):
    _, objective, x, y = _setup(name, kw)
    with finite_checks(False):
        report = torch._dynamo.explain(objective)(x, y)
    assert report.graph_break_count == 0, [str(b.reason)[:200] for b in report.break_reasons]
    assert report.graph_count == 1


def test_the_value_checks_are_what_breaks_the_graph():
    """With the checks on, the NaN scans read values back: graph breaks, in _checks.py."""
    _, objective, x, y = _setup("frssm", {})
    report = torch._dynamo.explain(objective)(x, y)
    assert report.graph_break_count > 0
    assert any("_checks.py" in str(frame) for b in report.break_reasons for frame in b.user_stack)


@pytest.mark.parametrize("name", MODELS)
def test_compiled_matches_eager(name):
    """Captured as one graph and run through AOT autograd (backend 'aot_eager': the forward
    and backward graphs a compiler gets, executed eagerly; seconds, not minutes)."""
    model, objective, x, y = _setup(name, {})
    params = [p for p in model.parameters() if p.requires_grad]
    with finite_checks(False):
        out, loss = objective(x, y)
        grads = torch.autograd.grad(loss, params, allow_unused=True)
        out_c, loss_c = torch.compile(objective, backend="aot_eager", fullgraph=True)(x, y)
        grads_c = torch.autograd.grad(loss_c, params, allow_unused=True)
    torch.testing.assert_close(out_c, out, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(loss_c, loss, rtol=1e-5, atol=1e-6)
    for g, g_c in zip(grads, grads_c):
        assert (g is None) == (g_c is None)
        if g is not None:
            torch.testing.assert_close(g_c, g, rtol=1e-4, atol=1e-6)


def test_inductor_matches_eager():
    """frssm through the default backend, Inductor, which generates and compiles its own
    kernels: forward and loss (without the backward, which would double the ~20 s compile)."""
    _, objective, x, y = _setup("frssm", {})
    with finite_checks(False), torch.no_grad():
        out, loss = objective(x, y)
        out_c, loss_c = torch.compile(objective, fullgraph=True)(x, y)
    torch.testing.assert_close(out_c, out, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(loss_c, loss, rtol=1e-5, atol=1e-6)
