"""``docs/results.rst`` and its plots, from the JSON files of the benchmarks.

Nothing here trains or attacks a model: the page and the figures are a pure
function of ``benchmarks/results/reproduce/<config>/``,
``benchmarks/results/scaling/``, ``benchmarks/results/confirm/<config>/``,
``benchmarks/results/retrain/<config>/``,
``benchmarks/results/class_weight/`` and ``benchmarks/results/clean_weight/``,
regenerated with::

    python -m benchmarks.reproduce --report

Every statement on the page that answers a question of the benchmark ("at
least one point above random", "beyond the seed spread", ...) is computed here
from the numbers, never written by hand, so the page cannot drift from the data.
"""

import inspect
import json
from collections import defaultdict
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

from advprune.extrapolation import confidence_scores

from . import clean_weight
from ._stats import Table, interval, mean_runs, run_key
from .class_weight import paired_differences
from .clean_weight import BENCHMARKED_WEIGHT
from .reproduce import CONFIGS, MAIN, METHODS, OTHERS, RULES
from .retrain import RATIOS as RETRAIN_RATIOS
from .retrain import plan as retrain_plan

REPORT_COMMAND = "python -m benchmarks.reproduce --report"
COST_TARGET = 0.15
LABELS = {
    "none": "no pruning",
    "random": "random",
    "direct": "DU direct (whole pool)",
    "knn": "kNN, the paper's (DU extrapolated)",
    "confidence": "confidence (default)",
    "held_out": "held-out DU",
    "class_knn": "same-label kNN",
    "learned": "learned (ridge on embedding + series)",
}
# How the scaling study draws the methods that score no subset.
REFERENCE_LINES = {
    "none": {"linestyle": ":", "color": "black"},
    "random": {"linestyle": "--", "color": "grey"},
    "direct": {"linestyle": "-.", "color": "tab:green"},
}
RULE_LABELS = {"lowest": "lowest removed", "balanced": "lowest removed per class"}
DATA_LABELS = {
    "digits": "digits: 1,257 real training + 2,000-image synthetic pool, eps 0.2",
    "tabular": "tabular: 1,200 real training + 2,000-row synthetic pool, eps 0.05",
    "cifar10": "CIFAR-10 + generated pool",
}


# ------------------------------------------------------------------ loading


def load_results(config_dir):
    """Runs, per-seed score summaries and the invocation log of one config."""
    runs = [json.loads(p.read_text()) for p in sorted(config_dir.glob("runs/*/*.json"))]
    scores = {
        int(p.stem.removeprefix("seed")): json.loads(p.read_text())
        for p in sorted(config_dir.glob("scores/seed*.json"))
    }
    log_path = config_dir / "invocations.json"
    log = json.loads(log_path.read_text()) if log_path.exists() else []
    return runs, scores, log


def _fmt_mean_std(pair, digits=1):
    if pair is None:
        return "--"
    mean, std = pair
    return f"{mean:.{digits}f} ± {std:.{digits}f}"


def _fmt_interval(differences):
    ci = interval(differences)
    if ci is None:
        return "--"
    mean, low, high = ci
    seeds = ", ".join(f"{d:+.1f}" for d in differences)
    return f"{mean:+.1f} [{low:+.1f}, {high:+.1f}] ({seeds})"


def _list_table(header, rows, widths=None):
    lines = [".. list-table::", "   :header-rows: 1"]
    if widths:
        lines.append(f"   :widths: {' '.join(str(w) for w in widths)}")
    lines.append("")
    for row in [header, *rows]:
        lines.append(f"   * - {row[0]}")
        lines += [f"     - {cell}" for cell in row[1:]]
    return "\n".join(lines)


def _mean_std(values, digits=2):
    values = np.array([v for v in values if v is not None], dtype=float)
    if values.size == 0:
        return "--"
    if values.size == 1:
        return f"{values[0]:.{digits}f}"
    return f"{values.mean():.{digits}f} ± {values.std(ddof=1):.{digits}f}"


# ------------------------------------------------------------------ sections


def fidelity_table(scores):
    """Per method: agreement with direct DU, off-class placement and cost."""
    methods = [m for m in METHODS if m != "direct"]

    def column(method, key):
        return [s["methods"][method].get(key) for s in scores.values()]

    rows = []
    for method in methods:
        rows.append(
            [
                LABELS[method],
                _mean_std(column(method, "spearman_unscored")),
                _mean_std(column(method, "spearman_scored")),
                _mean_std(column(method, "lowest_half_overlap_unscored")),
                _mean_std(column(method, "offclass_percentile")),
                _mean_std(
                    [
                        s["methods"][method]["cost"]["fraction_of_direct"]
                        for s in scores.values()
                    ],
                    3,
                ),
                _mean_std(column(method, "wall_fraction_of_direct"), 3),
                _mean_std(column(method, "cpu_fraction_of_direct"), 3),
                _mean_std(
                    [
                        s["methods"][method]["cost"]["optimizer_steps"]
                        for s in scores.values()
                    ],
                    0,
                ),
            ]
        )
    rows.append(
        [
            LABELS["direct"],
            "1",
            "1",
            "1",
            _mean_std(column("direct", "offclass_percentile")),
            "1",
            "1",
            "1",
            _mean_std(
                [
                    s["methods"]["direct"]["cost"]["optimizer_steps"]
                    for s in scores.values()
                ],
                0,
            ),
        ]
    )
    header = [
        "method",
        "Spearman vs direct DU, unscored samples",
        "Spearman, scored samples",
        "lowest-half overlap, unscored",
        "off-class percentile (0 = pruned first)",
        "cost, forward passes / direct",
        "cost, wall time / direct",
        "cost, CPU time / direct",
        "optimizer steps of the scoring run",
    ]
    return _list_table(header, rows)


def accuracy_table(table, methods, ratios):
    """Robust accuracy per (method, rule) and ratio, with the paired
    difference to random pruning of the same size and class balance."""
    none = _fmt_mean_std(table.mean_std("none", "lowest", 0))
    rows = [[LABELS["none"], "--", "0%", none, "--", "--"]]
    for method in methods:
        for rule in RULES:
            for ratio in ratios:
                pair = table.mean_std(method, rule, ratio)
                if pair is None:
                    continue
                row = [LABELS[method], RULE_LABELS[rule], f"{ratio:.0%}"]
                row.append(_fmt_mean_std(pair))
                row.append(
                    "--"
                    if method == "random"
                    else _fmt_interval(table.paired(method, rule, ratio, "random"))
                )
                row.append(
                    _fmt_interval(table.paired(method, rule, ratio, "none", "lowest"))
                )
                rows.append(row)
    header = [
        "method",
        "rule",
        "pruned",
        "robust accuracy % (mean ± std)",
        "vs random: mean [95% CI] (per seed)",
        "vs no pruning: mean [95% CI] (per seed)",
    ]
    return _list_table(header, rows)


def clean_table(table, methods, ratios):
    rows = [
        [LABELS["none"], "--", "0%", _fmt_mean_std(table.mean_std("none", "lowest", 0))]
    ]
    for method in methods:
        for rule in RULES:
            for ratio in ratios:
                pair = table.mean_std(method, rule, ratio)
                if pair is not None:
                    rows.append(
                        [
                            LABELS[method],
                            RULE_LABELS[rule],
                            f"{ratio:.0%}",
                            _fmt_mean_std(pair),
                        ]
                    )
    return _list_table(["method", "rule", "pruned", "clean accuracy %"], rows)


def plot_accuracy(table, methods, ratios, path, label):
    figure = Figure(figsize=(9.0, 3.6), layout="constrained")
    axes = figure.subplots(1, len(RULES), sharey=True)
    none = table.mean_std("none", "lowest", 0)
    for ax, rule in zip(axes, RULES, strict=True):
        for method in methods:
            points = [(q, table.mean_std(method, rule, q)) for q in ratios]
            points = [(q, p) for q, p in points if p is not None]
            if not points:
                continue
            x = [100 * q for q, _ in points]
            ax.errorbar(
                x,
                [p[0] for _, p in points],
                yerr=[p[1] for _, p in points],
                marker="o",
                capsize=3,
                label=LABELS[method],
            )
        if none is not None:
            ax.axhline(none[0], color="black", linestyle=":", label=LABELS["none"])
        ax.set_title(RULE_LABELS[rule])
        ax.set_xlabel("pool pruned (%)")
    axes[0].set_ylabel(label)
    axes[-1].legend(fontsize="small")
    figure.savefig(path, dpi=100)


def _cost_verdict(wall):
    over = sum(w > COST_TARGET for w in wall)
    return "met on every seed" if not over else f"missed on {over} seeds"


def _at_least(value, bound):
    """``value >= bound`` up to float noise: accuracies are multiples of one
    test sample, so their means can land exactly on a bound."""
    return round(float(value), 9) >= bound


def answers(name, table, scores, ratios):
    """The issue's questions, answered from the numbers."""
    return "\n".join([_fidelity_answer(scores), *_downstream_answers(table, ratios)])


def _fidelity_answer(scores):
    spearman = [
        s["methods"]["confidence"]["spearman_unscored"] for s in scores.values()
    ]
    wall = [
        s["methods"]["confidence"]["wall_fraction_of_direct"] for s in scores.values()
    ]
    fpe = [
        s["methods"]["confidence"]["cost"]["fraction_of_direct"]
        for s in scores.values()
    ]
    knn = [s["methods"]["knn"]["spearman_unscored"] for s in scores.values()]
    return (
        f"* **Fidelity at the package defaults:** the default strategy ranks the "
        f"unscored samples at Spearman {np.mean(spearman):.2f} (seeds "
        f"{', '.join(f'{v:.2f}' for v in spearman)}) against direct DU, the "
        f"paper's kNN at {np.mean(knn):.2f}; target 0.75: "
        f"{'met' if np.mean(spearman) >= 0.75 else 'missed'}. Cost: "
        f"{np.mean(wall):.3f} of the direct run's wall time (worst seed "
        f"{max(wall):.3f}), {np.mean(fpe):.3f} in forward passes; target 0.15: "
        f"{_cost_verdict(wall)}."
    )


def _downstream_answers(table, ratios):
    """The downstream targets, one sentence each, from a :class:`Table`."""
    lines = []
    for ratio in ratios:
        for rule in RULES:
            d = table.paired("confidence", rule, ratio, "random")
            ci = interval(d)
            if ci is None:
                continue
            mean, low, high = ci
            lines.append(
                f"* **Default vs random, {RULE_LABELS[rule]}, {ratio:.0%}:** "
                f"{mean:+.1f} points [{low:+.1f}, {high:+.1f}], positive in "
                f"{int((d > 0).sum())} of {len(d)} seeds; "
                + (
                    "beyond the seed spread (95% interval above 0)"
                    if low > 0
                    else "not beyond the seed spread (95% interval reaches 0)"
                )
                + f"; at least one point: {'yes' if _at_least(mean, 1) else 'no'}."
            )
    for rule in RULES:
        d = table.paired("confidence", rule, 0.5, "none", "lowest")
        ci = interval(d)
        if ci is not None:
            lines.append(
                f"* **Default at 50 %, {RULE_LABELS[rule]}, vs no pruning:** "
                f"{ci[0]:+.2f} points [{ci[1]:+.1f}, {ci[2]:+.1f}]; within 0.5 "
                f"points: {'yes' if _at_least(ci[0], -0.5) else 'no'}."
            )
    return lines


def config_section(name, config_dir, figure_dir, docs_dir):
    runs, scores, log = load_results(config_dir)
    if not runs or not scores:
        return None
    config = CONFIGS[name]
    robust, clean = Table(runs, "robust_accuracy"), Table(runs, "clean_accuracy")
    seeds = sorted(scores)
    ratios = sorted(
        {
            r["prune_ratio"]
            for r in runs
            if r["method"] in MAIN and r["method"] != "none"
        }
    )
    rel = figure_dir.relative_to(docs_dir)
    robust_png = figure_dir / f"{name}_robust.png"
    plot_accuracy(robust, MAIN, ratios, robust_png, "robust accuracy (%)")
    others_png = figure_dir / f"{name}_others.png"
    plot_accuracy(
        robust,
        ("random", "confidence", *OTHERS),
        config.other_ratios,
        others_png,
        "robust accuracy (%)",
    )
    title = f"Data set ``{name}``"
    invocations = _invocations(log)
    env = next((e["environment"] for e in reversed(log) if e.get("environment")), None)
    machine = (
        ""
        if env is None
        else f"Machine: {env['cpu_count']} CPU cores, torch {env['torch']}, "
        f"{env['torch_threads']} thread(s) per process, load average "
        f"{env['load_average'][0]:.1f} at the end.\n\n"
    )
    setup = _list_table(
        ["setting", "value"],
        [
            ["data", DATA_LABELS[name]],
            [
                "scored subset",
                f"{config.subset_size:.0%} of the pool, class-stratified",
            ],
            [
                "attack budget",
                f"L-infinity eps = {config.eps:g}, PGD-{config.attack_steps}",
            ],
            [
                "scoring runs",
                "package defaults (20 epochs, lr 0.05, batch 128); ``knn`` and "
                "``direct`` with the paper's protocol (PGD training with "
                f"{config.attack_steps} steps, epoch recording, no step floor), "
                "the other strategies with the defaults (``min_steps=320``, "
                "``train_attack_steps=1``)",
            ],
            [
                "final trainings",
                f"PGD-{config.attack_steps} AT, {config.final_epochs} epochs, lr "
                f"{config.final_lr}, batch {config.batch_size}, cosine, the same "
                "initialisation for every method of a seed",
            ],
            [
                "evaluation",
                f"PGD-{config.eval_steps}, CE and CW, {config.eval_restarts} "
                "restarts, worst case per sample",
            ],
            ["seeds", ", ".join(map(str, seeds))],
        ],
        widths=[25, 75],
    )
    return f"""{title}
{"-" * len(title)}

Produced by ``python -m benchmarks.reproduce --config {name} --jobs 2`` and
rendered by ``{REPORT_COMMAND}``; the raw results are the JSON files under
``benchmarks/results/reproduce/{name}/``.

{invocations}

{machine}{setup}

Answers
~~~~~~~

{answers(name, robust, scores, (0.3, 0.5, 0.7, 0.9))}

Fidelity and cost
~~~~~~~~~~~~~~~~~

Mean ± std over the seeds. Spearman correlations are against DU computed
directly on the whole pool; "unscored" are the samples a method did not train
on. Costs are the whole pruning path (scoring run, tracking, embedding,
extrapolation) over the direct run on the whole pool.

{fidelity_table(scores)}

Robust accuracy
~~~~~~~~~~~~~~~

.. image:: {rel}/{robust_png.name}

{accuracy_table(robust, MAIN, ratios)}

The other strategies, at 50 and 70 %:

.. image:: {rel}/{others_png.name}

{accuracy_table(robust, OTHERS, config.other_ratios)}

Clean accuracy
~~~~~~~~~~~~~~

{clean_table(clean, MAIN + OTHERS, ratios)}
"""


def scaling_section(scaling_dir, figure_dir, docs_dir):
    path = scaling_dir / "scaling.json"
    if not path.exists():
        return None
    result = json.loads(path.read_text())
    sizes = sorted({int(r["n_scored"]) for r in result["fidelity"]})
    methods = sorted({r["method"] for r in result["fidelity"]})
    ratios = result["ratios"]
    figure = Figure(figsize=(4.5 * (1 + len(ratios)), 3.6), layout="constrained")
    left, *rights = figure.subplots(1, 1 + len(ratios))
    rows = []
    for method in methods:
        means, stds = [], []
        for size in sizes:
            values = [
                r["spearman_unscored"]
                for r in result["fidelity"]
                if r["method"] == method and r["n_scored"] == size
            ]
            means.append(np.mean(values))
            stds.append(np.std(values, ddof=1) if len(values) > 1 else 0.0)
        left.errorbar(
            sizes, means, yerr=stds, marker="o", capsize=3, label=LABELS[method]
        )
        rows.append(
            [
                LABELS[method],
                *(f"{m:.2f} ± {s:.2f}" for m, s in zip(means, stds, strict=True)),
            ]
        )
    left.set_xlabel("scored samples")
    left.set_ylabel("Spearman vs direct DU (unscored)")
    left.legend(fontsize="small")
    header = ["method", *(f"{s:,} scored" for s in sizes)]
    # No pruning, random and direct DU score no subset: a column of their own.
    accuracy_header = [header[0], "no subset", *header[1:]]
    accuracy = []
    for ratio, ax in zip(ratios, rights, strict=True):
        table = _scaling_accuracy(result["downstream"], ratio, sizes, ax)
        accuracy.append(
            f"Robust accuracy at {100 * ratio:.0f} % pruning (lowest rule; mean "
            f"over the seeds):\n\n{_list_table(accuracy_header, table)}"
        )
    for ax in (left, *rights):
        ax.set_xscale("log")
        ax.set_xticks(sizes, [f"{s:,}" for s in sizes])
        ax.minorticks_off()
    png = figure_dir / "scaling.png"
    figure.savefig(png, dpi=100)
    rel = figure_dir.relative_to(docs_dir)
    accuracy = "\n\n".join(accuracy)
    return f"""Scaling: how many scored samples
--------------------------------

Produced by ``{result["command"]}`` (``benchmarks/scaling.py``): a
{result["n_pool"]:,}-image digits pool, eps 0.2, PGD-5, seeds
{", ".join(map(str, result["seeds"]))}; the direct reference is DU of the paper's
protocol on the whole pool. Fidelity of each strategy against it (mean ± std):

.. image:: {rel}/{png.name}

{_list_table(header, rows)}

{accuracy}

{_scaling_answers(result, sizes, methods)}

This is the range this machine could afford, not a measurement at the paper's
scale (5 % of a million-image pool is 50,000 scored samples).
"""


def _scaling_accuracy(downstream, ratio, sizes, ax):
    """One ratio's robust accuracies: plotted on ``ax``, returned as table rows.

    The methods that score no subset (no pruning, random, direct DU) are one
    value each: a horizontal line and a cell of the "no subset" column.
    """
    rows = []
    for method in sorted({r["method"] for r in downstream}):
        points = defaultdict(list)
        for r in downstream:
            if r["method"] == method and r["prune_ratio"] in (ratio, 0.0):
                points[r["n_scored"]].append(100 * r["robust_accuracy"])
        if not points:
            continue
        if method in REFERENCE_LINES:
            value = np.mean(next(iter(points.values())))
            ax.axhline(value, label=LABELS[method], **REFERENCE_LINES[method])
            rows.append([LABELS[method], f"{value:.1f}"] + [""] * len(sizes))
            continue
        xs = sorted(points)
        ax.errorbar(
            xs,
            [np.mean(points[x]) for x in xs],
            yerr=[np.std(points[x], ddof=1) if len(points[x]) > 1 else 0 for x in xs],
            marker="o",
            capsize=3,
            label=LABELS[method],
        )
        rows.append(
            [LABELS[method], ""]
            + [f"{np.mean(points[s]):.1f}" if s in points else "--" for s in sizes]
        )
    ax.set_xlabel("scored samples")
    ax.set_ylabel(f"robust accuracy at {100 * ratio:.0f} % pruning (%)")
    ax.legend(fontsize="small")
    return rows


def _scaling_answers(result, sizes, methods):
    """The scaling study's findings, in sentences generated from its JSON."""

    def fidelity(method, size):
        return np.mean(
            [
                r["spearman_unscored"]
                for r in result["fidelity"]
                if r["method"] == method and r["n_scored"] == size
            ]
        )

    by_seed = defaultdict(dict)
    for r in result["downstream"]:
        key = r["method"], r["prune_ratio"]
        by_seed[key + (r["n_scored"],)][r["seed"]] = 100 * r["robust_accuracy"]
    lines = [
        f"* **Fidelity, {LABELS[m]}:** Spearman {fidelity(m, sizes[0]):.2f} with "
        f"{sizes[0]:,} scored samples, {fidelity(m, sizes[-1]):.2f} with "
        f"{sizes[-1]:,}."
        for m in methods
    ]
    n_pool = result["n_pool"]
    for ratio in result["ratios"]:
        references = {
            "random": by_seed.get(("random", ratio, 0)),
            "none": by_seed.get(("none", 0.0, 0)),
        }
        for baseline, reference in references.items():
            if not reference:
                continue
            compared = [(m, sizes) for m in methods]
            if baseline == "random":
                compared.append(("direct", [n_pool]))
            for m, columns in compared:
                cells = []
                for size in columns:
                    values = by_seed.get((m, ratio, size))
                    if values:
                        d = np.array([values[k] - reference[k] for k in values])
                        where = "" if m == "direct" else f" at {size:,}"
                        cells.append(
                            f"{d.mean():+.1f}{where} ({int((d > 0).sum())} of "
                            f"{len(d)} seeds above)"
                        )
                if cells:
                    lines.append(
                        f"* **{LABELS[m]} vs {LABELS[baseline]}, {100 * ratio:.0f} % "
                        f"pruned, points:** " + "; ".join(cells) + "."
                    )
    return "\n".join(lines)


def _fmt_paired(d):
    """Mean [95 % interval] of paired differences, and how many are above 0."""
    if not len(d):
        return "--"
    ci = interval(d)
    spread = "" if ci is None else f" [{ci[1]:+.1f}, {ci[2]:+.1f}]"
    return f"{d.mean():+.1f}{spread}, {int((d > 0).sum())} of {len(d)} above"


def class_weight_section(class_weight_dir):
    """The class-weight study of the default strategy, two tables per data set."""
    results = [
        json.loads(path.read_text())
        for name in CONFIGS
        if (path := class_weight_dir / f"{name}.json").exists()
    ]
    if not results:
        return None
    used = inspect.signature(confidence_scores).parameters["class_weight"].default
    parts = []
    for result in results:
        ratios = result["ratios"]
        vs_random = paired_differences(result)
        header = ["class weight", "Spearman unscored", "off-class percentile"] + [
            f"{q:.0%} pruned" for q in ratios
        ]
        rows = []
        for weight in result["weights"]:
            fidelity = [r for r in result["fidelity"] if r["class_weight"] == weight]
            rows.append(
                [
                    f"{weight:g}" + (" (the package's)" if weight == used else ""),
                    _mean_std(r["spearman_unscored"] for r in fidelity),
                    _mean_std(r.get("offclass_percentile") for r in fidelity),
                    *(_fmt_paired(vs_random[weight, q]) for q in ratios),
                ]
            )
        parts.append(
            f"""{DATA_LABELS[result["config"]]}; seeds
{", ".join(map(str, result["seeds"]))}; ``{result["command"]}``.
Robust accuracy minus that of random pruning of the same size, lowest rule, in
points: mean [95 % interval], and the seeds above random:

{_list_table(header, rows)}
"""
        )
        if used in result["weights"]:
            vs_used = paired_differences(result, baseline=used)
            others = [w for w in result["weights"] if w != used]
            parts.append(
                f"""The same trainings, each weight against the package's ({used:g}),
paired by seed:

{
                    _list_table(
                        ["class weight", *(f"{q:.0%} pruned" for q in ratios)],
                        [
                            [f"{w:g}", *(_fmt_paired(vs_used[w, q]) for q in ratios)]
                            for w in others
                        ],
                    )
                }
"""
            )
    return f"""The default's class weight (selection seeds)
--------------------------------------------

The default strategy blends each sample's global rank with its rank within its
class (``class_weight`` of :func:`advprune.extrapolation.confidence_scores`,
{used:g} in the package), meant to keep the lowest rule from emptying a class
that the short scoring run finds hard (how many of each class are kept is not
measured here). More weight moves the scores away from direct DU, which has
between-class differences. Both sides, measured on the seeds the settings are
chosen on, never on the reported ones (``benchmarks/class_weight.py``; the
class-balanced rule keeps the same samples at every weight, so it is not run).
Spearman is against direct DU on the unscored rows; the off-class percentile is
the off-class samples' mean rank (0 = pruned first).

{chr(10).join(parts)}"""


def clean_weight_section(clean_weight_dir):
    """The clean-weight study: fidelity and robust accuracy of each weight, on
    the selection seeds and, where it ran, on the reported ones."""
    results = [
        (json.loads(path.read_text()), reported)
        for reported, suffix in ((False, ""), (True, "_reported"))
        for name in CONFIGS
        if (path := clean_weight_dir / f"{name}{suffix}.json").exists()
    ]
    if not results:
        return None
    used = inspect.signature(confidence_scores).parameters["clean_weight"].default
    parts = []
    verdicts = defaultdict(list)
    for result, reported in results:
        seeds = result["seeds"]
        fidelity_rows = []
        for weight in result["weights"]:
            rows = [r for r in result["fidelity"] if r["clean_weight"] == weight]
            fidelity_rows.append(
                [
                    f"{weight:g}" + (" (the package's)" if weight == used else ""),
                    _mean_std(r["spearman_unscored"] for r in rows),
                    f"{min(r['spearman_unscored'] for r in rows):.2f}",
                    _mean_std(r.get("offclass_percentile") for r in rows),
                ]
            )
        comparison_rows = [
            [
                f"{weight:g} vs {LABELS.get(baseline, f'{BENCHMARKED_WEIGHT:g}')}",
                f"{RULE_LABELS[rule]}, {ratio:.0%}",
                _fmt_paired(d),
            ]
            for weight, baseline, rule, ratio, d in clean_weight.comparisons(result)
        ]
        lines = []
        for weight in result["weights"]:
            if weight != BENCHMARKED_WEIGHT:
                line, passed = _clean_weight_rule(result, weight)
                lines.append(line)
                verdicts[reported, weight].append(passed)
        costs = _clean_weight_costs(result)
        title = f"Clean weight, ``{result['config']}``, " + (
            "reported seeds" if reported else "selection seeds"
        )
        parts.append(
            f"""{title}
{"~" * len(title)}

{DATA_LABELS[result["config"]]}; seeds {_seed_list(seeds)}; ``{result["command"]}``;
{len(result["offsets"])} trainings per pool (training seeds the seed plus {
                ", ".join(str(o) for o in result["offsets"])
            }).

{
                _list_table(
                    [
                        "clean weight",
                        "Spearman unscored",
                        "lowest seed",
                        "off-class percentile",
                    ],
                    fidelity_rows,
                )
            }

{costs}Robust accuracy minus the baseline's, on the means of the trainings, in points:
mean [95 % interval], and the seeds above 0.

{_list_table(["clean weight vs", "pruned", "difference"], comparison_rows)}

The rule the benchmark declared, for each other weight:

{chr(10).join(lines)}
"""
        )
    conclusions = [
        f"* **Clean weight {weight:g}, "
        f"{'reported' if reported else 'selection'} seeds:** "
        + (
            f"misses the rule on {len(passed) - sum(passed)} of {len(passed)} "
            "data sets, so "
            + (
                "the default does not change to it."
                if reported
                else "it is not a candidate."
            )
            if not all(passed)
            else "meets the rule on both data sets."
            if len(passed) == 2
            else "meets the rule on the one data set run; it needs both."
        )
        for (reported, weight), passed in verdicts.items()
    ]
    benchmarked = (
        f"{used:g}, as in every section above"
        if used == BENCHMARKED_WEIGHT
        else f"{used:g}; {BENCHMARKED_WEIGHT:g} in every section above"
    )
    return f"""The default's clean weight
--------------------------

The default strategy ranks every sample by a blend of its adversarial
true-class probability after the scoring run (one PGD pass over the whole pool,
most of the pruner's tracking cost) and its mean clean true-class probability
over the tracked epochs (forward passes only); ``clean_weight`` of
:func:`advprune.extrapolation.confidence_scores` is the clean share (in the
package {benchmarked}). A weight of 1 needs no attack on the pool.
``benchmarks/clean_weight.py`` declared the seeds, the protocol and the rule
for changing the default before each weight ran (weight 0 after weight 1's
results); every pool is trained three times and compared on the means, since
one training is as noisy as the effect.

{chr(10).join(conclusions)}

{chr(10).join(parts)}"""


def _clean_weight_rule(result, weight):
    """The rule ``benchmarks/clean_weight.py`` declared, for one weight on one
    data set: a line of the page, and whether the weight meets it."""
    if weight not in clean_weight.DECLARED_RULES:
        raise ValueError(f"no rule was declared for clean weight {weight:g}.")
    rows = [r for r in result["fidelity"] if r["clean_weight"] == weight]
    spearman = np.mean([r["spearman_unscored"] for r in rows])
    cells = [
        (rule, ratio, d)
        for w, baseline, rule, ratio, d in clean_weight.comparisons(result)
        if w == weight and baseline == clean_weight.method_name(BENCHMARKED_WEIGHT)
    ]
    below = [
        f"{RULE_LABELS[rule]}, {ratio:.0%} ({ci[0]:+.2f} [{ci[1]:+.2f}, {ci[2]:+.2f}])"
        for rule, ratio, d in cells
        if (ci := interval(d)) is not None and ci[2] < 0
    ]
    mean = np.mean([d.mean() for *_, d in cells])
    wording, bound = clean_weight.DECLARED_RULES[weight]
    enough = mean >= bound if bound < 0 else mean > bound
    passed = spearman >= 0.75 and not below and enough
    line = (
        f"* **Clean weight {weight:g}:** Spearman {spearman:.2f} (at least 0.75: "
        f"{_yes(spearman >= 0.75)}); cells below weight {BENCHMARKED_WEIGHT:g}'s "
        f"beyond the spread: {'; '.join(below) or 'none'}; mean over the "
        f"{len(cells)} cells {mean:+.2f} points ({wording}: {_yes(enough)}); "
        f"the rule: {_yes(passed, 'met', 'missed')}."
    )
    return line, passed


def _yes(condition, yes="yes", no="no"):
    return yes if condition else no


def _clean_weight_costs(result):
    """The pruner's cost with each clean weight, where the study fitted it:
    forward passes as a fraction of direct DU's, the tracking's forward passes
    and seconds, and the fit's wall time, also against the benchmarked
    weight's fit of the same seed, fitted one after the other in one
    process."""
    costs = result.get("costs") or {}
    costs = [c for c in costs.values() if c]
    if not costs:
        return ""
    base = f"{BENCHMARKED_WEIGHT:g}"
    rows = [
        [
            weight,
            _mean_std((c[weight]["cost"]["fraction_of_direct"] for c in costs), 3),
            _mean_std((c[weight]["cost"]["tracking"] for c in costs), 0),
            _mean_std((c[weight]["timings"]["tracking"] for c in costs), 2),
            _mean_std((c[weight]["fit_seconds"] for c in costs), 2),
            _mean_std(
                (c[weight]["fit_seconds"] / c[base]["fit_seconds"] for c in costs), 2
            ),
        ]
        for weight in costs[0]
    ]
    header = [
        "clean weight",
        "forward passes, fraction of direct",
        "tracking forward passes",
        "tracking seconds",
        "fit seconds",
        f"fit seconds / weight {base}'s",
    ]
    return f"""The pruner fitted with each weight (mean ± standard deviation over
the seeds):

{_list_table(header, rows)}

"""


CONFIRM_RATIOS = (0.3, 0.5, 0.7)
COMPARED = ("confidence", "knn", "direct")


def confirmation_section(confirm_root, reported_root):
    """The confirmation seeds beside the first reported ones, and the verdict
    over both sets together."""
    parts = []
    for name in CONFIGS:
        runs, scores, log = load_results(confirm_root / name)
        if not runs or not scores:
            continue
        first_runs, first_scores, _ = load_results(reported_root / name)
        if set(first_scores) & set(scores):
            raise ValueError(
                f"{name}: seeds {sorted(set(first_scores) & set(scores))} are both "
                "reported and confirmation seeds."
            )
        pooled = Table(first_runs + runs, "robust_accuracy")
        everything = f"all {len(first_scores) + len(scores)} seeds"
        views = {
            f"seeds {_seed_list(first_scores)}": Table(first_runs, "robust_accuracy"),
            f"seeds {_seed_list(scores)}": Table(runs, "robust_accuracy"),
            everything: pooled,
        }
        comparisons = [
            (f"vs random, {RULE_LABELS[rule]}, {ratio:.0%}", rule, ratio, "random")
            for ratio in CONFIRM_RATIOS
            for rule in RULES
        ] + [
            (f"vs no pruning, {RULE_LABELS[rule]}, 50%", rule, 0.5, "none")
            for rule in RULES
        ]
        rows = [
            [
                label,
                *(
                    _fmt_paired(t.paired("confidence", rule, ratio, base))
                    for t in views.values()
                ),
            ]
            for label, rule, ratio, base in comparisons
        ]
        by_method = [
            [
                f"{RULE_LABELS[rule]}, {ratio:.0%}",
                *(
                    _fmt_paired(pooled.paired(m, rule, ratio, "random"))
                    for m in COMPARED
                ),
            ]
            for ratio in CONFIRM_RATIOS
            for rule in RULES
        ]
        by_rule = [
            [
                f"{ratio:.0%}",
                *(
                    _fmt_paired(pooled.paired(m, "balanced", ratio, m, "lowest"))
                    for m in COMPARED
                ),
            ]
            for ratio in CONFIRM_RATIOS
        ]
        verdict = answers(name, pooled, {**first_scores, **scores}, CONFIRM_RATIOS)
        title = f"Confirmation, ``{name}``"
        parts.append(
            f"""{title}
{"~" * len(title)}

{_invocations(log)}

The default's robust accuracy minus that of random pruning of the same size (or
of no pruning), in points: mean [95 % interval], and the seeds above 0.

{_list_table(["comparison", *views], rows)}

Beside the paper's kNN and direct DU, {everything}, minus random pruning:

{_list_table(["pruned", *(LABELS[m] for m in COMPARED)], by_method)}

Which rule, for the same scores: lowest removed per class minus lowest removed,
{everything}:

{_list_table(["pruned", *(LABELS[m] for m in COMPARED)], by_rule)}

The answers, over {everything}:

{verdict}
"""
        )
    if not parts:
        return None
    ratios = ", ".join(f"{q:.0%}" for q in CONFIRM_RATIOS)
    return f"""Confirmation seeds
------------------

On seeds 10-14 two cells of 30 to 70 % pruning were undecided (digits at 70 %
and tabular at 50 %, both under the lowest rule): their 95 % intervals reached
0, with a seed-to-seed spread that five seeds cannot narrow. Ten more seeds,
20-29, were declared before any of them ran (see the docstring of
``benchmarks/reproduce.py``), with the package and every setting unchanged, and
the main comparison ran on them at {ratios} into
``benchmarks/results/confirm/``. The verdict is taken over all reported seeds
together; each set alone is shown beside it. 90 % pruning was not rerun: its
verdicts are those of seeds 10-14 alone, in the sections above, which stay
exactly as they were.

{chr(10).join(parts)}"""


def retrain_section(retrain_root, reported_root, confirm_root):
    """The reported pools trained three times: single-training figures beside
    the means of the three trainings of the same pools."""
    parts = []
    for name in CONFIGS:
        trainings = sorted((retrain_root / name).glob("train*"))
        if not trainings:
            continue
        planned = {job[:4] for job in retrain_plan(name)}
        # The single trainings of exactly the retrained pools.
        single = [
            run
            for root in (reported_root, confirm_root)
            for run in load_results(root / name)[0]
            if run_key(run) in planned
        ]
        repeats = [load_results(path)[0] for path in trainings]
        where = ["the reported runs", *(path.name for path in trainings)]
        for place, runs in zip(where, [single, *repeats], strict=True):
            if missing := planned - {run_key(run) for run in runs}:
                raise ValueError(
                    f"{name}: {len(missing)} planned trainings missing in {place}."
                )
        per_training = [Table(runs, "robust_accuracy") for runs in [single, *repeats]]
        means = mean_runs([single, *repeats])
        mean = Table(means, "robust_accuracy")
        tables = {
            "one training (as reported)": per_training[0],
            f"mean of {len(per_training)} trainings": mean,
        }
        n_seeds = len({run["seed"] for run in means})
        comparisons = [
            (m, rule, ratio, "random")
            for ratio in RETRAIN_RATIOS
            for rule in RULES
            for m in COMPARED
        ] + [(m, rule, 0.5, "none") for m in ("confidence", "direct") for rule in RULES]
        rows = [
            [
                f"{LABELS[m]} vs {LABELS[base]}, {RULE_LABELS[rule]}, {ratio:.0%}",
                *(_fmt_paired(t.paired(m, rule, ratio, base)) for t in tables.values()),
            ]
            for m, rule, ratio, base in comparisons
        ]
        spread = [
            [
                f"{RULE_LABELS[rule]}, {ratio:.0%}",
                *_spreads(per_training, rule, ratio),
            ]
            for ratio in RETRAIN_RATIOS
            for rule in RULES
        ]
        title = f"Retrained, ``{name}``"
        verdict = "\n".join(_downstream_answers(mean, RETRAIN_RATIOS))
        parts.append(
            f"""{title}
{"~" * len(title)}

Robust accuracy minus that of the baseline's pool, in points, {n_seeds} seeds:
mean [95 % interval], and the seeds above 0.

{_list_table(["comparison", *tables], rows)}

Where the spread comes from (the default minus random; standard deviations in
points): of one paired difference across seeds, as the benchmark measures it;
between the trainings of the same two pools; and of the means across seeds.

{
                _list_table(
                    [
                        "pruned",
                        "across seeds, one training",
                        "between trainings",
                        "across seeds, means",
                    ],
                    spread,
                )
            }

The downstream answers, on the means of the trainings:

{verdict}
"""
        )
    if not parts:
        return None
    return f"""Final-training noise
--------------------

One seed of the benchmark draws the scoring subset and run, the random pool,
and the final training with its evaluation attack, each once. ``python -m
benchmarks.retrain --config <name> --jobs 2`` (``benchmarks/retrain.py``,
declared before it ran) trains the pools that the reported seeds kept at
{" and ".join(f"{q:.0%}" for q in RETRAIN_RATIOS)} (both rules; the pools of {
        ", ".join(LABELS[m] for m in ("none", *MAIN))
    }) twice more, with other training seeds and nothing scored again, so that
a comparison can be read on pools rather than on single trainings. The
single-training figures are those of the sections above.

{chr(10).join(parts)}"""


def _spreads(per_training, rule, ratio):
    """SDs of the default-minus-random difference: across seeds (one training),
    between trainings of the same pools, and of the per-seed means.

    ``per_training`` holds one :class:`Table` per training of the same pools,
    so each one's paired differences cover the same seeds in the same order.
    """
    d = np.array(
        [t.paired("confidence", rule, ratio, "random") for t in per_training]
    ).T
    if len(d) < 2:
        return ["--"] * 3
    return [
        f"{d[:, 0].std(ddof=1):.2f}",
        f"{np.sqrt(d.var(axis=1, ddof=1).mean()):.2f}",
        f"{d.mean(axis=1).std(ddof=1):.2f}",
    ]


def _seed_list(seeds):
    """Seeds as runs of consecutive numbers: ``0-7`` or ``10-14, 20-29``."""
    runs = []
    for seed in sorted(seeds):
        if runs and seed == runs[-1][1] + 1:
            runs[-1][1] = seed
        else:
            runs.append([seed, seed])
    return ", ".join(f"{a}" if a == b else f"{a}-{b}" for a, b in runs)


def _invocations(log):
    """One line per benchmark command of a results directory."""
    return "\n".join(
        f"* ``{e['command']}``: started {e['started']}, "
        + (
            f"{e.get('n_trainings', 0)} final trainings, "
            f"{e['wall_seconds'] / 60:.0f} minutes of wall time"
            if e.get("finished")
            else "stopped before it finished"
        )
        + "."
        for e in log
    )


def write_report(results_root, docs_dir):
    results_root, docs_dir = Path(results_root), Path(docs_dir)
    figure_dir = docs_dir / "results"
    figure_dir.mkdir(parents=True, exist_ok=True)
    sections = [
        section
        for name in CONFIGS
        if (section := config_section(name, results_root / name, figure_dir, docs_dir))
    ]
    scaling = scaling_section(results_root.parent / "scaling", figure_dir, docs_dir)
    if scaling:
        sections.append(scaling)
    confirmation = confirmation_section(results_root.parent / "confirm", results_root)
    if confirmation:
        sections.append(confirmation)
    retrained = retrain_section(
        results_root.parent / "retrain", results_root, results_root.parent / "confirm"
    )
    if retrained:
        sections.append(retrained)
    weights = class_weight_section(results_root.parent / "class_weight")
    if weights:
        sections.append(weights)
    clean = clean_weight_section(results_root.parent / "clean_weight")
    if clean:
        sections.append(clean)
    page = f"""Results: pruning strategies against random pruning
====================================================

The experiment of Nieth et al. (2024) as a benchmark anyone can rerun:
adversarial training on the real training set plus a synthetic pool pruned by
each strategy, at each prune ratio, over five seeds (ten more seeds rerun
the main comparison at 30 to 70 %, and its pools at 50 and 70 % are
trained three times, below); clean and robust accuracy
on the untouched real test split; the cost of every step; and how faithfully
each strategy ranks the pool against dynamic uncertainty (DU) computed directly
on all of it. Everything below, numbers, tables, plots and answers, is generated
by ``{REPORT_COMMAND}`` from the JSON files the benchmarks wrote; see
``benchmarks/reproduce.py`` for the protocol. Nothing on this page is edited by
hand.

The strategies' settings were chosen on seeds 0-2 of both data sets; the seeds
reported here (10-14, and the confirmation seeds 20-29) were not used to choose
anything. Paired differences are
per seed (the same scored subset, initialisation and attacks for every method of
a seed); their 95 % intervals are Student-t intervals over the seeds, and "beyond
the seed spread" means the interval lies above 0.

{chr(10).join(sections)}"""
    (docs_dir / "results.rst").write_text(page)
    print(f"wrote {docs_dir / 'results.rst'}")
