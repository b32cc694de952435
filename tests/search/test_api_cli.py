"""hao.search(...), the CLI commands and the adapters to the latency predictor and accuracy proxy."""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import pytest

import hao
from hao.errors import ConfigError
from hao.pareto import non_dominated
from hao.search.api import make_problem, reference_candidates
from hao.search.objectives import AdditiveObjective, kernel_objective, latency_objective, size_objective
from tests.search._instances import random_instance

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def resnet():
    from hao.space import get_space
    return get_space("resnet-cifar")


def test_hao_search_is_callable_even_after_submodule_import(resnet) -> None:
    import hao.search.ilp  # noqa: F401  (makes `hao.search` the package)
    res = hao.search(space=resnet, solver="ilp", objectives=["bops_g", "size_mb"], budgets={"size_mb": 1e9},
                     n_points=4)
    assert len(res) >= 1 and res.df["pareto"].any()
    assert res.objectives == ["bops_g", "size_mb"]


def test_kernel_objectives_equal_per_candidate_sums(resnet) -> None:
    size = size_objective(resnet)
    fake_pred = lambda ks: np.array([1e-3 * k.macs ** 0.5 + 0.01 * k.w_bits for k in ks])  # noqa: E731
    lat = kernel_objective(resnet, "latency_ms", fake_pred, constant=0.2)
    rng = np.random.default_rng(0)
    cands = [resnet.sample(rng) for _ in range(20)]
    got_size, got_lat = size.evaluate(cands), lat.evaluate(cands)
    for c, s, lat_ms in zip(cands, got_size, got_lat):
        ks = resnet.kernels(c)
        assert s == pytest.approx(sum(k.weight_bytes for k in ks) / 1e6)
        assert lat_ms == pytest.approx(0.2 + fake_pred(ks).sum())


def test_latency_objective_uses_overheads(resnet) -> None:
    class Pred:
        overhead_ms_ = 0.5
        overhead_per_kernel_ms_ = 0.01

        def predict(self, ks, prefer_measured=False):
            return np.full(len(ks), 0.1)

    lat = latency_objective(resnet, Pred())
    c = resnet.sample(np.random.default_rng(1))
    n = len(resnet.kernels(c))
    assert lat.evaluate([c])[0] == pytest.approx(0.5 + n * 0.11)
    with pytest.raises(ConfigError, match="predict"):
        latency_objective(resnet, 3)
    # a fitted network scale multiplies Σ kernels, exactly as LatencyPredictor.network_latency does
    Pred.network_scale_ = 0.6
    assert latency_objective(resnet, Pred()).evaluate([c])[0] == pytest.approx(0.5 + n * (0.06 + 0.01))
    Pred.network_scale_ = -1.0
    with pytest.raises(ConfigError, match="network_scale_"):
        latency_objective(resnet, Pred())


def test_proxy_adapter_matches_proxy_score(resnet) -> None:
    proxy_mod = pytest.importorskip("hao.proxy")

    class Additive(proxy_mod.BaseAccuracyProxy):
        is_additive = True

        def unit_costs(self):
            return [np.arange(len(self.space.unit_options(u)), dtype=float) for u in self.space.units()]

        @property
        def constant(self):
            return 1.5

        def score(self, cands):
            idx = self.space.unit_indices(cands)
            return 1.5 + idx.sum(axis=1)

    from hao.search.objectives import proxy_objective
    px = Additive(resnet)
    obj = proxy_objective(resnet, px)
    assert isinstance(obj, AdditiveObjective)
    cands = [resnet.sample(np.random.default_rng(s)) for s in range(10)]
    np.testing.assert_allclose(obj.evaluate(cands), px.score(cands))


def test_missing_proxy_names_the_file(resnet, tmp_path) -> None:
    with pytest.raises(ConfigError, match="sensitivity.json"):
        make_problem(resnet, objectives=["proxy"], checkpoint=tmp_path)
    with pytest.raises(ConfigError, match="needs hardware"):
        make_problem(resnet, objectives=["latency_ms"])
    with pytest.raises(ConfigError, match="Unknown objective 'speed'"):
        make_problem(resnet, objectives=["speed"])
    with pytest.raises(ConfigError, match=r"\['storage'\] do not apply to solver 'ilp'"):
        hao.search(resnet, objectives=["size_mb", "bops_g"], solver="ilp", storage="sqlite:///x.db")


def test_reference_candidates_are_uniform(resnet) -> None:
    refs = reference_candidates(resnet)
    assert refs, "resnet-cifar has bit decisions, so it has uniform references"
    for label, c in refs.items():
        b = int(label.split()[1].split("-")[0])
        kinds = {d.name: d.kind for d in resnet.decisions()}
        assert all(v == b for k, v in c.choices if kinds[k] in ("w_bits", "a_bits", "bits"))


def _parser() -> argparse.ArgumentParser:
    from hao.cli_search import add_search_commands
    p = argparse.ArgumentParser(prog="hao")
    add_search_commands(p.add_subparsers(dest="command"))
    return p


def test_cli_search_and_export(tmp_path) -> None:
    out = tmp_path / "s"
    args = _parser().parse_args(["search", "--space", "resnet-cifar", "--objectives", "bops_g,size_mb",
                                 "--budget", "size_mb=100", "--points", "3", "--out", str(out), "--no-progress"])
    assert args.func(args) == 0
    for f in ("pareto.csv", "results.csv", "result.json", "pareto.png", "best.json"):
        assert (out / f).is_file(), f
    exp = tmp_path / "e"
    args = _parser().parse_args(["export", str(out / "best.json"), "--out", str(exp), "--allow-random-init"])
    assert args.func(args) == 0
    bits = json.loads((exp / "bit_config.json").read_text())
    assert bits and all(set(v) == {"w_bits", "a_bits"} for v in bits.values())
    import torch
    sd = torch.load(exp / "model_state.pt", weights_only=True)
    assert sd


def test_cli_errors_are_clear(tmp_path) -> None:
    from hao.cli_search import parse_budgets
    with pytest.raises(ConfigError, match="NAME=VALUE"):
        parse_budgets(["latency_ms:3"])
    with pytest.raises(ConfigError, match="not a number"):
        parse_budgets(["latency_ms=fast"])
    assert parse_budgets(["latency_ms=2,size_mb=1", "bops_g=3"]) == {"latency_ms": 2, "size_mb": 1, "bops_g": 3}
    args = _parser().parse_args(["search", "--space", "resnet-cifar", "--solver", "sa", "--out", str(tmp_path)])
    with pytest.raises(ConfigError, match="Known solvers"):
        args.func(args)
    args = _parser().parse_args(["export", "not-json", "--out", str(tmp_path)])
    with pytest.raises(ConfigError, match="neither an existing file"):
        args.func(args)


def test_demo_fails_clearly_without_sensitivities(tmp_path, monkeypatch) -> None:
    import hao.proxy
    from hao import cli_search
    monkeypatch.setattr(hao.proxy, "default_checkpoint_dir", lambda name: tmp_path / "nothing")
    with pytest.raises(ConfigError, match=r"sensitivity\.json"):
        cli_search.run_demo(tmp_path / "out", progress=False)


@pytest.mark.skipif(not (REPO / "checkpoints" / "mbconv-fmnist" / "accmodel" / "accuracy_model.json").is_file()
                    or not list((REPO / "latency_models").glob("cpu-*/table.csv")),
                    reason="the committed CPU table or checkpoints/mbconv-fmnist/accmodel/ is not there yet")
def test_demo_writes_a_valid_front(tmp_path) -> None:
    """The README's main job; its speed is a benchmark figure (README), not a timed test."""
    import pandas as pd

    from hao import cli_search
    assert cli_search.run_demo(tmp_path, progress=False) == 0
    assert (tmp_path / "pareto.csv").is_file() and (tmp_path / "pareto.png").stat().st_size > 5000
    df = pd.read_csv(tmp_path / "pareto.csv")
    # the committed checkpoint has a calibrated model: the y-axis is predicted accuracy (%), maximised
    assert "accuracy" in df and "proxy" not in df
    assert len(df) >= 5 and df["accuracy"].between(0, 100).all() and (df["latency_ms"] > 0).all()
    v = np.column_stack([-df["accuracy"], df["latency_ms"]])
    assert non_dominated(v).all()  # no candidate of the front dominates another
    meta = json.loads((tmp_path / "result.json").read_text())["meta"]
    assert meta["solver"] == "front+random" and 0.99 < meta["hv_ratio_lower_bound"] <= 1.0
    assert meta["front_size"] >= len(df) * 0.5


def test_optuna_local_workers_share_one_study(tmp_path) -> None:
    from hao.search.base import SearchProblem
    from hao.search.optuna_solver import OptunaSolver
    base, _ = random_instance(13, n_costs=1)
    res = OptunaSolver(n_trials=24, n_workers=2, storage=f"sqlite:///{tmp_path}/w.db", population_size=6,
                       heartbeat_interval=1, grace_period=3).solve(SearchProblem(base.space, base.objectives))
    assert len(res.df) == 24 and res.df["trial"].is_unique


@pytest.mark.tvm
def test_export_tvm_library(tmp_path, monkeypatch) -> None:
    import shutil

    pytest.importorskip("tvm")
    hw = sorted(p.parent.name for p in (REPO / "latency_models").glob("cpu-*/meta.json"))
    if not hw:
        pytest.skip("no CPU hardware folder under latency_models/")
    # on the table's own CPU the export tunes the network's tasks into the table's tuning_db (and repacks its
    # schedules.json.xz): work on a copy that shadows the committed table, never on the repository's files
    shutil.copytree(REPO / "latency_models" / hw[0], tmp_path / "tables" / hw[0],
                    ignore=shutil.ignore_patterns("tuning_db"))
    monkeypatch.setenv("HAO_LATENCY_MODELS", str(tmp_path / "tables"))
    from hao.latency.table import hardware_dir
    assert hardware_dir(hw[0]) == tmp_path / "tables" / hw[0]
    from hao.space import get_space
    sp = get_space("resnet-cifar")
    cand = sp.sample(np.random.default_rng(0))
    (tmp_path / "c.json").write_text(cand.to_json())
    args = _parser().parse_args(["export", str(tmp_path / "c.json"), "--out", str(tmp_path / "e"),
                                 "--allow-random-init", "--tvm", hw[0], "--precision", "fp32"])
    assert args.func(args) == 0
    # checked against PyTorch where this CPU can run the table's target, cross-compiled (and said so) elsewhere
    from hao.latency.tvm_backend import missing_isa
    meta = json.loads((tmp_path / "e" / "export.json").read_text())["tvm"]
    target = json.loads(meta["target"])
    assert (tmp_path / "e" / meta["library"]).stat().st_size > 0
    assert meta["checked_here"] == (not missing_isa(target)) and meta["isa_missing_here"] == missing_isa(target)
    if meta["checked_here"]:
        assert meta["max_abs_err_vs_torch"] < 1e-3
    meta = json.loads((tmp_path / "e" / "export.json").read_text())
    assert (tmp_path / "e" / meta["tvm"]["library"]).stat().st_size > 0


@pytest.mark.parametrize("solver, kw", [("ilp", {"n_points": 4}), ("random", {"n_trials": 300, "seed": 3}),
                                        ("optuna", {"n_trials": 20, "seed": 3, "storage": ":memory:",
                                                    "population_size": 6})])
def test_same_seed_same_result_through_the_api(resnet, solver, kw) -> None:
    a = hao.search(resnet, solver=solver, objectives=["bops_g", "size_mb"], **kw)
    b = hao.search(resnet, solver=solver, objectives=["bops_g", "size_mb"], **kw)
    cols = ["config", "bops_g", "size_mb", "feasible", "pareto"]
    assert a.df[cols].equals(b.df[cols])


# ---- clean exits ------------------------------------------------------------------------------------------
def test_search_out_is_checked_before_the_search(tmp_path, capsys) -> None:
    from hao.cli import main
    from tests.snapshots import snapshot

    f = tmp_path / "taken.csv"
    f.write_text("mine\n")
    base = ["search", "--space", "resnet-cifar", "--objectives", "bops_g,size_mb", "--points", "2",
            "--no-progress"]
    assert main(base + ["--out", str(f)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "is an existing file" in err
    assert main(base + ["--out", "/proc/hao-search-out"]) == 2
    assert "is not writable" in capsys.readouterr().err
    # another search's results are refused; the same search re-runs in place; --force moves the old aside
    out = tmp_path / "s"
    assert main(base + ["--out", str(out)]) == 0
    capsys.readouterr()
    before = snapshot(out)
    assert main(base[:4] + ["bops_g,macs_m", "--points", "2", "--no-progress", "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "results of another search" in err and "objectives" in err and "--force" in err
    assert snapshot(out) == before
    assert main(base + ["--out", str(out)]) == 0
    assert main(base[:4] + ["bops_g,macs_m", "--points", "2", "--no-progress", "--out", str(out), "--force"]) == 0
    assert json.loads((out / "search.json").read_text())["objectives"] == "bops_g,macs_m"
    assert len(list((tmp_path / ".replaced").iterdir())) == 1
    # a folder of someone else's files
    other = tmp_path / "other"
    other.mkdir()
    (other / "notes.txt").write_text("keep\n")
    assert main(base + ["--out", str(other)]) == 2
    assert "did not write" in capsys.readouterr().err and (other / "notes.txt").read_text() == "keep\n"


def test_export_refuses_a_non_empty_out(tmp_path, capsys) -> None:
    from hao.cli import main

    sp = __import__("hao").get_space("resnet-cifar")
    (tmp_path / "c.json").write_text(sp.sample(np.random.default_rng(0)).to_json())
    out = tmp_path / "e"
    out.mkdir()
    (out / "model_state.pt").write_bytes(b"weights")
    assert main(["export", str(tmp_path / "c.json"), "--out", str(out), "--allow-random-init"]) == 2
    assert "--force" in capsys.readouterr().err and (out / "model_state.pt").read_bytes() == b"weights"


def test_ctrl_c_during_optuna_prints_one_line_and_resumes(tmp_path) -> None:
    """A real SIGINT to a running `hao search --solver optuna`: one line (trials stored, how to resume), no
    traceback; the same command then says it resumes the study."""
    import signal
    import sqlite3
    import subprocess
    import sys
    import time

    out = tmp_path / "s"
    cmd = [sys.executable, "-m", "hao.cli", "search", "--space", "resnet-cifar", "--solver", "optuna",
           "--objectives", "bops_g,size_mb", "--trials", "100000", "--no-progress", "--out", str(out)]
    env = {**__import__("os").environ, "PYTHONPATH": str(REPO)}
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        db = out / "study.db"
        deadline = time.monotonic() + 300
        n = 0
        while time.monotonic() < deadline and p.poll() is None:
            time.sleep(0.5)
            if db.is_file():
                try:
                    with sqlite3.connect(db) as con:
                        n = con.execute("SELECT COUNT(*) FROM trials WHERE state = 'COMPLETE'").fetchone()[0]
                except sqlite3.Error:
                    n = 0
                if n >= 5:
                    break
        assert n >= 5, "the search stored no trials in 300 s"
        p.send_signal(signal.SIGINT)
        _, err = p.communicate(timeout=60)
    finally:
        if p.poll() is None:  # never leave a search running behind a failed test
            p.kill()
            p.communicate()
    assert p.returncode == 130, err
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1 and "interrupted" in lines[0] and "finished trials" in lines[0], err
    assert "Traceback" not in err and "parameters" not in err
    stored = int(lines[0].split(" holds ")[1].split()[0])
    assert stored >= 5
    again = subprocess.run(cmd[:-5] + ["--trials", str(stored + 2), "--no-progress", "--out", str(out)],
                           capture_output=True, text=True, env=env, timeout=300)
    assert again.returncode == 0, again.stderr
    assert "resuming study" in again.stderr and f"with {stored} finished trials" in again.stderr


def test_cli_front_solver_with_epsilon(tmp_path) -> None:
    from hao.cli import main
    out = tmp_path / "f"
    assert main(["search", "--space", "quant-resnet18", "--objectives", "size_mb,bops_g", "--solver", "front",
                 "--epsilon", "0.01", "--out", str(out), "--no-progress"]) == 0
    meta = json.loads((out / "result.json").read_text())
    assert meta["meta"]["solver"] == "front" and meta["meta"]["epsilon"] == [0.01, 0.01]
    assert 0.9 < meta["meta"]["hv_ratio_lower_bound"] <= 1.0
    exact = tmp_path / "e"
    assert main(["search", "--space", "quant-resnet18", "--objectives", "size_mb,bops_g", "--solver", "front",
                 "--out", str(exact), "--no-progress"]) == 0
    import pandas as pd
    assert len(pd.read_csv(out / "pareto.csv")) <= len(pd.read_csv(exact / "pareto.csv"))


@pytest.mark.skipif(not (REPO / "checkpoints" / "mbconv-fmnist" / "accmodel" / "accuracy_model.json").is_file(),
                    reason="checkpoints/mbconv-fmnist/accmodel/ is not there yet")
def test_default_accuracy_axis_is_the_calibrated_model(tmp_path) -> None:
    from hao.proxy import CalibratedAccuracyModel, model_folder
    space = hao.get_space("mbconv-fmnist")
    ckpt = REPO / "checkpoints" / "mbconv-fmnist"
    assert model_folder(space.name, ckpt) == ckpt / "accmodel" == model_folder(space.name, ckpt / "accmodel")
    p = make_problem(space, objectives=None)
    assert p.names[0] == "accuracy" and p.objective("accuracy").direction == "maximize"
    cands = [space.largest(), space.smallest(), space.uniform(4, 4)]
    G, U = p.index.from_candidates(cands)
    want, _ = CalibratedAccuracyModel.from_checkpoint(space).predict(cands)
    np.testing.assert_allclose(p.evaluate_indices(G, U)[:, 0], want, rtol=1e-9)
    # a folder with sensitivities only: the Hessian proxy (ΔL), as before
    (tmp_path / "sensitivity.json").write_bytes((ckpt / "sensitivity.json").read_bytes())
    assert model_folder(space.name, tmp_path) is None
    assert make_problem(space, objectives=None, checkpoint=tmp_path).names[0] == "proxy"
