"""``hao search`` and ``hao export``: registered on the main parser by :func:`add_search_commands`.

    hao search --space mbconv-fmnist --hardware cpu-rocketlake-2t --solver ilp --budget latency_ms=2 --out out/
    hao search --space mbconv-fmnist --hardware H --solver optuna --trials 500 \\
               --storage postgresql://user:pw@host/db --out out/        # start N times for N workers
    hao search --demo --out out/          # the README's example: < 1 min, writes pareto.csv and pareto.png
    hao export out/best.json --out model/ # PyTorch weights + bit config keyed by module path
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from hao.errors import CandidateError, ConfigError

__all__ = ["add_search_commands", "cmd_search", "cmd_export", "run_demo", "parse_budgets", "DEMO_SPACE"]

DEMO_SPACE = "mbconv-fmnist"


def parse_budgets(items: list[str] | None) -> dict[str, float]:
    """``["latency_ms=2.5", "size_mb=1"]`` -> dict; errors name the bad item and the expected form."""
    out: dict[str, float] = {}
    for item in items or []:
        for part in item.split(","):
            if not part.strip():
                continue
            if "=" not in part:
                raise ConfigError(f"--budget {part!r} must look like NAME=VALUE, e.g. latency_ms=2.5 "
                                  "(names: latency_ms, size_mb, bops_g).")
            k, v = part.split("=", 1)
            try:
                out[k.strip()] = float(v)
            except ValueError:
                raise ConfigError(f"--budget {part!r}: {v!r} is not a number; e.g. latency_ms=2.5.") from None
    return out


def add_search_commands(subparsers: Any) -> None:
    """Register ``search`` and ``export`` on an ``argparse`` sub-parser collection (each sets ``func``)."""
    p = subparsers.add_parser("search", help="search a space for Pareto-optimal candidates",
                              description="Joint architecture + bit-width search. Writes results.csv, pareto.csv, "
                                          "result.json and pareto.png into --out.")
    p.add_argument("--space", help="registered space name (see `hao spaces`)")
    p.add_argument("--hardware", help="latency table name under latency_models/ (adds latency_ms)")
    p.add_argument("--solver", default="ilp", help="ilp (default), front (the whole exact Pareto front), optuna, "
                                                   "random, exhaustive or dmasking (differentiable, needs the "
                                                   "space's trained supernet)")
    p.add_argument("--budget", action="append", metavar="NAME=VALUE",
                   help="upper bound, repeatable: latency_ms=2.5, size_mb=1.2, bops_g=3")
    p.add_argument("--objectives", help="comma-separated: proxy,latency_ms,size_mb,bops_g,macs_m "
                                        "(default: proxy[,latency_ms],size_mb,bops_g)")
    p.add_argument("--checkpoint", help="folder with sensitivity.json (default checkpoints/<space>/)")
    p.add_argument("--storage", help="Optuna storage URL (default sqlite:///OUT/study.db; postgresql://... for "
                                     "many workers)")
    p.add_argument("--trials", type=int, help="Optuna trials / random samples")
    p.add_argument("--sampler", help="optuna sampler: nsga2 (default), tpe, random")
    p.add_argument("--seed", type=int, default=0, help="seed (default 0)")
    p.add_argument("--workers", type=int, help="Optuna worker processes on this machine (default 1)")
    p.add_argument("--worker-id", type=int, help="distinct id per separately started worker (default 0)")
    p.add_argument("--study-name", help="Optuna study name (default derived from the problem)")
    p.add_argument("--points", type=int, help="ILP budgets in the sweep (default 16)")
    p.add_argument("--steps", type=int, help="dmasking: search steps (default 300)")
    p.add_argument("--exact-front", action="store_true", help="ILP: enumerate the whole exact front")
    p.add_argument("--epsilon", type=float, help="front: keep one point per epsilon-box, as a fraction of each "
                                                 "objective's range (0 = exact, default; 0.001 = 0.1%%, with a "
                                                 "proven hypervolume bound)")
    p.add_argument("--demo", action="store_true", help=f"the README example on {DEMO_SPACE} with the committed "
                                                       "CPU table and sensitivities (< 1 min)")
    p.add_argument("--out", required=True, help="output folder (empty, or holding this same search to resume)")
    p.add_argument("--force", action="store_true",
                   help="--out holds another search's results: move them aside to .replaced/ and start anew")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.set_defaults(func=cmd_search)

    e = subparsers.add_parser("export", help="export a candidate as PyTorch weights + bit-config JSON",
                              description="Extract a candidate's sub-network from the supernet. Writes "
                                          "candidate.json, bit_config.json (keyed by module path), model_state.pt "
                                          "(a state_dict; rebuild with space.build(candidate)) and, with --tvm, a "
                                          "compiled library.")
    e.add_argument("candidate", help="candidate JSON file (or a JSON string), e.g. a row's config column")
    e.add_argument("--checkpoint", help="supernet checkpoint file or folder (default checkpoints/<space>/"
                                        "supernet.pt; a fresh seeded supernet if absent and --allow-random-init)")
    e.add_argument("--allow-random-init", action="store_true",
                   help="export with freshly initialised weights when no checkpoint exists")
    e.add_argument("--tvm", metavar="HARDWARE",
                   help="also compile with TVM: a table under latency_models/ (its target and tuned schedules) or "
                        "'native' (this CPU; schedules tuned now). Writes model.so, deploy.json, run_example.py")
    e.add_argument("--precision", choices=("int8", "fp32"), default="int8",
                   help="--tvm: int8 (default; the integer-only network of the table's int8 programs) or fp32")
    e.add_argument("--trials", type=int, default=8,
                   help="--tvm: MetaSchedule trials for a program the database lacks (0 = no tuning; default 8)")
    e.add_argument("--threads", type=int, default=2, help="--tvm: TVM threads (default 2)")
    e.add_argument("--calib-images", type=int, default=2000,
                   help="training images for BatchNorm statistics and activation ranges (default 2000)")
    e.add_argument("--data", help="Fashion-MNIST IDX folder (default: Debian's / $HAO_FMNIST_DIR)")
    e.add_argument("--seed", type=int, default=0, help="seed of the calibration subset (default 0)")
    e.add_argument("--no-progress", action="store_true", help="no progress bars")
    e.add_argument("--out", required=True, help="output folder (must be empty unless --force)")
    e.add_argument("--force", action="store_true", help="--out is not empty: move it aside to .replaced/ first")
    e.set_defaults(func=cmd_export)


# ---- search ----------------------------------------------------------------------------------------------
#: CLI option -> solver constructor parameter; each is passed only when given, and only a solver whose
#: constructor takes the parameter accepts it (no solver names here: see ``hao.search.make_solver``)
_SOLVER_OPTIONS = {"storage": "storage", "workers": "n_workers", "worker_id": "worker_id", "sampler": "sampler",
                   "study_name": "study_name", "points": "n_points", "exact_front": "exact_front",
                   "epsilon": "epsilon", "steps": "steps"}


def _make_solver(args: argparse.Namespace, out: Path, context: str = "", n_trials: int | None = None) -> Any:
    """The solver of ``args``; ``context`` (e.g. ``"resolution20"``) keeps one context's resumable state apart
    from another's, ``n_trials`` overrides ``--trials`` (a context's share)."""
    from hao.registry import accepted_parameters
    from hao.search.base import SOLVERS, make_solver
    params = {p: getattr(args, a) for a, p in _SOLVER_OPTIONS.items() if getattr(args, a) not in (None, False)}
    accepted = accepted_parameters(SOLVERS.get(args.solver))
    sfx = f"_{context}" if context else ""
    if "storage" not in params and "storage" in accepted:
        params["storage"] = f"sqlite:///{out / f'study{sfx}.db'}"  # a resumable study next to the results
    if "work_dir" in accepted:
        params["work_dir"] = str(out / f"solver_state{sfx}")  # resumable next to the results
    if "checkpoint" in accepted and getattr(args, "checkpoint", None):
        params["checkpoint"] = args.checkpoint  # the space's checkpoint folder (supernet.pt)
    return make_solver(args.solver, seed=args.seed, n_trials=args.trials if n_trials is None else n_trials,
                       **params)


_SETTINGS_FILE = "search.json"
#: settings that make two searches different (trials/workers/storage may change when a search is resumed)
_SETTING_KEYS = ("demo", "space", "hardware", "solver", "objectives", "budget", "checkpoint", "seed", "sampler",
                 "points", "exact_front", "study_name", "epsilon")


def claim_out(args: argparse.Namespace) -> Path:
    """Check ``--out`` before any work: a writable folder, empty or holding this same search's files (resumed or
    re-run); another search's results are refused unless ``--force`` (which moves them aside first)."""
    from hao.folders import check_output_folder, claim_folder

    out = check_output_folder(args.out, "hao search")
    settings = {k: getattr(args, k, None) for k in _SETTING_KEYS}
    conflicts = []
    if out.is_dir() and any(out.iterdir()):
        prev = out / _SETTINGS_FILE
        try:
            old = json.loads(prev.read_text()) if prev.is_file() else None
        except (OSError, json.JSONDecodeError):
            old = None
        if not isinstance(old, dict):
            conflicts.append(f"it holds files that `hao search` did not write (no readable {_SETTINGS_FILE})")
        else:
            diff = [f"{k}: {old.get(k)!r} -> {settings[k]!r}" for k in _SETTING_KEYS if old.get(k) != settings[k]]
            if diff:
                conflicts.append("it holds the results of another search (" + "; ".join(diff) + ")")
    moved = claim_folder(out, force=getattr(args, "force", False), what="hao search", conflicts=conflicts,
                         resumable=True)
    if moved is not None:
        print(f"hao search: moved the old {out} to {moved}", file=sys.stderr)
    out.mkdir(parents=True, exist_ok=True)
    (out / _SETTINGS_FILE).write_text(json.dumps(settings, indent=2) + "\n")
    return out


def cmd_search(args: argparse.Namespace) -> int:
    if args.demo:
        out = claim_out(args)
        return run_demo(out, progress=not args.no_progress)
    out = Path(args.out)
    if not args.space:
        raise ConfigError("hao search needs --space NAME (see `hao spaces`) or --demo.")
    from hao.search.api import make_problem, resolve_space
    solver = _make_solver(args, out)  # bad solver names / parameters fail before any work
    budgets = parse_budgets(args.budget)
    objectives = [o.strip() for o in args.objectives.split(",")] if args.objectives else None
    space = resolve_space(args.space)
    if space.context_decisions():
        return _search_contexts(args, space, budgets, objectives)
    problem = make_problem(space, args.hardware, objectives=objectives, budgets=budgets,
                           checkpoint=args.checkpoint)
    out = claim_out(args)
    t0 = time.perf_counter()
    import contextlib

    from hao.search.base import STOP, stop_on_interrupt
    STOP.clear()
    graceful = stop_on_interrupt() if solver.stops_gracefully else contextlib.nullcontext(STOP)
    try:
        with graceful as stop:  # Ctrl-C: a solver that can stop early finishes its evaluation
            result = solver.solve(problem, progress=not args.no_progress)
        if stop.is_set():
            raise KeyboardInterrupt
    except KeyboardInterrupt:
        if hasattr(solver, "stored_trials"):
            name, n = solver.stored_trials(problem)
            print(f"\nhao search: interrupted; study {name!r} holds {n} finished trials. Run the same command "
                  "again to resume.", file=sys.stderr)
        else:
            print(f"\nhao search: interrupted; {args.solver} keeps no partial state, nothing was written to "
                  f"{out}.", file=sys.stderr)
        return 130
    result.meta.update(hardware=args.hardware, wall_s=time.perf_counter() - t0)
    _write(result, out)
    if result.meta.get("solver") == "front" and not any(result.meta.get("epsilon", [0])) and len(result.df) > 5000:
        mb = sum(p.stat().st_size for p in out.glob("*.csv")) / 1e6
        print(f"hao search: the exact front has {len(result.df)} candidates ({mb:.0f} MB of CSV in {out}); "
              "--epsilon 0.001 keeps one per 0.1% box of each objective's range (2,756 instead of 31,282 on "
              "mbconv-fmnist), with the hypervolume lost bounded in result.json.", file=sys.stderr)
    return 0


def _search_contexts(args: argparse.Namespace, space: Any, budgets: Any, objectives: Any) -> int:
    """``hao search`` on a space with context decisions (the input resolution): one search per context, each
    with its own resumable state, merged — or one joint run for a solver that searches the contexts itself
    (:func:`hao.search.contexts.run_context_search`)."""
    import contextlib

    from hao.search.api import make_problem, resolve_predictor
    from hao.search.base import SOLVERS, STOP, stop_on_interrupt
    from hao.search.contexts import run_context_search

    hw = resolve_predictor(args.hardware, space.checkpoint_name)
    joint = getattr(SOLVERS.get(args.solver), "searches_contexts", False)
    out = Path(args.out)
    t0 = [0.0]

    def start() -> None:  # every context's problem is built: claim the output folder, start the clock
        claim_out(args)
        t0[0] = time.perf_counter()

    STOP.clear()
    graceful = stop_on_interrupt() if joint else contextlib.nullcontext(STOP)
    try:
        with graceful as stop:  # joint run: Ctrl-C saves the search state and stops
            result = run_context_search(
                space, lambda sub, b: make_problem(sub, hw, objectives=objectives, budgets=budgets if b else None,
                                                   checkpoint=args.checkpoint),
                lambda tag, n: _make_solver(args, out, tag, n), joint=joint, n_trials=args.trials,
                progress=not args.no_progress, start=start)
        if stop.is_set():
            raise KeyboardInterrupt
    except KeyboardInterrupt:
        what = (f"the search state is in {out}" if joint else
                "contexts already searched are not written (solvers with resumable state resume)")
        print(f"\nhao search: interrupted; {what}. Run the same command again to resume.", file=sys.stderr)
        return 130
    result.meta.update(hardware=args.hardware, wall_s=time.perf_counter() - t0[0])
    _write(result, out)
    return 0


def _write(result: Any, out: Path) -> None:
    result.save(out)
    if len(result.objectives) >= 2:
        result.plot(out / "pareto.png")
    front = result.pareto()
    if len(front):
        best = result.best()  # lowest target among the feasible candidates
        (out / "best.json").write_text(best["config"] + "\n")
        print(front[result.objectives].to_string(index=False, max_rows=20, float_format=lambda v: f"{v:.5g}"))
    print(f"{len(result.df)} candidates evaluated, {int(result.df['pareto'].sum())} on the Pareto front; wrote "
          f"{out / 'pareto.csv'}" + (f" and {out / 'pareto.png'}" if len(result.objectives) >= 2 else "")
          + (f"; best {result.target} -> {out / 'best.json'}" if len(front) else ""))


def _demo_hardware() -> str:
    from hao.latency.table import models_root
    root = models_root()
    cands = sorted(p.name for p in root.glob("cpu-*") if (p / "table.csv").is_file()) if root.is_dir() else []
    if not cands:
        raise ConfigError(f"hao search --demo needs a committed CPU latency table latency_models/cpu-*/table.csv "
                          f"under {root}, and none exists. Calibrate one with `hao calibrate` first.")
    return cands[0]


def run_demo(out: str | Path, progress: bool = True, epsilon: float = 0.001, n_random: int = 3000) -> int:
    """The README's example: the Pareto front of predicted accuracy vs latency on mbconv-fmnist with the committed
    CPU table and calibrated accuracy model (the Hessian proxy's ΔL where the checkpoint has no calibrated model;
    front solver, exact up to ``epsilon`` of each range, with its proven hypervolume bound), three latency budgets
    answered by lookup on it, and a seeded random sample as the dominated cloud."""
    from hao.proxy import default_checkpoint_dir
    from hao.search.api import has_calibrated_model, make_problem
    from hao.search.baselines import RandomSolver
    from hao.search.front import FrontSolver
    from hao.search.result import SearchResult
    t0 = time.perf_counter()
    out = Path(out)
    hardware = _demo_hardware()
    ckpt = default_checkpoint_dir(DEMO_SPACE)
    if not (ckpt / "sensitivity.json").is_file():
        raise ConfigError(f"hao search --demo needs the committed sensitivities {ckpt / 'sensitivity.json'}, which "
                          "do not exist yet. Compute them with `python experiments/train_supernet.py "
                          f"--sensitivity-only --out {ckpt}`.")
    from hao.space import get_space
    acc = "accuracy" if has_calibrated_model(get_space(DEMO_SPACE), ckpt) else "proxy"
    problem = make_problem(DEMO_SPACE, hardware, objectives=[acc, "latency_ms", "size_mb", "bops_g"],
                           checkpoint=ckpt)
    t_build = time.perf_counter() - t0
    front = FrontSolver(objectives=[acc, "latency_ms"], epsilon=epsilon).solve(problem)
    rnd = RandomSolver(n_samples=n_random, seed=0).solve(problem)
    import pandas as pd
    df = pd.concat([front.df, rnd.df], ignore_index=True).drop(columns=["feasible", "pareto"])
    result = SearchResult(df, front.objectives, units=front.units, pareto_on=[acc, "latency_ms"],
                          references=front.references, directions=front.directions,
                          meta={"space": DEMO_SPACE, "hardware": hardware, "solver": "front+random",
                                "title": f"{DEMO_SPACE} on {hardware}", "build_s": t_build,
                                **{k: front.meta[k] for k in ("epsilon", "eps_abs", "hv_ratio_lower_bound",
                                                              "front_size", "solve_s")}})
    lat = front.df["latency_ms"]
    queries = {f"latency <= {b:.3g} ms": {"latency_ms": float(b)}
               for b in np.quantile(lat, [0.2, 0.5, 0.8])}
    result.query(next(iter(queries.values())))  # the first query extracts the front's arrays (cached)
    tq = time.perf_counter()
    answers = {label: result.query(b) for label, b in queries.items()}
    tq = (time.perf_counter() - tq) / len(queries)
    out.mkdir(parents=True, exist_ok=True)
    result.save(out)
    result.plot(out / "pareto.png", x="latency_ms", y=acc, queries=queries)
    print(f"demo: {DEMO_SPACE} on {hardware}: front of {front.meta['front_size']} candidates in "
          f"{front.meta['solve_s']:.1f}s (epsilon {epsilon:g} of each range; hypervolume >= "
          f"{front.meta['hv_ratio_lower_bound']:.4f} of the exact front, proven); total "
          f"{time.perf_counter() - t0:.1f}s")
    for label, row in answers.items():
        print(f"  {label}: {acc} {row[acc]:.4g}, latency {row['latency_ms']:.3g} ms, size {row['size_mb']:.3g} "
              f"MB  (lookup, {tq * 1e6:.0f} us)")
    print(f"wrote {out / 'pareto.csv'} and {out / 'pareto.png'}")
    return 0


# ---- export ----------------------------------------------------------------------------------------------
def _read_candidate(arg: str) -> Any:
    from hao.space.base import Candidate
    p = Path(arg)
    text = p.read_text() if p.is_file() else arg
    if not p.is_file() and not arg.lstrip().startswith("{"):
        raise ConfigError(f"Candidate {arg!r} is neither an existing file nor a JSON object; pass a file written "
                          "by `hao search` (best.json) or a row's config JSON.")
    return Candidate.from_json(text)


def cmd_export(args: argparse.Namespace) -> int:
    from hao.folders import check_output_folder, claim_folder
    from hao.space import get_space
    out = check_output_folder(args.out, "hao export")
    moved = claim_folder(out, force=args.force, what="hao export")
    if moved is not None:
        print(f"hao export: moved the old {out} to {moved}", file=sys.stderr)
    cand = _read_candidate(args.candidate)
    space = get_space(cand.space)
    cand = space.canonical(space.validate(cand))
    torch = __import__("torch")
    from hao.proxy import default_checkpoint_dir
    ckpt = Path(args.checkpoint) if args.checkpoint else default_checkpoint_dir(space.checkpoint_name) / "supernet.pt"
    if ckpt.is_dir():
        ckpt = ckpt / "supernet.pt"
    if ckpt.is_file():
        from hao.train.supernet import load_supernet
        supernet = load_supernet(space, ckpt)
        source = str(ckpt)
    elif args.allow_random_init:
        supernet = space.supernet(0)
        source = "fresh supernet (seed 0, untrained)"
    else:
        raise ConfigError(f"No supernet checkpoint at {str(ckpt)!r}; pass --checkpoint FILE, or "
                          "--allow-random-init to export untrained weights.")
    model = space.build(cand, supernet)
    calibrated_on = _calibrate(model, space, args)
    model.eval()
    out.mkdir(parents=True, exist_ok=True)
    bits = space.bit_config(cand)
    (out / "candidate.json").write_text(json.dumps(cand.to_dict(), indent=2) + "\n")
    (out / "bit_config.json").write_text(json.dumps(bits, indent=2) + "\n")
    torch.save(model.state_dict(), out / "model_state.pt")
    meta = {"space": space.name, "weights_from": source, "n_layers": len(bits), "calibrated_on": calibrated_on,
            "rebuild": "space = hao.get_space(candidate['space']); model = space.build(Candidate.from_dict(c)); "
                       "model.load_state_dict(torch.load('model_state.pt', weights_only=True))"}
    if args.tvm and args.precision == "int8":
        from hao.deploy.export import export_integer

        if calibrated_on is None:
            raise ConfigError(f"--tvm --precision int8 needs calibrated activation ranges, and hao has no "
                              f"calibration images for input shape {tuple(space.input_shape)} (Fashion-MNIST "
                              f"only); export --precision fp32, or see docs/deployment.md.")
        from hao.data import fashion_mnist

        test = fashion_mnist("test", args.data).subset(8, seed=args.seed + 7)
        d = export_integer(model, space, cand, out, hardware=args.tvm, trials=args.trials, threads=args.threads,
                           seed=args.seed, check_images=test.x.numpy(), progress=not args.no_progress)
        meta["tvm"] = {k: d[k] for k in ("library", "hardware", "precision", "schedules", "check", "timing",
                                         "predicted_ms")}
        meta["tvm"]["run"] = "python run_example.py (NumPy + TVM runtime only)"
    elif args.tvm:
        meta["tvm"] = _export_tvm(model, space, args.tvm, out, args)
    (out / "export.json").write_text(json.dumps(meta, indent=2) + "\n")
    print(f"exported {space.name} candidate ({len(bits)} quantized layers) to {out}")
    return 0


def _calibrate(model: Any, space: Any, args: argparse.Namespace) -> str | None:
    """BatchNorm statistics and activation ranges on ``--calib-images`` seeded Fashion-MNIST training images
    (spaces of 1x28x28 input); None (left as is) for other inputs, for which hao ships no images."""
    if tuple(space.input_shape) != (1, 28, 28) or args.calib_images <= 0:
        return None
    from hao.data import fashion_mnist, loader
    from hao.train.evaluate import prepare_subnet

    train = fashion_mnist("train", args.data)
    prepare_subnet(model, list(loader(train.subset(args.calib_images, seed=args.seed + 1), 250)))
    return f"{args.calib_images} Fashion-MNIST training images (seed {args.seed + 1})"


def _export_tvm(model: Any, space: Any, hardware: str, out: Path, args: argparse.Namespace) -> dict[str, Any]:
    """``--precision fp32``: compile the float32 network (BatchNorm folded, ReLU6 as ReLU) into
    ``out/model_<hardware>.so``, checked against PyTorch before it is written.

    On this CPU (``native``, or a table whose target is this CPU) it is the network compiler of ``hao latency
    validate`` (:func:`hao.latency.compiler.build_network`: NHWC, every conv task on its table kernel's schedule,
    other tasks from ``tuning_db`` or tuned now); a table of another CPU is cross-compiled untuned."""
    import copy

    import numpy as np
    import torch

    from hao._imports import lazy_import
    tvm = lazy_import("tvm")
    from tvm import relax
    from tvm.relax.frontend.torch import from_exported_program

    from hao.latency.compiler import legalize
    from hao.latency.table import hardware_dir
    from hao.latency.validate import fold_batchnorm
    from hao.quant import quant_layers, set_bits
    from hao.latency.surgery import relu6_to_relu
    from hao.latency.tvm_backend import default_target, missing_isa

    local = default_target(args.threads)
    if hardware == "native" or json.loads(json.loads((Path(hardware_dir(hardware)) / "meta.json").read_text())
                                          .get("target_json") or "{}").get("mcpu") == local["mcpu"]:
        from hao.latency.compiler import build_network, time_interleaved
        from hao.latency.tuner import Tuner

        fm = copy.deepcopy(model)
        set_bits(fm, {name: {"w_bits": 32, "a_bits": 32} for name, _ in quant_layers(fm)})
        relu6_to_relu(fm)
        fm = fold_batchnorm(fm.eval())
        db = (out / "tuning_db") if hardware == "native" else Path(hardware_dir(hardware)) / "tuning_db"
        tuner = Tuner(db, args.threads, max(args.trials, 1), args.seed)
        try:
            net = build_network(fm, tuple(space.input_shape), tuner)
        finally:
            tuner.close()
        path = out / f"model_{hardware}.so"
        net.exe.export_library(str(path))
        t = time_interleaved([net], passes=5)[0]
        return {"library": path.name, "target": json.dumps(local), "precision": "float32 (BN folded)",
                "compiler": "hao.latency.compiler.build_network", "checked_here": True, "isa_missing_here": [],
                **net.facts, "measured_ms": t.get("measured_ms"),
                "load": "tvm.relax.VirtualMachine(tvm.runtime.load_module(path), tvm.cpu())['main'](x)"}
    meta_path = Path(hardware_dir(hardware)) / "meta.json"
    if not meta_path.is_file():
        raise ConfigError(f"--tvm {hardware}: {meta_path} does not exist; name a folder under latency_models/.")
    meta = json.loads(meta_path.read_text())
    if not meta.get("target_json"):
        raise ConfigError(f"--tvm {hardware}: {meta_path} has no 'target_json'; it was not calibrated with TVM.")
    target = tvm.target.Target(json.loads(meta["target_json"]))
    fm = copy.deepcopy(model)
    set_bits(fm, {name: {"w_bits": 32, "a_bits": 32} for name, _ in quant_layers(fm)})
    fm = fold_batchnorm(fm.eval())
    x = torch.randn(1, *space.input_shape, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        ref = fm(x).numpy()
        ep = torch.export.export(fm, (x,))
    mod = from_exported_program(ep, keep_params_as_input=False)
    with target:
        mod = relax.transform.DecomposeOpsForInference()(mod)
        mod = relax.get_pipeline("zero")(legalize(mod))
    exe = tvm.compile(mod, target=target)
    missing = missing_isa(target)
    err: float | None = None
    if not missing:  # this machine can run the library: check it against PyTorch before writing it
        vm = relax.VirtualMachine(exe, tvm.cpu(0))
        got = vm["main"](tvm.runtime.tensor(x.numpy(), tvm.cpu(0)))
        got = got.numpy() if hasattr(got, "numpy") else got[0].numpy()
        err = float(np.abs(got - ref).max())
        if not err <= 1e-3 * (1 + float(np.abs(ref).max())):
            raise ConfigError(f"--tvm: the compiled library's output differs from PyTorch's by {err:g}; not "
                              "written.")
    else:
        print(f"hao export: {hardware}'s target needs {', '.join(missing[:4])}, which this CPU lacks: the library "
              "is cross-compiled and was not run here; check it on the target.", file=sys.stderr)
    path = out / f"model_{hardware}.so"
    exe.export_library(str(path))
    return {"library": path.name, "target": meta["target_json"], "precision": "float32 (BN folded)",
            "max_abs_err_vs_torch": err,
            "checked_here": not missing, "isa_missing_here": missing,
            "load": "tvm.relax.VirtualMachine(tvm.runtime.load_module(path), tvm.cpu())['main'](x)"}


def main(argv: list[str] | None = None) -> int:  # pragma: no cover - `python -m hao.cli_search`
    parser = argparse.ArgumentParser(prog="hao")
    add_search_commands(parser.add_subparsers(dest="command"))
    args = parser.parse_args(argv)
    from hao.errors import HaoError, MissingDependencyError
    try:
        return int(args.func(args) or 0)
    except (HaoError, MissingDependencyError, CandidateError) as exc:
        print(f"hao {args.command}: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
