"""Compares crm-analytics' fit and predictions with lifetimes 0.11.3 on the same summaries.

Usage: check.py in.csv out.json  (in.csv: frequency,recency,T,monetary_value; out.json: the
output of `cargo run -p crm-analytics --example fit_csv`). Exits 1 when any check fails:
  - BG/NBD r, alpha, a, b and Gamma-Gamma p, q, v within 1 % of lifetimes' fit;
  - per customer, P(alive), expected purchases over 90 days and CLV over 12 months at
    d = 0.01 within 0.5 % of lifetimes' (relative, with an absolute floor of 1e-9);
  - churn risk over 90 days, 1 - P(alive) + P(alive) ((alpha+T)/(alpha+T+90))^(r+x), computed
    here from lifetimes' fit, within 0.5 %;
  - the BG/NBD log-likelihood (in days) equal to lifetimes' at crm-analytics' parameters.
"""
import json
import sys
import time
import warnings

warnings.filterwarnings("ignore")
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from lifetimes import BetaGeoFitter, GammaGammaFitter  # noqa: E402


def main(csv_path, json_path):
    d = pd.read_csv(csv_path)
    ours = json.load(open(json_path))
    x, tx, T, m = (d[c].astype(float) for c in ["frequency", "recency", "T", "monetary_value"])
    started = time.time()
    pen = float(ours.get("penalizer_coef", 0.0))
    bg = BetaGeoFitter(penalizer_coef=pen).fit(x, tx, T)
    mask = (x > 0) & (m > 0)
    gg = GammaGammaFitter(penalizer_coef=pen).fit(x[mask], m[mask])
    fit_seconds = time.time() - started
    failures = []

    def param(model, name, theirs, tol=0.01):
        mine = ours[model][name]
        rel = abs(mine - theirs) / abs(theirs)
        print(f"{model}.{name}: crm {mine:.6g} lifetimes {theirs:.6g} rel {rel:.2e}")
        if rel > tol:
            failures.append(f"{model}.{name} off by {rel:.2%}")

    for k in ["r", "alpha", "a", "b"]:
        param("bg_nbd", k, bg.params_[k])
    for k in ["p", "q", "v"]:
        param("gamma_gamma", k, gg.params_[k])

    p = ours["bg_nbd"]
    ll = -BetaGeoFitter._negative_log_likelihood(
        np.log([p["r"], p["alpha"], p["a"], p["b"]]), x.values, tx.values, T.values, np.ones(len(d)), 0.0
    ) * len(d)
    rel = abs(ll - p["log_likelihood"]) / abs(ll)
    print(f"bg_nbd log-likelihood at crm's params: crm {p['log_likelihood']:.10g} lifetimes {ll:.10g} rel {rel:.1e}")
    if rel > 1e-9:
        failures.append("log-likelihood differs")

    pa = np.asarray(bg.conditional_probability_alive(x, tx, T), dtype=float)
    e90 = np.asarray(bg.conditional_expected_number_of_purchases_up_to_time(90, x, tx, T), dtype=float)
    clv = np.asarray(
        gg.customer_lifetime_value(bg, x, tx, T, m, time=12, discount_rate=0.01), dtype=float
    )
    r, alpha = bg.params_["r"], bg.params_["alpha"]
    churn = 1 - pa + pa * ((alpha + T.values) / (alpha + T.values + 90)) ** (r + x.values)

    for name, theirs in [("p_alive", pa), ("expected_90", e90), ("clv_12", clv), ("churn_90", churn)]:
        mine = np.asarray(ours[name], dtype=float)
        rel = np.abs(mine - theirs) / np.maximum(np.abs(theirs), 1e-9)
        worst = int(np.argmax(rel))
        bad = int((rel > 0.005).sum())
        print(f"{name}: max rel {rel.max():.2e} (customer {worst}: crm {mine[worst]:.6g} lifetimes {theirs[worst]:.6g}), over 0.5 %: {bad}")
        if bad:
            failures.append(f"{name}: {bad} customers over 0.5 %")

    print(f"penalizer_coef {pen}")
    print(f"customers {len(d)}, lifetimes fit {fit_seconds:.1f} s, crm fit {ours['fit_seconds']:.2f} s")
    if failures:
        print("FAILED: " + "; ".join(failures))
        return 1
    print("oracle: all checks passed")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], sys.argv[2]))
