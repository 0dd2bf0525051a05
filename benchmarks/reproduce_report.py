"""``docs/results.rst`` and its plots, from the JSON files of ``reproduce.py``.

Nothing here trains or attacks a model: the page and the figures are a pure
function of ``benchmarks/results/reproduce/<config>/`` and are regenerated with::

    python -m benchmarks.reproduce --report

Every statement on the page that answers a question of the benchmark ("within
one point", "above random beyond the seed-to-seed spread", ...) is computed here
from the numbers, never written by hand, so the page cannot drift from the data.
"""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure
from reproduce import (
    METHOD_LABELS,
    RULE_LABELS,
    RULES,
    SCORE_NAMES,
    SHORT,
    Config,
    run_plan,
)

SCORE_LABELS = {
    "dynamic_uncertainty": "dynamic uncertainty",
    "frequency": "frequency",
    "forgetting": "forgetting events",
    "el2n": "EL2N",
    "tdds": "TDDS",
}
RUN_COMMANDS = {
    "small": "python -m benchmarks.reproduce --config small --jobs 2",
    "full": (
        "python -m benchmarks.reproduce --config full --cifar-dir DIR "
        "--pool-npz POOL.npz"
    ),
}
REPORT_COMMAND = "python -m benchmarks.reproduce --report"
COST_TARGET = 0.15


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


class Table:
    """Accuracies indexed by (method, rule, ratio) -> {seed: value}."""

    def __init__(self, runs, metric):
        self.values = defaultdict(dict)
        for run in runs:
            key = (run["method"], run["rule"], round(run["prune_ratio"], 4))
            self.values[key][run["seed"]] = 100.0 * run[metric]

    def get(self, method, rule, ratio):
        if method == "none":
            rule, ratio = "lowest", 0.0
        return self.values.get((method, rule, round(ratio, 4)), {})

    def stats(self, method, rule, ratio):
        values = np.array(list(self.get(method, rule, ratio).values()))
        if values.size == 0:
            return None
        std = values.std(ddof=1) if values.size > 1 else float("nan")
        return values.mean(), std, values.size

    def paired(self, method, rule, ratio, baseline, baseline_rule):
        """Per-seed differences method - baseline, on the seeds both have."""
        a = self.get(method, rule, ratio)
        b = self.get(baseline, baseline_rule, ratio)
        return np.array([a[s] - b[s] for s in sorted(set(a) & set(b))])


def random_rule(rule):
    """The random baseline a rule is compared with: class-balanced or not."""
    return "balanced" if rule == "balanced" else "lowest"


def _fmt(stats, digits=1):
    if stats is None:
        return "--"
    mean, std, n = stats
    spread = "" if n < 2 else f" ± {std:.{digits}f}"
    return f"{mean:.{digits}f}{spread} ({n})"


def _fmt_values(values, digits=2, sign=""):
    values = np.asarray(values, dtype=float)
    if values.size == 0:
        return "--"
    if values.size == 1:
        return f"{values[0]:{sign}.{digits}f}"
    return f"{values.mean():{sign}.{digits}f} ± {values.std(ddof=1):.{digits}f}"


def _list_table(header, rows, widths=None):
    lines = [".. list-table::", "   :header-rows: 1"]
    if widths:
        lines.append(f"   :widths: {' '.join(str(w) for w in widths)}")
    lines.append("")
    for row in [header, *rows]:
        lines.append(f"   * - {row[0]}")
        lines += [f"     - {cell}" for cell in row[1:]]
    return "\n".join(lines) + "\n"


# ------------------------------------------------------------------ analysis


def methods_present(table):
    order = list(METHOD_LABELS)
    present = {key[0] for key in table.values}
    return [m for m in order if m in present]


def cells(table, ratios):
    """(method, rule) pairs with at least one pruned run, in display order."""
    out = []
    for method in methods_present(table):
        if method == "none":
            continue
        for rule in RULES:
            if any(table.get(method, rule, q) for q in ratios):
                out.append((method, rule))
    return out


def beyond_spread(table, method, rule, ratio):
    """Sign of the difference to random if it exceeds the larger seed std.

    Returns (difference of means, larger std, verdict) with verdict +1 (above
    random beyond the spread), -1 (below it beyond the spread) or 0.
    """
    a = table.stats(method, rule, ratio)
    b = table.stats("random", random_rule(rule), ratio)
    if a is None or b is None:
        return None
    difference = a[0] - b[0]
    spreads = [s for s in (a[1], b[1]) if np.isfinite(s)]
    spread = max(spreads) if spreads else float("nan")
    verdict = 0
    if spreads and abs(difference) > spread:
        verdict = int(np.sign(difference))
    return difference, spread, verdict


def answers(robust, clean, scores, ratios):
    """The issue's questions, answered from the numbers."""
    lines = []
    none = robust.stats("none", "lowest", 0.0)
    du = {q: robust.stats("du-ext", "lowest", q) for q in ratios}
    if none and du.get(0.5):
        gap = du[0.5][0] - none[0]
        lines.append(
            f"**Does extrapolated DU at 50 % keep robust accuracy within 1 point of "
            f"no pruning?** {'Yes' if gap >= -1.0 else 'No'}: "
            f"{du[0.5][0]:.1f} % against {none[0]:.1f} % without pruning "
            f"(difference {gap:+.1f} points; means over {du[0.5][2]} and "
            f"{none[2]} seeds)."
        )
    for ratio in (0.5, 0.7):
        if ratio not in ratios:
            continue
        result = beyond_spread(robust, "du-ext", "lowest", ratio)
        if result is None:
            continue
        difference, spread, verdict = result
        paired = robust.paired("du-ext", "lowest", ratio, "random", "lowest")
        word = {1: "above", 0: "not separable from", -1: "below"}[verdict]
        lines.append(
            f"**Extrapolated DU against random at {ratio:.0%}:** {word} random "
            f"beyond the seed-to-seed spread (difference of means "
            f"{difference:+.1f} points, larger seed std {spread:.1f}; per-seed "
            f"paired differences {', '.join(f'{d:+.1f}' for d in paired)})."
        )
    below, below_clear, above_clear, n_cells = [], [], [], 0
    for method, rule in cells(robust, ratios):
        if method == "random":
            continue
        for ratio in ratios:
            result = beyond_spread(robust, method, rule, ratio)
            if result is None:
                continue
            n_cells += 1
            label = f"{METHOD_LABELS[method]} / {rule} at {ratio:.0%}"
            if result[2] > 0:
                above_clear.append(f"{label} ({result[0]:+.1f})")
            if result[0] >= 0:
                continue
            below.append(label)
            if result[2] < 0:
                below_clear.append(f"{label} ({result[0]:+.1f})")
    lines.append(
        f"**Where pruning falls below random** (mean robust accuracy lower than "
        f"random pruning of the same size and class balance): {len(below)} of "
        f"{n_cells} (method, rule, ratio) cells. Below random beyond the "
        f"seed-to-seed spread: {'; '.join(below_clear) if below_clear else 'none'}. "
        f"Above random beyond the spread: "
        f"{'; '.join(above_clear) if above_clear else 'none'}."
    )
    if scores:
        ratio_wall = [s["cost_ratio"] for s in scores.values()]
        ratio_cpu = [s["cost_ratio_cpu"] for s in scores.values()]

        def verdict(ratios):
            over = sum(r > COST_TARGET for r in ratios)
            mean = "met" if np.mean(ratios) <= COST_TARGET else "NOT met"
            return f"{mean} on average, exceeded by {over} of {len(ratios)} seeds"

        lines.append(
            f"**Cost of pruning against direct scoring** (scoring the "
            f"{_subset_fraction(scores):.0%} subset + embedding + extrapolation, "
            f"divided by scoring the whole pool directly): "
            f"{_fmt_values(ratio_wall, 3)} in wall time (target of at most "
            f"{COST_TARGET:.0%}: {verdict(ratio_wall)}); "
            f"{_fmt_values(ratio_cpu, 3)} in process CPU time "
            f"({verdict(ratio_cpu)})."
        )
        subset = [s["online_vs_epoch"]["spearman_subset"] for s in scores.values()]
        pool = [s["online_vs_epoch"]["spearman_all"] for s in scores.values()]
        fidelity = [
            s["fidelity"]["dynamic_uncertainty"]["spearman_extrapolated_vs_direct"]
            for s in scores.values()
        ]
        online_fidelity = [
            s["online_vs_epoch"]["spearman_online_extrapolated_vs_direct"]
            for s in scores.values()
        ]
        accuracy = []
        for ratio in ratios:
            a = robust.stats("du-ext-online", "lowest", ratio)
            b = robust.stats("du-ext", "lowest", ratio)
            if a and b:
                accuracy.append(f"{ratio:.0%}: {a[0]:.1f} vs {b[0]:.1f}")
        lines.append(
            f"**Does online recording rank like epoch recording?** Spearman "
            f"correlation of online and epoch DU on the scored subset (same "
            f"training run, only the recording differs): {_fmt_values(subset)}; "
            f"over the whole pool after extrapolation: {_fmt_values(pool)}. "
            f"Against the direct DU of the whole pool, online extrapolated DU "
            f"reaches {_fmt_values(online_fidelity)} and epoch extrapolated DU "
            f"{_fmt_values(fidelity)}. Robust accuracy, online vs epoch: "
            f"{'; '.join(accuracy) if accuracy else 'not run'} (%)."
        )
    if scores:
        lines.append(_why(scores))
    return lines


def _why(scores):
    """The measured reasons: fidelity of the pieces, and off-class samples."""
    du = [s["fidelity"]["dynamic_uncertainty"] for s in scores.values()]
    text = (
        "**Why extrapolated DU ranks differently from direct DU:** on the unscored "
        "pool, extrapolated and direct DU agree at Spearman "
        f"{_fmt_values([d['spearman_extrapolated_vs_direct'] for d in du])}. "
        "Two losses compound: on the scored samples themselves, the subset run's "
        "DU agrees with the whole-pool run's at only "
        f"{_fmt_values([d['spearman_subset_vs_direct'] for d in du])}, and "
        "extrapolating even the direct scores of the scored samples by their 12 "
        "nearest neighbours reaches "
        f"{_fmt_values([d['spearman_knn_of_direct_subset_embedding'] for d in du])}."
    )
    offclass = [s.get("offclass_mean_score") for s in scores.values()]
    if all(offclass):
        direct = [o["du-direct"]["offclass"] for o in offclass]
        ext = [o["du-ext"]["offclass"] for o in offclass]
        el2n = [o["el2n-direct"]["offclass"] for o in offclass]
        text += (
            " Off-class pool samples sit at mean percentile "
            f"{_fmt_values(direct)} of direct DU (0 = pruned first; 0.5 = no "
            f"preference) but at {_fmt_values(ext)} of extrapolated DU. Their "
            f"direct EL2N percentile, {_fmt_values(el2n)}, says the whole-pool "
            "model does not fit them, so their true-class probability stays "
            "low, with little variation, and direct DU prunes them."
        )
    return text


def _subset_fraction(scores):
    first = next(iter(scores.values()))
    return first["n_scored"] / first["n_pool"]


# ------------------------------------------------------------------ plots


def plot_accuracy(table, ratios, metric_label, path):
    """Accuracy against prune ratio, one panel per selection rule."""
    fig = Figure(figsize=(13.5, 4.2), layout="constrained")
    axes = fig.subplots(1, len(RULES), sharey=True)
    none = table.stats("none", "lowest", 0.0)
    colours = {m: f"C{i}" for i, m in enumerate(methods_present(table))}
    for ax, rule in zip(axes, RULES, strict=True):
        if none is not None:
            ax.axhline(none[0], color="black", linestyle="--", label="no pruning")
            if none[2] > 1:
                ax.axhspan(none[0] - none[1], none[0] + none[1], color="0.85")
        shown = [
            (m, r)
            for m, r in cells(table, ratios)
            if r == rule or (m == "random" and r == random_rule(rule))
        ]
        for i, (method, method_rule) in enumerate(shown):
            points = [
                (q, *table.stats(method, method_rule, q))
                for q in ratios
                if table.stats(method, method_rule, q)
            ]
            q, mean, std, _ = (np.array(v) for v in zip(*points, strict=True))
            offset = 0.004 * (i - len(shown) / 2)
            ax.errorbar(
                q + offset,
                mean,
                yerr=np.nan_to_num(std),
                marker="o",
                capsize=3,
                color=colours[method],
                linestyle=":" if method == "random" else "-",
                label=METHOD_LABELS[method],
            )
        ax.set_title(RULE_LABELS[rule])
        ax.set_xlabel("prune ratio of the synthetic pool")
        ax.set_xticks(ratios)
        ax.legend(fontsize=7)
    axes[0].set_ylabel(f"{metric_label} on the real test split (%)")
    fig.savefig(path, dpi=90)


def plot_scores(npz_path, scores_summary, path):
    """Histograms of direct and extrapolated scores, one panel per score."""
    with np.load(npz_path) as vectors:
        vectors = dict(vectors)
    subset = vectors["subset_indices"]
    rest = np.setdiff1d(np.arange(len(vectors["random"])), subset)
    fig = Figure(figsize=(13.5, 7.5), layout="constrained")
    axes = fig.subplots(2, 3).ravel()
    for ax, name in zip(axes, SCORE_NAMES, strict=False):
        direct = vectors[f"{SHORT[name]}-direct"]
        extrapolated = vectors[f"{SHORT[name]}-ext"]
        values = np.concatenate([direct, extrapolated])
        bins = np.linspace(values.min(), values.max(), 41)
        ax.hist(direct[rest], bins=bins, density=True, alpha=0.5, label="direct")
        ax.hist(
            extrapolated[subset],
            bins=bins,
            density=True,
            histtype="step",
            linewidth=1.5,
            label="subset run (scored rows)",
        )
        ax.hist(
            extrapolated[rest],
            bins=bins,
            density=True,
            histtype="step",
            linewidth=2,
            label="extrapolated",
        )
        rho = scores_summary["fidelity"][name]["spearman_extrapolated_vs_direct"]
        ax.set_title(f"{SCORE_LABELS[name]} (Spearman {rho:.2f})")
        ax.set_xlabel("score (higher = more important = kept)")
        ax.legend(fontsize=7)
    ax = axes[len(SCORE_NAMES)]
    direct = vectors["du-direct"][rest]
    extrapolated = vectors["du-ext"][rest]
    ax.scatter(
        _percentile(direct),
        _percentile(extrapolated),
        s=3,
        alpha=0.4,
    )
    ax.set_xlabel("direct DU, percentile in the unscored pool")
    ax.set_ylabel("extrapolated DU, percentile")
    ax.set_title("DU: rank against rank")
    fig.savefig(path, dpi=90)


def _percentile(values):
    ranks = np.argsort(np.argsort(values, kind="stable"), kind="stable")
    return ranks / max(len(values) - 1, 1)


# ------------------------------------------------------------------ page


def config_section(name, config_dir, figure_dir, docs_dir):
    runs, scores, log = load_results(config_dir)
    if not runs:
        return None
    # Runs written before the augment setting existed trained without it.
    for r in runs:
        r["environment"]["settings"].setdefault("augment", False)
    settings = runs[0]["environment"]["settings"]
    ratios = sorted({r["prune_ratio"] for r in runs if r["method"] != "none"})
    seeds = sorted({r["seed"] for r in runs})
    robust = Table(runs, "robust_accuracy")
    clean = Table(runs, "clean_accuracy")
    mismatched = [
        r
        for r in runs
        if {**r["environment"]["settings"], "seeds": None}
        != {**settings, "seeds": None}
    ]

    figure_dir.mkdir(parents=True, exist_ok=True)
    figures = {
        "robust": figure_dir / f"{name}_robust.png",
        "clean": figure_dir / f"{name}_clean.png",
        "scores": figure_dir / f"{name}_scores.png",
    }
    plot_accuracy(robust, ratios, "robust accuracy", figures["robust"])
    plot_accuracy(clean, ratios, "clean accuracy", figures["clean"])
    first_seed = min(scores) if scores else None
    if first_seed is not None:
        plot_scores(
            config_dir / "scores" / f"seed{first_seed}.npz",
            scores[first_seed],
            figures["scores"],
        )

    def rel(path):
        return path.relative_to(docs_dir).as_posix()

    out = []
    title = f"Configuration ``{name}``"
    out += [title, "-" * len(title), ""]
    n_real, n_pool = runs[0]["n_real"], runs[0]["n_pool"]
    out.append(
        f"Produced by ``{RUN_COMMANDS.get(name, 'python -m benchmarks.reproduce')}`` "
        f"and rendered by ``{REPORT_COMMAND}``; the raw results are the JSON "
        f"files under ``benchmarks/results/reproduce/{name}/`` (one per final "
        f"training in ``runs/``, one per seed in ``scores/``)."
    )
    out.append("")
    if log:
        out.append("Invocations:")
        out.append("")
        for entry in log:
            if entry.get("wall_seconds") is None:
                status = "stopped before it finished" + (
                    f" ({entry['note']})" if entry.get("note") else ""
                )
            else:
                status = (
                    f"{entry['n_trainings']} final trainings, "
                    f"{entry['wall_seconds'] / 60:.0f} minutes of wall time"
                )
            out.append(
                f"* ``{entry['command']}``: started {entry.get('started', '?')}, "
                f"{status}."
            )
        out.append("")
        env = runs[0]["environment"]
        out.append(
            f"Machine: {env['cpu_count']} CPU cores shared with other jobs (load "
            f"average {env['load_average'][1]:.1f} at the first final training), "
            f"torch {env['torch']} with {env['torch_threads']} thread(s) per "
            f"process, device {env['device']}."
        )
        out.append("")
    if mismatched:
        out.append(
            f".. warning:: {len(mismatched)} runs were produced with other "
            f"settings than the first run; the tables mix them."
        )
        out.append("")
    out += _setup(settings, n_real, n_pool, seeds, ratios)
    out += _what_ran(runs, settings)

    out += ["Answers", "~~~~~~~", ""]
    for line in answers(robust, clean, scores, ratios):
        out += [f"* {line}", ""]
    out.append(
        "*Beyond the seed-to-seed spread* means: the difference of the mean "
        "accuracies exceeds the larger of the two standard deviations over seeds. "
        "Every final training of one seed starts from the same initialisation and "
        "attack randomness, so the per-seed paired differences are shown as well."
    )
    out.append("")

    out += ["Robust accuracy", "~~~~~~~~~~~~~~~", ""]
    out.append(
        "Mean ± standard deviation over seeds (number of seeds), in %, on the "
        "real test split: PGD-{steps}, cross-entropy and CW losses, {restarts} "
        "random restarts each, worst case per sample, model in eval mode.".format(
            steps=settings["eval_steps"], restarts=settings["eval_restarts"]
        )
    )
    out.append("")
    out.append(_accuracy_table(robust, ratios))
    out += [f".. image:: {rel(figures['robust'])}", "   :width: 100%", ""]

    out += ["Difference to random pruning", "~~~~~~~~~~~~~~~~~~~~~~~~~~~~", ""]
    out.append(
        "Robust accuracy minus that of random pruning of the same size (class-"
        "balanced random for the class-balanced rule), paired by seed, in points."
    )
    out.append("")
    out.append(_difference_table(robust, ratios))

    out += ["Clean accuracy", "~~~~~~~~~~~~~~", ""]
    out.append(_accuracy_table(clean, ratios))
    out += [f".. image:: {rel(figures['clean'])}", "   :width: 100%", ""]

    if scores:
        out += _fidelity_section(scores, figures, rel, first_seed)
        out += _cost_section(scores, runs, ratios)
        out += _offclass_section(scores, runs, ratios)
    out += _diagnostic_section(config_dir)
    return "\n".join(out)


def _setup(settings, n_real, n_pool, seeds, ratios):
    subset = settings["subset_size"]
    lines = ["Setup", "~~~~~", ""]
    rows = [
        ("data", settings["dataset"]),
        ("real training samples (never pruned)", n_real),
        ("synthetic pool (pruned)", n_pool),
        ("scored subset", f"{subset:.0%} of the pool, class-stratified"),
        (
            "model",
            settings["model"] + " (advprune's default for the sample shape)"
            if settings["model"] == "default"
            else settings["model"],
        ),
        ("attack budget", f"L-infinity eps = {settings['eps']:.4g}"),
        (
            "scoring runs",
            f"PGD-{settings['attack_steps']} AT, {settings['scoring_epochs']} "
            f"epochs, lr {settings['scoring_lr']}, batch {settings['batch_size']}",
        ),
        (
            "final trainings",
            f"PGD-{settings['attack_steps']} AT, {settings['final_epochs']} epochs, "
            f"lr {settings['final_lr']}, batch {settings['batch_size']}, cosine "
            "schedule, same initialisation for every method of a seed",
        ),
        (
            "augmentation (scoring and final trainings)",
            "random crop (4-pixel padding) and horizontal flip"
            if settings["augment"]
            else "none",
        ),
        (
            "evaluation",
            f"PGD-{settings['eval_steps']}, CE and CW, {settings['eval_restarts']} "
            "restarts, worst case per sample",
        ),
        ("prune ratios", ", ".join(f"{q:g}" for q in ratios)),
        ("seeds", ", ".join(str(s) for s in seeds)),
    ]
    lines.append(_list_table(("setting", "value"), rows, widths=(30, 70)))
    lines.append(
        "Methods: *no pruning*; *random*; *DU direct* (dynamic uncertainty from a "
        "scoring run on the WHOLE pool, the expensive reference); *DU "
        "extrapolated* (the paper's method: DU of a run on the subset, "
        "extrapolated by the mean of the 12 nearest scored neighbours in the "
        "scoring model's penultimate features); the same with online recording; "
        "the frequency score, forgetting events, EL2N and TDDS extrapolated the "
        "same way, all from the one recorded subset run. Rules: lowest scores "
        "removed (the paper's rule), the same per class, and coverage-centric "
        "selection (CCS)."
    )
    lines.append("")
    return lines


def _what_ran(runs, settings):
    by_tier = defaultdict(int)
    for run in runs:
        by_tier[run["tier"]] += 1
    train = np.array([r["train_seconds"] for r in runs])
    evaluate = np.array([r["eval_seconds"] for r in runs])
    config = Config(
        **{k: tuple(v) if isinstance(v, list) else v for k, v in settings.items()}
    )
    done = {
        (r["seed"], r["method"], r["rule"], round(r["prune_ratio"], 4)) for r in runs
    }
    missing = defaultdict(int)
    for tier, seed, method, rule, ratio in run_plan(config):
        if (seed, method, rule, round(ratio, 4)) not in done:
            missing[tier, method, rule] += 1
    lines = ["What ran", "~~~~~~~~", ""]
    lines.append(
        f"{len(runs)} final trainings ("
        + ", ".join(f"tier {t}: {n}" for t, n in sorted(by_tier.items()))
        + f"; tiers as in ``benchmarks/reproduce.py``); a final training took "
        f"{train.mean():.0f} s on average ({train.min():.0f}-{train.max():.0f} s) "
        f"and its evaluation {evaluate.mean():.0f} s."
    )
    lines.append("")
    if missing:
        cells = "; ".join(
            f"tier {tier}: {METHOD_LABELS[method]} / {rule} ({n})"
            for (tier, method, rule), n in sorted(missing.items())
        )
        lines.append(
            f"**Not run**: {sum(missing.values())} of the configuration's "
            f"{len(run_plan(config))} final trainings (see the invocations "
            f"above for how far each went): {cells}. The fidelity of every "
            "score (Spearman against direct scores) is measured all the same, "
            "below."
        )
        lines.append("")
    return lines


def _accuracy_table(table, ratios):
    header = ("method", "rule", *[f"{q:.0%} pruned" for q in ratios])
    none = table.stats("none", "lowest", 0.0)
    rows = [("no pruning", "--", *[_fmt(none)] * len(ratios))]
    for method, rule in cells(table, ratios):
        rows.append(
            (
                METHOD_LABELS[method],
                rule,
                *[_fmt(table.stats(method, rule, q)) for q in ratios],
            )
        )
    return _list_table(header, rows)


def _difference_table(table, ratios):
    header = ("method", "rule", *[f"{q:.0%} pruned" for q in ratios])
    rows = []
    for method, rule in cells(table, ratios):
        if method == "random":
            continue
        entries = []
        for q in ratios:
            paired = table.paired(method, rule, q, "random", random_rule(rule))
            text = _fmt_values(paired, 1, "+")
            entries.append(f"{text} ({paired.size})" if paired.size else "--")
        rows.append((METHOD_LABELS[method], rule, *entries))
    return _list_table(header, rows)


def _fidelity_section(scores, figures, rel, first_seed):
    lines = ["Fidelity of the extrapolated scores", "~" * 35, ""]
    lines.append(
        "Spearman correlations, mean ± std over seeds. *extrapolated vs direct*: "
        "the extrapolated score of every unscored pool sample against the score "
        "computed directly on the whole pool. *subset run vs direct*: on the "
        "scored samples, the score of the subset run against that of the whole-"
        "pool run (how much training on a 10 % subset changes the dynamics). "
        "*kNN of direct scores*: extrapolating the DIRECT scores of the scored "
        "samples with the same 12-neighbour regressor (in the subset model's "
        "features, and in the whole-pool model's): what extrapolation alone loses. "
        "*lowest-half overlap*: share of the unscored samples that the direct "
        "scores prune at 50 % which the extrapolated scores also prune (random: "
        "0.5)."
    )
    lines.append("")
    header = (
        "score",
        "extrapolated vs direct",
        "subset run vs direct",
        "kNN of direct (subset features)",
        "kNN of direct (whole-pool features)",
        "lowest-half overlap",
    )
    rows = []
    for name in SCORE_NAMES:
        values = [s["fidelity"][name] for s in scores.values()]
        rows.append(
            (
                SCORE_LABELS[name],
                _fmt_values([v["spearman_extrapolated_vs_direct"] for v in values]),
                _fmt_values([v["spearman_subset_vs_direct"] for v in values]),
                _fmt_values(
                    [v["spearman_knn_of_direct_subset_embedding"] for v in values]
                ),
                _fmt_values(
                    [v["spearman_knn_of_direct_direct_embedding"] for v in values]
                ),
                _fmt_values([v["lowest_half_overlap"] for v in values]),
            )
        )
    lines.append(_list_table(header, rows))
    lines.append(
        f"Score distributions of seed {first_seed}: the direct scores of the "
        "unscored samples, the subset run's scores of the scored samples, and the "
        "extrapolated scores of the unscored samples; the last panel plots the "
        "extrapolated DU rank of every unscored sample against its direct rank."
    )
    lines.append("")
    lines += [f".. image:: {rel(figures['scores'])}", "   :width: 100%", ""]
    return lines


def _cost_section(scores, runs, ratios):
    lines = ["Cost", "~~~~", ""]
    lines.append(
        "Seconds per seed. The pruning pipeline is the subset scoring run plus "
        "embedding and extrapolation (``AdversarialPruner.timings_``); the "
        "reference is the scoring run on the whole pool. Wall times on a shared "
        "machine move with its load, so the ratio of process CPU times of the two "
        "``fit`` calls (one torch thread) is given as well."
    )
    lines.append("")
    header = (
        "seed",
        "subset scoring",
        "embedding",
        "extrapolation",
        "online subset scoring",
        "direct scoring (whole pool)",
        "ratio (wall)",
        "ratio (CPU)",
    )
    rows = []
    for seed, s in sorted(scores.items()):
        t = s["pruner_timings"]
        rows.append(
            (
                seed,
                f"{t['scoring']:.1f}",
                f"{t['embedding']:.2f}",
                f"{t['extrapolation']:.2f}",
                f"{s['online_timings']['scoring']:.1f}",
                f"{s['direct_scoring_seconds']:.1f}",
                f"{s['cost_ratio']:.3f}",
                f"{s['cost_ratio_cpu']:.3f}",
            )
        )
    lines.append(_list_table(header, rows))
    train = defaultdict(list)
    for run in runs:
        train[run["prune_ratio"]].append(run["train_seconds"])
    lines.append(
        "Final adversarial training, mean seconds by prune ratio: "
        + ", ".join(f"{q:.0%}: {np.mean(v):.0f} s" for q, v in sorted(train.items()))
        + "."
    )
    lines.append("")
    return lines


def _offclass_section(scores, runs, ratios):
    first = next(iter(scores.values()))
    if not first.get("offclass_mean_score"):
        return []
    lines = ["Off-class samples", "~~~~~~~~~~~~~~~~~", ""]
    lines.append(
        "The digits pool contains samples interpolated more than half way to "
        "another class but labelled with their own (off-class by construction). "
        "Mean score percentile (0 = pruned first, 1 = kept last) of the "
        "off-class samples and of the others, over seeds, and the share of "
        "off-class samples in the kept pool at 50 % pruning (lowest rule; the "
        "unpruned pool's share is given by *no pruning*)."
    )
    lines.append("")
    keys = ["random", "du-direct", "du-ext", "du-ext-online"] + [
        f"{SHORT[n]}-{kind}" for n in SCORE_NAMES[1:] for kind in ("direct", "ext")
    ]
    kept = defaultdict(list)
    for run in runs:
        if run["prune_ratio"] in (0.0, 0.5) and run["rule"] == "lowest":
            kept[run["method"]].append(run["offclass_kept_fraction"])
    rows = []
    for key in keys:
        values = [s["offclass_mean_score"].get(key) for s in scores.values()]
        if any(v is None for v in values):
            continue
        if key in METHOD_LABELS:
            label = METHOD_LABELS[key]
        else:
            name = next(n for n in SCORE_NAMES if key == f"{SHORT[n]}-direct")
            label = f"{SCORE_LABELS[name]} direct (not a method here)"
        rows.append(
            (
                label,
                _fmt_values([v["offclass"] for v in values]),
                _fmt_values([v["other"] for v in values]),
                _fmt_values(kept[key]) if kept.get(key) else "--",
            )
        )
    if kept.get("none"):
        rows.append(("no pruning", "--", "--", _fmt_values(kept["none"])))
    header = (
        "score",
        "off-class percentile",
        "other percentile",
        "off-class share kept at 50 %",
    )
    lines.append(_list_table(header, rows))
    return lines


def _diagnostic_section(config_dir):
    paths = sorted(config_dir.glob("scores/subset_diagnostic_seed*.json"))
    if not paths:
        return []
    reports = [json.loads(p.read_text()) for p in paths]
    lines = ["Post-hoc diagnostic: how far the subset run trains", "~" * 50, ""]
    lines.append(
        "Not part of the comparison above, and added after its results were "
        "seen, to explain them; produced by ``python -m benchmarks.reproduce "
        "--subset-diagnostic --jobs 2``. With a fixed number of epochs, the "
        "scoring run on a 10 % subset takes a tenth of the optimizer steps of "
        "the run on the whole pool. The subset run is repeated as it ran "
        f"(it reproduces the saved scores exactly: "
        f"{all(r.get('reproduces_saved_scores') for r in reports)}) and with the "
        "batch size cut so that it takes as many optimizer steps as the direct "
        "run, for the same number of sample passes. Mean ± std over seeds "
        f"({len(reports)}); Spearman correlations against the direct scores of "
        "the whole pool; CPU cost relative to the direct run's ``fit`` (the "
        "subset runs timed anew, under the machine's load at that time)."
    )
    lines.append("")
    header = (
        "subset run",
        "batch",
        "optimizer steps (direct run)",
        "last-epoch adversarial train accuracy",
        "mean adversarial true-class probability, last epoch",
        "DU: subset run vs direct (scored rows)",
        *[f"{SCORE_LABELS[n]}: extrapolated vs direct" for n in SCORE_NAMES],
        "CPU cost / direct",
    )
    rows = []
    for label, title in (("as_run", "as run"), ("equal_steps", "equal steps")):
        entries = [r[label] for r in reports]
        training = [e["training"] for e in entries]
        rows.append(
            (
                title,
                training[0]["batch_size"],
                f"{training[0]['optimizer_steps']} "
                f"({reports[0]['direct_optimizer_steps']})",
                _fmt_values([t["final_train_accuracy"] for t in training]),
                _fmt_values(
                    [t["final_mean_adversarial_true_probability"] for t in training]
                ),
                _fmt_values(
                    [
                        e["fidelity"]["dynamic_uncertainty"][
                            "spearman_subset_vs_direct"
                        ]
                        for e in entries
                    ]
                ),
                *[
                    _fmt_values(
                        [
                            e["fidelity"][n]["spearman_extrapolated_vs_direct"]
                            for e in entries
                        ]
                    )
                    for n in SCORE_NAMES
                ],
                _fmt_values([e["cost_ratio_cpu"] for e in entries], 3),
            )
        )
    lines.append(_list_table(header, rows))
    return lines


def write_report(results_root, docs_dir):
    """Write ``docs/results.rst`` and the figures under ``docs/results/``."""
    results_root, docs_dir = Path(results_root), Path(docs_dir)
    docs_dir.mkdir(parents=True, exist_ok=True)
    figure_dir = docs_dir / "results"
    sections = []
    for name in ("small", "full"):
        config_dir = results_root / name
        if config_dir.is_dir():
            section = config_section(name, config_dir, figure_dir, docs_dir)
            if section:
                sections.append(section)
    title = "Results: pruning methods against prune ratio"
    page = [
        title,
        "=" * len(title),
        "",
        "The experiment of Nieth et al. (2024) as a benchmark anyone can rerun: "
        "adversarial training on the real training set plus a synthetic pool pruned "
        "by each method, at each prune ratio, over several seeds; clean and robust "
        "accuracy on the untouched real test split; the cost of every step; and the "
        "fidelity of extrapolated importance scores. Everything below, numbers, "
        "tables, plots and the answers, is generated by::",
        "",
        f"    {REPORT_COMMAND}",
        "",
        "from the JSON files the benchmark wrote (see ``benchmarks/reproduce.py`` "
        "for the configurations and the exact protocol); nothing on this page is "
        "edited by hand.",
        "",
    ]
    page += sections or ["No results yet: run ``" + RUN_COMMANDS["small"] + "``.", ""]
    (docs_dir / "results.rst").write_text("\n".join(page).rstrip() + "\n")
