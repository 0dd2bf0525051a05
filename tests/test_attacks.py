import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from advprune.attacks import cross_entropy_loss, cw_margin_loss, fgsm, pgd
from advprune.models import MLP, SmallCNN


def identity_linear():
    """Two-class linear model with logits z = x (2 features)."""
    model = nn.Linear(2, 2)
    with torch.no_grad():
        model.weight.copy_(torch.eye(2))
        model.bias.zero_()
    return model


def seeded(seed):
    return torch.Generator().manual_seed(seed)


@pytest.fixture(scope="module")
def sphere_model():
    """MLP fitted to the 20-d concentric-spheres problem (Gilmer et al. 2018).

    The decision boundary is curved, so PGD finds stronger perturbations than
    the single FGSM step.
    """
    X = torch.rand(512, 20, generator=seeded(0))
    radius = (X - 0.5).pow(2).sum(1)
    y = (radius > radius.median()).long()
    torch.manual_seed(0)
    model = MLP(20, 2, hidden_sizes=(64, 64))
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(300):
        loss = F.cross_entropy(model(X), y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    model.eval()
    assert (model(X).argmax(1) == y).float().mean() == 1.0
    return model, X, y


def mean_ce(model, x, y):
    with torch.no_grad():
        return F.cross_entropy(model(x), y).item()


# -- losses -----------------------------------------------------------------


def test_cross_entropy_loss_hand_values():
    logits = torch.tensor([[0.0, 0.0], [2.0, 0.0], [0.0, math.log(3.0)]])
    expected = torch.tensor([math.log(2.0), math.log(1 + math.exp(-2.0)), math.log(4)])
    got = cross_entropy_loss(logits, torch.tensor([1, 0, 0]))
    torch.testing.assert_close(got, expected)


def test_cw_margin_loss_hand_values():
    logits = torch.tensor([[3.0, 1.0, 2.0], [0.0, 5.0, 1.0], [2.0, 2.0, -1.0]])
    got = cw_margin_loss(logits, torch.tensor([0, 2, 1]))
    # Best wrong class minus true class: 2-3, 5-1, and a tie 2-2.
    torch.testing.assert_close(got, torch.tensor([-1.0, 4.0, 0.0]))


def test_losses_promote_half_precision_logits():
    logits = torch.tensor([[1.0, 0.0]], dtype=torch.bfloat16)
    y = torch.tensor([0])
    assert cross_entropy_loss(logits, y).dtype == torch.float32
    assert cw_margin_loss(logits, y).dtype == torch.float32


@pytest.mark.parametrize("loss_fn", [cross_entropy_loss, cw_margin_loss])
def test_losses_reject_bad_inputs(loss_fn):
    with pytest.raises(ValueError, match="logits"):
        loss_fn(torch.zeros(3), torch.tensor([0, 1, 0]))
    with pytest.raises(ValueError, match="same number"):
        loss_fn(torch.zeros(3, 2), torch.tensor([0, 1]))
    with pytest.raises(TypeError, match="y"):
        loss_fn(torch.zeros(2, 2), torch.tensor([0.0, 1.0]))


# -- hand-worked steps on a linear model --------------------------------------


def test_fgsm_linf_hand_value():
    # z = x, y = 0: the CE gradient is (p0 - 1, p1), sign (-, +).
    x, y = torch.tensor([[0.5, 0.5]]), torch.tensor([0])
    got = fgsm(identity_linear(), x, y, eps=0.1)
    torch.testing.assert_close(got, torch.tensor([[0.4, 0.6]]))


def test_fgsm_l2_hand_value():
    x, y = torch.tensor([[0.5, 0.5]]), torch.tensor([0])
    got = fgsm(identity_linear(), x, y, eps=0.1, norm="l2")
    step = 0.1 / math.sqrt(2.0)
    torch.testing.assert_close(got, torch.tensor([[0.5 - step, 0.5 + step]]))


def test_pgd_linf_on_linear_model_ends_at_the_corner():
    x, y = torch.tensor([[0.5, 0.5], [0.3, 0.9]]), torch.tensor([0, 1])
    got = pgd(identity_linear(), x, y, eps=0.05, random_start=False)
    torch.testing.assert_close(got, torch.tensor([[0.45, 0.55], [0.35, 0.85]]))


def test_pgd_clamps_to_bounds_and_none_does_not():
    # y = 0 pushes feature 0 down and feature 1 up, out of [0, 1].
    x, y = torch.tensor([[0.0, 1.0]]), torch.tensor([0])
    clamped = pgd(identity_linear(), x, y, eps=0.1, random_start=False)
    torch.testing.assert_close(clamped, x)
    free = pgd(identity_linear(), x, y, eps=0.1, random_start=False, bounds=None)
    torch.testing.assert_close(free, torch.tensor([[-0.1, 1.1]]))
    shifted = pgd(
        identity_linear(), x, y, eps=0.1, random_start=False, bounds=(-1.0, 0.95)
    )
    torch.testing.assert_close(shifted, torch.tensor([[-0.1, 0.95]]))


def test_fgsm_random_start_uses_step_of_1_25_eps():
    eps = 0.1
    x = torch.full((400, 2), 0.5)
    y = torch.zeros(400, dtype=torch.long)
    got = fgsm(identity_linear(), x, y, eps=eps, random_start=True, generator=seeded(0))
    delta = got - x
    # Feature 0 moves by -1.25 eps from a start in [-eps, eps]: it ends in
    # [-eps, -0.25 eps], and reaches -0.25 eps only with the step of 1.25 eps.
    assert delta[:, 0].min() >= -eps - 1e-6
    assert delta[:, 0].max() <= -0.25 * eps + 1e-6
    assert delta[:, 0].max() > -0.3 * eps
    assert delta[:, 1].min() >= 0.25 * eps - 1e-6


# -- constraints --------------------------------------------------------------


@pytest.mark.parametrize("norm", ["linf", "l2"])
def test_pgd_stays_in_ball_and_bounds(sphere_model, norm):
    model, X, y = sphere_model
    eps = 0.05 if norm == "linf" else 0.25
    x_adv = pgd(model, X, y, eps=eps, norm=norm, steps=7, generator=seeded(1))
    delta = x_adv - X
    size = delta.abs().amax(1) if norm == "linf" else delta.norm(dim=1)
    assert size.max() <= eps + 1e-6
    assert size.max() > 0.9 * eps
    assert x_adv.min() >= 0.0
    assert x_adv.max() <= 1.0


@pytest.mark.parametrize("norm", ["linf", "l2"])
def test_pgd_ball_is_per_sample_over_image_dims(norm):
    torch.manual_seed(0)
    model = SmallCNN(1, 3, 6).eval()
    x = torch.rand(4, 1, 6, 6, generator=seeded(0))
    y = torch.tensor([0, 1, 2, 0])
    eps = 0.1 if norm == "linf" else 0.5
    x_adv = pgd(model, x, y, eps=eps, norm=norm, steps=5, bounds=None)
    delta = (x_adv - x).flatten(1)
    size = delta.abs().amax(1) if norm == "linf" else delta.norm(dim=1)
    torch.testing.assert_close(size, torch.full((4,), eps), atol=1e-5, rtol=0)
    assert x_adv.shape == x.shape


def test_pgd_l2_random_start_is_uniform_in_ball():
    # A model whose gradient is zero leaves the random start where it is.
    def flat_model(z):
        return torch.zeros(len(z), 2) + 0.0 * z.sum(1, keepdim=True)

    n, d, eps = 4000, 3, 0.5
    x = torch.zeros(n, d)
    y = torch.zeros(n, dtype=torch.long)
    start = pgd(
        flat_model, x, y, eps=eps, norm="l2", steps=1, bounds=None, generator=seeded(0)
    )
    radius = start.norm(dim=1)
    assert radius.max() <= eps + 1e-6
    # Uniform in the ball: (r / eps)^d is uniform on [0, 1].
    u = (radius / eps) ** d
    assert abs(u.mean().item() - 0.5) < 0.02
    assert abs((u < 0.25).float().mean().item() - 0.25) < 0.03
    assert start.mean(0).abs().max() < 0.02


def test_pgd_linf_random_start_is_uniform_in_cube():
    def flat_model(z):
        return torch.zeros(len(z), 2) + 0.0 * z.sum(1, keepdim=True)

    x = torch.zeros(4000, 2)
    y = torch.zeros(4000, dtype=torch.long)
    start = pgd(flat_model, x, y, eps=0.2, steps=1, bounds=None, generator=seeded(0))
    assert start.abs().max() <= 0.2 + 1e-6
    assert abs(start.abs().mean().item() - 0.1) < 0.005


# -- strength -----------------------------------------------------------------


@pytest.mark.parametrize("norm, eps", [("linf", 0.05), ("l2", 0.25)])
def test_pgd_beats_fgsm_beats_clean(sphere_model, norm, eps):
    model, X, y = sphere_model
    clean = mean_ce(model, X, y)
    one_step = mean_ce(model, fgsm(model, X, y, eps=eps, norm=norm), y)
    iterative = mean_ce(
        model, pgd(model, X, y, eps=eps, norm=norm, steps=20, generator=seeded(1)), y
    )
    assert one_step > clean + 0.5
    assert iterative > 1.05 * one_step


def test_pgd_cw_loss_raises_margin_and_fools_model(sphere_model):
    model, X, y = sphere_model
    x_adv = pgd(model, X, y, eps=0.05, loss="cw", steps=20, generator=seeded(1))
    with torch.no_grad():
        clean_margin = cw_margin_loss(model(X), y)
        adv_margin = cw_margin_loss(model(x_adv), y)
        accuracy = (model(x_adv).argmax(1) == y).float().mean()
    assert (adv_margin >= clean_margin - 1e-5).all()
    assert adv_margin.mean() > clean_margin.mean() + 1.0
    assert accuracy < 0.5


def test_pgd_callable_loss_with_soft_targets(sphere_model):
    model, X, y = sphere_model
    with torch.no_grad():
        clean_log_probas = F.log_softmax(model(X), dim=1)

    def kl_to_clean(logits, target_log_probas):
        log_probas = F.log_softmax(logits, dim=1)
        return F.kl_div(
            log_probas, target_log_probas, log_target=True, reduction="none"
        ).sum(1)

    x_adv = pgd(
        model, X, clean_log_probas, eps=0.05, loss=kl_to_clean, generator=seeded(1)
    )
    with torch.no_grad():
        kl = kl_to_clean(model(x_adv), clean_log_probas)
    assert kl.mean() > 0.1
    assert (x_adv - X).abs().max() <= 0.05 + 1e-6


def test_pgd_callable_loss_must_be_per_sample():
    x, y = torch.rand(3, 2), torch.tensor([0, 1, 0])
    with pytest.raises(ValueError, match="per sample"):
        pgd(identity_linear(), x, y, loss=lambda z, t: F.cross_entropy(z, t))


def test_pgd_per_sample_result_independent_of_batch(sphere_model):
    model, X, y = sphere_model
    together = pgd(model, X[:32], y[:32], eps=0.05, random_start=False)
    alone = torch.cat(
        [
            pgd(model, X[i : i + 1], y[i : i + 1], eps=0.05, random_start=False)
            for i in range(32)
        ]
    )
    torch.testing.assert_close(together, alone)


# -- side effects -------------------------------------------------------------


class ModeRecorder(nn.Module):
    def __init__(self):
        super().__init__()
        self.linear = nn.Linear(4, 3)
        self.dropout = nn.Dropout(0.0)
        self.bn = nn.BatchNorm1d(4)
        self.modes = []

    def forward(self, x):
        self.modes.append(self.training)
        return self.linear(self.dropout(self.bn(x)))


@pytest.mark.parametrize("training", [True, False])
@pytest.mark.parametrize("attack", [pgd, fgsm])
def test_attack_keeps_mode_and_runs_in_given_mode(training, attack):
    model = ModeRecorder().train(training)
    attack(model, torch.rand(8, 4), torch.randint(0, 3, (8,)), eps=0.1)
    assert model.modes and all(mode == training for mode in model.modes)
    assert all(m.training == training for m in model.modules())


@pytest.mark.parametrize("attack", [pgd, fgsm])
def test_attack_leaves_parameter_gradients_alone(attack):
    torch.manual_seed(0)
    model = MLP(4, 3, hidden_sizes=(5,))
    existing = torch.randn_like(model.head.weight)
    model.head.weight.grad = existing.clone()
    attack(model, torch.rand(8, 4), torch.randint(0, 3, (8,)), eps=0.1)
    torch.testing.assert_close(model.head.weight.grad, existing, rtol=0, atol=0)
    others = [p for name, p in model.named_parameters() if name != "head.weight"]
    assert all(p.grad is None for p in others)


def test_pgd_does_not_modify_input_and_returns_detached_copy():
    model = identity_linear()
    x = torch.tensor([[0.5, 0.5]], requires_grad=True)
    before = x.detach().clone()
    x_adv = pgd(model, x, torch.tensor([0]), eps=0.1)
    torch.testing.assert_close(x.detach(), before, rtol=0, atol=0)
    assert not x_adv.requires_grad
    assert x.grad is None
    zero = pgd(model, x, torch.tensor([0]), eps=0.0)
    torch.testing.assert_close(zero, before, rtol=0, atol=0)
    assert zero.data_ptr() != x.data_ptr()


def test_pgd_works_inside_no_grad():
    x, y = torch.tensor([[0.5, 0.5]]), torch.tensor([0])
    with torch.no_grad():
        got = pgd(identity_linear(), x, y, eps=0.05, random_start=False)
    torch.testing.assert_close(got, torch.tensor([[0.45, 0.55]]))


def test_pgd_under_autocast_keeps_dtype_and_ball(sphere_model):
    model, X, y = sphere_model
    with torch.autocast("cpu", dtype=torch.bfloat16):
        x_adv = pgd(model, X, y, eps=0.05, steps=5, generator=seeded(1))
    assert x_adv.dtype == torch.float32
    assert (x_adv - X).abs().max() <= 0.05 + 1e-6
    assert mean_ce(model, x_adv, y) > mean_ce(model, X, y) + 0.5


def test_pgd_float64_input_keeps_dtype():
    model = identity_linear().double()
    x = torch.tensor([[0.5, 0.5]], dtype=torch.float64)
    x_adv = pgd(model, x, torch.tensor([0]), eps=0.1, generator=seeded(0))
    assert x_adv.dtype == torch.float64


# -- randomness ---------------------------------------------------------------


@pytest.mark.parametrize("norm", ["linf", "l2"])
def test_pgd_is_deterministic_under_generator(sphere_model, norm):
    model, X, y = sphere_model
    first = pgd(model, X, y, eps=0.05, norm=norm, steps=3, generator=seeded(7))
    again = pgd(model, X, y, eps=0.05, norm=norm, steps=3, generator=seeded(7))
    other = pgd(model, X, y, eps=0.05, norm=norm, steps=3, generator=seeded(8))
    torch.testing.assert_close(first, again, rtol=0, atol=0)
    assert not torch.equal(first, other)


def test_pgd_without_generator_follows_global_seed(sphere_model):
    model, X, y = sphere_model
    torch.manual_seed(3)
    first = pgd(model, X, y, eps=0.05, steps=2)
    torch.manual_seed(3)
    again = pgd(model, X, y, eps=0.05, steps=2)
    torch.testing.assert_close(first, again, rtol=0, atol=0)


def test_generator_state_advances_only_with_random_start():
    x, y = torch.rand(4, 2), torch.tensor([0, 1, 0, 1])
    generator = seeded(0)
    pgd(identity_linear(), x, y, random_start=False, generator=generator)
    assert torch.equal(generator.get_state(), seeded(0).get_state())
    pgd(identity_linear(), x, y, generator=generator)
    assert not torch.equal(generator.get_state(), seeded(0).get_state())


# -- validation ---------------------------------------------------------------


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        ({"eps": -0.1}, ValueError, "eps"),
        ({"eps": float("nan")}, ValueError, "eps"),
        ({"eps": "0.1"}, TypeError, "eps"),
        ({"eps": True}, TypeError, "eps"),
        ({"steps": 0}, ValueError, "steps"),
        ({"steps": 2.0}, TypeError, "steps"),
        ({"step_size": 0.0}, ValueError, "step_size"),
        ({"norm": "l1"}, ValueError, "norm"),
        ({"loss": "mse"}, ValueError, "loss"),
        ({"bounds": (1.0, 0.0)}, ValueError, "bounds"),
        ({"bounds": (0.0, 0.0)}, ValueError, "bounds"),
        ({"bounds": (0.0,)}, TypeError, "bounds"),
        ({"bounds": "unit"}, TypeError, "bounds"),
        ({"generator": 0}, TypeError, "generator"),
    ],
)
def test_pgd_rejects_bad_arguments(kwargs, error, match):
    x, y = torch.rand(3, 2), torch.tensor([0, 1, 0])
    with pytest.raises(error, match=match):
        pgd(identity_linear(), x, y, **kwargs)


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        ({"eps": -1.0}, ValueError, "eps"),
        ({"norm": "l0"}, ValueError, "norm"),
        ({"loss": None}, ValueError, "loss"),
        ({"bounds": (2.0, 1.0)}, ValueError, "bounds"),
    ],
)
def test_fgsm_rejects_bad_arguments(kwargs, error, match):
    x, y = torch.rand(3, 2), torch.tensor([0, 1, 0])
    with pytest.raises(error, match=match):
        fgsm(identity_linear(), x, y, **kwargs)


@pytest.mark.parametrize("attack", [pgd, fgsm])
def test_attacks_reject_bad_inputs(attack):
    model = identity_linear()
    with pytest.raises(ValueError, match="batch size"):
        attack(model, torch.rand(3, 2), torch.tensor([0, 1]))
    with pytest.raises(TypeError, match="`x`"):
        attack(model, torch.ones(3, 2, dtype=torch.long), torch.tensor([0, 1, 0]))
    with pytest.raises(TypeError, match="`x`"):
        attack(model, [[0.5, 0.5]], torch.tensor([0]))
    with pytest.raises(ValueError, match="`x`"):
        attack(model, torch.rand(3), torch.tensor([0, 1, 0]))
    with pytest.raises(ValueError, match="integer"):
        attack(model, torch.rand(3, 2), torch.tensor([0.0, 1.0, 0.0]))
    with pytest.raises(TypeError, match="`y`"):
        attack(model, torch.rand(3, 2), [0, 1, 0])
    with pytest.raises(TypeError, match="model"):
        attack("not a model", torch.rand(3, 2), torch.tensor([0, 1, 0]))


@pytest.mark.parametrize("norm", ["linf", "l2"])
def test_pgd_takes_starts_drawn_for_a_larger_batch(norm):
    # The data-parallel trainer draws a batch's starts and attacks some rows.
    from advprune.attacks import _random_start

    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(6, 3))
    x, y = torch.rand(5, 6), torch.tensor([0, 1, 2, 0, 1])
    whole = pgd(model, x, y, 0.1, norm=norm, generator=torch.Generator().manual_seed(3))
    starts = _random_start(
        x.shape,
        0.1,
        norm,
        torch.Generator().manual_seed(3),
        dtype=x.dtype,
        device="cpu",
    )
    rows = torch.tensor([1, 3])
    part = pgd(model, x[rows], y[rows], 0.1, norm=norm, random_start=starts[rows])
    torch.testing.assert_close(part, whole[rows], rtol=0, atol=0)
    with pytest.raises(ValueError, match="random_start"):
        pgd(model, x, y, 0.1, random_start=starts[rows])
