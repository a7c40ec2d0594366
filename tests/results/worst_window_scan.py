"""Reference for the calibrated worst-window statement (writes worst_window_scan.json).

Question (issue 11, section 4): under H0 (n i.i.d. Bernoulli(p) exceptions), what is the
probability that the worst of the rolling `window`-observation windows has at least k
exceptions? At n = 1,600, window = 250, p = 0.01 the Basel yellow zone starts at k = 5
(P(X <= 4) = 0.8922 < 0.95 <= P(X <= 5) = 0.9588 under Binomial(250, 0.01)).

Two methods, both independent of marginlab's code:
1. Dense simulation: the full 0/1 matrix of `n_sims` samples, rolling counts from cumulative
   sums; seed and sample count below; Monte Carlo standard error sqrt(q(1-q)/n_sims).
2. Naus (1982), "Approximations for distributions of scan statistics", JASA 77(377),
   177-183: the exact Q2 (N = 2w) and Q3 (N = 3w) of the Bernoulli scan statistic and the
   product approximation P(max < k) ~ Q2 (Q3/Q2)^(N/w - 2).

Run: python tests/results/worst_window_scan.py  (about 10 s).
"""

import json
from pathlib import Path

import numpy as np
from scipy import stats

N, WINDOW, P = 1600, 250, 0.01
N_SIMS, SEED, CHUNK = 200_000, 20261122, 10_000
KS = list(range(3, 11))


def dense_simulation() -> dict[int, int]:
    rng = np.random.default_rng(SEED)
    hits = dict.fromkeys(KS, 0)
    for _ in range(N_SIMS // CHUNK):
        h = rng.random((CHUNK, N)) < P
        c = np.concatenate([np.zeros((CHUNK, 1), np.int32), np.cumsum(h, axis=1, dtype=np.int32)], axis=1)
        worst = (c[:, WINDOW:] - c[:, :-WINDOW]).max(axis=1)
        for k in KS:
            hits[k] += int((worst >= k).sum())
    return hits


def naus(k: int, w: int, p: float, n: int) -> float:
    def b(r):
        return stats.binom.pmf(r, w, p)

    def F(r):
        return stats.binom.cdf(r, w, p) if r >= 0 else 0.0

    q2 = F(k - 1) ** 2 - (k - 1) * b(k) * F(k - 2) + w * p * b(k) * F(k - 3)
    a1 = 2 * b(k) * F(k - 1) * ((k - 1) * F(k - 2) - w * p * F(k - 3))
    a2 = 0.5 * b(k) ** 2 * ((k - 1) * (k - 2) * F(k - 3) - 2 * (k - 2) * w * p * F(k - 4)
                            + w * (w - 1) * p ** 2 * F(k - 5))
    a3 = sum(b(2 * k - r) * F(r - 1) ** 2 for r in range(1, k))
    a4 = sum(b(2 * k - r) * b(r) * ((r - 1) * F(r - 2) - w * p * F(r - 3)) for r in range(2, k))
    q3 = F(k - 1) ** 3 - a1 + a2 + a3 - a4
    return float(1.0 - q2 * (q3 / q2) ** (n / w - 2))


def main() -> None:
    hits = dense_simulation()
    rows = []
    for k in KS:
        q = hits[k] / N_SIMS
        rows.append({"at_least": k, "probability_simulated": q, "standard_error": float(np.sqrt(q * (1 - q) / N_SIMS)),
                     "probability_naus_1982": naus(k, WINDOW, P, N)})
    out = {"source": __doc__.strip().splitlines()[0], "method": "see tests/results/worst_window_scan.py",
           "n": N, "window": WINDOW, "p": P, "n_sims": N_SIMS, "seed": SEED, "rows": rows}
    path = Path(__file__).with_suffix(".json")
    path.write_text(json.dumps(out, indent=1) + "\n")
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
