"""``advprune demo``: the whole method on the embedded digits, in a few minutes.

The story of the paper in miniature, on :func:`advprune.datasets.load_digits_pool`
(the real 8x8 digits that ship with scikit-learn plus a synthetic pool drawn from
a generative model of their training split):

1. Score a random 10 % of the synthetic pool by the dynamic uncertainty of an
   adversarial training run on it (adversarial true-class probability recorded
   after every epoch), embed the whole pool with that run's model, extrapolate
   the scores to the other 90 % and prune the lowest-scored 50 % of the pool
   (:class:`advprune.AdversarialPruner`).
2. Adversarially train the default small CNN (:class:`advprune.AdversarialClassifier`,
   PGD-AT, same engine) on the real training digits plus (a) the pruned pool,
   (b) a random pool subset of the same size, (c) the full pool.
3. Evaluate each on the real held-out test digits: clean accuracy and robust
   accuracy (:func:`advprune.metrics.robust_accuracy`, worst case per sample over
   PGD with cross-entropy and CW losses).

The results go to a table on stdout, ``results.json``, a histogram of the
direct and extrapolated scores with the pruning threshold, ``scores.png``, and
a bar chart of the clean and robust accuracy of the three training sets,
``accuracy.png`` (the plots need matplotlib, the ``plot`` extra).

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
    "pruned": "real + pruned pool",
    "random": "real + random pool",
    "full": "real + full pool",
}


def run_demo(
    *,
    n_synthetic=2000,
    prune_ratio=0.5,
    subset_size=0.1,
    eps=0.2,
    epochs=8,
    attack_steps=5,
    scoring_epochs=15,
    window=10,
    eval_steps=20,
    output_dir="advprune-demo",
    random_state=0,
    verbose=True,
):
    """Prune a synthetic digits pool by importance extrapolation and compare.

    Scores a random ``subset_size`` of a synthetic pool directly (dynamic
    uncertainty of an adversarial training run, adversarial signal recorded
    after every epoch), extrapolates the scores to the rest of the pool with the
    12 nearest scored neighbours in the scoring model's feature space, and
    removes the ``prune_ratio`` fraction with the LOWEST scores (higher = more
    important = kept). Then adversarially trains the default small CNN on the
    real training digits plus the pruned pool, plus a random pool subset of the
    same size, and plus the full pool, and evaluates each on the real held-out
    digits.

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
        Epochs of each of the three final training runs.
    attack_steps : int, default=5
        PGD steps of every training attack (scoring run and final runs); the
        step size is ``2.5 * eps / attack_steps``.
    scoring_epochs : int, default=15
        Epochs of the scoring run; must exceed ``window``.
    window : int, default=10
        Window of the dynamic-uncertainty score.
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
        - ``"scoring"``: seconds spent scoring the subset, embedding the pool
          and extrapolating (``AdversarialPruner.timings_``) and their total;
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
    >>> [row["method"] for row in results["results"]]
    ['real + pruned pool', 'real + random pool', 'real + full pool']
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
        "importance": "dynamic_uncertainty",
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

    pruner = AdversarialPruner(
        prune_ratio=settings["prune_ratio"],
        importance=settings["importance"],
        subset_size=settings["subset_size"],
        signal="adversarial",
        record="epoch",
        importance_params={"window": settings["window"]},
        epochs=settings["scoring_epochs"],
        eps=eps,
        attack_steps=attack_steps,
        random_state=pruner_seed,
        verbose=verbose,
    )
    say(
        f"[1/4] scoring a random subset of the pool ({settings['scoring_epochs']} "
        f"epochs of PGD-{attack_steps} training), extrapolating, pruning "
        f"{settings['prune_ratio']:.0%} of the pool"
    )
    pruner.fit(X_pool, y_pool)
    kept = pruner.get_support(indices=True)
    scoring_seconds = float(sum(pruner.timings_.values()))

    # The random baseline keeps as many pool samples as the pruner, drawn
    # uniformly, so that only the choice of samples differs.
    random_kept = np.sort(
        check_random_state(random_seed).choice(len(y_pool), len(kept), replace=False)
    )
    pools = {
        "pruned": kept,
        "random": random_kept,
        "full": np.arange(len(y_pool)),
    }

    rows = []
    for step, (name, pool_rows) in enumerate(pools.items(), start=2):
        X_train = np.concatenate([data.X_train, X_pool[pool_rows]])
        y_train = np.concatenate([data.y_train, y_pool[pool_rows]])
        say(
            f"[{step}/4] adversarial training on {_METHODS[name]} "
            f"({len(y_train)} samples, {epochs} epochs of PGD-{attack_steps})"
        )
        # One seed for all three runs: the same initialisation and attack
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
                "scoring_seconds": scoring_seconds if name == "pruned" else 0.0,
                "eval_seconds": time.perf_counter() - eval_started,
            }
        )
        say(f"      clean accuracy {clean:.3f}, robust accuracy {robust:.3f}")

    json_path = os.path.join(output_dir, "results.json")
    scores_plot, accuracy_plot = _plot(pruner, rows, output_dir, settings, say)
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
            "n_scored": int(pruner.scored_mask_.sum()),
            "n_test": len(data.y_test),
        },
        "scoring": {
            **{f"{k}_seconds": float(v) for k, v in pruner.timings_.items()},
            "total_seconds": scoring_seconds,
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
    method              n train  clean acc  robust acc  train s  scoring s
    real + full pool       3257      0.950       0.550     40.0          -
    """
    lines = [
        f"{'method':<18}  {'n train':>7}  {'clean acc':>9}  {'robust acc':>10}  "
        f"{'train s':>7}  {'scoring s':>9}"
    ]
    for row in rows:
        scoring = (
            f"{row['scoring_seconds']:9.1f}" if row["scoring_seconds"] else f"{'-':>9}"
        )
        lines.append(
            f"{row['method']:<18}  {row['n_train']:>7}  "
            f"{row['clean_accuracy']:9.3f}  {row['robust_accuracy']:10.3f}  "
            f"{row['train_seconds']:7.1f}  {scoring}"
        )
    return "\n".join(lines)


def _printer(verbose):
    def say(message):
        if verbose:
            print(message, flush=True)

    return say


def _plot(pruner, rows, output_dir, settings, say):
    """scores.png and accuracy.png; nothing, with a note, without matplotlib."""
    try:
        require_matplotlib("advprune demo's plots")
    except ImportError as exc:
        say(f"{exc} Skipping scores.png and accuracy.png.")
        return None, None
    scores_path = score_histogram(
        os.path.join(output_dir, "scores.png"),
        pruner.scores_,
        pruner.support_,
        scored=pruner.scored_mask_,
        title="Importance scores of the synthetic pool (dynamic uncertainty)",
    )
    accuracy_path = accuracy_bars(
        os.path.join(output_dir, "accuracy.png"),
        rows,
        robust_label=(
            f"robust (PGD-{settings['eval_steps']} CE+CW, eps {settings['eps']:g})"
        ),
    )
    return scores_path, accuracy_path
