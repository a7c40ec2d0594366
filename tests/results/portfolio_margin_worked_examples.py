"""Hand computation of the SPAN and greeks-netting worked examples (tests/results/*_worked_example.json).

Independent of marginlab: Black-76 from scipy.stats.norm and plain arithmetic, following the
published methods step by step (see portfolio_margin_worked_examples.md for the method and the
sources). Run: python tests/results/portfolio_margin_worked_examples.py  (rewrites the JSON files).
"""

import json
import math
from pathlib import Path

from scipy.stats import norm

HERE = Path(__file__).parent
YEAR_HOURS = 365 * 24


def black(s, k, t, v, call):
    """Black-76 price with forward = spot, zero rates (intrinsic at or after expiry or with zero vol)."""
    if t <= 0 or v <= 0:
        return max(s - k, 0.0) if call else max(k - s, 0.0)
    d1 = (math.log(s / k) + 0.5 * v * v * t) / (v * math.sqrt(t))
    d2 = d1 - v * math.sqrt(t)
    return s * norm.cdf(d1) - k * norm.cdf(d2) if call else k * norm.cdf(-d2) - s * norm.cdf(-d1)


def delta(s, k, t, v, call):
    d1 = (math.log(s / k) + 0.5 * v * v * t) / (v * math.sqrt(t))
    return norm.cdf(d1) if call else norm.cdf(d1) - 1.0


def vega(s, k, t, v):
    d1 = (math.log(s / k) + 0.5 * v * v * t) / (v * math.sqrt(t))
    return s * norm.pdf(d1) * math.sqrt(t)


# ------------------------------------------------------------------------------------------------
# Market: daily row labelled 2022-01-01 = the close at 2022-01-02 00:00 UTC.
# Options expire 2022-01-28 08:00 UTC: 26 days 8 hours = 632 hours; the future 2022-03-25 08:00.
MARKET = {"date": "2022-01-01", "BTC": {"spot": 40000.0, "vol": 0.80}, "ETH": {"spot": 2500.0, "vol": 0.90}}
TAU0 = 632 / YEAR_HOURS
TAU1 = (632 - 24) / YEAR_HOURS  # aged by the look-ahead time, one daily observation

# ------------------------------------------------------------------------------------------------
# SPAN
PARAMS = {"psr": {"BTC": 0.12, "ETH": 0.15}, "vsr": 0.25, "extreme_multiple": 3.0, "cover_fraction": 0.35,
          "intra_spread_rate": 0.0175, "inter_spreads": {"BTC/ETH": 0.5}, "short_option_minimum": 0.03}
BOOK = [  # asset, kind, strike, tier, quantity
    ("BTC", "call", 44000.0, "2022-01-28", -10.0),
    ("BTC", "put", 36000.0, "2022-01-28", 4.0),
    ("BTC", "perpetual", None, "undated", 8.0),
    ("BTC", "future", None, "2022-03-25", -2.0),
    ("ETH", "call", 2800.0, "2022-01-28", -20.0),
    ("ETH", "perpetual", None, "undated", -30.0),
]
FRACTIONS = [0, 0, 1 / 3, 1 / 3, -1 / 3, -1 / 3, 2 / 3, 2 / 3, -2 / 3, -2 / 3, 1, 1, -1, -1, 3, -3]
VOLS = [1, -1, 1, -1, 1, -1, 1, -1, 1, -1, 1, -1, 1, -1, 0, 0]
POINTS = [-1, -2 / 3, -1 / 3, 0, 1 / 3, 2 / 3, 1]
# composite-delta weights: normal (sd = PSR/3) probabilities of the bins of width PSR/3 around each point
EDGES = [-math.inf, -2.5, -1.5, -0.5, 0.5, 1.5, 2.5, math.inf]
WEIGHTS = [norm.cdf(b) - norm.cdf(a) for a, b in zip(EDGES[:-1], EDGES[1:], strict=True)]


def span_example():
    per_position, per_asset = [], {}
    for asset, kind, strike, tier, q in BOOK:
        s, v = MARKET[asset]["spot"], MARKET[asset]["vol"]
        psr, vsr = PARAMS["psr"][asset], PARAMS["vsr"]
        ra, cd, mark = [], None, None
        for f, d in zip(FRACTIONS, VOLS, strict=True):
            s1 = s * (1 + f * psr)
            w = PARAMS["cover_fraction"] if abs(f) == 3 else 1.0
            if kind in ("call", "put"):
                v0 = black(s, strike, TAU0, v, kind == "call")
                v1 = black(s1, strike, TAU1, v * (1 + d * vsr), kind == "call")
                ra.append(-(v1 - v0) * w)
                mark = v0
            else:
                ra.append(-(s1 - s) * w)
        if kind in ("call", "put"):
            cd = sum(wp * delta(s * (1 + p * psr), strike, TAU1, v, kind == "call")
                     for wp, p in zip(WEIGHTS, POINTS, strict=True))
        else:
            cd = 1.0
        per_position.append({"asset": asset, "kind": kind, "strike": strike, "tier": tier, "quantity": q,
                             "risk_array": ra, "composite_delta": cd, "mark": mark})
        a = per_asset.setdefault(asset, {"scan_vector": [0.0] * 16, "tiers": {}, "nov": 0.0, "short_options": 0.0})
        a["scan_vector"] = [x + q * r for x, r in zip(a["scan_vector"], ra, strict=True)]
        a["tiers"][tier] = a["tiers"].get(tier, 0.0) + q * cd
        if kind in ("call", "put"):
            a["nov"] += q * mark
            a["short_options"] += max(-q, 0.0)
    for asset, a in per_asset.items():
        s = MARKET[asset]["spot"]
        worst = max(range(16), key=lambda k: a["scan_vector"][k])
        a["scan"] = max(a["scan_vector"][worst], 0.0)
        a["scan_scenario"] = worst + 1
        a["long_tier_delta"] = sum(d for d in a["tiers"].values() if d > 0)
        a["short_tier_delta"] = -sum(d for d in a["tiers"].values() if d < 0)
        a["net_delta"] = a["long_tier_delta"] - a["short_tier_delta"]
        a["intra"] = PARAMS["intra_spread_rate"] * s * min(a["long_tier_delta"], a["short_tier_delta"])
        a["som"] = PARAMS["short_option_minimum"] * s * a["short_options"]
        a["inter"] = 0.0
    # inter-commodity spread: BTC net delta long, ETH net delta short -> spreads on the USD deltas
    d_btc = per_asset["BTC"]["net_delta"] * MARKET["BTC"]["spot"]
    d_eth = per_asset["ETH"]["net_delta"] * MARKET["ETH"]["spot"]
    assert d_btc * d_eth < 0
    spread = min(abs(d_btc), abs(d_eth))
    for asset, d in (("BTC", d_btc), ("ETH", d_eth)):
        a = per_asset[asset]
        a["inter"] = min(0.5 * a["scan"] * spread / abs(d), a["scan"])
    total = 0.0
    for a in per_asset.values():
        a["risk"] = max(a["scan"] + a["intra"] - a["inter"], a["som"])
        total += a["risk"] - a["nov"]
    return {"market": MARKET, "tau_years": {"t": TAU0, "after_look_ahead": TAU1}, "params": PARAMS,
            "composite_weights": WEIGHTS, "positions": per_position,
            "per_asset": {k: {key: v for key, v in a.items() if key != "tiers"} | {"tiers": a["tiers"]}
                          for k, a in per_asset.items()},
            "usd_deltas": {"BTC": d_btc, "ETH": d_eth, "spread": spread},
            "total": max(total, 0.0)}


# ------------------------------------------------------------------------------------------------
# Greeks netting (SIMM-shaped), two underlyings, fixed risk weights and correlation
GREEKS = {"risk_weights": {"BTC": 0.10, "ETH": 0.14}, "vol_risk_weights": {"BTC": 0.20, "ETH": 0.25},
          "correlation": 0.8}
GREEKS_BOOK = [
    ("BTC", "call", 44000.0, -10.0),
    ("BTC", "perpetual", None, 3.0),
    ("ETH", "put", 2300.0, 50.0),
    ("ETH", "perpetual", None, -40.0),
]


def greeks_example():
    per_asset = {a: {"delta": 0.0, "vega_risk": 0.0, "up": 0.0, "down": 0.0} for a in ("BTC", "ETH")}
    for asset, kind, strike, q in GREEKS_BOOK:
        s, v = MARKET[asset]["spot"], MARKET[asset]["vol"]
        rw = GREEKS["risk_weights"][asset]
        a = per_asset[asset]
        if kind == "perpetual":
            a["delta"] += q * s
            continue
        call = kind == "call"
        dl = delta(s, strike, TAU0, v, call)
        a["delta"] += q * dl * s
        a["vega_risk"] += q * vega(s, strike, TAU0, v) * v
        v0 = black(s, strike, TAU0, v, call)
        a["up"] += q * (black(s * (1 + rw), strike, TAU0, v, call) - v0 - rw * s * dl)
        a["down"] += q * (black(s * (1 - rw), strike, TAU0, v, call) - v0 + rw * s * dl)
    rho = GREEKS["correlation"]
    for asset, a in per_asset.items():
        a["ws_delta"] = GREEKS["risk_weights"][asset] * a["delta"]
        a["ws_vega"] = GREEKS["vol_risk_weights"][asset] * a["vega_risk"]
        a["cvr"] = -min(a["up"], a["down"])
    b, e = per_asset["BTC"], per_asset["ETH"]
    delta_margin = math.sqrt(b["ws_delta"] ** 2 + e["ws_delta"] ** 2 + 2 * rho * b["ws_delta"] * e["ws_delta"])
    vega_margin = math.sqrt(b["ws_vega"] ** 2 + e["ws_vega"] ** 2 + 2 * rho * b["ws_vega"] * e["ws_vega"])
    psi = 0.0 if (b["cvr"] < 0 and e["cvr"] < 0) else 1.0
    curv_sq = max(b["cvr"], 0) ** 2 + max(e["cvr"], 0) ** 2 + 2 * rho ** 2 * b["cvr"] * e["cvr"] * psi
    curvature_margin = math.sqrt(max(curv_sq, 0.0))
    return {"market": MARKET, "tau_years": TAU0, "params": GREEKS,
            "positions": [dict(zip(("asset", "kind", "strike", "quantity"), p, strict=True)) for p in GREEKS_BOOK],
            "per_asset": per_asset, "delta_margin": delta_margin, "vega_margin": vega_margin,
            "curvature_margin": curvature_margin, "total": delta_margin + vega_margin + curvature_margin}


if __name__ == "__main__":
    for name, result in (("span_worked_example.json", span_example()),
                         ("greeks_netting_worked_example.json", greeks_example())):
        (HERE / name).write_text(json.dumps(result, indent=1) + "\n")
        print(name, result["total"])
