"""Plug-in latency tables: the joint search on APQ's BitFusion table and on HAQ's MobileNetV2 table.

    python experiments/plugin_tables.py --out runs/plugin            # both tables (~3-6 min)
    python experiments/plugin_tables.py --out /tmp/p --smoke         # CI setting

**Mapping a space onto a foreign table** (:mod:`hao.latency.mapping`). A published table is keyed by *its*
conventions, not hao's. A user writes a small :class:`TableMapping` that says, for every kernel a candidate
of the space executes (``space.kernels(candidate)``), which of four things it is:

* ``lookup`` — rewrite the kernel into the table's key convention and look it up; if the table has the key
  the cost is the published value (**exact hit**), otherwise the :class:`~hao.latency.LatencyPredictor`
  fitted on that table predicts it (**predicted**), with the predictor's 10-90 % quantile band as its
  uncertainty. A missing kernel is never dropped.
* ``fixed`` — a kernel the table prices as part of a fixed per-network cost (APQ's ``head``/``tail``); its
  cost is that constant, added once.
* ``not-modelled`` — an op the table's own cost model does not price at all (APQ's and HAQ's simulators sum
  convolutions/linear layers only: residual adds and global pooling cost 0 there). Counted and listed in the
  outputs so that the user sees what the foreign table leaves out; costed at 0 to keep the table's semantics.

The two mappings used here (see ``reference_data/README.md`` for the table formats):

* **APQ BitFusion** (``latency_models/apq-bitfusion``, imported with ``hao latency import apq``) on space
  ``mbconv-apq224`` (OFA/APQ MobileNetV2-style, W/A in {4, 6, 8}): conv/depthwise kernels map 1:1 (batch 1,
  ``input_size`` = the kernel's input resolution, so the projection 1x1 uses ``input_size // stride``, as APQ
  does); the stem conv is APQ's ``head`` fixed cost, the final 1x1 conv and the classifier are APQ's ``tail``
  fixed cost; adds and the global pool are not modelled. APQ's table lacks every 7x7 depthwise at A4 and the
  shapes of a deeper last stage (our space allows depth 2-4 there; APQ's has one block): those are predicted.
* **HAQ** (``latency_models/haq-mobilenetv2``, ``hao latency import haq``) on space ``quant-mobilenetv2``
  (HAQ's module layout, W and A in 2..8, first/last pinned at W8A8): every conv and the classifier map 1:1
  once the **batch is rewritten to 16** (HAQ's simulator batch; hao's kernels are batch 1 — without this
  rewrite nothing hits, which the output reports as ``naive_exact_hits``); the global pool is not modelled.
  HAQ's costs are **relative integers, not ms**: as in HAQ, the objective is the ratio
  ``cost / cost(all W8A8)`` (``cost_ratio``), and HAQ's constraint ``cost_ratio <= preserve_ratio`` is solved
  at HAQ's settings 0.556 (``run_linear_quantize_search.sh``) and 0.6 (README).

**Accuracy objective — a labelled proxy, not accuracy.** There is no trained ImageNet model here. Default
(``--proxy weight-norm``): HAWQ-style ``½ Σ_l ‖ΔW_l‖²`` (every layer's Hessian trace per parameter set to 1) on
the **seeded random-init** weights of the space's model (``space.supernet(seed)``); a smaller architecture
choice counts its removed weights as ΔW (``hao/proxy/sensitivity.py``). ``--proxy zeroq`` uses Hutchinson
traces on ZeroQ-distilled inputs of the same random-init network instead (slower). Either way the proxy sees
weights only: activation bits cost nothing in it, so the ILP sets them to whatever is cheapest — a property of
the proxy, flagged in
the outputs. The numbers exercise the pipeline; they say nothing about ImageNet accuracy.

Outputs in ``--out``: per table ``<hw>/`` (``SearchResult.save``), ``<hw>_front.csv`` (front candidates with
exact/predicted/fixed/not-modelled kernel counts and the predicted latency band), ``plugin_<hw>.png``, and
``plugin_tables.json`` (all numbers, settings, wall times). States its wall time.
"""
from __future__ import annotations

import argparse
import time
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np

from _common import REPO, Stopwatch, jsonable, run_facts, write_json  # noqa: E402,F401

from hao.latency.mapping import CATEGORIES, APQMapping, HAQMapping, TableMapping  # noqa: E402,F401


def _bits(cand: Any, which: str) -> list[int]:
    """Per-layer ``w_bits`` or ``a_bits`` of a candidate (tied ``.bits`` decisions count for both)."""
    return [int(v) for n, v in cand.choices if n.endswith(f".{which}") or n.endswith(".bits")]


# ---- proxies on a random-init model -----------------------------------------------------------------------------
def weight_norm_proxy(space: Any, seed: int) -> tuple[Any, dict]:
    """½ Σ ‖ΔW‖² on the seeded random-init weights (unit per-parameter curvature)."""
    from hao.proxy import HessianTraces, LayerTrace, SensitivityTable, WeightNormProxy
    from hao.proxy.sensitivity import layer_weights
    net = space.supernet(seed)
    w = layer_weights(net)
    tr = HessianTraces(tuple(LayerTrace(p, float(t.numel()), 0.0, 1, int(t.numel())) for p, t in w.items()),
                       total=float(sum(t.numel() for t in w.values())), total_se=0.0, samples=1,
                       info={"kind": "unit curvature (weight-norm proxy)"})
    table = SensitivityTable.compute(space, net, tr, meta={"proxy": "weight-norm", "init_seed": seed})
    return WeightNormProxy(space, table), {"proxy": "HAWQ-style ½Σ‖ΔW‖² (no Hessian), seeded random-init weights",
                                           "init_seed": seed}


def zeroq_proxy(space: Any, seed: int, n: int, steps: int, samples: int) -> tuple[Any, dict]:
    """Hessian proxy with Hutchinson traces on ZeroQ-distilled inputs of the seeded random-init network
    (``hao.proxy.zeroq_traces``: weight traces by double backward, no activation term)."""
    from hao.proxy import AccuracyProxy, SensitivityTable, zeroq_traces
    net = space.supernet(seed)
    t0 = time.perf_counter()
    tr, _ = zeroq_traces(space, net, n=n, steps=steps, seed=seed, samples=samples, method="double_backward",
                         activations=False, progress=True)
    table = SensitivityTable.compute(space, net, tr, meta={"proxy": "zeroq-hessian", "init_seed": seed})
    return AccuracyProxy(space, table), {"proxy": "Hessian proxy ½ΣTr(H)/n·‖ΔW‖², traces on ZeroQ-distilled data "
                                                  "of the seeded random-init network (NOT a trained model)",
                                         "init_seed": seed, "zeroq_images": n, "zeroq_steps": steps,
                                         "trace_samples": samples, "wall_s": time.perf_counter() - t0}


# ---- one table ----------------------------------------------------------------------------------------------
SETUPS = {
    "apq": {"space": "mbconv-apq224", "hardware": "apq-bitfusion", "mapping": APQMapping, "objective": "latency_ms"},
    "haq": {"space": "quant-mobilenetv2", "hardware": "haq-mobilenetv2", "mapping": HAQMapping,
            "objective": "cost_ratio", "space_kwargs": {"a_bits": None}},
}
HAQ_PRESERVE_RATIOS = (0.556, 0.6)


def predictor_holdout(table: Any, params: dict, seed: int) -> dict:
    """Predictor error on 20 % of the table's rows held out (fit on the other 80 %): how much to trust a
    predicted kernel, and whether the 10-90 % band covers the held-out truth."""
    from hao.latency.predictor import LatencyPredictor
    from hao.stats import error_stats
    ks = table.kernels()
    y = table.df["latency_ms"].to_numpy(float)
    rng = np.random.default_rng(seed)
    idx = rng.permutation(len(ks))
    n_te = max(1, len(ks) // 5)
    te, trn = idx[:n_te], idx[n_te:]
    m = LatencyPredictor(**params).fit([ks[i] for i in trn], y[trn])
    p = m.predict([ks[i] for i in te])
    lo, hi = m.predict_interval([ks[i] for i in te])
    st = error_stats(p, y[te])
    return {"held_out_rows": int(n_te), "median_abs_err_pct": st["median_abs_err_pct"],
            "p90_abs_err_pct": st["p90_abs_err_pct"], "share_within_10pct": st["share_within_10pct"],
            "band_10_90_coverage": float(((y[te] >= lo) & (y[te] <= hi)).mean())}


def run_table(key: str, a: argparse.Namespace, out: Path, sw: Stopwatch) -> dict[str, Any]:
    import pandas as pd

    import hao
    from hao.latency.predictor import LatencyPredictor
    from hao.latency.table import load_table
    from hao.search.objectives import kernel_objective

    setup = SETUPS[key]
    space = hao.get_space(setup["space"], **setup.get("space_kwargs", {}))
    hw = setup["hardware"]
    with sw(f"{key}_fit_predictor"):
        table = load_table(hw)
        params = {"n_estimators": a.estimators, "quantiles": (0.1, 0.9), "random_state": a.seed}
        predictor = LatencyPredictor(**params).fit(table)
        holdout = predictor_holdout(table, params, a.seed) if a.holdout else None
    mapping = setup["mapping"](space, table, predictor)
    with sw(f"{key}_proxy"):
        if a.proxy == "zeroq":
            proxy, proxy_info = zeroq_proxy(space, a.seed, a.zeroq_images, a.zeroq_steps, a.trace_samples)
        else:
            proxy, proxy_info = weight_norm_proxy(space, a.seed)
    # reference cost (HAQ: cost of every layer at W8A8 — HAQ's Σ T[i, 8, 8])
    scale = 1.0
    if setup["objective"] == "cost_ratio":
        ref = space.make({d.name: 8 for d in space.decisions()})
        scale = float(sum(c[1] for c in mapping.candidate_costs(ref)[1])) + mapping.fixed_cost()
    obj_name = setup["objective"]
    unit = "× W8A8 cost" if obj_name == "cost_ratio" else "ms"
    with sw(f"{key}_objectives"):
        inc = not mapping.replaces_fixed_kernels  # APQ: stem/head/classifier priced by its head/tail constant
        point = kernel_objective(space, obj_name, lambda ks: [c[1] / scale for c in mapping.costs(ks)],
                                 constant=mapping.fixed_cost() / scale, unit=unit, include_fixed=inc)
        low = kernel_objective(space, f"{obj_name}_lo", lambda ks: [c[2] / scale for c in mapping.costs(ks)],
                               constant=mapping.fixed_cost() / scale, unit=unit, include_fixed=inc)
        high = kernel_objective(space, f"{obj_name}_hi", lambda ks: [c[3] / scale for c in mapping.costs(ks)],
                                constant=mapping.fixed_cost() / scale, unit=unit, include_fixed=inc)
    with sw(f"{key}_search"):
        res = hao.search(space=space, solver="ilp", objectives=["proxy", point, low, high], proxy=proxy,
                         sweep=obj_name, n_points=a.n_points, progress=True, seed=a.seed)
    res.meta.update(title=f"{space.name} on {hw}", proxy=proxy_info["proxy"])
    res.save(out / hw)
    front = res.pareto().sort_values(obj_name).reset_index(drop=True)

    from hao.space.base import Candidate
    rows, tot = [], Counter()
    naive_total = kern_total = 0
    not_modelled_ops: Counter = Counter()
    for _, r in front.iterrows():
        c = Candidate.from_json(r["config"])
        ks, cs = mapping.candidate_costs(c)
        cnt = Counter(cat for cat, *_ in cs)
        tot.update(cnt)
        for k, (cat, *_) in zip(ks, cs):
            if cat == "not-modelled":
                not_modelled_ops[k.op] += 1
        naive_total += mapping.naive_hits(ks)
        kern_total += len(ks)
        pred_cost = sum(v for cat, v, *_ in cs if cat == "predicted") / scale
        rows.append({"proxy": r["proxy"], obj_name: r[obj_name], f"{obj_name}_lo": r[f"{obj_name}_lo"],
                     f"{obj_name}_hi": r[f"{obj_name}_hi"], "n_kernels": len(ks),
                     **{f"n_{cat.replace('-', '_')}": cnt.get(cat, 0) for cat in CATEGORIES},
                     "share_of_cost_predicted": pred_cost / r[obj_name] if r[obj_name] else 0.0,
                     "band_rel_width": (r[f"{obj_name}_hi"] - r[f"{obj_name}_lo"]) / r[obj_name],
                     "mean_w_bits": float(np.mean(_bits(c, "w_bits"))),
                     "mean_a_bits": float(np.mean(_bits(c, "a_bits"))),
                     "config": r["config"]})
    fdf = pd.DataFrame(rows)
    fdf.to_csv(out / f"{hw}_front.csv", index=False)

    # every distinct predicted kernel of the front, with its band
    uniq = {}
    for _, r in front.iterrows():
        for k, (cat, v, lo_, hi_) in zip(*mapping.candidate_costs(Candidate.from_json(r["config"]))):
            if cat == "predicted":
                uniq[k] = (v, lo_, hi_)
    pk = [{"op": k.op, "in_channels": k.in_channels, "out_channels": k.out_channels, "in_hw": k.in_h,
           "kernel": k.kernel, "stride": k.stride, "w_bits": k.w_bits, "a_bits": k.a_bits, "predicted": v,
           "low_q10": lo_, "high_q90": hi_, "band_rel_width": (hi_ - lo_) / v} for k, (v, lo_, hi_) in uniq.items()]
    pd.DataFrame(pk).to_csv(out / f"{hw}_predicted_kernels.csv", index=False)

    extra: dict[str, Any] = {}
    if setup["objective"] == "cost_ratio":
        extra["haq_preserve_ratio"] = {}
        for pr in HAQ_PRESERVE_RATIOS:
            rr = hao.search(space=space, solver="ilp", objectives=["proxy", point], proxy=proxy,
                            budgets={obj_name: pr}, n_points=1, seed=a.seed)
            b = rr.best()
            c = Candidate.from_json(b["config"])
            extra["haq_preserve_ratio"][str(pr)] = {
                "cost_ratio": float(b[obj_name]), "proxy": float(b["proxy"]),
                "w_bits": _bits(c, "w_bits"), "a_bits": _bits(c, "a_bits")}
    refs = {lab: {k: v for k, v in r.items() if k != "config"} for lab, r in res.references.items()}
    summary = {
        "space": space.name, "hardware": hw, "table_rows": len(table.df), "mapping": type(mapping).__name__,
        "objective": obj_name, "objective_unit": unit,
        "objective_scale": scale if obj_name == "cost_ratio" else None,
        "fixed_cost": mapping.fixed_cost(), "proxy": proxy_info,
        "proxy_caveat": ("weights only: activation bits do not change the proxy. HAQ space: activation bits tied to "
                         "weight bits (a_bits=None, HAWQ-V3's convention) so that they are not free"
                         if setup.get("space_kwargs", {}).get("a_bits", 1) is None else
                         "weights only: activation bits do not change the proxy, so the ILP sets each layer's "
                         "activation bits to the cheapest the table allows"),
        "space_kwargs": setup.get("space_kwargs", {}),
        "predictor": {**{k: (list(v) if isinstance(v, tuple) else v) for k, v in params.items()},
                      "uncertainty": "10 % / 90 % quantile gradient-boosted models; a network's band sums the "
                                     "kernels' bands (conservative: errors assumed fully correlated)",
                      "holdout": holdout},
        "search": {"ilp_answers": len(res.df), "front_size": len(front), "meta": jsonable(res.meta)},
        "front_kernels": {"total": kern_total, **{cat: tot.get(cat, 0) for cat in CATEGORIES},
                          "share_exact_of_lookups": tot.get("exact", 0) / max(1, tot.get("exact", 0) +
                                                                               tot.get("predicted", 0)),
                          "naive_exact_hits_without_mapping": naive_total,
                          "not_modelled_ops": dict(not_modelled_ops),
                          "distinct_predicted_kernels": len(pk),
                          "median_band_rel_width_predicted_kernels": float(np.median([p["band_rel_width"] for p in pk]))
                          if pk else None},
        "front_latency_band": {"median_rel_width": float(fdf["band_rel_width"].median()) if len(fdf) else None,
                               "max_rel_width": float(fdf["band_rel_width"].max()) if len(fdf) else None,
                               "median_share_of_cost_predicted": float(fdf["share_of_cost_predicted"].median())
                               if len(fdf) else None},
        "front_range": {obj_name: [float(fdf[obj_name].min()), float(fdf[obj_name].max())] if len(fdf) else None,
                        "proxy": [float(fdf["proxy"].min()), float(fdf["proxy"].max())] if len(fdf) else None},
        "references": refs, **extra,
    }
    with sw(f"{key}_plot"):
        plot_table(out / f"plugin_{hw}.png", res, fdf, summary)
    return summary


def plot_table(path: Path, res: Any, fdf: Any, s: dict) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    o = s["objective"]
    fig, ax = plt.subplots(1, 2, figsize=(11, 4.2), gridspec_kw={"width_ratios": [1.4, 1]})
    a = ax[0]
    a.scatter(res.df[o], res.df["proxy"], s=8, c="0.6", label="ILP answers")
    if len(fdf):
        yerr = None
        a.errorbar(fdf[o], fdf["proxy"], xerr=[fdf[o] - fdf[f"{o}_lo"], fdf[f"{o}_hi"] - fdf[o]], fmt="none",
                   c="C0", alpha=0.5, lw=1, label="predicted 10-90 % band", yerr=yerr)
        sc = a.scatter(fdf[o], fdf["proxy"], c=fdf["share_of_cost_predicted"], cmap="viridis", s=28, zorder=3,
                       vmin=0, vmax=max(0.05, float(fdf["share_of_cost_predicted"].max())), label="front")
        fig.colorbar(sc, ax=a, label="share of cost from predicted kernels")
    for i, (lab, r) in enumerate(s["references"].items()):
        if o in r and "proxy" in r:
            a.scatter([r[o]], [r["proxy"]], marker="*^sD"[i % 4], s=110, c=f"C{i + 1}", edgecolors="k", zorder=4,
                      label=lab)
    if "haq_preserve_ratio" in s:
        for pr, v in s["haq_preserve_ratio"].items():
            a.axvline(float(pr), c="C3", ls="--", lw=0.8)
            a.annotate(f"HAQ preserve_ratio {pr}", (float(pr), 0.03), xycoords=a.get_xaxis_transform(), fontsize=7,
                       rotation=90, va="bottom", ha="right")
    a.set_xlabel(f"{o} [{s['objective_unit']}] on {s['hardware']}")
    kind = "‖ΔW‖², random init" if "no Hessian" in s["proxy"]["proxy"] else "ZeroQ Hessian, random init"
    a.set_ylabel(f"proxy (labelled: {kind})")
    a.set_yscale("log" if (res.df["proxy"] > 0).all() else "symlog")
    a.set_title(f"{s['space']} on {s['hardware']}", fontsize=10)
    a.legend(fontsize=7)
    a.grid(alpha=0.3)
    b = ax[1]
    if len(fdf):
        x = np.arange(len(fdf))
        bottom = np.zeros(len(fdf))
        for cat, col in zip(CATEGORIES, ("C2", "C1", "C0", "0.7")):
            v = fdf[f"n_{cat.replace('-', '_')}"].to_numpy(float)
            b.bar(x, v, bottom=bottom, color=col, label=cat)
            bottom += v
        b.set_xlabel(f"front candidate (sorted by {o})")
        b.set_ylabel("kernels")
        fk = s["front_kernels"]
        b.set_title(f"exact {fk['exact']} / predicted {fk['predicted']} / fixed {fk['fixed']} / "
                    f"not modelled {fk['not-modelled']}", fontsize=9)
        b.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--tables", default="apq,haq", help="comma-separated: apq, haq")
    p.add_argument("--n-points", type=int, default=16, help="ILP budgets in the sweep")
    p.add_argument("--proxy", choices=("weight-norm", "zeroq"), default="weight-norm")
    p.add_argument("--zeroq-images", type=int, default=8)
    p.add_argument("--zeroq-steps", type=int, default=50)
    p.add_argument("--trace-samples", type=int, default=16)
    p.add_argument("--estimators", type=int, default=200, help="trees of the predictor (and of its quantile models)")
    p.add_argument("--no-holdout", dest="holdout", action="store_false", help="skip the 80/20 predictor check")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--smoke", action="store_true", help="tiny CI setting: 3 budgets, 40 trees, no hold-out check")
    a = p.parse_args(argv)
    if a.smoke:
        a.n_points, a.estimators, a.holdout, a.proxy = min(a.n_points, 3), 40, False, "weight-norm"
    keys = [t.strip() for t in a.tables.split(",") if t.strip()]
    bad = [k for k in keys if k not in SETUPS]
    if bad or not keys:
        p.error(f"--tables must name some of {sorted(SETUPS)}, got {a.tables!r}.")
    import torch
    torch.set_num_threads(a.threads)
    sw = Stopwatch()
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    result: dict[str, Any] = {"experiment": "plugin_tables", "run": run_facts(argv, a.threads),
                              "settings": {"tables": keys, "n_points": a.n_points, "proxy": a.proxy,
                                           "estimators": a.estimators, "seed": a.seed, "threads": a.threads,
                                           "smoke": a.smoke},
                              "tables": {}}
    for k in keys:
        t0 = time.perf_counter()
        s = run_table(k, a, out, sw)
        result["tables"][SETUPS[k]["hardware"]] = s
        fk = s["front_kernels"]
        print(f"[{s['hardware']}] front {s['search']['front_size']} candidates, {fk['total']} kernels: exact "
              f"{fk['exact']}, predicted {fk['predicted']}, fixed {fk['fixed']}, not modelled {fk['not-modelled']} "
              f"(naive keys would hit {fk['naive_exact_hits_without_mapping']}); median band of predicted kernels "
              f"{fk['median_band_rel_width_predicted_kernels']}; {time.perf_counter() - t0:.0f} s", flush=True)
        if "haq_preserve_ratio" in s:
            for pr, v in s["haq_preserve_ratio"].items():
                print(f"   HAQ preserve_ratio {pr}: cost ratio {v['cost_ratio']:.3f}, proxy {v['proxy']:.4g}, "
                      f"mean w bits {np.mean(v['w_bits']):.2f}, mean a bits {np.mean(v['a_bits']):.2f}")
    result["wall_s"] = sw.report()
    write_json(out / "plugin_tables.json", result)
    print(f"wall time {result['wall_s']['total_s'] / 60:.1f} min ({a.threads} threads) -> {out}")
    return result


if __name__ == "__main__":
    main()
