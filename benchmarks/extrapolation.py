"""Benchmark of importance extrapolation: speed, memory and fidelity.

Three runs, each writing JSON under ``benchmarks/results/``:

``python -m benchmarks.extrapolation`` (``--small`` for a quick run)
    Nearest-neighbour extrapolation of ``--n-scored`` scores to ``--n-queries``
    queries in ``--dim`` dimensions (defaults 50,000 / 1,000,000 / 128) by
    advprune's exact and HNSW searches, FAISS's flat index, scikit-learn's brute
    ``KNeighborsRegressor`` and the paper authors' torch broadcast (16 queries per
    batch). Per method: seconds, time relative to advprune exact, achieved GFLOP/s
    (``2 N M d / seconds``), the same as a share of float32 matrix-multiply
    throughput measured in the same run, peak resident memory, and for the HNSW
    search the Spearman correlation of its predictions with the exact ones on
    clustered embeddings, plus a sweep of ``ef_search``.

``python -m benchmarks.extrapolation --memmap-10m``
    Predicts 10,000,000 x 64 read-only memory-mapped queries into a memory-mapped
    output in a child process and reports the child's peak RSS.

``python -m benchmarks.extrapolation --calibration``
    Plain kNN against ``calibrate='quantile'`` on a bimodal importance score over a
    clustered pool with an oracle score for every sample; also how well
    ``extrapolation_report`` (cross-validation on the scored subset alone) predicts
    the true fidelity, and which ``n_neighbors`` ``GridSearchCV`` picks.

Timings on a shared machine move with its load; each method's share of the
matrix-multiply throughput is taken against the mean of the two matrix-product
measurements made just before and just after it, and the load average is recorded.
"""

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from functools import partial
from pathlib import Path

import faiss
import numpy as np
import scipy
import sklearn
from scipy import stats
from sklearn.model_selection import GridSearchCV
from sklearn.neighbors import KNeighborsRegressor

from advprune.extrapolation import ImportanceExtrapolator
from advprune.metrics import (
    extrapolation_report,
    lowest_fraction_overlap,
    spearman_scorer,
)

from ._common import RESULTS, save_json

N_NEIGHBORS = 12
N_CLASSES = 10
LATENT_DIM = 16


# ---------------------------------------------------------------- data


class ClusteredEmbeddings:
    """A 10-class Gaussian mixture with low-rank class covariances.

    Penultimate features of trained networks concentrate around one low-dimensional
    cloud per class; isotropic Gaussian data is the worst case for graph indexes and
    unrepresentative of real use. Sample ``i`` depends only on ``(seed, i //
    chunk)``, so any slice can be regenerated without the rest.
    """

    def __init__(self, dim, seed, isotropic=False, chunk=65536):
        rng = np.random.default_rng([seed, 0])
        self.dim, self.seed, self.isotropic, self.chunk = dim, seed, isotropic, chunk
        self.centers = 4.0 * rng.normal(size=(N_CLASSES, dim))
        self.loadings = rng.normal(size=(N_CLASSES, LATENT_DIM, dim))
        self.score_direction = rng.normal(size=dim) / np.sqrt(dim)

    def _block(self, stream, index, n):
        rng = np.random.default_rng([self.seed, stream, index])
        labels = rng.integers(0, N_CLASSES, size=n)
        if self.isotropic:
            spread = np.sqrt(LATENT_DIM) * rng.normal(size=(n, self.dim))
        else:
            latent = rng.normal(size=(n, LATENT_DIM))
            spread = np.empty((n, self.dim))
            for label in range(N_CLASSES):
                members = labels == label
                spread[members] = latent[members] @ self.loadings[label]
        X = self.centers[labels] + spread + 0.3 * rng.normal(size=(n, self.dim))
        return X.astype(np.float32), labels, rng

    def draw(self, n, stream, out=None):
        """``n`` embeddings (float32) of an independent stream, with labels."""
        X = np.empty((n, self.dim), dtype=np.float32) if out is None else out
        labels = np.empty(n, dtype=np.int64)
        for index, start in enumerate(range(0, n, self.chunk)):
            stop = min(start + self.chunk, n)
            X[start:stop], labels[start:stop], _ = self._block(
                stream, index, stop - start
            )
        return X, labels

    def scores(self, X, seed):
        """A score with as much embedding structure as noise (signal-to-noise 1)."""
        rng = np.random.default_rng([self.seed, seed])
        signal = X.astype(np.float64) @ self.score_direction
        signal = (signal - signal.mean()) / signal.std()
        return signal + rng.normal(size=X.shape[0])


# ---------------------------------------------------------------- measurement


def _status_kib(field):
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return None


def _reset_peak_rss():
    """Reset the kernel's peak-RSS mark (Linux); False if unsupported."""
    try:
        with open("/proc/self/clear_refs", "w") as clear:
            clear.write("5")
        return True
    except OSError:
        return False


def _peak_rss_mib():
    peak = _status_kib("VmHWM")
    if peak is None:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 1024


def measure(fn):
    """Run ``fn``; return its result, seconds, peak RSS and peak above the start."""
    resettable = _reset_peak_rss()
    start_rss = (_status_kib("VmRSS") or 0) / 1024
    t0 = time.perf_counter()
    result = fn()
    seconds = time.perf_counter() - t0
    peak = _peak_rss_mib()
    return result, seconds, peak, (peak - start_rss) if resettable else None


def matmul_gflops(refs, queries, batch=8192):
    """Float32 GEMM throughput on the shape of the distance computation.

    ``batch`` queries against all references, in blocks of ``batch`` references
    so that the product's output stays at 256 MiB.
    """
    q = np.ascontiguousarray(queries[:batch], dtype=np.float32)
    out = np.empty((q.shape[0], batch), dtype=np.float32)
    np.matmul(q, refs[:batch].T, out=out[:, : min(batch, refs.shape[0])])
    t0 = time.perf_counter()
    for start in range(0, refs.shape[0], batch):
        block = refs[start : start + batch]
        np.matmul(q, block.T, out=out[:, : block.shape[0]])
    seconds = time.perf_counter() - t0
    return 2.0 * q.shape[0] * refs.shape[0] * refs.shape[1] / seconds / 1e9


def _cpu_seconds():
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def authors_broadcast(refs, scores, queries, batch=16):
    """The paper's code path: torch broadcast of query-minus-reference differences."""
    # Imported here so that the memory benchmark's child process never loads torch.
    import torch

    refs_t, scores_t = torch.from_numpy(refs), torch.from_numpy(scores)
    out = np.empty(queries.shape[0])
    with torch.no_grad():
        for start in range(0, queries.shape[0], batch):
            q = torch.from_numpy(queries[start : start + batch])
            distances = torch.norm(q[:, None, :] - refs_t[None, :, :], dim=2)
            nearest = torch.topk(distances, N_NEIGHBORS, largest=False).indices
            out[start : start + batch] = scores_t[nearest].mean(dim=1).numpy()
    return out


def recall(exact_neighbors, found_neighbors):
    """Mean share of the exact neighbours that a search found."""
    hits = [
        np.intersect1d(a, b).size
        for a, b in zip(exact_neighbors, found_neighbors, strict=True)
    ]
    return float(np.mean(hits) / exact_neighbors.shape[1])


def faiss_flat(index, scores, queries):
    _, nearest = index.search(queries, N_NEIGHBORS)
    return scores[nearest].mean(axis=1)


def environment():
    info = {
        "machine": platform.machine(),
        "processor": platform.processor(),
        "cpu_count": os.cpu_count(),
        "python": platform.python_version(),
        "numpy": np.__version__,
        "scipy": scipy.__version__,
        "scikit-learn": sklearn.__version__,
        "faiss": faiss.__version__,
        "faiss_omp_threads": faiss.omp_get_max_threads(),
    }
    torch = sys.modules.get("torch")
    if torch is not None:
        info["torch"] = torch.__version__
        info["torch_threads"] = torch.get_num_threads()
    return info


def _load():
    return list(os.getloadavg()) if hasattr(os, "getloadavg") else None


def _write(name, payload):
    save_json(RESULTS / name, payload)
    print(f"wrote {RESULTS / name}")


# ---------------------------------------------------------------- speed


def run_speed(args):
    n, m, d = args.n_queries, args.n_scored, args.dim
    data = ClusteredEmbeddings(d, args.seed)
    print(f"generating {n:,} queries and {m:,} scored samples, d={d} (clustered)")
    refs, _ = data.draw(m, stream=1)
    queries, _ = data.draw(n, stream=2)
    scores = data.scores(refs, seed=3)
    flops = 2.0 * n * m * d
    load_start = _load()
    rows = []

    def record(method, predict, n_timed, n_slices, note=""):
        """Time `predict` on slices of the queries, probing matmul between slices.

        On a shared machine the load changes over minutes; probing the matrix
        product between slices keeps the reference throughput in step with it.
        """
        bounds = np.linspace(0, n_timed, n_slices + 1).astype(int)
        probes = [matmul_gflops(refs, queries)]
        parts, seconds, cpu_seconds, peak, above = [], 0.0, 0.0, 0.0, 0.0
        for start, stop in zip(bounds[:-1], bounds[1:], strict=True):
            cpu_start = _cpu_seconds()
            part, part_seconds, part_peak, part_above = measure(
                partial(predict, queries[start:stop])
            )
            cpu_seconds += _cpu_seconds() - cpu_start
            parts.append(part)
            seconds += part_seconds
            peak = max(peak, part_peak)
            above = max(above, part_above or 0.0)
            probes.append(matmul_gflops(refs, queries))
        reference = float(np.mean(probes))
        seconds_full = seconds * n / n_timed
        gflops = flops / seconds_full / 1e9
        rows.append(
            {
                "method": method,
                "queries_timed": int(n_timed),
                "seconds_timed": seconds,
                "seconds": seconds_full,
                "cpu_seconds_timed": cpu_seconds,
                "gflops": gflops,
                "matmul_gflops_probes": probes,
                "matmul_gflops_reference": reference,
                "pct_of_matmul": 100.0 * gflops / reference,
                "peak_rss_mib": peak,
                "peak_rss_above_start_mib": above,
                "note": note,
            }
        )
        print(
            f"  {method:<36} {seconds_full:9.1f} s  {gflops:6.1f} GFLOP/s "
            f"({100 * gflops / reference:5.1f}% of {reference:.1f})  "
            f"peak {peak:7.0f} MiB"
        )
        return np.concatenate(parts)

    print("advprune exact")
    exact_model = ImportanceExtrapolator(n_neighbors=N_NEIGHBORS).fit(refs, scores)
    exact = record("advprune exact", exact_model.predict, n, 10)

    n_flat = min(n, args.slice_faiss)
    print(f"FAISS IndexFlatL2 ({n_flat:,} queries)")
    flat_index = faiss.IndexFlatL2(d)
    flat_index.add(refs)
    flat = record(
        "FAISS flat (IndexFlatL2)",
        partial(faiss_flat, flat_index, scores),
        n_flat,
        4,
        "float32 distances, no re-ranking",
    )

    n_sklearn = min(n, args.slice_sklearn)
    print(f"scikit-learn KNeighborsRegressor brute ({n_sklearn:,} queries)")
    knr = KNeighborsRegressor(n_neighbors=N_NEIGHBORS, algorithm="brute")
    sk = record(
        "sklearn KNeighborsRegressor brute",
        knr.fit(refs, scores).predict,
        n_sklearn,
        4,
    )

    n_authors = min(n, args.slice_authors)
    print(f"authors' torch broadcast ({n_authors:,} queries)")
    authors_broadcast(refs, scores, queries[:16])  # warm-up, outside the timing
    authors = record(
        "authors' torch broadcast (16/batch)",
        partial(authors_broadcast, refs, scores),
        n_authors,
        4,
    )

    print("advprune hnsw")
    hnsw_model = ImportanceExtrapolator(n_neighbors=N_NEIGHBORS, algorithm="hnsw")
    _, build_seconds, _, _ = measure(partial(hnsw_model.fit, refs, scores))
    approx = record(
        "advprune hnsw (predict)",
        hnsw_model.predict,
        n,
        10,
        f"ef_search={hnsw_model.ef_search}",
    )
    rows[-1]["build_seconds"] = build_seconds
    rows[-1]["seconds_with_build"] = rows[-1]["seconds"] + build_seconds

    exact_seconds = rows[0]["seconds"]
    for row in rows:
        row["time_over_exact"] = row["seconds"] / exact_seconds
        # The same ratio with each time scaled by the matmul throughput measured
        # around it, which cancels load changes between the two measurements.
        row["time_over_exact_load_adjusted"] = (
            rows[0]["pct_of_matmul"] / row["pct_of_matmul"]
        )
    rows[-1]["time_with_build_over_exact"] = rows[-1]["seconds_with_build"] / (
        exact_seconds
    )

    agreement = {
        "faiss_flat_vs_exact_max_abs": float(np.max(np.abs(flat - exact[:n_flat]))),
        "sklearn_vs_exact_max_abs": float(np.max(np.abs(sk - exact[:n_sklearn]))),
        "authors_vs_exact_max_abs": float(np.max(np.abs(authors - exact[:n_authors]))),
        "hnsw_spearman_vs_exact": float(stats.spearmanr(approx, exact).statistic),
        "hnsw_lowest_half_overlap_vs_exact": lowest_fraction_overlap(
            exact, approx, 0.5
        ),
    }
    n_recall = min(n, 20000)
    exact_ind = exact_model.kneighbors(queries[:n_recall], return_distance=False)
    approx_ind = hnsw_model.kneighbors(queries[:n_recall], return_distance=False)
    agreement["hnsw_recall_at_12"] = recall(exact_ind, approx_ind)
    print(
        f"HNSW vs exact: Spearman {agreement['hnsw_spearman_vs_exact']:.4f}, "
        f"recall@12 {agreement['hnsw_recall_at_12']:.3f}"
    )

    sweep = ef_sweep(args, data, refs, scores, queries)
    payload = {
        "command": "python -m benchmarks.extrapolation" + (" --small" * args.small),
        "n_queries": n,
        "n_scored": m,
        "dim": d,
        "n_neighbors": N_NEIGHBORS,
        "data": "10-class Gaussian mixture, rank-16 class covariances + 0.3 noise",
        "matmul_gflops_best": max(max(row["matmul_gflops_probes"]) for row in rows),
        "methods": rows,
        "agreement": agreement,
        "ef_search_sweep": sweep,
        "load_average_start": load_start,
        "load_average_end": _load(),
        "environment": environment(),
    }
    print_table(payload)
    _write(args.output or f"extrapolation{'_small' * args.small}.json", payload)


def ef_sweep(args, data, refs, scores, queries):
    """Recall/speed of ``ef_search`` on a slice, clustered and isotropic data."""
    n_sweep = min(queries.shape[0], args.slice_sweep)
    sweeps = []
    iso = ClusteredEmbeddings(data.dim, args.seed, isotropic=True)
    iso_refs, _ = iso.draw(refs.shape[0], stream=1)
    iso_queries, _ = iso.draw(n_sweep, stream=2)
    iso_scores = iso.scores(iso_refs, seed=3)
    datasets = {
        "clustered": (refs, scores, queries[:n_sweep]),
        "isotropic mixture": (iso_refs, iso_scores, iso_queries),
    }
    for name, (R, s, Q) in datasets.items():
        exact_model = ImportanceExtrapolator(n_neighbors=N_NEIGHBORS).fit(R, s)
        exact, exact_seconds, _, _ = measure(partial(exact_model.predict, Q))
        exact_ind = exact_model.kneighbors(Q[:5000], return_distance=False)
        model = ImportanceExtrapolator(n_neighbors=N_NEIGHBORS, algorithm="hnsw")
        _, build, _, _ = measure(partial(model.fit, R, s))
        for ef in (12, 16, 20, 32, 64, 128):
            model.set_params(ef_search=ef)
            pred, seconds, _, _ = measure(partial(model.predict, Q))
            ind = model.kneighbors(Q[:5000], return_distance=False)
            found = recall(exact_ind, ind)
            spearman = float(stats.spearmanr(pred, exact).statistic)
            sweeps.append(
                {
                    "data": name,
                    "ef_search": ef,
                    "queries": n_sweep,
                    "speedup_vs_exact": exact_seconds / seconds,
                    "build_seconds": build,
                    "recall_at_12": found,
                    "spearman_vs_exact": spearman,
                }
            )
            print(
                f"  sweep {name:<17} ef_search={ef:<4} speed-up "
                f"{exact_seconds / seconds:5.1f}x  recall@12 {found:.3f}  "
                f"Spearman {spearman:.4f}"
            )
    return sweeps


def print_table(payload):
    print()
    print(
        f"N={payload['n_queries']:,} queries, M={payload['n_scored']:,} scored, "
        f"d={payload['dim']}, k={payload['n_neighbors']}; float32 matmul "
        f"{payload['matmul_gflops_best']:.1f} GFLOP/s (best in run)"
    )
    header = (
        f"{'method':<36}{'queries timed':>14}{'seconds':>10}{'x exact':>9}"
        f"{'x exact*':>10}{'GFLOP/s':>9}{'% matmul':>10}{'peak MiB':>10}"
    )
    print(header)
    print("-" * len(header))
    for row in payload["methods"]:
        print(
            f"{row['method']:<36}{row['queries_timed']:>14,}{row['seconds']:>10.1f}"
            f"{row['time_over_exact']:>9.2f}"
            f"{row['time_over_exact_load_adjusted']:>10.2f}{row['gflops']:>9.1f}"
            f"{row['pct_of_matmul']:>10.1f}{row['peak_rss_mib']:>10.0f}"
        )
    print(
        "seconds: wall clock, scaled to all queries; x exact*: time ratio with each "
        "time scaled by the matmul throughput probed around it (load-adjusted)"
    )
    hnsw = payload["methods"][-1]
    print(
        f"HNSW build {hnsw['build_seconds']:.1f} s (one thread); with build "
        f"{hnsw['time_with_build_over_exact']:.3f} x exact"
    )
    print(json.dumps(payload["agreement"], indent=2))


# ---------------------------------------------------------------- memory


def run_memmap(args):
    n, d, m = args.memmap_rows, 64, args.n_scored
    workdir = Path(tempfile.mkdtemp(prefix="advprune-memmap-", dir=args.tmp_dir))
    path = workdir / "queries.npy"
    print(f"writing {n:,} x {d} float32 queries to {path}")
    data = ClusteredEmbeddings(d, args.seed)
    # Written through a file handle, not a memory map, so that this process stays
    # small: the child's ru_maxrss starts from its parent's peak at the fork.
    header = np.lib.format.open_memmap(path, mode="w+", dtype=np.float32, shape=(n, d))
    offset = header.offset
    del header
    block = 1 << 18
    with open(path, "r+b") as file:
        file.seek(offset)
        for start in range(0, n, block):
            stop = min(start + block, n)
            data.draw(stop - start, stream=100 + start // block)[0].tofile(file)
    del data
    command = [
        sys.executable,
        __file__,
        "--memmap-child",
        str(workdir),
        "--n-scored",
        str(m),
        "--algorithm",
        args.algorithm,
        "--seed",
        str(args.seed),
    ]
    print("child:", " ".join(command))
    completed = subprocess.run(command, capture_output=True, text=True, check=True)
    child = json.loads(completed.stdout.strip().splitlines()[-1])
    child["children_ru_maxrss_mib"] = (
        resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    )
    child["command"] = "python -m benchmarks.extrapolation --memmap-10m" + (
        f" --memmap-rows {n}" * (n != 10_000_000)
    )
    child["environment"] = environment()
    for file in workdir.iterdir():
        file.unlink()
    workdir.rmdir()
    print(json.dumps(child, indent=2))
    _write(args.output or "extrapolation_memmap.json", child)


def memmap_child(args):
    workdir = Path(args.memmap_child)
    queries = np.load(workdir / "queries.npy", mmap_mode="r")
    n, d = queries.shape
    data = ClusteredEmbeddings(d, args.seed)
    refs, _ = data.draw(args.n_scored, stream=1)
    scores = data.scores(refs, seed=3)
    del data
    out = np.lib.format.open_memmap(
        workdir / "predictions.npy", mode="w+", dtype=np.float64, shape=(n,)
    )
    model = ImportanceExtrapolator(n_neighbors=N_NEIGHBORS, algorithm=args.algorithm)
    t0 = time.perf_counter()
    model.fit(refs, scores)
    fit_seconds = time.perf_counter() - t0
    t0 = time.perf_counter()
    model.predict(queries, out=out)
    predict_seconds = time.perf_counter() - t0
    out.flush()
    finite = bool(np.isfinite(out[:: n // 1000]).all())
    del out
    print(
        json.dumps(
            {
                "n_queries": n,
                "dim": d,
                "n_scored": args.n_scored,
                "algorithm": args.algorithm,
                "batch_size": model.batch_size,
                "queries_file_gib": os.path.getsize(workdir / "queries.npy") / 2**30,
                "fit_seconds": fit_seconds,
                "predict_seconds": predict_seconds,
                "predictions_finite": finite,
                # VmHWM is the peak of this process's own address space; ru_maxrss
                # also counts the parent's size at fork, before the exec.
                "peak_rss_mib": (_status_kib("VmHWM") or 0) / 1024,
                "ru_maxrss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
                / 1024,
            }
        )
    )


# ---------------------------------------------------------------- fidelity


def bimodal_pool(n, d, seed):
    """Clustered embeddings with an oracle bimodal importance score for each.

    Importance scores such as dynamic uncertainty are bimodal: most samples are
    learnt early and stay certain (low), a minority stays uncertain (high). Here a
    sample is "hard" with a probability that rises with its distance from its class
    centre (boundary samples), and its score is drawn from the low or the high mode.
    The score depends on the embedding only through that probability, so
    extrapolation is necessarily imperfect, as it is on real data.
    """
    data = ClusteredEmbeddings(d, seed)
    X, labels = data.draw(n, stream=5)
    rng = np.random.default_rng([seed, 6])
    radius = np.linalg.norm(X - data.centers[labels], axis=1)
    z = (radius - np.median(radius)) / radius.std()
    hard = rng.random(n) < 1.0 / (1.0 + np.exp(-3.0 * z))
    score = np.where(hard, 0.8, 0.2) + 0.07 * rng.normal(size=n)
    return X, score


def bimodality_coefficient(values):
    """Sarle's coefficient; above 5/9 (uniform) suggests two modes."""
    n = values.shape[0]
    skew = stats.skew(values)
    kurt = stats.kurtosis(values)
    return float((skew**2 + 1) / (kurt + 3 * (n - 1) ** 2 / ((n - 2) * (n - 3))))


def evaluate_variant(X, oracle, scored, n_neighbors, calibrate):
    """Extrapolate from the scored samples; compare with the oracle everywhere."""
    unscored = ~scored
    model = ImportanceExtrapolator(n_neighbors=n_neighbors, calibrate=calibrate)
    predicted = model.fit(X[scored], oracle[scored]).predict(X[unscored])
    combined = oracle.copy()
    combined[unscored] = predicted
    row = {
        "n_neighbors": n_neighbors,
        "calibrate": calibrate,
        "unscored_spearman": float(
            stats.spearmanr(predicted, oracle[unscored]).statistic
        ),
        "unscored_lowest_half_overlap": lowest_fraction_overlap(
            oracle[unscored], predicted, 0.5
        ),
        "unscored_bimodality_coefficient": bimodality_coefficient(predicted),
        "unscored_wasserstein_to_oracle": float(
            stats.wasserstein_distance(predicted, oracle[unscored])
        ),
        "unscored_std": float(predicted.std()),
        "oracle_std": float(oracle[unscored].std()),
        "pooled": [],
    }
    # The pruner ranks direct and extrapolated scores together: what matters is
    # whether the pooled ranking removes the samples the oracle would.
    for ratio in (0.3, 0.5, 0.7):
        pruned = np.zeros(oracle.shape[0], dtype=bool)
        n_low = int(np.floor(ratio * oracle.shape[0]))
        pruned[np.argsort(combined, kind="stable")[:n_low]] = True
        row["pooled"].append(
            {
                "prune_ratio": ratio,
                "overlap_with_oracle_pruning": lowest_fraction_overlap(
                    oracle, combined, ratio
                ),
                "pruned_share_of_scored": float(pruned[scored].mean()),
                "pruned_share_of_unscored": float(pruned[unscored].mean()),
            }
        )
    print(json.dumps(row, indent=2))
    return row


def run_calibration(args):
    n, d = args.pool, args.calibration_dim
    X, oracle = bimodal_pool(n, d, args.seed)
    rng = np.random.default_rng([args.seed, 7])
    scored = np.zeros(n, dtype=bool)
    scored[rng.choice(n, size=int(args.subset_fraction * n), replace=False)] = True
    unscored = ~scored
    print(
        f"pool {n:,} x {d}, {scored.sum():,} scored ({args.subset_fraction:.0%}), "
        "bimodal oracle score"
    )
    results = {
        "command": "python -m benchmarks.extrapolation --calibration",
        "pool": n,
        "dim": d,
        "n_scored": int(scored.sum()),
        "oracle_bimodality_coefficient": bimodality_coefficient(oracle),
    }

    print("oracle-free estimate: extrapolation_report on the scored subset")
    report = extrapolation_report(
        ImportanceExtrapolator(n_neighbors=N_NEIGHBORS),
        X[scored],
        oracle[scored],
        cv=5,
        prune_fraction=0.5,
        random_state=0,
    )
    results["extrapolation_report"] = {
        key: float(report[key])
        for key in ("spearman", "pearson", "lowest_overlap", "lowest_overlap_chance")
    }
    print(results["extrapolation_report"])

    print("choosing n_neighbors by GridSearchCV on the scored subset")
    grid = [1, 4, 12, 32, 64, 128, 256, 512]
    search = GridSearchCV(
        ImportanceExtrapolator(),
        {"n_neighbors": grid},
        scoring=spearman_scorer,
        cv=5,
    ).fit(X[scored], oracle[scored])
    # The oracle check of each k uses a random 50,000 of the unscored samples.
    check = rng.choice(np.flatnonzero(unscored), size=min(50_000, unscored.sum()))
    true_by_k = []
    for k in grid:
        model = ImportanceExtrapolator(n_neighbors=k).fit(X[scored], oracle[scored])
        true_by_k.append(
            float(stats.spearmanr(model.predict(X[check]), oracle[check]).statistic)
        )
    chosen = int(search.best_params_["n_neighbors"])
    results["grid_search"] = {
        "n_neighbors": grid,
        "cv_spearman": [float(v) for v in search.cv_results_["mean_test_score"]],
        "unscored_spearman_oracle_50k": true_by_k,
        "chosen": chosen,
    }
    print(results["grid_search"])

    results["variants"] = [
        evaluate_variant(X, oracle, scored, k, calibrate)
        for k in (N_NEIGHBORS, chosen)
        for calibrate in (None, "quantile")
    ]
    results["environment"] = environment()
    _write(args.output or "extrapolation_calibration.json", results)


# ---------------------------------------------------------------- main


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--small", action="store_true", help="N=50,000, M=10,000, d=64")
    parser.add_argument("--n-queries", type=int, default=None)
    parser.add_argument("--n-scored", type=int, default=None)
    parser.add_argument("--dim", type=int, default=None)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--slice-faiss", type=int, default=200_000)
    parser.add_argument("--slice-sklearn", type=int, default=100_000)
    parser.add_argument("--slice-authors", type=int, default=1_024)
    parser.add_argument("--slice-sweep", type=int, default=50_000)
    parser.add_argument("--memmap-10m", action="store_true")
    parser.add_argument("--memmap-rows", type=int, default=10_000_000)
    parser.add_argument("--memmap-child", help=argparse.SUPPRESS)
    parser.add_argument("--algorithm", default="hnsw", help="for --memmap-10m")
    parser.add_argument("--tmp-dir", default=None, help="for --memmap-10m")
    parser.add_argument("--calibration", action="store_true")
    parser.add_argument("--pool", type=int, default=200_000)
    parser.add_argument("--calibration-dim", type=int, default=64)
    parser.add_argument("--subset-fraction", type=float, default=0.1)
    parser.add_argument("--output", default=None, help="JSON file name in results/")
    args = parser.parse_args(argv)
    small = (10_000, 50_000, 64) if args.small else (50_000, 1_000_000, 128)
    args.n_scored = args.n_scored or small[0]
    args.n_queries = args.n_queries or small[1]
    args.dim = args.dim or small[2]
    if args.memmap_child:
        memmap_child(args)
    elif args.memmap_10m:
        run_memmap(args)
    elif args.calibration:
        run_calibration(args)
    else:
        run_speed(args)


if __name__ == "__main__":
    main()
