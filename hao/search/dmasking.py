"""Differentiable search (FBNetV2 DMasking + mixed-precision DNAS) as a solver: ``solver="dmasking"``.

Every decision of the space (per-block kernel and expansion ratio, per-stage depth, per-layer weight and
activation bits) gets a logit vector (:class:`hao.search.soft.DecisionLogits`). Each step draws Gumbel-softmax
probabilities at temperature ``tau`` (annealed geometrically from ``tau_start`` to ``tau_end``), runs the relaxed
supernet on a training batch (:class:`hao.train.soft_mbconv.SoftMBConv`: one max-width weight per layer, every
choice a mask or a mixture; the supernet's weights are frozen: they come from the trained checkpoint), and
minimises

    cross-entropy + λ · E[cost] / E_uniform[cost]

where ``E[cost]`` is the **exact** expectation of the additive cost objective (by default the hardware table's
latency, ``latency_ms``) under the probabilities (:class:`hao.search.soft.ExpectedObjective`; at one-hot choices
it is the predictor's latency). With a budget on the cost (``--budget latency_ms=...``), λ is the multiplier of
the constraint ``E[cost] <= budget`` and follows projected dual ascent from 0, ``λ ← max(0, λ + η · (E[cost] /
budget − 1))``: it grows while the expected cost is over the budget and shrinks (to 0) while under it, so the
search settles where the expected cost meets the budget; without one, λ stays fixed at ``lam``. (A multiplicative
update from λ = 1 was tried first: the cost term dominated the cross-entropy from the first step, drove every
choice to the cheapest before λ had decayed, and the search ended at half the budget.)

Returns the argmax candidate at the end and every ``snapshot_every`` steps (the search's trajectory) as a normal
:class:`~hao.search.result.SearchResult`, each row with all of the problem's objectives; ``meta`` records the
final λ, τ, the expected cost, the cross-entropy and whether the final argmax meets the budget. Seeded
(``seed``: the Gumbel noise and the batches); resumable (``work_dir``: state written every ``save_every`` steps,
loaded with ``weights_only=True``); progress shown. MBConv spaces on 1x28x28 input (Fashion-MNIST) by default;
pass ``supernet`` and ``batches`` for another space of the mbconv family.
"""
from __future__ import annotations

import json
import math
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any


import numpy as np

from hao.errors import ConfigError
from hao.search.base import STOP, SearchProblem, Solver, register_solver
from hao.search.result import SearchResult

__all__ = ["DMaskingSolver"]


def _check_number(name: str, v: Any, lo: float, hi: float = math.inf, *, integer: bool = False,
                  open_lo: bool = False) -> None:
    ok = isinstance(v, (int, float)) and not isinstance(v, bool) and (not integer or isinstance(v, int))
    ok = ok and (v > lo if open_lo else v >= lo) and v <= hi
    if not ok:
        kind = "an int" if integer else "a number"
        rng = f"({lo}, {hi}]" if open_lo else f"[{lo}, {hi}]"
        raise ConfigError(f"The {name!r} parameter of DMaskingSolver must be {kind} in {rng}. Got {v!r} instead "
                          "(see docs/search.md, 'Differentiable search').")


@register_solver("dmasking")
class DMaskingSolver(Solver):
    """Differentiable architecture + bit-width search over a trained weight-sharing supernet.

    Args:
        steps: search steps (one training batch each).
        batch_size: images per step.
        lr: Adam learning rate of the architecture logits.
        tau_start, tau_end: Gumbel-softmax temperature, annealed geometrically.
        lam: weight λ of the normalised expected cost; with a budget, its start value (default 0 with a
            budget, 1 without).
        lam_rate: dual-ascent step η of λ when the cost has a budget (0: λ fixed).
        cost: the additive objective to trade against accuracy (default: ``latency_ms`` when the problem has
            it, else the first additive non-target objective).
        snapshot_every: record the argmax candidate every this many steps (plus the final one).
        checkpoint: the supernet (``supernet.pt`` or its folder; default: the space's committed checkpoint).
        data: Fashion-MNIST IDX folder (default: Debian's / ``$HAO_FMNIST_DIR``).
        supernet, batches: a supernet module and a callable ``(generator, batch_size) -> (x, y)`` to use instead
            of ``checkpoint`` / ``data`` (Python API; tests, other datasets).
        work_dir: folder for the resumable state (``None``: not resumable).
        save_every: steps between state writes.
        threads: torch threads (``None``: leave as is).
        seed: Gumbel noise and batch order.
    """

    stops_gracefully = True
    #: a space with a context decision (the input resolution) is searched in one run (:meth:`solve_contexts`)
    searches_contexts = True

    def __init__(self, steps: int = 300, batch_size: int = 64, lr: float = 0.05, tau_start: float = 5.0,
                 tau_end: float = 0.2, lam: float | None = None, lam_rate: float = 0.05, cost: str | None = None,
                 snapshot_every: int = 50, checkpoint: str | None = None, data: str | None = None,
                 supernet: Any = None, batches: Callable[..., Any] | None = None,
                 work_dir: str | None = None, save_every: int = 25, threads: int | None = None,
                 seed: int = 0) -> None:
        _check_number("steps", steps, 1, integer=True)
        _check_number("batch_size", batch_size, 1, integer=True)
        _check_number("lr", lr, 0.0, open_lo=True)
        _check_number("tau_start", tau_start, 0.0, open_lo=True)
        _check_number("tau_end", tau_end, 0.0, open_lo=True)
        if lam is not None:
            _check_number("lam", lam, 0.0)
        _check_number("lam_rate", lam_rate, 0.0)
        _check_number("snapshot_every", snapshot_every, 1, integer=True)
        _check_number("save_every", save_every, 1, integer=True)
        if threads is not None:
            _check_number("threads", threads, 1, integer=True)
        if not isinstance(seed, int) or isinstance(seed, bool):
            raise ConfigError(f"The 'seed' parameter of DMaskingSolver must be an int. Got {seed!r} instead.")
        self.steps, self.batch_size, self.lr = steps, batch_size, float(lr)
        self.tau_start, self.tau_end = float(tau_start), float(tau_end)
        self.lam, self.lam_rate, self.cost = None if lam is None else float(lam), float(lam_rate), cost
        self.snapshot_every, self.save_every = snapshot_every, save_every
        self.checkpoint, self.data, self.supernet, self.batches = checkpoint, data, supernet, batches
        self.work_dir, self.threads, self.seed = work_dir, threads, seed

    # ------------------------------------------------------------------------------------------------------
    def _cost_name(self, problem: SearchProblem) -> str:
        if self.cost is not None:
            if self.cost not in problem.names or not problem.objective(self.cost).additive:
                raise ConfigError(f"cost={self.cost!r} must name an additive objective of the problem; its "
                                  f"objectives are {list(problem.names)}.")
            return self.cost
        if "latency_ms" in problem.names:
            return "latency_ms"
        others = [n for n in problem.names if n != problem.target and problem.objective(n).additive]
        if not others:
            raise ConfigError("dmasking needs an additive cost objective (latency_ms with --hardware, size_mb, "
                              "bops_g); the problem has none besides its target.")
        return others[0]

    def _model_and_data(self, space: Any) -> tuple[Any, Callable[..., Any]]:
        import torch

        net = self.supernet
        if net is None:
            from hao.proxy import default_checkpoint_dir
            from hao.train.supernet import load_supernet

            ckpt = (Path(self.checkpoint) if self.checkpoint
                    else default_checkpoint_dir(space.checkpoint_name) / "supernet.pt")
            if ckpt.is_dir():
                ckpt = ckpt / "supernet.pt"
            net = load_supernet(space, ckpt)
        batches = self.batches
        if batches is None:
            if (space.input_shape[0], getattr(space, "native_resolution", space.input_shape[1])) != (1, 28):
                raise ConfigError(f"dmasking trains on Fashion-MNIST by default, which does not fit space "
                                  f"{space.name!r} (input {tuple(space.input_shape)}); pass batches=... "
                                  "(a callable (generator, batch_size) -> (x, y)) from Python.")
            from hao.data import fashion_mnist

            train = fashion_mnist("train", self.data)
            xs, ys = train.x, train.y

            def batches(gen: torch.Generator, n: int) -> tuple[torch.Tensor, torch.Tensor]:
                i = torch.randint(0, len(ys), (n,), generator=gen)
                return xs[i], ys[i]
        return net, batches

    def solve(self, problem: SearchProblem, *, progress: bool = False) -> SearchResult:
        self.check_problem(problem)
        return self._run(problem.space, [({}, problem)], progress)

    def solve_contexts(self, space: Any, parts: list[tuple[dict[str, int], SearchProblem]], *,
                       budgets: dict[str, float] | None = None, progress: bool = False) -> SearchResult:
        """One search over a space with one context decision (the input resolution), FBNetV2-style: the
        decision gets logits like any other; each step runs the relaxed network at every resolution (the batch
        subsampled to it) and mixes the outputs with the resolution's Gumbel-softmax weights, and the expected
        cost is the same mixture of each resolution's exact expectation. ``parts``: ``(context, problem)`` for every
        context of ``space`` in ``space.contexts()`` order (problems built on the conditioned spaces, without
        budgets when a context cannot meet them); ``budgets``: the search's budgets (names normalized)."""
        names = space.context_decisions()
        if len(names) != 1 or [c for c, _ in parts] != space.contexts():
            raise ConfigError(f"dmasking searches one context decision in one run; space {space.name!r} has "
                              f"{list(names)} and {len(parts)} parts were given for {len(space.contexts())} contexts.")
        for _, p in parts:
            self.check_problem(p)
        return self._run(space, parts, progress, budgets)

    def _run(self, space: Any, parts: list[tuple[dict[str, int], SearchProblem]], progress: bool,
             budgets: dict[str, float] | None = None) -> SearchResult:
        import torch
        import torch.nn.functional as F
        from tqdm.auto import tqdm

        from hao.io import atomic_torch_save
        from hao.quant import ActQuant
        from hao.search.soft import DecisionLogits, ExpectedObjective
        from hao.train.soft_mbconv import SoftMBConv

        problem = parts[0][1]
        cost = self._cost_name(problem)
        budget = (problem.budgets if budgets is None else budgets).get(cost)
        ctx_name = space.context_decisions()[0] if len(parts) > 1 else None
        expects = [ExpectedObjective(p.space, p.objective(cost), p.index) for _, p in parts]
        net, batches = self._model_and_data(problem.space)
        net.train()
        for p in net.parameters():
            p.requires_grad_(False)
        for m in net.modules():  # ranges from each batch (a calibrated range belongs to one sub-network)
            if isinstance(m, ActQuant):
                m.calibrated.fill_(False)
        softs = [SoftMBConv(net, p.space) for _, p in parts]
        logits = DecisionLogits(space)

        def weights(probs: dict[str, torch.Tensor]) -> Any:
            return probs[ctx_name] if ctx_name else torch.ones(1)

        def expect(probs: dict[str, torch.Tensor]) -> torch.Tensor:
            w = weights(probs)
            return sum(w[k].double() * e(probs) for k, e in enumerate(expects))

        def forward(x: torch.Tensor, probs: dict[str, torch.Tensor]) -> torch.Tensor:
            w = weights(probs)  # resolutions with a negligible weight are skipped (no measurable gradient)
            live = [k for k in range(len(softs)) if float(w[k].detach()) > 1e-6]
            return sum(w[k] * softs[k](x, probs) for k in live)
        opt = torch.optim.Adam(logits.parameters(), lr=self.lr)
        gen = torch.Generator().manual_seed(self.seed)
        with torch.no_grad():
            ref = float(expect(logits.probs(1.0)))  # the uniform distribution's expected cost: the scale
        ref = ref if ref > 0 else 1.0
        step, wall_before, cpu_before = 0, 0.0, 0.0
        lam = self.lam if self.lam is not None else (0.0 if budget is not None else 1.0)
        snapshots: list[dict[str, Any]] = []
        history: list[list[float]] = []
        private = ("supernet", "batches", "work_dir", "threads", "save_every")  # do not change the result
        settings = {k: v for k, v in vars(self).items() if k not in private}
        settings.update(space=space.name, cost=cost, budget=budget)
        if ctx_name:
            settings["contexts"] = [c for c, _ in parts]
        state_p = Path(self.work_dir) / "dmasking_state.pt" if self.work_dir else None
        if state_p is not None and state_p.exists():
            st = torch.load(state_p, map_location="cpu", weights_only=True)
            if st["settings"] != json.dumps(settings, sort_keys=True, default=str):
                raise ConfigError(f"{state_p} belongs to another search (settings differ); use another work_dir "
                                  "or the same settings to resume.")
            logits.load_state_dict(st["logits"])
            opt.load_state_dict(st["optimizer"])
            gen.set_state(st["gen"])
            step, lam, wall_before = int(st["step"]), float(st["lam"]), float(st["wall_s"])
            # states saved before CPU time was recorded: unknown (NaN), never guessed
            cpu_before = float(st["cpu_s"]) if "cpu_s" in st else math.nan
            snapshots, history = json.loads(st["snapshots"]), json.loads(st["history"])

        def save() -> None:
            if state_p is None:
                return
            state_p.parent.mkdir(parents=True, exist_ok=True)
            atomic_torch_save({"settings": json.dumps(settings, sort_keys=True, default=str),
                               "logits": logits.state_dict(), "optimizer": opt.state_dict(),
                               "gen": gen.get_state(), "step": step, "lam": lam,
                               "wall_s": wall_before + time.perf_counter() - t0,
                               "cpu_s": cpu_before + time.process_time() - c0,
                               "snapshots": json.dumps(snapshots), "history": json.dumps(history)}, state_p)

        def snapshot(tag: str) -> None:
            snapshots.append({"step": step, "source": tag, "candidate": logits.candidate().to_json()})

        t0, c0 = time.perf_counter(), time.process_time()
        threads_before = torch.get_num_threads()
        if self.threads is not None:
            torch.set_num_threads(self.threads)
        bar = tqdm(total=self.steps, initial=step, desc="dmasking", disable=not progress, leave=False)
        stopped = False
        try:
            while step < self.steps:
                if STOP.is_set():
                    stopped = True
                    break
                frac = step / max(1, self.steps - 1)
                tau = self.tau_start * (self.tau_end / self.tau_start) ** frac
                probs = logits.probs(tau, gen)
                x, y = batches(gen, self.batch_size)
                ce = F.cross_entropy(forward(x, probs), y)
                e_cost = expect(probs)
                loss = ce + lam * e_cost.float() / ref
                opt.zero_grad()
                loss.backward()
                opt.step()
                if budget is not None and self.lam_rate > 0:
                    ratio = float(e_cost.detach()) / budget
                    lam = float(min(max(0.0, lam + self.lam_rate * (ratio - 1.0)), 1e4))
                step += 1
                ce_v, cost_v = float(ce.detach()), float(e_cost.detach())
                history.append([round(ce_v, 5), round(cost_v, 6), round(lam, 6), round(tau, 5)])
                if step % self.snapshot_every == 0:
                    snapshot(f"dmasking step {step}")
                if step % self.save_every == 0:
                    save()
                bar.update(1)
                bar.set_postfix(ce=f"{ce_v:.3f}", cost=f"{cost_v:.4g}", lam=f"{lam:.3g}")
        finally:
            bar.close()
            torch.set_num_threads(threads_before)
        if not stopped and (not snapshots or snapshots[-1]["step"] != step):
            snapshot(f"dmasking final (step {step})")
        if not stopped and budget is not None and not any(s.get("moved") for s in snapshots):
            moved = _within_budget(logits, lambda cs: self._costs(cs, parts, ctx_name, cost), budget)
            if moved is not None:
                cand, changed = moved
                snapshots.append({"step": step, "source": f"dmasking final, moved within the budget "
                                  f"({len(changed)} decisions changed)", "candidate": cand.to_json(),
                                  "moved": changed})
        save()
        wall, cpu = wall_before + time.perf_counter() - t0, cpu_before + time.process_time() - c0
        if ctx_name is None:
            return self._result(problem, snapshots, history, cost, budget, lam, step, stopped, wall, cpu)
        return self._merged(space, parts, ctx_name, budgets, snapshots, history, cost, budget, lam, step, stopped,
                            wall, cpu)

    @staticmethod
    def _costs(cands: list[Any], parts: list[tuple[dict[str, int], SearchProblem]], ctx_name: str | None,
               cost: str) -> np.ndarray:
        """The cost objective of each candidate, on its own context's problem."""
        out = np.empty(len(cands))
        for ctx, p in parts:
            idx = [i for i, c in enumerate(cands) if ctx_name is None or c[ctx_name] == ctx[ctx_name]]
            if idx:
                out[idx] = p.evaluate([cands[i] for i in idx])[:, list(p.names).index(cost)]
        return out

    def _merged(self, space: Any, parts: list[tuple[dict[str, int], SearchProblem]], ctx_name: str,
                budgets: dict[str, float] | None, snapshots: list[dict[str, Any]], history: list[list[float]],
                cost: str, budget: float | None, lam: float, step: int, stopped: bool, wall: float,
                cpu: float) -> SearchResult:
        """The joint search's snapshots, each evaluated on its own resolution's problem, as one result."""
        from hao.search.contexts import merge_results
        from hao.space.candidate import Candidate

        out = []
        for ctx, p in parts:
            mine = [s for s in snapshots if Candidate.from_json(s["candidate"])[ctx_name] == ctx[ctx_name]]
            if mine:
                out.append((ctx, self._result(p, mine, history, cost, budget, lam, step, stopped, wall, cpu)))
        merged = merge_results(out)
        raw = [s for s in snapshots if not s.get("moved")]
        final = Candidate.from_json(raw[-1]["candidate"])
        meta = dict(merged.meta, space=space.name, searched_jointly=ctx_name, final_context={ctx_name: final[ctx_name]})
        for k in ("final_argmax_cost", "final_meets_budget", "moved_within_budget"):  # of the overall final
            meta.pop(k, None)                                                        # argmax, not a part's last
        df = merged.df.drop(columns=["feasible", "pareto"])
        fin = df["config"] == raw[-1]["candidate"]
        if fin.any():
            fc = float(df.loc[fin, cost].iloc[0])
            meta.update(final_argmax_cost=fc, final_meets_budget=None if budget is None else bool(fc <= budget))
        meta["moved_within_budget"] = _moved_meta(snapshots, df, cost)
        return SearchResult(df, merged.objectives, units=merged.units, budgets=budgets or merged.budgets,
                            pareto_on=merged.pareto_on, references=merged.references, meta=meta,
                            directions=merged.directions)

    def _result(self, problem: SearchProblem, snapshots: list[dict[str, Any]], history: list[list[float]],
                cost: str, budget: float | None, lam: float, step: int, stopped: bool, wall: float,
                cpu: float) -> SearchResult:
        from hao.space.candidate import Candidate

        seen: dict[str, int] = {}
        cands, sources = [], []
        for s in snapshots:  # one row per distinct candidate, listing the steps it was the argmax at
            if s["candidate"] in seen:
                sources[seen[s["candidate"]]] += f"; {s['source']}"
                continue
            seen[s["candidate"]] = len(cands)
            cands.append(Candidate.from_json(s["candidate"]))
            sources.append(s["source"])
        if not cands:
            raise ConfigError("dmasking stopped before its first snapshot; run more steps (or resume it).")
        G, U = problem.index.from_candidates(cands)
        values = problem.evaluate_indices(G, U)
        raw = [s for s in snapshots if not s.get("moved")]
        final_cost = float(values[seen[raw[-1]["candidate"]], list(problem.names).index(cost)]) if raw else math.nan
        last = history[-1] if history else [math.nan] * 4
        meta = {"solver": "dmasking", "cost": cost, "budget": budget, "steps_done": step, "stopped_early": stopped,
                "final_lambda": lam, "final_tau": last[3], "final_cross_entropy": last[0],
                "final_expected_cost": last[1], "final_argmax_cost": final_cost,
                "final_meets_budget": None if budget is None else bool(final_cost <= budget),
                "moved_within_budget": None, "wall_s": round(wall, 1),
                "cpu_s": round(cpu, 1) if math.isfinite(cpu) else None,
                "history_every_step": {"columns": ["cross_entropy", "expected_cost", "lambda", "tau"],
                                       "rows": history[-self.steps:]}}
        pareto_on = [problem.target, cost] + [b for b in problem.budgets if b != cost]
        res = problem.result(G, U, values, sources, meta, candidates=cands, pareto_on=pareto_on)
        res.meta["moved_within_budget"] = _moved_meta(snapshots, res.df, cost)
        return res


def _moved_meta(snapshots: list[dict[str, Any]], df: Any, cost: str) -> dict[str, Any] | None:
    """What the budget move changed (``None`` when the argmax met the budget or there was none)."""
    moved = [s for s in snapshots if s.get("moved")]
    if not moved:
        return None
    row = df["config"] == moved[-1]["candidate"]
    return {"decisions_changed": moved[-1]["moved"],
            "cost": float(df.loc[row, cost].iloc[0]) if row.any() else None}


def _within_budget(logits: Any, costs: Callable[[list[Any]], np.ndarray], budget: float,
                   max_moves: int = 500) -> tuple[Any, list[str]] | None:
    """The final argmax moved within ``budget`` by the cheapest changes in probability, or ``None`` when it
    already meets it.

    Dual ascent meets the budget in expectation, not always at the argmax (on Fashion-MNIST the argmax ended
    up to 15% over it). Greedily, each move makes the one decision change that gives up the least
    log-probability (the learned logits at temperature 1) per unit of cost saved — or, when some single change
    reaches the budget, the least probable loss among those — until the cost is within the budget;
    the moved candidate is returned beside the argmax, never instead of it."""
    import torch

    space = logits.space
    logp = {n: torch.log_softmax(lg.detach().double(), 0).numpy() for n, lg in zip(logits.names, logits.logits)}
    cur = logits.candidate()
    c_cur = float(costs([cur])[0])
    if c_cur <= budget:
        return None
    changed: list[str] = []
    while c_cur > budget:
        if len(changed) >= max_moves:
            raise ConfigError(f"dmasking: no candidate within the budget {budget:g} after {max_moves} moves from "
                              f"the argmax (cost {c_cur:g}); the budget may be below the space's cheapest "
                              "candidate (docs/search.md, 'Differentiable search').")
        moves, cands = [], []
        for n in logits.names:
            i = logits.options[n].index(cur[n])
            for j, o in enumerate(logits.options[n]):
                if j != i:
                    moves.append((n, float(logp[n][i] - logp[n][j])))
                    cands.append(space.canonical(cur.replace(**{n: o})))
        saved = c_cur - costs(cands)
        ok = np.flatnonzero(saved > 1e-12 * max(1.0, abs(c_cur)))
        if not len(ok):
            raise ConfigError(f"dmasking: the argmax costs {c_cur:g}, over the budget {budget:g}, and no single "
                              "change lowers it; raise the budget to at least the space's cheapest candidate's cost "
                              "(problem.objective(cost).bounds()[0]; docs/search.md, 'Differentiable search').")
        loss = np.array([m[1] for m in moves])
        reach = ok[saved[ok] >= c_cur - budget]
        if len(reach):   # some single change reaches the budget: the least probable loss among those
            k = int(reach[np.argmin(loss[reach])])
        else:            # else the least probable loss per unit of cost saved
            k = int(ok[np.argmin(np.maximum(loss[ok], 0.0) / saved[ok])])
        cur, c_cur = cands[k], c_cur - float(saved[k])
        changed.append(f"{moves[k][0]}={cur[moves[k][0]]}")
    return cur, changed
