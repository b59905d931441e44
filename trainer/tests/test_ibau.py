"""I-BAU mechanics: the implicit hypergradient against finite differences, the perturbation's
l2 ball, resume, and a tiny run through the CLI."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Callable, Optional

import pytest
import torch
import torch.nn.functional as F

from trapdoor_trainer.checkpoint import load_checkpoint
from trapdoor_trainer.context import RunContext
from trapdoor_trainer.data import DeviceData
from trapdoor_trainer.defenses import ibau
from trapdoor_trainer.defenses.registry import get_method
from trapdoor_trainer.errors import Cancelled
from trapdoor_trainer.events import Emitter
from trapdoor_trainer.models import create_model
from trapdoor_trainer.runner import load_job_data, pick_device
from trapdoor_trainer.spec import parse_spec

from test_cli import result_of, run, write_spec

# --- the hypergradient on problems whose answer is known -------------------------------------


def hypergradient(theta: torch.Tensor, w_star: torch.Tensor, outer: Callable, inner: Callable, step: float, steps: int) -> torch.Tensor:
    """dF/dtheta through ibau's fixed-point routine, evaluated at the inner solution w_star."""
    w = w_star.detach().clone().requires_grad_(True)
    (inner_grad,) = torch.autograd.grad(inner(w, theta), w, create_graph=True)
    surrogate = ibau.fixed_point_hypergradient_loss(outer(w, theta), w - step * inner_grad, w, steps, tolerance=1e-14)
    (grad,) = torch.autograd.grad(surrogate, theta)
    return grad


def central_differences(f: Callable[[torch.Tensor], float], theta: torch.Tensor, h: float = 1e-5) -> torch.Tensor:
    out = torch.zeros_like(theta)
    for i in range(theta.numel()):
        e = torch.zeros_like(theta)
        e[i] = h
        out[i] = (f(theta + e) - f(theta - e)) / (2 * h)
    return out


def test_hypergradient_is_exact_on_a_quadratic_inner_problem():
    # inner: w*(theta) = argmin 1/2 w'Aw - w'B theta = A^-1 B theta; outer: 1/2 |w - c|^2 + d'theta
    a = torch.tensor([[3.0, 0.5], [0.5, 2.0]], dtype=torch.float64)
    b = torch.tensor([[1.0, -2.0], [0.5, 1.5]], dtype=torch.float64)
    c = torch.tensor([0.3, -0.7], dtype=torch.float64)
    d = torch.tensor([0.2, 0.1], dtype=torch.float64)
    theta = torch.tensor([0.4, -1.1], dtype=torch.float64, requires_grad=True)
    w_star = torch.linalg.solve(a, b @ theta.detach())
    grad = hypergradient(
        theta, w_star,
        outer=lambda w, t: 0.5 * (w - c).pow(2).sum() + d @ t,
        inner=lambda w, t: 0.5 * w @ a @ w - w @ (b @ t),
        step=0.2, steps=500,
    )
    exact = b.T @ torch.linalg.solve(a.T, w_star - c) + d
    assert torch.allclose(grad, exact, atol=1e-10)


def test_hypergradient_matches_finite_differences_on_a_logistic_inner_problem():
    torch.manual_seed(0)
    x_in, y_in = torch.randn(6, 2, dtype=torch.float64), torch.tensor([1.0, -1, 1, 1, -1, -1], dtype=torch.float64)
    x_out, y_out = torch.randn(5, 2, dtype=torch.float64), torch.tensor([1.0, 1, -1, 1, -1], dtype=torch.float64)

    def inner(w, t):  # l2-anchored logistic regression: the anchor theta is the outer variable
        return F.softplus(-y_in * (x_in @ w)).sum() + 0.5 * (w - t).pow(2).sum()

    def outer(w, t):
        return F.softplus(-y_out * (x_out @ w)).sum() + 0.05 * t.pow(2).sum()

    def solve(t: torch.Tensor) -> torch.Tensor:  # Newton to machine precision
        w = torch.zeros(2, dtype=torch.float64)
        for _ in range(50):
            w = w.requires_grad_(True)
            g = torch.autograd.grad(inner(w, t), w, create_graph=True)[0]
            hessian = torch.stack([torch.autograd.grad(g[i], w, retain_graph=True)[0] for i in range(2)])
            w = (w - torch.linalg.solve(hessian, g)).detach()
        return w

    theta = torch.tensor([0.3, -0.8], dtype=torch.float64, requires_grad=True)
    grad = hypergradient(theta, solve(theta.detach()), outer, inner, step=0.2, steps=400)
    numeric = central_differences(lambda t: float(outer(solve(t), t)), theta.detach())
    assert torch.allclose(grad, numeric, atol=1e-7), (grad, numeric)
    # One term of the Neumann series (K = 1) is visibly off: the iteration count matters.
    truncated = hypergradient(theta, solve(theta.detach()), outer, inner, step=0.2, steps=1)
    assert not torch.allclose(truncated, numeric, atol=1e-3)


def test_the_outer_loss_without_delta_gives_the_plain_gradient():
    theta = torch.tensor([1.0, 2.0], requires_grad=True)
    w = torch.zeros(2, requires_grad=True)
    (inner_grad,) = torch.autograd.grad((w * theta).pow(2).sum(), w, create_graph=True)
    surrogate = ibau.fixed_point_hypergradient_loss(theta.pow(2).sum(), w - 0.1 * inner_grad, w, steps=5)
    assert torch.allclose(torch.autograd.grad(surrogate, theta)[0], 2 * theta.detach())


# --- the universal perturbation ----------------------------------------------------------------


def test_perturbation_search_stays_in_its_l2_ball():
    torch.manual_seed(1)
    model = create_model("small-cnn", 1, 4, (16, 16), with_decoder=False).eval()
    images = torch.randint(0, 256, (40, 16, 16, 1), dtype=torch.uint8).numpy()
    data = DeviceData(images, torch.randint(0, 4, (40,)).numpy(), torch.device("cpu"))
    order = torch.arange(40)
    common = dict(batch_size=10, penalty=1e-3)
    inside = ibau.search_universal_perturbation(model, data, order, lr=1e4, radius=0.5, **common)
    assert inside.shape == (1, 1, 16, 16)
    assert 0.45 < float(inside.norm()) <= 0.5 + 1e-5  # pushed to the boundary, not past it
    free = ibau.search_universal_perturbation(model, data, order, lr=1e4, radius=1e9, **common)
    assert float(free.norm()) > 1.0  # the same search without the ball does leave it


# --- in-process runs: resume ---------------------------------------------------------------


class CancelAt(Emitter):
    """Requests cancellation once the training loop reports (stage, epoch, step)."""

    def __init__(self, ctx: RunContext, stage: str, epoch: int, step: int):
        super().__init__(io.StringIO())
        self.ctx, self.at = ctx, (stage, epoch, step)

    def progress(self, **fields) -> None:
        super().progress(**fields)
        if (fields["stage"], fields["epoch"], fields["step"]) == self.at:
            self.ctx.cancel.requested = True


def method_context(job_datasets: dict, workdir: Path, method: str, hp: dict, init_model: Optional[str] = None, resume: Optional[dict] = None) -> RunContext:
    data = {"train": job_datasets["train"], "holdout": job_datasets["holdout"], "test": job_datasets["test"], "asrTest": job_datasets["asr"]}
    if init_model is not None:
        data["initModel"] = init_model
    spec = parse_spec({"method": method, "architecture": "small-cnn", "seed": 5, "device": "cpu", "target": 0, "data": data, "hyperparameters": hp})
    return RunContext(spec=spec, workdir=workdir, device=pick_device("cpu"), emitter=Emitter(io.StringIO()), data=load_job_data(spec), resume_state=resume)


def straight_and_resumed(job_datasets: dict, tmp_path: Path, method: str, hp: dict, init_model: str, cancel_at: tuple) -> tuple[dict, dict, RunContext]:
    """Run `method` uninterrupted, and again cancelled at `cancel_at` then resumed from its checkpoint."""
    straight_ctx = method_context(job_datasets, tmp_path / "straight", method, hp, init_model)
    straight = get_method(method).run(straight_ctx)
    interrupted = method_context(job_datasets, tmp_path / "interrupted", method, hp, init_model)
    interrupted.emitter = CancelAt(interrupted, *cancel_at)
    with pytest.raises(Cancelled):
        get_method(method).run(interrupted)
    checkpoint = load_checkpoint(str(interrupted.checkpoint_path))
    assert (checkpoint["stage"], checkpoint["epoch"]) == cancel_at[:2] and checkpoint["step"] > 0  # stopped mid-epoch
    resumed = get_method(method).run(method_context(job_datasets, tmp_path / "resumed", method, hp, init_model, resume=checkpoint))
    return straight, resumed, straight_ctx


def assert_same_weights(a: torch.nn.Module, b: torch.nn.Module) -> None:
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys()
    for key in sa:
        assert torch.equal(sa[key], sb[key]), key


# --- through the CLI -------------------------------------------------------------------------

TINY = {"pretrainEpochs": 1, "batchSize": 64, "lr": 3e-3, "epochs": 2, "unlearnBatchSize": 50, "hypergradSteps": 3, "evalEvery": 0}


@pytest.fixture(scope="module")
def cli_run(job_datasets, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("ibau")
    code, events, err = run(write_spec(tmp, job_datasets, "I_BAU", TINY), tmp / "work")
    assert code == 0, err
    return result_of(events), events, tmp / "work"


def test_cli_run_pretrains_unlearns_and_exports(cli_run):
    result, events, workdir = cli_run
    assert result["method"] == "I_BAU"
    for key in ("asr", "ca", "beforeAsr", "beforeCa", "holdoutAccuracy"):
        assert 0 <= result[key] <= 1, key
    assert result["mse"] is None and 0 < result["deltaNorm"] <= 10
    assert set(result["timings"]) >= {"pretrainSeconds", "unlearnSeconds", "totalSeconds"}
    assert {e["stage"] for e in events if e["type"] == "progress"} == {"pretrain", "unlearn"}
    assert {e["kind"] for e in events if e["type"] == "artifact"} >= {"model", "config", "metadata", "onnx"}
    assert (workdir / "model.safetensors").stat().st_size > 0


def test_resume_mid_round_gives_the_same_weights(job_datasets, tmp_path, cli_run):
    init_model = str(cli_run[2])  # the CLI run's exported model as the backdoored starting point
    hp = {**TINY, "epochs": 2}
    straight, resumed, _ = straight_and_resumed(job_datasets, tmp_path, "I_BAU", hp, init_model, ("unlearn", 1, 1))
    assert_same_weights(straight["model"], resumed["model"])
    assert straight["metrics"]["deltaNorm"] == resumed["metrics"]["deltaNorm"]
