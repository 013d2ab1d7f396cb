"""The lifetimes oracle through the API (issue 17): transactions simulated here, loaded into a
running `crm-api`, and the server's CLV report compared with lifetimes 0.11.3 fitted on the
same transactions. Nothing is shared with the Rust code: the generator is numpy's, the
summaries are lifetimes' own `summary_data_from_transaction_data`.

Usage: api_check.py URL INGEST_KEY ANALYST_KEY [N] [SEED] [OUT_DIR]
  URL: the server (http://127.0.0.1:PORT), on a fresh store; INGEST_KEY appends, ANALYST_KEY
  reads /v1/analytics/clv. N customers (default 50000), SEED (default 17); the transactions
  are written to OUT_DIR/transactions.csv (default: the current directory).

The customers: BG/NBD r = 1, alpha = 100 days, a = 0.8, b = 2.5 and Gamma-Gamma p = 6, q = 4,
v = 15 (GENERATING below). Each customer's first purchase is uniform over the 3 years
(1,095 days) before the evaluation day 2026-06-30; repeat purchases come at Poisson rate
lambda ~ Gamma(r, rate alpha), and after each one the customer drops out with probability
p ~ Beta(a, b), as lifetimes' `beta_geometric_nbd_model` generates them; the process runs
to the end of the evaluation day. Purchases are rounded down to their UTC day and a day's
purchases merge into one order (daily data: frequency counts days), worth a Gamma(p, rate nu)
amount in cents (at least 0.01), nu ~ Gamma(q, rate v) per customer.

Exits 1 when any check fails:
  - the API's customers are lifetimes' summary rows (same ids);
  - BG/NBD r, alpha, a, b and Gamma-Gamma p, q, v within 1 % of lifetimes' fit;
  - per customer, P(alive), expected purchases over 90 days, expected average value, churn
    risk over 90 days and CLV over 12 months at d = 0.01 within 0.5 % of lifetimes' (relative,
    with an absolute floor of 1e-9);
  - lifetimes' fitted parameters within 10 % of the generating ones.
"""
import datetime as dt
import json
import os
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
import warnings

warnings.filterwarnings("ignore")
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from lifetimes import BetaGeoFitter, GammaGammaFitter  # noqa: E402
from lifetimes.utils import summary_data_from_transaction_data  # noqa: E402
from scipy.special import gammaln  # noqa: E402

GENERATING = {"r": 1.0, "alpha": 100.0, "a": 0.8, "b": 2.5, "p": 6.0, "q": 4.0, "v": 15.0}
EVALUATION_DAY = dt.date(2026, 6, 30)
SPAN_DAYS = 1095
CURRENCY = "USD"
HORIZON_DAYS, MONTHS, DISCOUNT = 90, 12, 0.01
BATCH = 5000


def simulate(n, seed):
    """The transactions: a DataFrame customer_id, day (datetime.date), amount (float, cents)."""
    g = GENERATING
    rng = np.random.default_rng(seed)
    lam = rng.gamma(g["r"], 1.0 / g["alpha"], n)
    drop = rng.beta(g["a"], g["b"], n)
    nu = rng.gamma(g["q"], 1.0 / g["v"], n)
    # Days from the window's first day; the evaluation day is day SPAN_DAYS, observed to its end.
    birth = rng.uniform(0.0, SPAN_DAYS, n)
    first_day = EVALUATION_DAY - dt.timedelta(days=SPAN_DAYS)
    customers, days, amounts = [], [], []
    for c in range(n):
        t = birth[c]
        bought = [int(np.floor(t))]
        while True:
            t += rng.exponential(1.0 / lam[c])
            if t >= SPAN_DAYS + 1:
                break
            bought.append(int(np.floor(t)))
            if rng.random() < drop[c]:
                break
        bought = sorted(set(bought))
        spend = np.maximum(np.round(rng.gamma(g["p"], 1.0 / nu[c], len(bought)), 2), 0.01)
        customers.extend([f"c{c:06d}"] * len(bought))
        days.extend(first_day + dt.timedelta(days=d) for d in bought)
        amounts.extend(spend.tolist())
    return pd.DataFrame({"customer_id": customers, "day": days, "amount": amounts})


class Api:
    def __init__(self, base, ingest, analyst):
        self.base, self.ingest, self.analyst = base.rstrip("/"), ingest, analyst

    def call(self, method, path, key, body=None, headers=None):
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(self.base + path, data=data, method=method)
        request.add_header("authorization", f"Bearer {key}")
        if data is not None:
            request.add_header("content-type", "application/json")
        for name, value in (headers or {}).items():
            request.add_header(name, value)
        try:
            with urllib.request.urlopen(request, timeout=900) as answer:
                return answer.status, json.loads(answer.read())
        except urllib.error.HTTPError as error:
            return error.code, error.read().decode(errors="replace")

    def append(self, events, batch_key):
        status, body = self.call(
            "POST", "/v1/events", self.ingest, {"events": events}, {"Idempotency-Key": batch_key}
        )
        if status != 201:
            raise SystemExit(f"POST /v1/events ({batch_key}): {status} {str(body)[:500]}")
        return body["appended"]

    def clv(self, as_of, limit=1000):
        """Every page of the CLV report: (the first page's head, every customer's item)."""
        params = {"currency": CURRENCY, "as_of": as_of, "horizon_days": HORIZON_DAYS,
                  "months": MONTHS, "discount": DISCOUNT, "limit": limit}
        head, items = None, []
        while True:
            path = "/v1/analytics/clv?" + urllib.parse.urlencode(params)
            status, body = self.call("GET", path, self.analyst)
            if status != 200:
                raise SystemExit(f"GET {path}: {status} {str(body)[:500]}")
            if head is None:
                head = body
            elif body["model"] != head["model"] or body["position"] != head["position"]:
                raise SystemExit("the pages of the CLV report come from different fits")
            items.extend(body["items"])
            if "next_after" not in body:
                return head, items
            params["after"] = body["next_after"]


def load(api, tx):
    """Registers every customer and places one order per purchase day; returns the events
    the server acknowledged as appended."""
    first = tx.groupby("customer_id", sort=True)["day"].min()
    events = [
        {"type": "CustomerRegistered", "occurred_at": f"{day.isoformat()}T00:00:00Z",
         "data": {"customer_id": cid, "kind": "person", "name": f"Simulated {cid}"}}
        for cid, day in first.items()
    ]
    for cid, day, amount in zip(tx["customer_id"], tx["day"], tx["amount"]):
        events.append(
            {"type": "OrderPlaced", "occurred_at": f"{day.isoformat()}T12:00:00Z",
             "data": {"customer_id": cid, "order_id": f"o-{day.isoformat()}",
                      "amount": f"{amount:.2f}", "currency": CURRENCY}})
    appended = 0
    for start in range(0, len(events), BATCH):
        appended += api.append(events[start:start + BATCH], f"api-oracle-{start // BATCH}")
    return len(events), appended


def api_monetary(tx, index):
    """The monetary values as the server keeps them: the mean of the repeat days in cents,
    rounded half away from zero (exact, in integers)."""
    cents = np.rint(tx["amount"].to_numpy() * 100).astype(np.int64)
    repeat = tx.groupby("customer_id").cumcount().to_numpy() > 0
    frame = pd.DataFrame({"customer_id": tx["customer_id"], "cents": np.where(repeat, cents, 0),
                          "x": repeat.astype(np.int64)})
    sums = frame.groupby("customer_id")[["cents", "x"]].sum().reindex(index)
    total, x = sums["cents"].to_numpy(), sums["x"].to_numpy()
    rounded = np.where(x > 0, (2 * total + x) // np.maximum(2 * x, 1), 0)
    return pd.Series(rounded / 100.0, index=index)


def gamma_gamma_ll(p, q, v, x, m):
    """Sum of the Gamma-Gamma log-likelihood (lifetimes' formula) written without the
    cancellation of terms of order px: ln G(px+q) - ln G(px) by Stirling's series for large
    px, and (px-1) ln m + px ln x - (px+q) ln(xm+v) = -px ln(1+v/(xm)) - ln m - q ln(xm+v)."""
    z = p * x
    with np.errstate(all="ignore"):
        ratio = np.where(
            z < 1e5, gammaln(z + q) - gammaln(z),
            (z - 0.5) * np.log1p(q / z) + q * np.log(z + q) - q + 1 / (12 * (z + q)) - 1 / (12 * z))
    return float((ratio - gammaln(q) + q * np.log(v) - np.log(m) - q * np.log(x * m + v)
                  - z * np.log1p(v / (x * m))).sum())


def relative(mine, theirs):
    mine, theirs = np.asarray(mine, dtype=float), np.asarray(theirs, dtype=float)
    return np.abs(mine - theirs) / np.maximum(np.abs(theirs), 1e-9)


def main(base, ingest, analyst, n=50000, seed=17, out_dir="."):
    rows, failures = [], []

    def row(check, value, bound, ok, detail=""):
        rows.append((check, value, bound, "ok" if ok else "FAIL", detail))
        if not ok:
            failures.append(check)

    started = time.time()
    tx = simulate(n, seed)
    tx.to_csv(os.path.join(out_dir, "transactions.csv"), index=False)
    print(f"simulated {n} customers, {len(tx)} purchase days, seed {seed}: "
          f"{time.time() - started:.1f} s", flush=True)

    api = Api(base, ingest, analyst)
    started = time.time()
    sent, appended = load(api, tx)
    print(f"loaded {appended} of {sent} events through POST /v1/events: "
          f"{time.time() - started:.1f} s", flush=True)
    row("events appended", appended, sent, appended == sent)

    started = time.time()
    as_of = f"{EVALUATION_DAY.isoformat()}T23:59:59Z"
    head, items = api.clv(as_of)
    print(f"GET /v1/analytics/clv, {len(items)} customers in pages of 1,000: "
          f"{time.time() - started:.1f} s", flush=True)

    started = time.time()
    frame = tx.assign(date=pd.to_datetime(tx["day"]))
    s = summary_data_from_transaction_data(
        frame, "customer_id", "date", monetary_value_col="amount", freq="D",
        observation_period_end=pd.Timestamp(EVALUATION_DAY))
    x, tx_, T, m = (s[c].astype(float) for c in ["frequency", "recency", "T", "monetary_value"])
    bg = BetaGeoFitter().fit(x, tx_, T)
    mask = (x > 0) & (m > 0)
    gg = GammaGammaFitter().fit(x[mask], m[mask])
    pa = np.asarray(bg.conditional_probability_alive(x, tx_, T), dtype=float)
    e90 = np.asarray(
        bg.conditional_expected_number_of_purchases_up_to_time(HORIZON_DAYS, x, tx_, T), dtype=float)
    value = np.asarray(gg.conditional_expected_average_profit(x, m), dtype=float)
    clv = np.asarray(gg.customer_lifetime_value(
        bg, x, tx_, T, m, time=MONTHS, discount_rate=DISCOUNT, freq="D"), dtype=float)
    r, alpha = bg.params_["r"], bg.params_["alpha"]
    churn = 1 - pa + pa * ((alpha + T.values) / (alpha + T.values + HORIZON_DAYS)) ** (r + x.values)
    print(f"lifetimes: summaries, fit and predictions: {time.time() - started:.1f} s", flush=True)

    ids = [item["customer_id"] for item in items]
    row("customers (API = lifetimes rows)", head["customers"], len(s),
        head["customers"] == len(s) == len(items) and ids == sorted(s.index.tolist()))
    model = head["model"]
    for group, fitted in [("bg_nbd", bg.params_), ("gamma_gamma", gg.params_)]:
        converged = model[group]["converged"]
        row(f"{group} converged", converged, True, converged is True)
        for k in fitted.index:
            rel = relative(model[group][k], fitted[k])
            row(f"{group}.{k}: API vs lifetimes", f"{rel:.2e}", "1 %", rel <= 0.01,
                f"API {model[group][k]:.6g}, lifetimes {fitted[k]:.6g}")
    ours = model["bg_nbd"]
    ll = -BetaGeoFitter._negative_log_likelihood(
        np.log([ours["r"], ours["alpha"], ours["a"], ours["b"]]), x.values, tx_.values,
        T.values, np.ones(len(s)), 0.0) * len(s)
    rel = relative(ours["log_likelihood"], ll)
    row("bg_nbd log-likelihood at the API's params", f"{rel:.2e}", "1e-9", rel <= 1e-9,
        f"API {ours['log_likelihood']:.10g}, lifetimes {ll:.10g}")
    # The Gamma-Gamma log-likelihood on the server's own monetary values (cents), evaluated
    # without cancellation: the API's figure, and where lifetimes' optimum stands.
    m_api = api_monetary(tx, s.index)
    used = (x > 0) & (m_api > 0)
    xs, ms = x[used].to_numpy(), m_api[used].to_numpy()
    ours = model["gamma_gamma"]
    at_ours = gamma_gamma_ll(ours["p"], ours["q"], ours["v"], xs, ms)
    at_theirs = gamma_gamma_ll(gg.params_["p"], gg.params_["q"], gg.params_["v"], xs, ms)
    rel = relative(ours["log_likelihood"], at_ours)
    row("gamma_gamma log-likelihood at the API's params", f"{rel:.2e}", "1e-9", rel <= 1e-9,
        f"API {ours['log_likelihood']:.10g}, evaluated {at_ours:.10g} "
        f"(at lifetimes' params {at_theirs:.10g})")
    differs = np.abs(m_api - m).max()
    print(f"monetary values: the API's (mean in cents) and lifetimes' differ by at most "
          f"{differs:.4f}", flush=True)
    for group, fitted in [("bg_nbd", bg.params_), ("gamma_gamma", gg.params_)]:
        for k in fitted.index:
            rel = relative(fitted[k], GENERATING[k])
            row(f"{group}.{k}: lifetimes vs generating", f"{rel:.2e}", "10 %", rel <= 0.10,
                f"lifetimes {fitted[k]:.6g}, generating {GENERATING[k]:g}")

    by_id = {item["customer_id"]: item for item in items}
    aligned = [by_id.get(cid) for cid in s.index]
    if any(a is None for a in aligned):
        row("per-customer figures", "missing customers", "", False)
    else:
        for name, theirs in [("p_alive", pa), ("expected_purchases", e90),
                             ("expected_average_value", value), ("churn_risk", churn),
                             ("clv", clv)]:
            mine = np.array([a[name] for a in aligned], dtype=float)
            rel = relative(mine, theirs)
            worst = int(np.argmax(rel))
            bad = int((rel > 0.005).sum())
            row(f"{name}: every customer", f"{rel.max():.2e}", "0.5 %", bad == 0,
                f"worst {s.index[worst]}: API {mine[worst]:.6g}, lifetimes {theirs[worst]:.6g}"
                + (f"; {bad} over" if bad else ""))

    width = max(len(r[0]) for r in rows)
    print(f"\n{'check':<{width}}  {'value':>10}  {'bound':>6}  result  detail")
    for check, value, bound, result, detail in rows:
        print(f"{check:<{width}}  {str(value):>10}  {str(bound):>6}  {result:<6}  {detail}")
    repeat = int((x > 0).sum())
    print(f"\n{len(s)} customers ({repeat} repeat buyers), {len(tx)} purchase days, "
          f"as of {as_of}, log position {head['position']}")
    if failures:
        print("FAILED: " + "; ".join(failures))
        return 1
    print("api oracle: all checks passed")
    return 0


if __name__ == "__main__":
    args = sys.argv[1:]
    if len(args) < 3:
        sys.exit(__doc__)
    sys.exit(main(args[0], args[1], args[2], *[int(a) for a in args[3:5]], *args[5:6]))
