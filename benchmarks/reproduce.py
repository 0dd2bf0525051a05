"""The paper's experiment: pruning methods x prune ratios -> clean and robust accuracy.

Adversarially train on the real training set plus a synthetic pool pruned by each
method, at each prune ratio, over several seeds, and measure clean and robust
accuracy on the untouched real test split, the wall time of every step, and how
faithfully extrapolated importance scores rank the pool compared with scores
computed directly on all of it. As in Nieth et al. (2024), the real training set
is always kept whole; only the synthetic pool is pruned.

Run, then regenerate ``docs/results.rst`` and its plots from the JSON files::

    python -m benchmarks.reproduce --config small --jobs 2
    python -m benchmarks.reproduce --report

Results go to ``benchmarks/results/reproduce/<config>/``: ``scores/seed<s>.json``
(timings, Spearman correlations) and ``.npz`` (every score vector) per seed,
``runs/seed<s>/<method>__<rule>__<ratio>.json`` per final training, and
``invocations.json``. ``--subset-diagnostic`` reruns only the subset scoring
runs, as they ran and with as many optimizer steps as the direct run (a post-hoc
diagnostic of fidelity, not a method of the comparison).

Configurations (``--set key=value`` overrides any field of :class:`Config`; use
another ``--out`` then, so that results of different settings never mix):

``small`` (CPU, two cores)
    The embedded digits (1,257 real training images, 540 real test images, 8x8)
    plus a 2,000-image synthetic pool from :func:`advprune.datasets.load_digits_pool`,
    the default small CNN, L-infinity eps 0.2 and PGD-5 training as in
    ``advprune demo``; 6 epochs per final training, 3 seeds, prune ratios 0.3,
    0.5 and 0.7. Scoring and tiers 1 to 3 (120 trainings) took 82 minutes on
    two cores shared with other jobs, tier 4 (90 trainings) 15 minutes on the
    same two cores otherwise idle (the results page gives the measured times).
``full`` (GPU)
    CIFAR-10 (the official binary version, ``--cifar-dir``) plus a generated pool
    in the ``.npz`` layout of Wang et al. (2023), "Better Diffusion Models Further
    Improve Adversarial Training" (``--pool-npz``; arrays ``image``, uint8,
    (N, 32, 32, 3), and ``label``; converted once into memory-mapped ``.npy``
    files in ``<name>_npy/`` next to the archive), PreAct-ResNet-18 (or ``--set
    model=wrn-28-10``), eps 8/255, PGD-10 training with mixed precision, prune
    ratios up to 0.9. ``--set n_pool=N`` draws N pool images. Scoring runs and
    final trainings use random crops (4-pixel padding) and flips
    (:class:`advprune.training.RandomCropFlip`), as the paper's CIFAR-10 runs do;
    the 8x8 digits of ``small`` are trained without augmentation.

Per seed, every importance score is computed once, since scores depend neither on
the prune ratio nor on the selection rule:

1. one scoring run on a random 10 % subset of the pool (``record="epoch"``, the
   paper's protocol), with class probabilities recorded, from which dynamic
   uncertainty (DU), the frequency score, forgetting events, EL2N and TDDS are all
   computed and extrapolated to the rest of the pool by the pruner's extrapolator
   (12 nearest scored neighbours in the scoring model's penultimate features);
2. the same run with ``record="online"`` (the probability read off the training
   step), for DU;
3. one DIRECT scoring run on the whole pool: the expensive reference, which gives
   the "DU direct" method and the Spearman correlation of every extrapolated score
   with its directly computed counterpart.

Selections for every (method, rule, ratio) are then cheap; the cost is the final
adversarial trainings. They run in four tiers, so that an interrupted run still
answers the main questions: tier 1 (no pruning; random, DU direct, DU extrapolated
with both recordings, lowest-score rule), tier 2 (class-balanced and
coverage-centric selection for random, DU direct and DU extrapolated), tier 3
(frequency, forgetting, EL2N and TDDS extrapolated, lowest-score rule), tier 4
(their class-balanced and coverage-centric selections, and those of online DU).
Every result is a JSON file written atomically; a rerun skips what exists.
"""

from __future__ import annotations

import argparse
import ast
import dataclasses
import json
import math
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from joblib import Parallel, delayed
from sklearn.base import clone
from sklearn.utils import Bunch
from threadpoolctl import threadpool_limits

import advprune
from advprune import AdversarialClassifier, AdversarialPruner
from advprune.datasets import (
    convert_npz_pool,
    load_cifar10,
    load_digits_pool,
    load_pool,
)
from advprune.metrics import lowest_fraction_overlap, robust_accuracy, spearman_score
from advprune.models import PreActResNet18, WideResNet, penultimate_features
from advprune.scores import SCORES, requires_labels, requires_probas
from advprune.selection import coverage_centric, select_lowest
from advprune.training import RandomCropFlip, batched_forward, resolve_device

ROOT = Path(__file__).resolve().parent
DEFAULT_OUT = ROOT / "results" / "reproduce"

# Every score the issue names, computed from ONE recorded scoring run.
SCORE_NAMES = ("dynamic_uncertainty", "frequency", "forgetting", "el2n", "tdds")
SHORT = {
    "dynamic_uncertainty": "du",
    "frequency": "frequency",
    "forgetting": "forgetting",
    "el2n": "el2n",
    "tdds": "tdds",
}
# The pruner's own score in the scoring run: any score that needs the class
# probabilities makes the run record them, and the run itself (the training and
# the recorded series) does not depend on which score is asked for.
PRUNER_SCORE = "tdds"

RULES = ("lowest", "balanced", "ccs")
RULE_LABELS = {
    "lowest": "lowest scores removed",
    "balanced": "lowest removed per class",
    "ccs": "coverage-centric (CCS)",
}
METHOD_LABELS = {
    "none": "no pruning",
    "random": "random",
    "du-direct": "DU direct (whole pool)",
    "du-ext": "DU extrapolated",
    "du-ext-online": "DU extrapolated, online",
    "frequency-ext": "frequency extrapolated",
    "forgetting-ext": "forgetting extrapolated",
    "el2n-ext": "EL2N extrapolated",
    "tdds-ext": "TDDS extrapolated",
}


@dataclasses.dataclass(frozen=True)
class Config:
    """Everything that defines a configuration; fixed before any result is seen."""

    name: str
    dataset: str  # "digits" or "cifar10"
    n_pool: int | None  # pool size (digits: generated; cifar10: None = whole npz)
    data_seed: int
    subset_size: float
    eps: float
    attack_steps: int
    scoring_epochs: int
    scoring_lr: float
    final_epochs: int
    final_lr: float
    batch_size: int
    eval_steps: int
    eval_restarts: int
    eval_batch_size: int
    ratios: tuple
    seeds: tuple
    model: str  # "default", "preact-resnet18" or "wrn-28-10"
    augment: bool  # random crop (4 px) and flip in scoring and final trainings
    device: str
    amp: bool
    torch_threads: int | None


CONFIGS = {
    "small": Config(
        name="small",
        dataset="digits",
        n_pool=2000,
        data_seed=0,
        subset_size=0.1,
        eps=0.2,
        attack_steps=5,
        scoring_epochs=15,
        scoring_lr=0.05,
        final_epochs=6,
        final_lr=0.1,
        batch_size=128,
        eval_steps=50,
        eval_restarts=2,
        eval_batch_size=256,
        ratios=(0.3, 0.5, 0.7),
        seeds=(0, 1, 2),
        model="default",
        augment=False,
        device="cpu",
        amp=False,
        torch_threads=1,
    ),
    "full": Config(
        name="full",
        dataset="cifar10",
        n_pool=None,
        data_seed=0,
        subset_size=0.1,
        eps=8 / 255,
        attack_steps=10,
        scoring_epochs=20,
        scoring_lr=0.1,
        final_epochs=30,
        final_lr=0.2,
        batch_size=512,
        eval_steps=50,
        eval_restarts=2,
        eval_batch_size=1024,
        ratios=(0.3, 0.5, 0.7, 0.9),
        seeds=(0, 1, 2),
        model="preact-resnet18",
        augment=True,
        device="auto",
        amp=True,
        torch_threads=None,
    ),
}


# ------------------------------------------------------------------ data


def _open_pool(pool_npz, n_pool, seed):
    """The generated pool as a memory-mapped :class:`ImageArray` and labels.

    The ``.npz`` archive is converted once into ``.npy`` files in a folder
    next to it, ``<name>_npy/`` (``np.load`` would read a whole member into
    memory); ``n_pool`` rows are drawn without replacement when given.
    """
    cache_dir = Path(pool_npz).with_name(Path(pool_npz).stem + "_npy")
    if not (cache_dir / "images.npy").exists():
        convert_npz_pool(pool_npz, cache_dir)
    X, y = load_pool(cache_dir)
    y = np.asarray(y, dtype=np.int64)
    if n_pool is None or n_pool >= len(y):
        return X, y
    rows = np.sort(np.random.default_rng(seed).choice(len(y), n_pool, replace=False))
    return X[rows], y[rows]


def load_data(config, cifar_dir=None, pool_npz=None):
    """Real training split, synthetic pool and real test split of a config.

    ``offclass`` marks pool samples known to look like another class than their
    label (digits only: interpolated more than half way to another class).
    """
    if config.dataset == "digits":
        data = load_digits_pool(config.n_pool, random_state=config.data_seed)
        return Bunch(
            X_real=data.X_train,
            y_real=data.y_train,
            X_pool=data.X_pool,
            y_pool=data.y_pool,
            X_test=data.X_test,
            y_test=data.y_test,
            offclass=data.pool_mix_weight > 0.5,
        )
    if cifar_dir is None or pool_npz is None:
        raise SystemExit("--config full needs --cifar-dir and --pool-npz.")
    # The real splits are small enough to hold as float32 (0.7 GB), and
    # AdversarialClassifier validates X with ndarray methods; the pool stays a
    # memory-mapped ImageArray that the pruner reads chunk by chunk.
    X_real, y_real = load_cifar10(cifar_dir, split="train")
    X_test, y_test = load_cifar10(cifar_dir, split="test")
    X_real, X_test = np.asarray(X_real), np.asarray(X_test)
    X_pool, y_pool = _open_pool(pool_npz, config.n_pool, config.data_seed)
    return Bunch(
        X_real=X_real,
        y_real=y_real,
        X_pool=X_pool,
        y_pool=y_pool,
        X_test=X_test,
        y_test=y_test,
        offclass=None,
    )


def make_model(config, seed):
    """The network template; ``None`` lets advprune pick its default model.

    A template is deep-copied with its weights by the estimators, so it is built
    here under the seed to vary the initialisation across seeds.
    """
    if config.model == "default":
        return None
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        if config.model == "preact-resnet18":
            return PreActResNet18(n_classes=10)
        if config.model == "wrn-28-10":
            return WideResNet(depth=28, widen_factor=10, n_classes=10)
    raise ValueError(f"unknown model {config.model!r}")


# ------------------------------------------------------------------ scoring


def scores_from_dynamics(dynamics, y):
    """Every score of :data:`SCORE_NAMES` from one run's adversarial dynamics."""
    out = {}
    for name in SCORE_NAMES:
        if not requires_probas(name):
            out[name] = SCORES[name](dynamics.adversarial)
        elif requires_labels(name):
            out[name] = SCORES[name](dynamics.adversarial_probas, y)
        else:
            out[name] = SCORES[name](dynamics.adversarial_probas)
    return out


def embed(model, X, config):
    """Penultimate features of a scoring model (the pruner's default embedding)."""
    device = resolve_device(config.device)
    model = model.to(device).eval()
    E = batched_forward(
        model,
        X,
        batch_size=4 * config.batch_size,
        device=device,
        transform=penultimate_features,
    )
    model.cpu()
    return E


def _pruner(config, seed, **params):
    return AdversarialPruner(
        subset_size=config.subset_size,
        epochs=config.scoring_epochs,
        eps=config.eps,
        attack_steps=config.attack_steps,
        lr=config.scoring_lr,
        batch_size=config.batch_size,
        model=make_model(config, seed),
        augment=_augmentation(config),
        device=config.device,
        amp=config.amp,
        random_state=seed,
        **params,
    )


def _augmentation(config):
    return RandomCropFlip() if config.augment else None


def _fit_timed(pruner, X, y):
    wall, cpu = time.perf_counter(), time.process_time()
    pruner.fit(X, y)
    return time.perf_counter() - wall, time.process_time() - cpu


def _encoded(y):
    return np.searchsorted(np.unique(y), y)


def extrapolate_all(pruner, X_pool, y_codes, config):
    """Every score of a fitted subset pruner, extrapolated like its own score.

    Returns the subset's direct scores, the full-pool vectors (direct on the
    scored rows, extrapolated elsewhere), the pool's embedding and timings.
    """
    subset = pruner.subset_indices_
    rest = np.flatnonzero(~pruner.scored_mask_)
    subset_scores = scores_from_dynamics(pruner.dynamics_, y_codes[subset])
    if not np.allclose(subset_scores[PRUNER_SCORE], pruner.scores_[subset]):
        raise RuntimeError("scores from the pruner's dynamics differ from its own")

    started = time.perf_counter()
    E = embed(pruner.model_, X_pool, config)
    embed_seconds = time.perf_counter() - started
    extrapolated, extrapolation_seconds = {}, {}
    for name, values in subset_scores.items():
        started = time.perf_counter()
        extrapolator = clone(pruner.extrapolator_).fit(E[subset], values)
        full = np.empty(len(y_codes))
        full[subset] = values
        full[rest] = extrapolator.predict(E[rest])
        extrapolation_seconds[name] = time.perf_counter() - started
        extrapolated[name] = full
    if not np.allclose(extrapolated[PRUNER_SCORE], pruner.scores_):
        raise RuntimeError("re-extrapolated scores differ from the pruner's")
    return Bunch(
        subset_scores=subset_scores,
        extrapolated=extrapolated,
        embedding=E,
        embed_seconds=embed_seconds,
        extrapolation_seconds=extrapolation_seconds,
    )


def training_summary(pruner):
    """How far a scoring run trained: optimizer steps and last-epoch fit."""
    n = len(pruner.subset_indices_)
    dynamics = pruner.dynamics_
    return {
        "n_samples": n,
        "epochs": pruner.epochs,
        "batch_size": pruner.batch_size,
        "optimizer_steps": pruner.epochs * math.ceil(n / pruner.batch_size),
        "final_train_accuracy": pruner.history_[-1]["train_accuracy"],
        "final_mean_adversarial_true_probability": float(
            dynamics.adversarial[-1].mean()
        ),
        "final_mean_clean_true_probability": (
            None if dynamics.clean is None else float(dynamics.clean[-1].mean())
        ),
    }


def score_seed(config, data, seed, out_dir):
    """All importance scores of one seed, with their costs and fidelity.

    Writes ``scores/seed{seed}.npz`` (score vectors over the pool) and
    ``scores/seed{seed}.json`` (timings, Spearman correlations).
    """
    _limit_threads(config)
    X_pool, y_pool = data.X_pool, data.y_pool
    y_codes = _encoded(y_pool)
    n = len(y_pool)

    # 1. The paper's protocol on a random subset; all scores from its dynamics.
    pruner = _pruner(config, seed, score=PRUNER_SCORE, record="epoch")
    pruner_wall, pruner_cpu = _fit_timed(pruner, X_pool, y_pool)
    subset = pruner.subset_indices_
    rest = np.flatnonzero(~pruner.scored_mask_)
    result = extrapolate_all(pruner, X_pool, y_codes, config)
    subset_scores, extrapolated = result.subset_scores, result.extrapolated
    E_subset_model = result.embedding

    # 2. The same subset, model and training, recorded online.
    online = _pruner(config, seed, score="dynamic_uncertainty", record="online")
    online_wall, online_cpu = _fit_timed(online, X_pool, y_pool)
    if not np.array_equal(online.subset_indices_, subset):
        raise RuntimeError("the online run scored a different subset")

    # 3. The expensive reference: every score directly on the whole pool.
    direct = _pruner(config, seed, score=PRUNER_SCORE, record="epoch")
    direct.set_params(subset_size=1.0)
    direct_wall, direct_cpu = _fit_timed(direct, X_pool, y_pool)
    direct_scores = scores_from_dynamics(direct.dynamics_, y_codes)
    E_direct_model = embed(direct.model_, X_pool, config)

    fidelity = {}
    for name in SCORE_NAMES:
        truth, values = direct_scores[name], subset_scores[name]
        oracle = {}
        for label, E in (("subset", E_subset_model), ("direct", E_direct_model)):
            knn = clone(pruner.extrapolator_).fit(E[subset], truth[subset])
            oracle[label] = spearman_score(truth[rest], knn.predict(E[rest]))
        fidelity[name] = {
            "spearman_extrapolated_vs_direct": spearman_score(
                truth[rest], extrapolated[name][rest]
            ),
            "spearman_subset_vs_direct": spearman_score(truth[subset], values),
            "spearman_knn_of_direct_subset_embedding": oracle["subset"],
            "spearman_knn_of_direct_direct_embedding": oracle["direct"],
            "lowest_half_overlap": lowest_fraction_overlap(
                truth[rest], extrapolated[name][rest], 0.5
            ),
        }
    du_epoch = extrapolated["dynamic_uncertainty"]
    online_vs_epoch = {
        "spearman_subset": spearman_score(du_epoch[subset], online.scores_[subset]),
        "spearman_all": spearman_score(du_epoch, online.scores_),
        "spearman_online_extrapolated_vs_direct": spearman_score(
            direct_scores["dynamic_uncertainty"][rest], online.scores_[rest]
        ),
    }

    random_scores = np.random.default_rng([seed, 7]).random(n)
    vectors = {"random": random_scores, "du-ext-online": online.scores_}
    for name in SCORE_NAMES:
        vectors[f"{SHORT[name]}-ext"] = extrapolated[name]
        vectors[f"{SHORT[name]}-direct"] = direct_scores[name]
    vectors["subset_indices"] = subset

    subset_cost = sum(pruner.timings_.values())
    summary = {
        "config": config.name,
        "seed": seed,
        "n_pool": n,
        "n_scored": len(subset),
        "pruner_timings": {k: float(v) for k, v in pruner.timings_.items()},
        "subset_pipeline_seconds": float(subset_cost),
        "subset_fit_seconds": pruner_wall,
        "subset_fit_cpu_seconds": pruner_cpu,
        "online_timings": {k: float(v) for k, v in online.timings_.items()},
        "online_fit_seconds": online_wall,
        "online_fit_cpu_seconds": online_cpu,
        "direct_scoring_seconds": float(direct.timings_["scoring"]),
        "direct_fit_seconds": direct_wall,
        "direct_fit_cpu_seconds": direct_cpu,
        "cost_ratio": float(subset_cost / direct.timings_["scoring"]),
        "cost_ratio_cpu": pruner_cpu / direct_cpu,
        "embedding_all_seconds": result.embed_seconds,
        "extrapolation_seconds_per_score": result.extrapolation_seconds,
        "fidelity": fidelity,
        "online_vs_epoch": online_vs_epoch,
        "scoring_runs": {
            "subset": training_summary(pruner),
            "online": training_summary(online),
            "direct": training_summary(direct),
        },
        "offclass_mean_score": _offclass_means(vectors, data.offclass),
        "environment": _environment(config),
    }
    scores_dir = out_dir / "scores"
    _atomic_npz(scores_dir / f"seed{seed}.npz", vectors)
    _atomic_json(scores_dir / f"seed{seed}.json", summary)
    return summary


def subset_diagnostic(config, data, seed, out_dir):
    """Post hoc: does the subset run's short training explain its fidelity?

    Not part of the comparison of methods. Reruns the subset scoring run of
    :func:`score_seed` (a) as it ran, checking that it reproduces the saved
    scores and recording how far it trained, and (b) with the batch size cut so
    that it takes as many optimizer steps as the direct run on the whole pool,
    for the same number of sample passes. Writes the fidelity of both against
    the saved direct scores to ``scores/subset_diagnostic_seed{seed}.json``.
    """
    _limit_threads(config)
    scores_dir = out_dir / "scores"
    with np.load(scores_dir / f"seed{seed}.npz") as saved:
        vectors = dict(saved)
    summary = json.loads((scores_dir / f"seed{seed}.json").read_text())
    X_pool, y_pool = data.X_pool, data.y_pool
    y_codes = _encoded(y_pool)
    subset = vectors["subset_indices"]
    rest = np.setdiff1d(np.arange(len(y_pool)), subset)
    direct_steps_per_epoch = math.ceil(len(y_pool) / config.batch_size)
    variants = {
        "as_run": config.batch_size,
        "equal_steps": math.ceil(len(subset) / direct_steps_per_epoch),
    }
    report = {
        "seed": seed,
        "direct_optimizer_steps": config.scoring_epochs * direct_steps_per_epoch,
    }
    for label, batch_size in variants.items():
        pruner = _pruner(config, seed, score=PRUNER_SCORE, record="epoch")
        pruner.set_params(batch_size=batch_size)
        wall, cpu = _fit_timed(pruner, X_pool, y_pool)
        result = extrapolate_all(pruner, X_pool, y_codes, config)
        if label == "as_run":
            report["reproduces_saved_scores"] = all(
                np.array_equal(result.extrapolated[name], vectors[f"{SHORT[name]}-ext"])
                for name in SCORE_NAMES
            )
        fidelity = {}
        for name in SCORE_NAMES:
            truth = vectors[f"{SHORT[name]}-direct"]
            fidelity[name] = {
                "spearman_extrapolated_vs_direct": spearman_score(
                    truth[rest], result.extrapolated[name][rest]
                ),
                "spearman_subset_vs_direct": spearman_score(
                    truth[subset], result.subset_scores[name]
                ),
            }
        report[label] = {
            "training": training_summary(pruner),
            "fit_seconds": wall,
            "fit_cpu_seconds": cpu,
            "cost_ratio_cpu": cpu / summary["direct_fit_cpu_seconds"],
            "fidelity": fidelity,
        }
    report["environment"] = _environment(config)
    _atomic_json(scores_dir / f"subset_diagnostic_seed{seed}.json", report)
    return report


def _offclass_means(vectors, offclass):
    """Mean score percentile of off-class and of other pool samples, per score."""
    if offclass is None or not offclass.any():
        return None
    out = {}
    for key, values in vectors.items():
        if key == "subset_indices":
            continue
        ranks = np.argsort(np.argsort(values, kind="stable"), kind="stable")
        percentile = ranks / (len(values) - 1)
        out[key] = {
            "offclass": float(percentile[offclass].mean()),
            "other": float(percentile[~offclass].mean()),
        }
    return out


# ------------------------------------------------------------------ runs


def run_plan(config, max_tier=4):
    """(tier, seed, method, rule, ratio) of every final training, tier first."""
    tiers = {
        1: [("random", "lowest"), ("du-direct", "lowest"), ("du-ext", "lowest")]
        + [("du-ext-online", "lowest")],
        2: [("random", "balanced")]
        + [(m, r) for m in ("du-direct", "du-ext") for r in ("balanced", "ccs")],
        3: [(f"{SHORT[name]}-ext", "lowest") for name in SCORE_NAMES[1:]],
        4: [
            (f"{SHORT[name]}-ext", rule)
            for name in SCORE_NAMES[1:]
            for rule in ("balanced", "ccs")
        ]
        + [("du-ext-online", "balanced"), ("du-ext-online", "ccs")],
    }
    # Method-major within a tier, so that a run cut short leaves whole
    # (method, rule) cells with every seed and ratio rather than scattered ones.
    plan = [(1, seed, "none", "lowest", 0.0) for seed in config.seeds]
    for tier in sorted(tiers):
        if tier > max_tier:
            break
        for method, rule in tiers[tier]:
            for seed in config.seeds:
                plan += [(tier, seed, method, rule, q) for q in config.ratios]
    return plan


def run_path(out_dir, seed, method, rule, ratio):
    return out_dir / "runs" / f"seed{seed}" / f"{method}__{rule}__{ratio:.2f}.json"


def keep_mask(scores, rule, ratio, y, seed):
    """Kept pool rows: higher score = more important = kept."""
    if rule == "ccs":
        return coverage_centric(scores, ratio, y=y, random_state=seed)
    return select_lowest(scores, ratio, y=y, class_balanced=rule == "balanced")


def train_and_evaluate(config, data, seed, method, rule, ratio, tier, out_dir):
    """One final adversarial training on real + kept pool; writes its JSON."""
    _limit_threads(config)
    y_pool = data.y_pool
    if method == "none":
        kept = np.ones(len(y_pool), dtype=bool)
    else:
        with np.load(out_dir / "scores" / f"seed{seed}.npz") as vectors:
            kept = keep_mask(vectors[method], rule, ratio, y_pool, seed)
    X_train = np.concatenate([data.X_real, data.X_pool[kept]])
    y_train = np.concatenate([data.y_real, y_pool[kept]])

    clf = AdversarialClassifier(
        make_model(config, seed),
        eps=config.eps,
        attack_steps=config.attack_steps,
        epochs=config.final_epochs,
        batch_size=config.batch_size,
        lr=config.final_lr,
        augment=_augmentation(config),
        device=config.device,
        amp=config.amp,
        random_state=seed,
    )
    started = time.perf_counter()
    clf.fit(X_train, y_train)
    train_seconds = time.perf_counter() - started
    clean = float(clf.score(data.X_test, data.y_test))
    started = time.perf_counter()
    robust = robust_accuracy(
        clf,
        data.X_test,
        data.y_test,
        steps=config.eval_steps,
        losses=("ce", "cw"),
        restarts=config.eval_restarts,
        batch_size=config.eval_batch_size,
        random_state=seed,
    )
    result = {
        "config": config.name,
        "tier": tier,
        "seed": seed,
        "method": method,
        "rule": rule,
        "prune_ratio": ratio,
        "n_real": len(data.y_real),
        "n_pool": len(y_pool),
        "n_pool_kept": int(kept.sum()),
        "n_train": len(y_train),
        "clean_accuracy": clean,
        "robust_accuracy": robust,
        "train_seconds": train_seconds,
        "eval_seconds": time.perf_counter() - started,
        "offclass_kept_fraction": (
            None if data.offclass is None else float(data.offclass[kept].mean())
        ),
        "environment": _environment(config),
    }
    _atomic_json(run_path(out_dir, seed, method, rule, ratio), result)
    return result


# ------------------------------------------------------------------ plumbing


def _limit_threads(config):
    # The small networks of the small configuration spend microseconds per
    # operator; on a busy machine a second intra-op thread only adds waiting.
    if config.torch_threads is not None:
        torch.set_num_threads(config.torch_threads)
        threadpool_limits(config.torch_threads)


def _environment(config):
    return {
        "advprune": advprune.__version__,
        "torch": torch.__version__,
        "device": str(resolve_device(config.device)),
        "machine": platform.platform(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "load_average": list(os.getloadavg()),
        "settings": _jsonable(dataclasses.asdict(config)),
    }


def _jsonable(value):
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    return value


def _atomic_json(path, payload):
    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile(
        "w", dir=path.parent, suffix=".tmp", delete=False
    ) as f:
        json.dump(_jsonable(payload), f, indent=1)
        f.write("\n")
    os.chmod(f.name, 0o644)
    os.replace(f.name, path)


def _atomic_npz(path, arrays):
    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile(dir=path.parent, suffix=".tmp", delete=False) as f:
        np.savez_compressed(f, **arrays)
    os.chmod(f.name, 0o644)
    os.replace(f.name, path)


def _parse_overrides(config, pairs):
    fields = {f.name for f in dataclasses.fields(Config)}
    changes = {}
    for pair in pairs:
        key, _, text = pair.partition("=")
        if key not in fields or key == "name":
            raise SystemExit(f"--set: unknown field {key!r}; fields: {sorted(fields)}")
        try:
            value = ast.literal_eval(text)
        except (ValueError, SyntaxError):
            value = text
        changes[key] = tuple(value) if isinstance(value, list) else value
    return dataclasses.replace(config, **changes)


def _log_invocation(out_dir, entry):
    """Add or update (same ``started``) an entry of ``invocations.json``."""
    log_path = out_dir / "invocations.json"
    log = json.loads(log_path.read_text()) if log_path.exists() else []
    log = [e for e in log if e.get("started") != entry["started"]] + [entry]
    _atomic_json(log_path, log)


def run(config, out_dir, *, jobs, max_tier, cifar_dir, pool_npz):
    out_dir.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    # Logged before any work and updated at the end, so that an invocation
    # stopped part-way is still on record (with ``finished`` None).
    entry = {
        "command": "python -m benchmarks.reproduce " + " ".join(sys.argv[1:]),
        "config": _jsonable(dataclasses.asdict(config)),
        "max_tier": max_tier,
        "jobs": jobs,
        "started": time.strftime("%Y-%m-%d %H:%M:%S"),
        "finished": None,
    }
    _log_invocation(out_dir, entry)
    data = load_data(config, cifar_dir, pool_npz)
    print(
        f"[{config.name}] {len(data.y_real)} real training, {len(data.y_pool)} pool, "
        f"{len(data.y_test)} test samples; seeds {list(config.seeds)}",
        flush=True,
    )
    missing = [
        seed
        for seed in config.seeds
        if not (out_dir / "scores" / f"seed{seed}.json").exists()
    ]
    for summary in Parallel(n_jobs=min(jobs, max(len(missing), 1)))(
        delayed(score_seed)(config, data, seed, out_dir) for seed in missing
    ):
        fidelity = summary["fidelity"]["dynamic_uncertainty"]
        print(
            f"  scored seed {summary['seed']}: cost ratio "
            f"{summary['cost_ratio']:.3f}, DU Spearman extrapolated vs direct "
            f"{fidelity['spearman_extrapolated_vs_direct']:.3f}",
            flush=True,
        )
    plan = [
        spec
        for spec in run_plan(config, max_tier)
        if not run_path(out_dir, *spec[1:]).exists()
    ]
    print(f"  {len(plan)} final trainings to run", flush=True)
    results = Parallel(n_jobs=jobs, return_as="generator")(
        delayed(train_and_evaluate)(
            config, data, seed, method, rule, ratio, tier, out_dir
        )
        for tier, seed, method, rule, ratio in plan
    )
    for done, result in enumerate(results, start=1):
        print(
            f"  [{done}/{len(plan)}] tier {result['tier']} seed {result['seed']} "
            f"{result['method']:<15} {result['rule']:<8} {result['prune_ratio']:.1f}: "
            f"clean {result['clean_accuracy']:.3f} robust "
            f"{result['robust_accuracy']:.3f} ({result['train_seconds']:.0f} s "
            f"+ {result['eval_seconds']:.0f} s) "
            f"{time.perf_counter() - started:.0f} s elapsed",
            flush=True,
        )
    entry.update(
        n_trainings=len(plan),
        wall_seconds=time.perf_counter() - started,
        finished=time.strftime("%Y-%m-%d %H:%M:%S"),
    )
    _log_invocation(out_dir, entry)


def main(argv=None):
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--config", choices=sorted(CONFIGS), default="small")
    parser.add_argument("--seeds", type=int, nargs="+", help="default: the config's")
    parser.add_argument(
        "--out",
        type=Path,
        default=DEFAULT_OUT,
        help="results root; a run writes under OUT/CONFIG (default: %(default)s)",
    )
    parser.add_argument("--jobs", type=int, default=1, help="parallel processes")
    parser.add_argument(
        "--max-tier",
        type=int,
        default=4,
        choices=(1, 2, 3, 4),
        help="run tiers up to this one (see the module docstring)",
    )
    parser.add_argument("--cifar-dir", help="CIFAR-10 binary version (full config)")
    parser.add_argument("--pool-npz", help="generated pool .npz (full config)")
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a Config field, e.g. --set final_epochs=2",
    )
    parser.add_argument(
        "--report",
        action="store_true",
        help="only regenerate docs/results.rst and its plots from the JSON files",
    )
    parser.add_argument(
        "--subset-diagnostic",
        action="store_true",
        help="only rerun the subset scoring runs of scored seeds, as they ran and "
        "with as many optimizer steps as the direct run (post-hoc diagnostic)",
    )
    parser.add_argument("--docs", type=Path, default=ROOT.parent / "docs")
    args = parser.parse_args(argv)

    if args.report:
        from reproduce_report import write_report

        write_report(args.out, args.docs)
        return
    config = CONFIGS[args.config]
    if args.seeds:
        config = dataclasses.replace(config, seeds=tuple(args.seeds))
    config = _parse_overrides(config, args.overrides)
    if args.subset_diagnostic:
        out_dir = args.out / config.name
        data = load_data(config, args.cifar_dir, args.pool_npz)
        Parallel(n_jobs=args.jobs)(
            delayed(subset_diagnostic)(config, data, seed, out_dir)
            for seed in config.seeds
        )
        return
    run(
        config,
        args.out / config.name,
        jobs=args.jobs,
        max_tier=args.max_tier,
        cifar_dir=args.cifar_dir,
        pool_npz=args.pool_npz,
    )


if __name__ == "__main__":
    main()
