import numpy as np
import pytest
import torch

from advprune.attacks import pgd
from advprune.models import MLP
from advprune.training import (
    AdversarialTrainer,
    Callback,
    batched_forward,
    resolve_device,
    torch_generator,
)
from advprune.training._checkpoint import read_checkpoint


def robust_and_weak_features(n, *, d_weak=30, seed=0):
    """A robust feature (strong, 95% correct, margin 3) and many weak ones.

    Standard training leans on the weak features, each moved against its
    class by an eps=1 attack (Tsipras et al. 2019); adversarial training has
    to rely on the robust one.
    """
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n)
    sign = 2.0 * y - 1
    flip = np.where(rng.uniform(size=n) < 0.95, 1.0, -1.0)
    robust = 3.0 * sign * flip + 0.1 * rng.standard_normal(n)
    weak = 0.5 * sign[:, None] + rng.standard_normal((n, d_weak))
    return np.column_stack([robust, weak]).astype(np.float32), y


def make_model(d, seed=0):
    torch.manual_seed(seed)
    return MLP(d, 2, hidden_sizes=(32,))


def accuracies(model, X, y, eps):
    model.eval()
    x, t = torch.as_tensor(X), torch.as_tensor(y)
    x_adv = pgd(
        model,
        x,
        t,
        eps=eps,
        steps=20,
        bounds=None,
        generator=torch.Generator().manual_seed(1),
    )
    with torch.no_grad():
        clean = (model(x).argmax(1) == t).float().mean().item()
        robust = (model(x_adv).argmax(1) == t).float().mean().item()
    return clean, robust


def train(method, X, y, *, record=None, epochs=15, seed=0, **kwargs):
    model = make_model(X.shape[1])
    kwargs.setdefault("lr", 0.05)
    trainer = AdversarialTrainer(
        model,
        method=method,
        eps=1.0,
        attack_steps=5,
        epochs=epochs,
        batch_size=100,
        bounds=None,
        device="cpu",
        random_state=seed,
        **kwargs,
    )
    dynamics = trainer.fit(X, y, record=record)
    return model, trainer, dynamics


@pytest.fixture(scope="module")
def toy():
    X, y = robust_and_weak_features(1200)
    return X[:1000], y[:1000], X[1000:], y[1000:]


@pytest.mark.parametrize("method", ["pgd", "trades"])
def test_adversarial_training_is_robust_where_standard_is_not(toy, method):
    X, y, X_test, y_test = toy
    standard, _, _ = train("standard", X, y)
    robust, _, _ = train(method, X, y)
    std_clean, std_robust = accuracies(standard, X_test, y_test, eps=1.0)
    at_clean, at_robust = accuracies(robust, X_test, y_test, eps=1.0)
    assert std_clean > 0.95
    assert std_robust < 0.3
    assert at_clean > 0.85
    assert at_robust > 0.8
    assert at_robust > std_robust + 0.5


def test_recordings_have_documented_shapes_and_ranges(toy):
    X, y = toy[0][:300], toy[1][:300]
    indices = np.array([5, 0, 299, 17])
    model = make_model(X.shape[1])
    trainer = AdversarialTrainer(
        model,
        eps=1.0,
        attack_steps=3,
        epochs=4,
        batch_size=64,
        bounds=None,
        device="cpu",
        random_state=0,
    )
    epoch = trainer.fit(
        X, y, record_indices=indices, record="epoch", record_probas=True
    )
    assert epoch.adversarial.shape == epoch.clean.shape == (4, 4)
    assert epoch.adversarial.dtype == epoch.clean.dtype == np.float32
    assert epoch.adversarial_probas.shape == epoch.clean_probas.shape == (4, 4, 2)
    assert epoch.adversarial_probas.dtype == np.float16
    np.testing.assert_array_equal(epoch.indices, indices)
    assert ((epoch.adversarial >= 0) & (epoch.adversarial <= 1)).all()
    # The attack lowers the true-class probability on average.
    assert epoch.adversarial.mean() < epoch.clean.mean()
    # The series is the probas' true-class column (up to float16 rounding).
    true = epoch.clean_probas[:, np.arange(4), y[indices]]
    np.testing.assert_allclose(true, epoch.clean, atol=1e-3)

    online = AdversarialTrainer(
        make_model(X.shape[1]),
        eps=1.0,
        attack_steps=3,
        epochs=4,
        batch_size=64,
        bounds=None,
        device="cpu",
        random_state=0,
    ).fit(X, y, record_indices=indices, record="online", record_probas=True)
    assert online.adversarial.shape == (4, 4)
    assert online.clean is None and online.clean_probas is None
    assert not np.isnan(online.adversarial).any()


def test_recordings_identical_across_runs_with_same_seed(toy):
    X, y = toy[0][:300], toy[1][:300]
    for record in ("epoch", "online"):
        a = train("pgd", X, y, record=record, epochs=3)[2]
        b = train("pgd", X, y, record=record, epochs=3)[2]
        np.testing.assert_array_equal(a.adversarial, b.adversarial)
    c = train("pgd", X, y, record="epoch", epochs=3, seed=1)[2]
    assert not np.array_equal(a.adversarial, c.adversarial)


def test_recording_does_not_change_the_training_run(toy):
    X, y = toy[0][:300], toy[1][:300]
    states = []
    for record in (None, "online", "epoch"):
        model, trainer, _ = train("pgd", X, y, record=record, epochs=3)
        states.append(torch.nn.utils.parameters_to_vector(model.parameters()))
    torch.testing.assert_close(states[0], states[1], rtol=0, atol=0)
    torch.testing.assert_close(states[0], states[2], rtol=0, atol=0)


def test_online_recording_reads_the_training_logits(toy):
    X, y = toy[0][:200], toy[1][:200]

    class Spy(Callback):
        seen = []

        def on_batch_end(self, trainer, indices, logits, y):
            if trainer.epoch_ == 1:
                probas = torch.softmax(logits.detach(), 1)
                self.seen.append(
                    (indices.numpy(), probas.gather(1, y[:, None]).squeeze(1).numpy())
                )

    model = make_model(X.shape[1])
    dynamics = AdversarialTrainer(
        model,
        eps=1.0,
        attack_steps=2,
        epochs=2,
        batch_size=50,
        bounds=None,
        device="cpu",
        random_state=0,
    ).fit(X, y, record="online", callbacks=[Spy()])
    for indices, probas in Spy.seen:
        np.testing.assert_allclose(dynamics.adversarial[1, indices], probas, rtol=1e-6)


def test_history_and_schedules(toy):
    X, y = toy[0][:200], toy[1][:200]
    for schedule in ("cosine", "multistep", "constant"):
        for optimizer in ("sgd", "adam"):
            _, trainer, _ = train(
                "pgd", X, y, epochs=2, schedule=schedule, optimizer=optimizer, lr=0.01
            )
            assert [h["epoch"] for h in trainer.history_] == [0, 1]
            assert all(np.isfinite(h["loss"]) for h in trainer.history_)


def test_fit_leaves_inputs_untouched_and_accepts_memmap(toy, tmp_path):
    X, y = toy[0][:100], toy[1][:100]
    path = tmp_path / "X.npy"
    np.save(path, X)
    X_map = np.load(path, mmap_mode="r")
    y_ro = y.copy()
    y_ro.setflags(write=False)
    train("pgd", X_map, y_ro, epochs=1, record="epoch")
    np.testing.assert_array_equal(np.load(path), X)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"method": "fgsm"}, "method"),
        ({"optimizer": "rmsprop"}, "optimizer"),
        ({"schedule": "step"}, "schedule"),
        ({"epochs": 0}, "epochs"),
        ({"batch_size": 1.5}, "batch_size"),
        ({"eps": -1.0}, "eps"),
    ],
)
def test_bad_parameters_raise_before_training(toy, kwargs, match):
    X, y = toy[0][:50], toy[1][:50]
    trainer = AdversarialTrainer(make_model(X.shape[1]), device="cpu", **kwargs)
    with pytest.raises(ValueError, match=match):
        trainer.fit(X, y)


@pytest.mark.parametrize(
    ("X", "y", "error", "match"),
    [
        (np.zeros(10), np.zeros(10, int), ValueError, "X must have shape"),
        (np.zeros((10, 2)), np.zeros(9, int), ValueError, "y must be 1-D"),
        (np.zeros((10, 2)), np.zeros(10), TypeError, "integer"),
        (np.full((10, 2), np.nan), np.zeros(10, int), ValueError, "NaN"),
    ],
)
def test_bad_data_raises(X, y, error, match):
    trainer = AdversarialTrainer(make_model(2), device="cpu")
    with pytest.raises(error, match=match):
        trainer.fit(X, y)


def test_bad_record_arguments_raise(toy):
    X, y = toy[0][:50], toy[1][:50]
    trainer = AdversarialTrainer(make_model(X.shape[1]), device="cpu")
    with pytest.raises(ValueError, match="record"):
        trainer.fit(X, y, record="always")
    with pytest.raises(ValueError, match="record_indices"):
        trainer.fit(X, y, record_indices=[0, 50])


def test_helpers():
    assert resolve_device("cpu").type == "cpu"
    assert resolve_device("auto").type in ("cpu", "cuda")
    with pytest.raises(ValueError, match="device"):
        resolve_device("tpu:x")
    a = torch.rand(3, generator=torch_generator(3))
    b = torch.rand(3, generator=torch_generator(3))
    torch.testing.assert_close(a, b)
    model = torch.nn.Linear(4, 3)
    out = batched_forward(model, np.ones((7, 4), np.float32), batch_size=3)
    assert out.shape == (7, 3)
    with pytest.raises(ValueError, match="at least one"):
        batched_forward(model, np.ones((0, 4), np.float32))


@pytest.mark.parametrize("amp", [True, "float16", np.True_])
def test_float16_amp_on_cpu_warns_and_trains_in_float32(toy, amp):
    X, y = toy[0][:50], toy[1][:50]
    trainer = AdversarialTrainer(
        make_model(X.shape[1]), amp=amp, epochs=1, device="cpu", bounds=None
    )
    with pytest.warns(UserWarning, match="amp='float16'"):
        trainer.fit(X, y, record=None)
    assert trainer.amp_ is False


@pytest.mark.parametrize("method", ["pgd", "trades"])
def test_bfloat16_amp_autocasts_every_forward_pass_on_cpu(toy, method):
    X, y = toy[0][:200], toy[1][:200]
    model = make_model(X.shape[1])
    dtypes = set()
    model.head.register_forward_hook(lambda m, i, out: dtypes.add(out.dtype))
    trainer = AdversarialTrainer(
        model, amp="bfloat16", method=method, epochs=2, device="cpu", bounds=None
    )
    dynamics = trainer.fit(X, y, record="epoch", record_probas=True)
    assert trainer.amp_ == "bfloat16"
    assert dtypes == {torch.bfloat16}
    assert not trainer.scaler_.is_enabled()
    assert np.isfinite([h["loss"] for h in trainer.history_]).all()
    # Recorded probabilities are rows that sum to one (stored as float16).
    np.testing.assert_allclose(
        dynamics.clean_probas.astype(np.float64).sum(axis=-1), 1.0, atol=2e-3
    )
    assert ((dynamics.clean >= 0) & (dynamics.clean <= 1)).all()


def test_numpy_spellings_of_amp_resume_the_same_run(toy, tmp_path):
    # A numpy string is the same precision, so the same run key: the second fit
    # resumes the first one's checkpoint instead of refusing it.
    X, y = toy[0][:60], toy[1][:60]

    def fit(amp, epochs):
        trainer = AdversarialTrainer(
            make_model(X.shape[1]), amp=amp, epochs=epochs, bounds=None,
            device="cpu", random_state=0,
        )  # fmt: skip
        trainer.fit(X, y, record=None, checkpoint_dir=tmp_path)
        return trainer

    assert type(fit(np.str_("bfloat16"), 2).amp_) is str
    assert len(fit("bfloat16", 2).history_) == 2


def test_amp_names_its_options():
    trainer = AdversarialTrainer(make_model(4), amp="float8", device="cpu")
    with pytest.raises(ValueError, match="'amp' parameter"):
        trainer.fit(np.zeros((8, 4), np.float32), np.arange(8) % 2, record=None)


class _Interrupt(Callback):
    """Stops the run, as a crash would, at the end of a given epoch."""

    def __init__(self, epoch):
        self.epoch = epoch

    def on_epoch_end(self, trainer, epoch):
        if epoch == self.epoch:
            raise KeyboardInterrupt


@pytest.mark.parametrize("record", ["epoch", "online"])
def test_checkpoint_resume_gives_identical_results(toy, tmp_path, record):
    X, y = toy[0][:200], toy[1][:200]

    def run(**kwargs):
        model = make_model(X.shape[1])
        trainer = AdversarialTrainer(
            model,
            eps=1.0,
            attack_steps=2,
            epochs=4,
            batch_size=50,
            bounds=None,
            device="cpu",
            random_state=0,
        )
        dynamics = trainer.fit(X, y, record=record, record_probas=True, **kwargs)
        return model, trainer, dynamics

    model, trainer, expected = run()
    with pytest.raises(KeyboardInterrupt):
        run(checkpoint_dir=tmp_path, callbacks=[_Interrupt(2)])
    assert read_checkpoint(tmp_path / "checkpoint.pt")["epoch"] == 1
    resumed_model, resumed_trainer, resumed = run(checkpoint_dir=tmp_path)
    np.testing.assert_array_equal(resumed.adversarial, expected.adversarial)
    np.testing.assert_array_equal(
        resumed.adversarial_probas, expected.adversarial_probas
    )
    torch.testing.assert_close(
        torch.nn.utils.parameters_to_vector(resumed_model.parameters()),
        torch.nn.utils.parameters_to_vector(model.parameters()),
        rtol=0,
        atol=0,
    )
    assert [h["epoch"] for h in resumed_trainer.history_] == [0, 1, 2, 3]
    assert not list(tmp_path.glob("*.tmp")) and not list(tmp_path.glob(".*.tmp"))


def test_a_last_batch_of_one_sample_joins_the_one_before(toy):
    # Batch normalisation cannot train on one sample: 33 rows at batch 16 are
    # two batches, of 16 and 17, and the run trains.
    X, y = toy[0][:33], toy[1][:33]
    torch.manual_seed(0)
    model = torch.nn.Sequential(
        torch.nn.Linear(X.shape[1], 8), torch.nn.BatchNorm1d(8), torch.nn.Linear(8, 2)
    )
    sizes = []

    class Sizes(Callback):
        def on_batch_end(self, trainer, indices=None, **kwargs):
            sizes.append(len(indices))

    AdversarialTrainer(
        model, epochs=2, batch_size=16, bounds=None, device="cpu", random_state=0
    ).fit(X, y, callbacks=[Sizes()])
    assert sizes == [16, 17, 16, 17]


def test_checkpoint_of_another_measuring_attack_is_refused(toy, tmp_path):
    # The recorded dynamics depend on the recording's PGD steps, which the
    # training parameters do not hold.
    X, y = toy[0][:100], toy[1][:100]

    def fit(steps):
        AdversarialTrainer(
            make_model(X.shape[1]), epochs=1, bounds=None, device="cpu", random_state=0
        ).fit(X, y, record="epoch", record_attack_steps=steps, checkpoint_dir=tmp_path)

    fit(1)
    with pytest.raises(ValueError, match="different run"):
        fit(3)


def test_checkpoint_of_another_run_is_refused(toy, tmp_path):
    X, y = toy[0][:100], toy[1][:100]
    AdversarialTrainer(
        make_model(X.shape[1]), epochs=1, bounds=None, device="cpu", random_state=0
    ).fit(X, y, checkpoint_dir=tmp_path)
    with pytest.raises(ValueError, match="different run"):
        AdversarialTrainer(
            make_model(X.shape[1]), epochs=1, bounds=None, device="cpu", random_state=1
        ).fit(X, y, checkpoint_dir=tmp_path)
