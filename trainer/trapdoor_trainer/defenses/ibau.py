"""I_BAU: Implicit Backdoor Adversarial Unlearning (Zeng et al., ICLR 2022), post-training.

Solves min over the weights of max over one universal perturbation (||delta||_2 <= radius) of
the cross-entropy on the clean holdout. Each round (one epoch):
1. search delta from zero: one pass of SGD over the holdout, maximising the CE against the
   model's own predictions (minus a small l2 penalty), projected onto the ball after each step;
2. one outer step per holdout batch: the batch with delta added to a small fraction of it is the
   outer loss, and its gradient flows through delta's dependence on the weights by the implicit
   function theorem, approximated with K fixed-point iterations of one gradient step on the inner
   loss (a Neumann series). The model stays in eval mode throughout, as in the official code.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from ..context import RunContext
from ..data import DeviceData, to_float_nchw
from ..hyperparams import COMMON, PRETRAIN, Param
from ..metrics import autocast_for
from ..phases import PhaseRunner, Step
from ..training import Phase, derive_seed
from .common import epoch_metrics, evaluate, holdout_accuracy, starting_model
from .perturbation import project_l2_ball
from .registry import METHODS

STAGE = "unlearn"

HYPERPARAMETERS = {
    "epochs": Param(3, "int", "unlearning rounds, each one perturbation search plus one pass of outer steps over the holdout (3: the T&R authors' I-BAU runs; official defense.py 5)", minimum=1, maximum=10000),
    **COMMON,
    **PRETRAIN,
    "innerLr": Param(
        1.0, "float",
        "the 'inner learning rate' of the T&R appendix: the SGD step of the universal-perturbation search (the official code's batch_lr, default 10; T&R tuned it to 1). The fixed-point map's own step is fixedPointStep",
        minimum=0,
    ),
    "outerLr": Param(1e-4, "float", "Adam learning rate of the outer (model) update (T&R appendix: 1e-4; official code 1e-3)", minimum=0, maximum=10),
    "fixedPointStep": Param(0.1, "float", "step of the gradient-descent map on the inner loss whose fixed point defines delta; the hypergradient iterates its Jacobian (official code: 0.1)", minimum=0),
    "hypergradSteps": Param(5, "int", "K, fixed-point iterations approximating the implicit hypergradient (official: 5)", minimum=1, maximum=1000),
    "unlearnBatchSize": Param(100, "int", "holdout batch size of the perturbation search and the outer steps (official: 100); the first batch in dataset order is the inner loss's batch", minimum=1, maximum=65536),
    "perturbedFraction": Param(0.01, "float", "fraction of each outer batch that gets delta added (official: 0.01, at least one image)", minimum=0, maximum=1),
    "deltaRadius": Param(10.0, "float", "l2 radius of the universal perturbation on the [0,1] pixel scale (the T&R authors' I-BAU runs: 10)", minimum=0),
    "deltaPenalty": Param(1e-3, "float", "weight of ||delta||^2 subtracted from the adversarial CE in the search and the inner loss (official: 0.001)", minimum=0),
    "evalEvery": Param(1, "int", "evaluate CA/ASR on the test sets every N rounds (reporting only, never selection); 0 = only at the end", minimum=0),
}

FIXED_POINT_TOLERANCE = 1e-10  # stop the hypergradient iteration early once it no longer moves (official value)


def fixed_point_hypergradient_loss(outer_loss: torch.Tensor, mapped: torch.Tensor, inner: torch.Tensor, steps: int, tolerance: float = FIXED_POINT_TOLERANCE) -> torch.Tensor:
    """A scalar whose gradient with respect to the outer parameters theta is the implicit hypergradient.

    `inner` is the leaf tensor delta (requires grad), `outer_loss` = L1(delta, theta) and
    `mapped` = Phi(delta, theta), the fixed-point map, both built from it with graphs (Phi with
    create_graph). With J = dPhi/ddelta, v_1 = dL1/ddelta and v_{k+1} = J^T v_k + dL1/ddelta
    (v_K ~ (I - J)^-T dL1/ddelta), the hypergradient is dL1/dtheta + (dPhi/dtheta)^T v_K, which is
    the gradient of L1 + <stop_grad(v_K), Phi>. Returning that scalar lets the ordinary training
    loop's backward and optimizer step apply the update.
    """
    (grad_outer,) = torch.autograd.grad(outer_loss, inner, retain_graph=True, allow_unused=True)
    if grad_outer is None:  # the outer loss does not see delta: the hypergradient is the plain gradient
        grad_outer = torch.zeros_like(inner)
    v = grad_outer
    for _ in range(steps - 1):
        (jacobian_t_v,) = torch.autograd.grad(mapped, inner, grad_outputs=v, retain_graph=True)
        updated = jacobian_t_v + grad_outer
        converged = float((updated - v).norm()) < tolerance
        v = updated
        if converged:
            break
    return outer_loss + (v.detach() * mapped).sum()


def adversarial_inner_loss(model, x: torch.Tensor, y: torch.Tensor, delta: torch.Tensor, penalty: float) -> torch.Tensor:
    """-CE(f(x + delta), y) + penalty * ||delta||^2: minimised by the perturbation (I-BAU's inner loss)."""
    return -F.cross_entropy(model(x + delta).float(), y) + penalty * delta.float().pow(2).sum()


def search_universal_perturbation(model, data: DeviceData, order: torch.Tensor, *, batch_size: int, lr: float, radius: float, penalty: float, amp_dtype=None) -> torch.Tensor:
    """One pass of SGD over `data` in `order` from delta = 0, labels = the model's predictions,
    projecting onto the l2 ball after every step. Returns delta, 1 x C x H x W."""
    model.eval()
    c = data.images.shape[3]
    delta = torch.zeros(1, c, *data.images.shape[1:3], device=data.device)
    for start in range(0, len(order), batch_size):
        x = to_float_nchw(data.images[order[start : start + batch_size]])
        with autocast_for(data.device, amp_dtype):
            with torch.no_grad():
                pseudo_labels = model(x).argmax(dim=1)
            delta.requires_grad_(True)
            loss = adversarial_inner_loss(model, x, pseudo_labels, delta, penalty)
        (grad,) = torch.autograd.grad(loss, delta)
        delta = project_l2_ball(delta.detach() - lr * grad, radius)
    return delta


@dataclass
class UnlearningState:
    delta: torch.Tensor  # the current round's universal perturbation
    inner_x: torch.Tensor  # the inner loss's fixed batch
    inner_y: torch.Tensor

    def state_dict(self) -> torch.Tensor:  # what a checkpoint of the unlearning phase keeps besides the model
        return self.delta.detach().cpu()

    def load_state_dict(self, delta: torch.Tensor) -> None:
        self.delta = delta.to(self.inner_x.device)


def unlearning_loss(model, state: UnlearningState, hp: dict):
    fraction, penalty, step, k = hp["perturbedFraction"], hp["deltaPenalty"], hp["fixedPointStep"], hp["hypergradSteps"]

    def loss_fn(x: torch.Tensor, y: torch.Tensor, generator: torch.Generator):
        n = x.shape[0]
        delta = state.delta.detach().clone().requires_grad_(True)
        chosen = torch.randperm(n, generator=generator)[: max(1, int(n * fraction))].to(x.device)
        patch = torch.zeros(n, 1, 1, 1, device=x.device)
        patch[chosen] = 1.0
        outer = F.cross_entropy(model(x + patch * delta).float(), y)
        inner = adversarial_inner_loss(model, state.inner_x, state.inner_y, delta, penalty)
        (inner_grad,) = torch.autograd.grad(inner, delta, create_graph=True)
        surrogate = fixed_point_hypergradient_loss(outer, delta - step * inner_grad, delta, k)
        return surrogate, {"ce": outer, "innerLoss": inner}

    return loss_fn


def perturbation_order(ctx: RunContext, data: DeviceData, round_index: int) -> torch.Tensor:
    generator = torch.Generator().manual_seed(derive_seed(ctx.spec.seed, "ibau-perturbation", round_index))
    return torch.randperm(len(data), generator=generator).to(data.device)


@METHODS.register(
    "I_BAU",
    description="Implicit Backdoor Adversarial Unlearning: unlearn the worst universal perturbation found on the clean holdout, with an implicit hypergradient",
    kind="post-training",
    hyperparameters=HYPERPARAMETERS,
    order=13,
)
def run(ctx: RunContext) -> dict:
    hp = ctx.hp
    runner = PhaseRunner(ctx)
    model, before = starting_model(ctx, runner)
    holdout = ctx.device_data("holdout")
    rounds, batch_size = hp["epochs"], hp["unlearnBatchSize"]

    search_seconds = 0.0

    def search(round_index: int) -> torch.Tensor:
        nonlocal search_seconds
        started = time.perf_counter()
        delta = search_universal_perturbation(
            model, holdout, perturbation_order(ctx, holdout, round_index), batch_size=batch_size,
            lr=hp["innerLr"], radius=hp["deltaRadius"], penalty=hp["deltaPenalty"], amp_dtype=ctx.amp_dtype,
        )
        search_seconds += time.perf_counter() - started
        return delta

    first = runner.run(Step("first-search", lambda: {"delta": search(0).cpu()}))  # round 0's perturbation
    state = UnlearningState(delta=first["delta"].to(ctx.device), inner_x=to_float_nchw(holdout.images[:batch_size]), inner_y=holdout.labels[:batch_size])

    def on_epoch_end(epoch: int) -> dict:
        metrics = {**epoch_metrics(ctx, model, epoch, rounds), "deltaNorm": float(state.delta.norm())}
        if epoch + 1 < rounds:
            state.delta = search(epoch + 1)  # saved with this epoch's checkpoint, so a resume reuses it
        return metrics

    unlearn = runner.run(Phase(
        name=STAGE,
        epochs=rounds,
        batch_size=batch_size,
        lr=hp["outerLr"],
        weight_decay=0.0,  # official: Adam without weight decay
        data=holdout,
        parameters=list(model.parameters()),
        loss_fn=unlearning_loss(model, state, hp),
        set_modes=model.eval,  # BN statistics frozen, as in the official code
        saves={"model": model, "delta": state},
        augment="none",  # the official unlearning set is not augmented
        on_epoch_end=on_epoch_end,
    ))
    final = evaluate(ctx, model)
    return {
        "model": model,
        "metrics": {
            **final, "mse": None, "beforeAsr": before.get("beforeAsr"), "beforeCa": before.get("beforeCa"),
            "holdoutAccuracy": holdout_accuracy(ctx, model), "deltaNorm": float(state.delta.norm()),
        },
        "history": {STAGE: unlearn["history"]},
        "timings": {"pretrainSeconds": before.get("pretrainSeconds", 0.0), "perturbationSearchSeconds": search_seconds, "unlearnSeconds": unlearn["seconds"]},
        "imagesPerSecond": {STAGE: unlearn["imagesPerSecond"]},
        "resolved": {"innerLrMeans": "perturbation-search SGD step (batch_lr)", "perturbedPerBatch": max(1, int(batch_size * hp["perturbedFraction"]))},
    }
