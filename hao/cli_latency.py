"""``hao calibrate`` and ``hao latency {list,validate,import,predict}`` (wired into ``hao.cli``)."""
from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

from hao.errors import ConfigError

__all__ = ["add_latency_commands"]


def _parse_target(s: str | None) -> dict[str, Any] | None:
    if s is None:
        return None
    try:
        t = json.loads(s)
    except json.JSONDecodeError as exc:
        raise ConfigError(f"--target must be a TVM JSON target dict such as "
                          f"'{{\"kind\": \"llvm\", \"mcpu\": \"znver4\", \"num-cores\": 2}}', got {s!r} ({exc.msg}). "
                          "String targets like 'llvm -mcpu=...' are refused by TVM 0.27.") from None
    if not isinstance(t, dict) or "kind" not in t:
        raise ConfigError(f"--target must be a JSON object with a 'kind' key, got {s!r}.")
    return t


def _parse_bits(s: str) -> list[tuple[int, int]]:
    out = []
    for part in s.split(","):
        part = part.strip().lower()
        if not part:
            continue
        try:
            w, a = part.lstrip("w").split("a")
            out.append((int(w), int(a)))
        except ValueError:
            raise ConfigError(f"--precisions entries look like w32a32,w8a8; got {part!r} in {s!r}.") from None
    return out


def _cmd_calibrate(args: argparse.Namespace) -> int:
    # Pin the thread count before anything imports tvm.
    from hao.latency.tvm_backend import pin_threads

    pin_threads(args.threads)
    from hao.latency.backend import get_backend
    from hao.latency.calibrate import calibrate, plan_kernels, retime, space_kernels
    from hao.latency.table import default_write_root, hardware_dir, list_hardware
    from hao.space import get_space

    spaces = args.space or []
    if not spaces and not args.retime:
        raise ConfigError("calibrate needs at least one --space NAME (see `hao spaces`); only --retime may omit "
                          "it (then every row of the table is re-timed).")
    if args.retime and (args.retry_failed or (args.rpc and args.rpc_workers != 1)):
        raise ConfigError("--retime re-measures rows already in table.csv one at a time; drop --retry-failed and "
                          "--rpc-workers (a retime uses one backend: local, or one --rpc server).")
    kernels = []
    for name in spaces:
        kernels.extend(space_kernels(get_space(name)))
    if args.op:
        from hao.kernel import CNN_OPS, TOKEN_OPS

        plain = list(CNN_OPS + TOKEN_OPS)
        bad = sorted(set(args.op) - set(plain))
        if bad:
            raise ConfigError(f"--op {', '.join(bad)}: not an op hao calibrate measures; valid ops are "
                              f"{', '.join(plain)} (composite blocks come from imported block-level tables).")
        if not spaces:
            raise ConfigError("--op filters the spaces' plan; give the --space flags too.")
        kernels = [k for k in kernels if k.op in set(args.op)]  # before --kernels limits the plan
    plan = plan_kernels(kernels, precisions=_parse_bits(args.precisions), include_space_bits=not args.no_space_bits,
                        limit=args.kernels, seed=args.seed)
    if args.root:
        root = args.root
    elif args.retime and args.hardware in list_hardware():
        root = str(hardware_dir(args.hardware).parent)  # re-time the table where it is
    else:
        root = str(default_write_root())
    # every option goes to the backend whose constructor takes it (no backend names here)
    from hao.latency.backend import BACKENDS
    from hao.registry import accepted_parameters

    accepted = accepted_parameters(BACKENDS.get(args.backend))
    options = dict(target=_parse_target(args.target), trials=args.trials, threads=args.threads, rpc=args.rpc,
                   database_dir=os.path.join(root, args.hardware, "tuning_db"), seed=args.seed,
                   repeat=args.repeat, min_repeat_ms=args.min_repeat_ms, rounds=args.rounds,
                   rpc_timeout_s=args.rpc_timeout, quiet_limit=args.quiet_limit)
    params = {k: v for k, v in options.items() if k in accepted}
    if args.rpc and "rpc" not in accepted:
        raise ConfigError(f"--rpc: the latency backend {args.backend!r} does not measure over RPC (its options: "
                          f"{accepted}); drop --rpc or pick a backend that takes it.")
    if args.rpc and args.rpc_workers != 1:
        from hao.latency.farm import farm_calibrate, free_servers, tvm_backend_factory
        from hao.latency.tvm_backend import parse_rpc

        host, port, key = parse_rpc(args.rpc)
        n = args.rpc_workers if args.rpc_workers and args.rpc_workers > 0 else free_servers(host, port, key)
        if n < 1:
            raise ConfigError(f"no RPC server is registered under key {key!r} at {host}:{port}; start one "
                              f"with `python -m tvm.exec.rpc_server --tracker {host}:{port} --key {key}`.")
        rpc = params.pop("rpc")
        from hao.latency.calibrate import claim_calibration_folder

        probe = tvm_backend_factory(rpc, **params)(0)  # only to compare its target with the folder's
        try:
            claim_calibration_folder(os.path.join(root, args.hardware), probe, force=args.force)
        finally:
            probe.close()
        res = farm_calibrate(args.hardware, plan, tvm_backend_factory(rpc, **params), n, root=root,
                             retry_failed=args.retry_failed, space_name=",".join(args.space),
                             command="hao " + " ".join(sys.argv[1:]) if sys.argv else None)
        print(json.dumps(res, indent=2))
        return 0
    backend = get_backend(args.backend, **params)
    if not args.retime:
        from hao.latency.calibrate import claim_calibration_folder

        claim_calibration_folder(os.path.join(root, args.hardware), backend, force=args.force)
    if args.retime:
        res = retime(args.hardware, backend, plan if spaces else None, root=root, progress=not args.no_progress,
                     space_name=",".join(spaces) or None,
                     command="hao " + " ".join(sys.argv[1:]) if sys.argv else None,
                     max_kernels=args.kernels if not spaces else None)
        print(json.dumps(res, indent=2))
        return _load_verdict(res, args.hardware)
    sampler = None
    if args.adaptive is not None:
        from hao.latency.adaptive import AdaptiveSampler, executed_pool, usage_weights

        if args.rpc and args.rpc_workers != 1 or args.kernels is not None:
            raise ConfigError("--adaptive chooses the kernels itself, one batch after another on one backend; drop "
                              "--kernels and --rpc-workers.")
        weights: dict = {}
        for name in spaces:
            for k, w in usage_weights(get_space(name), seed=args.seed).items():
                weights[k] = weights.get(k, 0.0) + w
        plan = [k for k in executed_pool(plan) if k in weights]
        sampler = AdaptiveSampler(plan, weights, seed=args.seed)
    from hao.latency.calibrate import _existing_rows
    had = set(_existing_rows(Path(root) / args.hardware / "table.csv", plan))  # rows timed by earlier runs
    res = calibrate(args.hardware, plan, backend, root=root, retry_failed=args.retry_failed,
                    progress=not args.no_progress, space_name=",".join(args.space),
                    command="hao " + " ".join(sys.argv[1:]) if sys.argv else None,
                    adaptive=sampler, budget=args.adaptive)
    if sampler is not None:
        res = {**res, "adaptive_rounds": sampler.rounds}
    verdict = _load_verdict(res, args.hardware)
    if not args.no_timing_pass and args.backend == "tvm" and res.get("measured"):
        # rows timed right after their tuning ran ~10% slow (docs/measurement.md, "Timing pass"): time them again;
        # rows earlier runs measured (and timed again) keep their timings (`--retime` re-times those on purpose)
        # (with --adaptive only the chosen part of the plan was measured)
        now = set(_existing_rows(Path(root) / args.hardware / "table.csv", plan))
        fresh = [k for k in plan if k in now and k not in had]
        print(f"hao calibrate: timing pass over the {len(fresh)} rows this run measured, with their final schedules "
              f"(--no-timing-pass skips it)", file=sys.stderr)
        again = retime(args.hardware, get_backend(args.backend, **params), fresh, root=root,
                       progress=not args.no_progress, space_name=",".join(spaces),
                       command="hao " + " ".join(sys.argv[1:]) if sys.argv else None)
        res = {**res, "timing_pass": again}
        verdict = max(verdict, _load_verdict(again, args.hardware))
    print(json.dumps(res, indent=2))
    return verdict


def _quiet_limit(text: str) -> float | None:
    if text.strip().lower() == "none":
        return None
    try:
        v = float(text)
    except ValueError:
        v = -1.0
    if not v >= 0:
        raise argparse.ArgumentTypeError(f"--quiet-limit must be a number of cores >= 0 or 'none', got {text!r}")
    return v


def _load_verdict(res: dict, hardware: str) -> int:
    """Exit status 3, naming the rows, when the run measured under load (docs/measurement.md, "On a shared
    machine"); 0 otherwise. The rows are kept (flagged in the table's ``other_cores`` column)."""
    loaded = list(res.get("loaded_rows") or [])
    check = res.get("recheck") or {}
    if not loaded and not check.get("drifted"):
        return 0
    if loaded:
        print(f"hao calibrate: {len(loaded)} rows were timed while other processes used the cores (every timing "
              f"session loaded): {', '.join(loaded[:10])}{' ...' if len(loaded) > 10 else ''}. They are in the "
              f"table, flagged in its other_cores column, but their latencies are likely too high.",
              file=sys.stderr)
    if check.get("drifted"):
        worst = sorted(check["rows"], key=lambda r: -abs(r["ratio"] - 1))[:5]
        print(f"hao calibrate: re-timing {check['n']} rows at the end moved them by a median factor "
              f"{check['median_ratio']} (limit ±{check['limit']:.0%}): "
              + ", ".join(f"{r['kernel']} x{r['ratio']}" for r in worst)
              + ". The machine's speed changed during the run.", file=sys.stderr)
    print(f"The table is not done. Stop the other jobs (or raise this session's priority) and re-time it: "
          f"`hao calibrate --hardware {hardware} --retime --space ...` (docs/measurement.md).", file=sys.stderr)
    return 3


def _cmd_check(args: argparse.Namespace) -> int:
    from hao.latency.coverage import coverage
    from hao.latency.table import load_table
    from hao.space import get_space

    rep = coverage(get_space(args.space), load_table(args.hardware))
    if args.json:
        print(json.dumps(rep, indent=2))
    else:
        print(f"{rep['space']} on {rep['hardware']}: {rep['kernels']} distinct kernels, {rep['measured']} measured "
              f"in the table ({100 * rep['share_measured']:.0f}%), {rep['predicted']} predicted")
        for op, d in rep["per_op"].items():
            print(f"  {op:12s} {d['kernels']:6d} kernels  {d['measured']:6d} measured  {d['predicted']:6d} predicted")
        print(f"  bits: the space uses {', '.join(rep['space_bits'])}; the table has {', '.join(rep['table_bits'])}")
    for w in rep["warnings"]:
        print(f"warning: {w}", file=sys.stderr)
    return 0


def _cmd_list(args: argparse.Namespace) -> int:
    from hao.latency.table import LatencyTable, hardware_dir, list_hardware, list_invalid

    rows = []
    for name in list_hardware():
        try:
            rows.append(LatencyTable.load(hardware_dir(name)).summary()
                        | {"name": name, "ok": True, "path": str(hardware_dir(name))})
        except Exception as exc:  # noqa: BLE001 - list what is broken instead of failing the listing
            rows.append({"name": name, "ok": False, "error": str(exc), "path": str(hardware_dir(name))})
    for bad in list_invalid():
        rows.append({"name": bad["name"], "ok": False, "error": bad["reason"], "path": bad["path"]})
    if args.json:
        print(json.dumps(rows, indent=2, default=str))
        return 0
    if not rows:
        from hao.latency.table import _search_roots

        print("no hardware tables found in " + ", ".join(str(r) for r in _search_roots()))
        return 0
    w = max(len(r["name"]) for r in rows)
    print(f"{'name':<{w}}  {'rows':>6}  {'bits':<40} source")
    for r in rows:
        if not r["ok"]:
            print(f"{r['name']:<{w}}  INVALID {r['path']}: {r['error'][:160]}")
            continue
        bits = ",".join(r["bits"])
        print(f"{r['name']:<{w}}  {r['rows']:>6}  {bits[:40]:<40} {str(r['source'])[:60]}")
    return 0


def _cmd_validate(args: argparse.Namespace) -> int:
    if args.published:
        return _cmd_validate_published(args)
    if not args.space:
        raise ConfigError("hao latency validate needs --space NAME (networks compiled with TVM here), or "
                          "--published nets.csv (published whole-network latencies, no TVM).")
    from hao.latency.tvm_backend import pin_threads

    pin_threads(args.threads)
    from hao.latency.validate import validate_networks

    from hao.folders import check_output_folder, refuse_package_folder
    from hao.latency.table import hardware_dir

    suffix = "" if args.precision == "fp32" else f"_{args.precision}"
    report = args.out or os.path.join(hardware_dir(args.hardware), f"validation_{args.space}{suffix}.json")
    check_output_folder(os.path.dirname(os.path.abspath(report)), "hao latency validate")
    refuse_package_folder(hardware_dir(args.hardware), "hao latency validate")  # it writes predictor.json there
    if os.path.exists(report) and not args.force:
        raise ConfigError(f"hao latency validate: the report {report} already exists (an earlier measurement); pass "
                          "--out ANOTHER.json, or --force to replace it. Nothing was changed.")

    rep = validate_networks(args.hardware, args.space, n_networks=args.networks, seed=args.seed,
                            trials_per_task=args.trials, calib_networks=args.calib_networks,
                            progress=not args.no_progress, out=args.out, rounds=args.rounds, precision=args.precision,
                            front=args.front, max_rounds=args.max_rounds,
                            network_scale={"on": True, "off": False}.get(args.network_scale, args.network_scale))
    if args.json:
        print(json.dumps(rep, indent=2, default=str))
    else:
        s = rep["summary"]
        print(f"{rep['hardware']} / {rep['space']} ({rep['precision']}): {s['n_networks']} networks; median |err| "
              f"{s['median_abs_err_pct']:.1f}%, within ±10%: {s['share_within_10pct']:.0%}, "
              f"Kendall tau {s['kendall_tau']:.3f}; model: {s['model']}; report: {rep['report_path']}")
        if rep["precision"] == "fp32" and not rep.get("predictor_updated"):
            print("  predictor.json unchanged: the report is not in the table folder (drop --out to refit the "
                  "table's overhead)")
        for name, alt in s.get("model_selection", {}).get("alternatives", {}).items():
            if "median_abs_err_pct" in alt:
                print(f"  {name:<8} {alt['model']}: median |err| {alt['median_abs_err_pct']:.1f}%, within ±10%: "
                      f"{alt['share_within_10pct']:.0%}")
    loaded = rep.get("networks_timed_under_load") or []
    if loaded:
        print(f"hao latency validate: networks {loaded[:10]} had no quiet timing session (other processes used the "
              f"cores every time); their measured latencies are likely too high. Re-run on a quiet machine "
              f"(docs/measurement.md, \"On a shared machine\").", file=sys.stderr)
    return 0


def _cmd_validate_published(args: argparse.Namespace) -> int:
    from hao.io import write_json
    from hao.latency.published import validate_published

    report = args.out
    if report and os.path.exists(report) and not args.force:
        raise ConfigError(f"hao latency validate: the report {report} already exists; pass --out ANOTHER.json, or "
                          "--force to replace it. Nothing was changed.")
    rep = validate_published(args.hardware, args.published,
                             network_scale={"on": True, "off": False}.get(args.network_scale, args.network_scale))
    if report:
        write_json(report, rep)
    if args.json:
        print(json.dumps(rep, indent=2, default=str))
    else:
        st, raw = rep["summary"], rep["sum_of_kernels_only"]
        print(f"{rep['hardware']} vs {rep['n_networks']} published networks ({rep['published']}): "
              f"{st['share_within_10pct']:.0%} within ±10%, median |err| {st['median_abs_err_pct']:.1f}%, Kendall tau "
              f"{st['kendall_tau']:.3f} (overhead fitted leave-one-out; {rep['model']}); Σ kernels alone: "
              f"{raw['share_within_10pct']:.0%} within ±10%, median |err| {raw['median_abs_err_pct']:.1f}%"
              + (f"; report: {report}" if report else ""))
    return 0


def _cmd_import(args: argparse.Namespace) -> int:
    from hao.latency.importers import get_importer

    if args.plugin:
        from hao.latency.importers import IMPORTERS
        name = IMPORTERS.load_plugin(args.plugin)
        if args.format not in (None, name):
            raise ConfigError(f"hao latency import: --plugin {args.plugin} registers the importer {name!r}, but the "
                              f"format given is {args.format!r}; drop the format or make them agree.")
        args.format = name
    if args.format is None:
        from hao.latency.importers import list_importers
        raise ConfigError(f"hao latency import needs a format ({', '.join(list_importers())}) or --plugin "
                          "package.module:Class.")
    imp = get_importer(args.format)
    folder = imp.run(args.source, args.hardware, root=args.root, force=args.force)
    print(json.dumps({"hardware": folder.name, "folder": str(folder)}, indent=2))
    return 0


def _add_folder_options(p: argparse.ArgumentParser, *, force: str, root_extra: str = "") -> None:
    """``--root`` and ``--force`` of the commands that write a hardware folder (see docs/data.md)."""
    p.add_argument("--root", default=None,
                   help="folder holding hardware folders (default: the per-user folder $HAO_HOME/latency_models, "
                        f"~/.local/share/hao/latency_models{root_extra})")
    p.add_argument("--force", action="store_true", help=force)


def add_latency_commands(subparsers: Any) -> None:
    """Register ``calibrate`` and ``latency`` on an argparse sub-parser collection."""
    p = subparsers.add_parser("calibrate", help="measure a space's kernels with TVM into latency_models/NAME")
    p.add_argument("--hardware", required=True, help="hardware folder name, e.g. cpu-rocketlake-2t")
    p.add_argument("--space", action="append", default=None,
                   help="search space name (repeat for several); see `hao spaces`. Required unless --retime")
    p.add_argument("--retime", action="store_true",
                   help="re-measure rows already in table.csv with the schedules in tuning_db/ (no new tuning "
                        "unless a record is missing) and replace their timings; with --space only the rows the "
                        "spaces' plan covers, else every row. Resumable (retime.csv); table.csv is rewritten "
                        "atomically at the end")
    p.add_argument("--op", action="append", default=None,
                   help="only kernels of this op (repeat for several; e.g. --op dwconv2d after a change to the "
                        "depthwise program). Needs --space")
    p.add_argument("--target", default=None,
                   help='TVM JSON target, e.g. \'{"kind":"llvm","mcpu":"znver4","num-cores":2}\' '
                        "(default: this CPU as LLVM names it)")
    p.add_argument("--kernels", type=int, default=None,
                   help="measure at most N planned kernels (seeded subset); with --retime and no --space: re-time "
                        "at most N rows in this run")
    p.add_argument("--adaptive", type=int, default=None, metavar="N",
                   help="measure N kernels chosen adaptively (where the predictor is least sure, weighted by use in "
                        "the space's networks; sub-8-bit kernels are answered by their int8 rows); see "
                        "docs/measurement.md. Resumable: rows already in the table count")
    p.add_argument("--no-timing-pass", action="store_true",
                   help="skip the final pass that re-times every row with its final schedule, away from tuning "
                        "(docs/measurement.md, 'Timing pass')")
    p.add_argument("--trials", type=int, default=8, help="MetaSchedule trials per kernel (default 8)")
    p.add_argument("--threads", type=int, default=2, help="TVM_NUM_THREADS (default 2)")
    p.add_argument("--rpc", default=None, help="HOST:PORT:KEY of a TVM RPC tracker (remote hardware)")
    p.add_argument("--rpc-timeout", type=int, default=120,
                   help="seconds one RPC session may last (tuning one kernel, or checking and timing it; "
                        "default 120); raise it for slow boards")
    p.add_argument("--rpc-workers", type=int, default=1,
                   help="with --rpc: measure on N servers of the tracker key in parallel (0 = one per registered "
                        "server; default 1 = sequential)")
    p.add_argument("--precisions", default="w32a32,w8a8",
                   help="bit pairs every shape is measured at (default w32a32,w8a8)")
    p.add_argument("--no-space-bits", action="store_true",
                   help="do not add the sub-8-bit pairs the space uses (flagged int8-mapped rows)")
    p.add_argument("--repeat", type=int, default=7, help="time_evaluator repeats (default 7)")
    p.add_argument("--min-repeat-ms", type=int, default=15, help="time_evaluator min_repeat_ms (default 15)")
    p.add_argument("--rounds", type=int, default=3,
                   help="timing sessions per kernel; the one with the lowest median is kept (default 3; more "
                        "sessions resist other processes on a shared machine)")
    p.add_argument("--quiet-limit", type=_quiet_limit, default=0.25, metavar="CORES|none",
                   help="a timing session counts only if other processes used at most CORES cores during it "
                        "(default 0.25; 'none': no load check). See docs/measurement.md")
    p.add_argument("--backend", default="tvm", help="latency backend (tvm, or roofline for a dry run)")
    _add_folder_options(p, root_extra="; with --retime: where the table is",
                        force="the folder holds a table of another target or an imported table: move it aside "
                              "to ROOT/.replaced/NAME-<time> and start a new one")
    p.add_argument("--retry-failed", action="store_true", help="measure kernels in failed.csv again")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=_cmd_calibrate)

    lat = subparsers.add_parser("latency", help="latency tables: list, validate, import")
    lsub = lat.add_subparsers(dest="latency_command", metavar="SUBCOMMAND")
    lat.set_defaults(func=lambda a: (lat.print_help(), 2)[1])
    pl = lsub.add_parser("list", help="list hardware tables")
    pl.add_argument("--json", action="store_true")
    pl.set_defaults(func=_cmd_list)

    pc = lsub.add_parser("check", help="how well a table covers a space: measured vs predicted kernels, bits")
    pc.add_argument("--space", required=True, help="registered space name (see `hao spaces`)")
    pc.add_argument("--hardware", required=True, help="table name (see `hao latency list`) or folder")
    pc.add_argument("--json", action="store_true")
    pc.set_defaults(func=_cmd_check)

    pv = lsub.add_parser("validate", help="whole networks compiled by TVM vs the predictor")
    pv.add_argument("hardware")
    pv.add_argument("--space", default=None, help="space of the networks compiled here with TVM")
    pv.add_argument("--published", default=None, metavar="NETS_CSV",
                    help="compare with published whole-network latencies instead (columns candidate, measured_ms; "
                         "no TVM, overhead fitted leave-one-out)")
    pv.add_argument("--networks", type=int, default=20, help="validation networks (seeded random candidates)")
    pv.add_argument("--front", type=int, default=0, metavar="N",
                    help="also validate N candidates spread over the space's front (proxy vs this table's latency), "
                         "the networks a search on this table returns")
    pv.add_argument("--calib-networks", type=int, default=4,
                    help="extra networks used only to fit the per-network overhead: the space's smallest and "
                         "largest candidates (when >= 2), then random ones (default 4)")
    pv.add_argument("--network-scale", choices=("off", "on", "auto"), default="off",
                    help="off: measured = sum(kernels) + a + b*n_kernels; on: also fit a factor on sum(kernels); "
                         "auto: the one with the lower leave-one-out error on the calibration networks (needs "
                         "--calib-networks >= 3). The report scores both either way (default off)")
    pv.add_argument("--precision", choices=("fp32", "int8", "mixed"), default="fp32",
                    help="fp32: float networks vs the float32 rows (fits predictor.json's overhead); int8: every "
                         "layer W8A8 as an integer network of the table's int8 programs; mixed: the sampled "
                         "bit-widths (sub-8-bit layers run the int8 programs). Default fp32")
    pv.add_argument("--trials", type=int, default=8, help="MetaSchedule trials per new Relax task")
    pv.add_argument("--rounds", type=int, default=5,
                    help="timing passes: every network is built first, then timed once per pass, round robin; "
                         "each network keeps its session with the lowest median (default 5)")
    pv.add_argument("--max-rounds", type=int, default=None,
                    help="further passes, for networks without a quiet session in a fast host state (judged by a "
                         "reference network timed before each session), up to this many (default 4 x --rounds); "
                         "see docs/measurement.md, 'Host state'")
    pv.add_argument("--threads", type=int, default=2)
    pv.add_argument("--seed", type=int, default=0)
    pv.add_argument("--out", default=None, help="report path (default: <table folder>/validation_<space>[_<precision>]"
                                                ".json); a report elsewhere leaves the table's predictor.json "
                                                "unchanged")
    pv.add_argument("--force", action="store_true", help="replace an existing --out report")
    pv.add_argument("--json", action="store_true")
    pv.add_argument("--no-progress", action="store_true")
    pv.set_defaults(func=_cmd_validate)

    pi = lsub.add_parser("import", help="import a published table as a hardware folder")
    pi.add_argument("format", nargs="?", default=None,
                    help="a registered importer: apq | haq | hawq, or one a plug-in package adds (entry points in "
                         "the group hao.table_importers)")
    pi.add_argument("--plugin", default=None, metavar="MODULE:CLASS",
                    help="import with this TableImporter subclass (e.g. mypkg.tables:MyImporter)")
    pi.add_argument("--source", default=None,
                    help="input file (default: the shipped copy in reference_data/, see its README)")
    pi.add_argument("--hardware", default=None, help="folder name (default per format)")
    _add_folder_options(pi, force="the folder exists: move it aside to ROOT/.replaced/NAME-<time> first; or "
                                  "shadow a table of the same name elsewhere")
    pi.set_defaults(func=_cmd_import)
