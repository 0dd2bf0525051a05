"""``advprune demo``: the whole method on the embedded digits, in a few minutes.

The story of the paper in miniature, on :func:`advprune.datasets.load_digits_pool`
(the real 8x8 digits that ship with scikit-learn plus a synthetic pool drawn from
a generative model of their training split, with ambiguous and off-class
samples like a generated pool):

1. Prune half of the synthetic pool with :class:`advprune.AdversarialPruner` at
   its defaults (only the digits' attack budget set): a scoring run on a random
   10 % of the pool, every pool sample ranked by the scoring model's confidence.
2. Prune it with the paper's method: dynamic uncertainty of the scoring run
   extrapolated by the 12 nearest scored neighbours (``extrapolation="knn"``
   with the paper's protocol).
3. Adversarially train the default small CNN (:class:`advprune.AdversarialClassifier`,
   PGD-AT, same engine) on the real training digits plus (a) the default's
   pool, (b) the paper's pool, (c) a random pool subset of the same size, (d)
   the full pool, and evaluate each on the real held-out test digits: clean
   accuracy and robust accuracy (:func:`advprune.metrics.robust_accuracy`,
   worst case per sample over PGD with cross-entropy and CW losses).

The results go to a table on stdout, ``results.json``, a histogram of the
default's scores of the off-class pool samples against the others with the
pruning threshold, ``scores.png``, and a bar chart of the clean and robust
accuracy of the four training sets, ``accuracy.png`` (the plots need
matplotlib, the ``plot`` extra). One run is one seed: the comparison over seeds
is ``docs/results.rst``.

The attack budget, eps = 0.2 on pixels in [0, 1] with PGD-5 training, is
chosen in the user guide (section "The demo's settings"), where
``python -m benchmarks.demo_eps`` measures the alternatives.
"""

from __future__ import annotations

import contextlib
import os
import time
from numbers import Integral

import numpy as np
import torch
from sklearn.utils import check_random_state

from . import __version__
from ._io import write_json
from ._plots import accuracy_bars, require_matplotlib, score_histogram
from .classifier import AdversarialClassifier
from .datasets import load_digits_pool
from .metrics import robust_accuracy
from .pruning import AdversarialPruner

__all__ = ["run_demo"]

_METHODS = {
    "pruned": "real + pruned (default)",
    "knn": "real + pruned (paper)",
    "random": "real + random pool",
    "full": "real + full pool",
}
# The paper's method as benchmarks/reproduce.py runs it.
_PAPER = {
    "extrapolation": "knn",
    "record": "epoch",
    "min_steps": None,
    "train_attack_steps": None,
}


def run_demo(
    *,
    n_synthetic=2000,
    prune_ratio=0.5,
    subset_size=0.1,
    eps=0.2,
    epochs=8,
    attack_steps=5,
    scoring_epochs=20,
    window=10,
    eval_steps=20,
    output_dir="advprune-demo",
    random_state=0,
    verbose=True,
):
    """Prune a synthetic digits pool two ways and compare with random and full.

    Prunes the ``prune_ratio`` fraction of a synthetic pool with the LOWEST
    scores (higher = more important = kept) of :class:`AdversarialPruner` at
    its defaults, and of the paper's method (dynamic uncertainty of a scoring
    run on ``subset_size`` of the pool, extrapolated by nearest neighbours).
    Then adversarially trains the default small CNN on the real training
    digits plus each pruned pool, a random pool subset of the same size, and
    the full pool, and evaluates each on the real held-out digits.

    Parameters
    ----------
    n_synthetic : int, default=2000
        Size of the synthetic pool.
    prune_ratio : float in [0, 1), default=0.5
        Fraction of the pool REMOVED.
    subset_size : float in (0, 1] or int, default=0.1
        Pool samples scored directly: a fraction of the pool or a count.
    eps : float, default=0.2
        L-infinity attack budget on pixels in [0, 1], for training, scoring and
        evaluation (see the module docstring for why 0.2).
    epochs : int, default=8
        Epochs of each of the four final training runs.
    attack_steps : int, default=5
        PGD steps of the attacks: the final runs' training, the paper's scoring
        run, the default's measuring pass (which trains with one step); the
        step size is ``2.5 * eps / attack_steps``.
    scoring_epochs : int, default=20
        Epochs of both scoring runs; the paper's must exceed ``window``.
    window : int, default=10
        Window of the paper's dynamic-uncertainty score.
    eval_steps : int, default=20
        PGD steps of each evaluation attack of
        :func:`~advprune.metrics.robust_accuracy` (cross-entropy and CW
        losses, one random start each, worst case per sample).
    output_dir : str or path-like, default="advprune-demo"
        Directory for ``results.json``, ``scores.png`` and ``accuracy.png``;
        created if missing.
    random_state : int, RandomState or None, default=0
        Seeds the data, the scored subset, the random pool subset, the models
        and the attacks. The same integer gives the same numbers on the CPU.
    verbose : bool, default=True
        Print progress, progress bars and the table of results.

    Returns
    -------
    results : dict
        What ``results.json`` holds:

        - ``"settings"``: the parameters above, the device and versions;
        - ``"data"``: sizes of the real training, pool, kept pool, scored
          subset and test sets;
        - ``"scoring"``: per pruner (``"default"``, ``"paper"``), the seconds
          of each stage (``AdversarialPruner.timings_``), their total and the
          cost in forward passes against scoring the whole pool directly
          (``AdversarialPruner.cost_``);
        - ``"results"``: one dict per training set with keys ``"method"``,
          ``"n_train"``, ``"clean_accuracy"``, ``"robust_accuracy"``,
          ``"train_seconds"``, ``"scoring_seconds"`` (0 where nothing was
          scored) and ``"eval_seconds"`` (the robust-accuracy attack);
        - ``"files"``: paths of ``results.json``, ``scores.png`` and
          ``accuracy.png`` (the plots ``None`` when matplotlib is not
          installed);
        - ``"total_seconds"``: wall time of the whole demo.

    Notes
    -----
    Torch runs its CPU operators on one thread during the demo, and the
    previous setting is restored afterwards. The network is so small that each
    operator is microseconds of work: a second thread barely helps on an idle
    machine, and on a busy one every operator waits for the descheduled
    thread (the user guide's "The demo's settings" gives the measurement).

    Examples
    --------
    A very small run (the real demo uses the defaults):

    >>> import tempfile
    >>> from advprune.demo import run_demo
    >>> results = run_demo(n_synthetic=200, subset_size=0.25, epochs=1,
    ...                    attack_steps=1, scoring_epochs=3, window=2, eval_steps=1,
    ...                    output_dir=tempfile.mkdtemp(), verbose=False)
    >>> [row["method"] for row in results["results"]]  # doctest: +NORMALIZE_WHITESPACE
    ['real + pruned (default)', 'real + pruned (paper)', 'real + random pool',
     'real + full pool']
    >>> results["data"]["n_pool_kept"]
    100
    """
    settings = {
        "n_synthetic": n_synthetic,
        "prune_ratio": prune_ratio,
        "subset_size": subset_size,
        "eps": eps,
        "epochs": epochs,
        "attack_steps": attack_steps,
        "scoring_epochs": scoring_epochs,
        "window": window,
        "eval_steps": eval_steps,
        # JSON holds integers and None; a RandomState is recorded by name.
        "random_state": (
            int(random_state)
            if isinstance(random_state, Integral)
            else None
            if random_state is None
            else repr(random_state)
        ),
    }
    with _single_threaded():
        return _run(
            settings, random_state, os.fspath(output_dir), _printer(verbose), verbose
        )


@contextlib.contextmanager
def _single_threaded():
    """Run torch's CPU operators on one thread (see run_demo's Notes)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def _run(settings, random_state, output_dir, say, verbose):
    started = time.perf_counter()
    eps, epochs, attack_steps = (
        settings["eps"],
        settings["epochs"],
        settings["attack_steps"],
    )
    rng = check_random_state(random_state)
    data_seed, pruner_seed, random_seed, model_seed = (
        int(s) for s in rng.randint(np.iinfo(np.int32).max, size=4)
    )
    os.makedirs(output_dir, exist_ok=True)

    data = load_digits_pool(settings["n_synthetic"], random_state=data_seed)
    X_pool, y_pool = data.X_pool, data.y_pool
    say(
        f"digits: {len(data.y_train)} real training, {len(y_pool)} synthetic "
        f"pool, {len(data.y_test)} real test samples; eps = {eps:g}"
    )

    common = {
        "prune_ratio": settings["prune_ratio"],
        "subset_size": settings["subset_size"],
        "epochs": settings["scoring_epochs"],
        "eps": eps,
        "attack_steps": attack_steps,
        "random_state": pruner_seed,
        "verbose": verbose,
    }
    pruners = {
        "default": AdversarialPruner(**common),
        "paper": AdversarialPruner(
            **common, **_PAPER, importance_params={"window": settings["window"]}
        ),
    }
    say(
        f"[1/6] scoring a random {settings['subset_size']:g} of the pool "
        f"({settings['scoring_epochs']} epochs) with the defaults, pruning "
        f"{settings['prune_ratio']:.0%} of the pool"
    )
    pruners["default"].fit(X_pool, y_pool)
    say(
        f"[2/6] the same with the paper's method (PGD-{attack_steps} training, "
        f"dynamic uncertainty, 12 nearest neighbours)"
    )
    pruners["paper"].fit(X_pool, y_pool)
    kept = pruners["default"].get_support(indices=True)

    # The random baseline keeps as many pool samples as the pruner, drawn
    # uniformly, so that only the choice of samples differs.
    random_kept = np.sort(
        check_random_state(random_seed).choice(len(y_pool), len(kept), replace=False)
    )
    pools = {
        "pruned": kept,
        "knn": pruners["paper"].get_support(indices=True),
        "random": random_kept,
        "full": np.arange(len(y_pool)),
    }
    scoring_seconds = {
        name: float(sum(p.timings_.values())) for name, p in pruners.items()
    }

    rows = []
    for step, (name, pool_rows) in enumerate(pools.items(), start=3):
        X_train = np.concatenate([data.X_train, X_pool[pool_rows]])
        y_train = np.concatenate([data.y_train, y_pool[pool_rows]])
        say(
            f"[{step}/6] adversarial training on {_METHODS[name]} "
            f"({len(y_train)} samples, {epochs} epochs of PGD-{attack_steps})"
        )
        # One seed for all four runs: the same initialisation and attack
        # randomness, so the training data is the only difference.
        clf = AdversarialClassifier(
            eps=eps,
            attack_steps=attack_steps,
            epochs=epochs,
            random_state=model_seed,
            verbose=verbose,
        )
        fit_started = time.perf_counter()
        clf.fit(X_train, y_train)
        train_seconds = time.perf_counter() - fit_started
        clean = float(clf.score(data.X_test, data.y_test))
        eval_started = time.perf_counter()
        robust = robust_accuracy(
            clf,
            data.X_test,
            data.y_test,
            eps=eps,
            steps=settings["eval_steps"],
            random_state=model_seed,
            verbose=verbose,
        )
        rows.append(
            {
                "method": _METHODS[name],
                "n_train": len(y_train),
                "clean_accuracy": clean,
                "robust_accuracy": robust,
                "train_seconds": train_seconds,
                "scoring_seconds": {
                    "pruned": scoring_seconds["default"],
                    "knn": scoring_seconds["paper"],
                }.get(name, 0.0),
                "eval_seconds": time.perf_counter() - eval_started,
            }
        )
        say(f"      clean accuracy {clean:.3f}, robust accuracy {robust:.3f}")

    json_path = os.path.join(output_dir, "results.json")
    scores_plot, accuracy_plot = _plot(
        pruners["default"], data, rows, output_dir, settings, say
    )
    results = {
        "settings": {
            **settings,
            "device": str(clf.device_),
            "advprune_version": __version__,
            "torch_version": torch.__version__,
        },
        "data": {
            "n_real_train": len(data.y_train),
            "n_pool": len(y_pool),
            "n_pool_kept": len(kept),
            "n_scored": int(pruners["default"].scored_mask_.sum()),
            "n_test": len(data.y_test),
        },
        "scoring": {
            name: {
                **{f"{k}_seconds": float(v) for k, v in p.timings_.items()},
                "total_seconds": scoring_seconds[name],
                "forward_passes": p.cost_["total"],
                "fraction_of_direct": p.cost_["fraction_of_direct"],
            }
            for name, p in pruners.items()
        },
        "results": rows,
        "files": {
            "results": json_path,
            "scores_plot": scores_plot,
            "accuracy_plot": accuracy_plot,
        },
    }
    results["total_seconds"] = time.perf_counter() - started
    write_json(json_path, results)
    if verbose:
        print(format_table(rows))
        plots = [p for p in (scores_plot, accuracy_plot) if p]
        print(f"wrote {', '.join([json_path, *plots])}")
    return results


def format_table(rows):
    """Format the demo's results as a plain-text table.

    Parameters
    ----------
    rows : list of dict
        The ``"results"`` entries of :func:`run_demo`.

    Returns
    -------
    str
        One header line and one line per row: method, training-set size,
        clean and robust accuracy, training and scoring seconds.

    Examples
    --------
    >>> from advprune.demo import format_table
    >>> print(format_table([{"method": "real + full pool", "n_train": 3257,
    ...     "clean_accuracy": 0.95, "robust_accuracy": 0.55,
    ...     "train_seconds": 40.0, "scoring_seconds": 0.0}]))
    method                   n train  clean acc  robust acc  train s  scoring s
    real + full pool            3257      0.950       0.550     40.0          -
    """
    lines = [
        f"{'method':<23}  {'n train':>7}  {'clean acc':>9}  {'robust acc':>10}  "
        f"{'train s':>7}  {'scoring s':>9}"
    ]
    for row in rows:
        scoring = (
            f"{row['scoring_seconds']:9.1f}" if row["scoring_seconds"] else f"{'-':>9}"
        )
        lines.append(
            f"{row['method']:<23}  {row['n_train']:>7}  "
            f"{row['clean_accuracy']:9.3f}  {row['robust_accuracy']:10.3f}  "
            f"{row['train_seconds']:7.1f}  {scoring}"
        )
    return "\n".join(lines)


def _printer(verbose):
    def say(message):
        if verbose:
            print(message, flush=True)

    return say


def _plot(pruner, data, rows, output_dir, settings, say):
    """scores.png and accuracy.png; nothing, with a note, without matplotlib."""
    try:
        require_matplotlib("advprune demo's plots")
    except ImportError as exc:
        say(f"{exc} Skipping scores.png and accuracy.png.")
        return None, None
    offclass = data.pool_mix_weight > 0.5
    scores_path = score_histogram(
        os.path.join(output_dir, "scores.png"),
        pruner.scores_,
        pruner.support_,
        groups={
            f"off-class pool samples ({offclass.sum()})": offclass,
            f"other pool samples ({(~offclass).sum()})": ~offclass,
        },
        title="The default's scores of the synthetic pool",
    )
    accuracy_path = accuracy_bars(
        os.path.join(output_dir, "accuracy.png"),
        rows,
        robust_label=(
            f"robust (PGD-{settings['eval_steps']} CE+CW, eps {settings['eps']:g})"
        ),
    )
    return scores_path, accuracy_path
