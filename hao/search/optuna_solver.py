"""Multi-objective search with Optuna (NSGA-II, TPE, random) on any objectives, in a persistent study.

A study lives in an Optuna storage given as a URL: a SQLite file by default, ``postgresql://user:pw@host/db``
for many workers on many machines (every worker runs the same ``hao search ... --storage URL`` command).

Guarantees:

* **Resume.** Finished trials are never re-run. A restarted worker counts the COMPLETE trials already in the
  study and only runs the rest; its sampler is re-seeded from ``(seed, worker, trials done)`` so it does not
  replay the proposals of the first run.
* **Kill at any instant.** A trial whose worker died stays RUNNING until its heartbeat is older than
  ``grace_period``; any live worker then marks it FAIL (Optuna's heartbeat). Workers never start more trials
  than ``n_trials - COMPLETE - RUNNING``, and a trial that finds the quota already reached by older trials is
  pruned without evaluation, so the study ends with exactly ``n_trials`` COMPLETE trials.
* **Seeds.** One worker + a fresh study + the same seed gives identical trials (Optuna's samplers are seeded;
  nothing touches a global RNG).
"""
from __future__ import annotations

import hashlib
import json
import logging
import multiprocessing
import os
import datetime
import sys
import time
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import numpy as np

from hao._imports import lazy_import
from hao.errors import ConfigError
from hao.search.base import STOP, SearchProblem, Solver, register_solver
from hao.search.result import SearchResult
from hao.space.base import Candidate

__all__ = ["OptunaSolver", "open_storage", "SAMPLERS", "DEFAULT_STORAGE"]

_LOG = logging.getLogger("hao.search")
SAMPLERS = ("nsga2", "tpe", "random")
#: Storage used when none is given: a SQLite file in the current folder.
DEFAULT_STORAGE = "sqlite:///hao-studies.db"
_SCHEMES = ("sqlite", "postgresql", "postgresql+psycopg2", "postgresql+psycopg", "mysql", "mysql+pymysql")


def _redact(url: str) -> str:
    try:
        p = urlsplit(url)
    except ValueError:
        return url
    if p.password:
        return url.replace(f":{p.password}@", ":***@")
    return url


def open_storage(url: str | None, heartbeat_interval: int = 5, grace_period: int = 20) -> Any:
    """An Optuna storage for ``url`` (``None`` = :data:`DEFAULT_STORAGE`, ``":memory:"`` = in-memory).

    Raises :class:`ConfigError` naming the URL and the fix for a malformed URL, an unknown scheme, a SQLite
    folder that does not exist, a missing database driver or a server that cannot be reached.
    """
    optuna = lazy_import("optuna")
    if url is None:
        url = DEFAULT_STORAGE
    if not isinstance(url, str) or not url:
        raise ConfigError(f"storage must be a URL string such as 'sqlite:///study.db' or "
                          f"'postgresql://user:password@host:5432/db', got {url!r}.")
    if url == ":memory:":
        return optuna.storages.InMemoryStorage()
    scheme = url.split("://", 1)[0] if "://" in url else ""
    if scheme not in _SCHEMES:
        raise ConfigError(f"Storage URL {_redact(url)!r} has scheme {scheme or '(none)'!r}; valid schemes are "
                          f"{', '.join(_SCHEMES)} (e.g. 'sqlite:///out/study.db' or "
                          "'postgresql://user:password@127.0.0.1:5432/hao'), or ':memory:'.")
    engine_kwargs: dict[str, Any] = {}
    if scheme == "sqlite":
        if not url.startswith("sqlite:///"):
            raise ConfigError(f"SQLite storage URL {url!r} must look like 'sqlite:///relative/path.db' or "
                              "'sqlite:////absolute/path.db' (three slashes before the path).")
        path = url[len("sqlite:///"):]
        if not path:
            raise ConfigError(f"SQLite storage URL {url!r} names no file; use e.g. 'sqlite:///study.db'.")
        folder = Path(path).parent
        if not folder.is_dir():
            raise ConfigError(f"The folder {str(folder)!r} of storage URL {url!r} does not exist; create it "
                              "first or point the URL at an existing folder.")
        engine_kwargs = {"connect_args": {"timeout": 60}}
    elif scheme.startswith("postgresql"):
        if scheme == "postgresql":
            # SQLAlchemy >= 2.1 maps postgresql:// to psycopg (v3); use psycopg2 when only that is installed
            import importlib.util
            if importlib.util.find_spec("psycopg") is None and importlib.util.find_spec("psycopg2") is not None:
                url = "postgresql+psycopg2://" + url.split("://", 1)[1]
            elif importlib.util.find_spec("psycopg") is None:
                lazy_import("psycopg2")  # raises MissingDependencyError with the install command
        else:
            lazy_import("psycopg" if scheme == "postgresql+psycopg" else "psycopg2")
        p = urlsplit(url)
        if not p.hostname and "host=" not in (p.query or ""):
            raise ConfigError(f"PostgreSQL storage URL {_redact(url)!r} names no host; use "
                              "'postgresql://user:password@host:5432/database'.")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            storage = optuna.storages.RDBStorage(url, engine_kwargs=engine_kwargs or None,
                                                 heartbeat_interval=heartbeat_interval, grace_period=grace_period)
        if scheme == "sqlite":
            _sqlite_wal(storage.engine)
        return storage
    except Exception as exc:  # sqlalchemy raises many types; report one clear error
        raise ConfigError(f"Could not open storage {_redact(url)!r}: {type(exc).__name__}: "
                          f"{str(exc).splitlines()[0] if str(exc) else ''}. Check that the database server is "
                          "running and the URL's user, password, host, port and database are right.") from None


def _sqlite_wal(engine: Any) -> None:
    """WAL journal + synchronous=NORMAL: a commit costs ~0.1 ms instead of an fsync, and a killed process
    still loses nothing it committed (only an OS crash could drop the last transactions)."""
    from sqlalchemy import event

    def on_connect(dbapi_conn: Any, _record: Any) -> None:
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute("PRAGMA synchronous=NORMAL")
        cur.close()

    event.listen(engine, "connect", on_connect)
    engine.dispose()


def _problem_signature(problem: SearchProblem, sampler: str, seed: int) -> dict[str, Any]:
    sig = {"space": problem.space.name, "space_size": str(problem.space.size()), "objectives": problem.names,
           "budgets": problem.budgets, "sampler": sampler, "seed": seed}
    if "maximize" in problem.directions:  # (absent otherwise, so studies of minimised objectives keep their name)
        sig["directions"] = problem.directions
    if getattr(problem.space, "conditioned_on", None):  # one study per context (e.g. per input resolution)
        sig["context"] = problem.space.conditioned_on
    return sig


@register_solver("optuna")
class OptunaSolver(Solver):
    """Optuna multi-objective search over a hao space.

    Args:
        sampler: ``"nsga2"`` (NSGAIISampler), ``"tpe"`` (multi-objective TPESampler, grouped, multivariate) or
            ``"random"``.
        n_trials: COMPLETE trials the study must end with (counting those of earlier runs).
        seed: seed of the sampler (per worker: derived from seed, worker number and trials already done).
        storage: Optuna storage URL (default :data:`DEFAULT_STORAGE`; ``":memory:"`` for no persistence).
        study_name: default derived from the space, objectives, budgets, sampler and seed, so re-running the
            same command resumes the same study.
        n_workers: worker processes on this machine (needs a persistent storage; PostgreSQL recommended).
        population_size: NSGA-II population.
        heartbeat_interval, grace_period: seconds; a RUNNING trial whose heartbeat is older than
            ``grace_period`` is marked FAIL by a live worker (the trial of a killed worker).
        timeout: stop this worker after this many seconds (the study can be resumed).
        worker_id: distinguishes the sampler seeds of workers started separately on one study (give each
            ``hao search --storage postgresql://...`` process its own ``--worker-id``); ``n_workers`` local
            processes get ``worker_id, worker_id + 1, ...``.
    """

    evaluation_budget = "n_trials"
    stops_gracefully = True

    def __init__(self, sampler: str = "nsga2", n_trials: int = 200, seed: int = 0, storage: str | None = None,
                 study_name: str | None = None, n_workers: int = 1, population_size: int = 50,
                 heartbeat_interval: int = 5, grace_period: int = 20, timeout: float | None = None,
                 worker_id: int = 0) -> None:
        if sampler not in SAMPLERS:
            raise ConfigError(f"Unknown Optuna sampler {sampler!r}; valid samplers: {', '.join(SAMPLERS)}.")
        for name, v, low in (("n_trials", n_trials, 1), ("seed", seed, 0), ("n_workers", n_workers, 1),
                             ("population_size", population_size, 2), ("heartbeat_interval", heartbeat_interval, 1),
                             ("grace_period", grace_period, 1)):
            if not isinstance(v, (int, np.integer)) or isinstance(v, bool) or v < low:
                raise ConfigError(f"The {name!r} parameter of OptunaSolver must be an int in the range "
                                  f"[{low}, inf). Got {v!r} instead.")
        if grace_period <= heartbeat_interval:
            raise ConfigError(f"grace_period ({grace_period}) must exceed heartbeat_interval "
                              f"({heartbeat_interval}); otherwise live trials are failed as stale.")
        if timeout is not None and not float(timeout) > 0:
            raise ConfigError(f"The 'timeout' parameter of OptunaSolver must be > 0 seconds or None. Got "
                              f"{timeout!r} instead.")
        if n_workers > 1 and storage == ":memory:":
            raise ConfigError("n_workers > 1 needs a storage the workers share; pass a sqlite:/// file or a "
                              "postgresql:// URL instead of ':memory:'.")
        self.sampler, self.n_trials, self.seed = sampler, int(n_trials), int(seed)
        self.storage, self.study_name, self.n_workers = storage, study_name, int(n_workers)
        self.population_size = int(population_size)
        self.heartbeat_interval, self.grace_period, self.timeout = heartbeat_interval, grace_period, timeout
        if not isinstance(worker_id, (int, np.integer)) or isinstance(worker_id, bool) or worker_id < 0:
            raise ConfigError(f"The 'worker_id' parameter of OptunaSolver must be an int in the range [0, inf). "
                              f"Got {worker_id!r} instead.")
        self.worker_id = int(worker_id)

    # ---- study plumbing -------------------------------------------------------------------------------
    @property
    def storage_url(self) -> str:
        """The storage URL in use (``storage`` or :data:`DEFAULT_STORAGE`)."""
        return self.storage if self.storage is not None else DEFAULT_STORAGE

    def default_study_name(self, problem: SearchProblem) -> str:
        sig = json.dumps(_problem_signature(problem, self.sampler, self.seed), sort_keys=True)
        return f"hao-{problem.space.name}-{self.sampler}-s{self.seed}-{hashlib.sha1(sig.encode()).hexdigest()[:8]}"

    def _storage_object(self) -> Any:
        # one storage per process (a forked worker opens its own connection pool)
        key = (os.getpid(), self.storage_url)
        cache = getattr(self, "_storage_cache", None)
        if cache is None or cache[0] != key:
            cache = (key, open_storage(self.storage_url, self.heartbeat_interval, self.grace_period))
            self._storage_cache = cache
        return cache[1]

    def _make_sampler(self, problem: SearchProblem, seed: int) -> Any:
        optuna = lazy_import("optuna")
        cons = (lambda ft: ft.user_attrs.get("constraints", [0.0])) if problem.budgets else None
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            if self.sampler == "nsga2":
                return optuna.samplers.NSGAIISampler(population_size=self.population_size, seed=seed,
                                                     constraints_func=cons)
            if self.sampler == "tpe":
                return optuna.samplers.TPESampler(seed=seed, multivariate=True, group=True, constraints_func=cons,
                                                  n_startup_trials=min(20, max(5, self.n_trials // 10)))
            return optuna.samplers.RandomSampler(seed=seed)

    def _open(self, problem: SearchProblem, sampler: Any | None = None) -> Any:
        optuna = lazy_import("optuna")
        storage = self._storage_object()
        name = self.study_name or self.default_study_name(problem)
        directions = problem.directions
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            study = optuna.create_study(storage=storage, study_name=name, sampler=sampler,
                                        directions=directions, load_if_exists=True)
        sig = _problem_signature(problem, self.sampler, self.seed)
        have = study.user_attrs.get("hao_problem")
        if have is None:
            study.set_user_attr("hao_problem", json.loads(json.dumps(sig)))
        elif have != json.loads(json.dumps(sig)):
            raise ConfigError(f"Study {name!r} in {_redact(self.storage_url)!r} was created for a different "
                              f"problem ({have}); pass a new study_name or the original settings.")
        return study

    def _objective(self, problem: SearchProblem, worker: int) -> Any:
        optuna = lazy_import("optuna")
        ix = problem.index
        budgets = [(problem.names.index(b), v) for b, v in problem.budgets.items()]
        sg = [o.sign for o in problem.objectives]
        n_trials = self.n_trials
        TS = optuna.trial.TrialState
        by = problem.space._structure()["by_name"]

        def objective(trial: Any) -> Sequence[float]:
            if not isinstance(trial.storage, optuna.storages.InMemoryStorage):
                # quota check: never let the study end with more than n_trials COMPLETE trials
                others = trial.study.get_trials(deepcopy=False, states=(TS.COMPLETE, TS.RUNNING))
                busy = sum(1 for t in others if t.state == TS.COMPLETE or t.number < trial.number)
                if busy >= n_trials:
                    trial.set_user_attr("surplus", True)
                    raise optuna.TrialPruned("the study already has its n_trials")
            G = np.zeros((1, ix.n_gates), dtype=np.int64)
            U = np.zeros((1, ix.n_units), dtype=np.int64)
            for gi, g in enumerate(ix.gate_names):
                vals = list(ix.gate_values[gi])
                G[0, gi] = vals.index(trial.suggest_categorical(g, vals))
            for j, u in enumerate(ix.units):
                if ix.gated[j] and not ix.active[j][G[0, ix.gate_of[j]]]:
                    U[0, j] = ix.off_index[j]
                    continue
                local = {dn: trial.suggest_categorical(dn, list(by[dn].options)) for dn in u.decisions}
                U[0, j] = ix.local_index(j, local)
            cand = ix.to_candidates(G, U)[0]
            vals = problem.evaluate_indices(G, U, [cand])[0]
            trial.set_user_attr("config", cand.to_json())
            trial.set_user_attr("worker", worker)
            if budgets:
                # optuna: a constraint value <= 0 is satisfied; a lower bound on a maximised objective flips
                trial.set_user_attr("constraints", [float(sg[k] * (vals[k] - b)) for k, b in budgets])
            return [float(v) for v in vals]

        return objective

    def _run_worker(self, problem: SearchProblem, worker: int, progress: bool = False) -> None:
        optuna = lazy_import("optuna")
        TS = optuna.trial.TrialState
        study = self._open(problem)
        done0 = len(study.get_trials(deepcopy=False, states=(TS.COMPLETE,)))
        if done0 and worker == self.worker_id:
            print(f"resuming study {study.study_name!r} with {done0} finished trials "
                  f"(storage {_redact(self.storage_url)})", file=sys.stderr)
        seed = int(np.random.SeedSequence([self.seed, worker, done0]).generate_state(1)[0])
        study.sampler = self._make_sampler(problem, seed)
        objective = self._objective(problem, worker)
        t0 = time.monotonic()
        in_memory = isinstance(study._storage, optuna.storages.InMemoryStorage)
        bar = None
        if progress:
            from tqdm.auto import tqdm
            bar = tqdm(total=self.n_trials, initial=done0, desc=f"optuna {self.sampler}", leave=False)
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                if in_memory:
                    study.optimize(objective, n_trials=max(0, self.n_trials - done0), timeout=self.timeout,
                                   callbacks=[lambda s, t: bar.update(1) if bar else None,
                                              lambda s, t: s.stop() if STOP.is_set() else None])
                    return
                while True:
                    if STOP.is_set():  # Ctrl-C under stop_on_interrupt: the finished trials are stored
                        return
                    if self.timeout is not None and time.monotonic() - t0 > self.timeout:
                        return
                    trials = study.get_trials(deepcopy=False, states=(TS.COMPLETE, TS.RUNNING))
                    complete = sum(1 for t in trials if t.state == TS.COMPLETE)
                    running = len(trials) - complete
                    if bar is not None:
                        bar.n = complete
                        bar.refresh()
                    if complete >= self.n_trials:
                        return
                    if complete + running >= self.n_trials:
                        # the remaining trials are running elsewhere (or belong to a dead worker)
                        time.sleep(min(1.0, self.heartbeat_interval))
                        optuna.storages.fail_stale_trials(study)
                        # a worker killed before its trial's first heartbeat leaves a RUNNING trial that has no
                        # heartbeat, which Optuna never marks stale: fail RUNNING trials started longer ago than
                        # 3 grace periods (live workers' trials here take far less; a live one that loses its
                        # trial this way carries on with a new one, see below)
                        now = datetime.datetime.now()
                        for t in trials:
                            if t.state == TS.RUNNING and t.datetime_start is not None and \
                                    (now - t.datetime_start).total_seconds() > 3 * self.grace_period:
                                try:
                                    study._storage.set_trial_state_values(t._trial_id, TS.FAIL)
                                except Exception:  # noqa: BLE001 - another worker finished or failed it first
                                    pass
                        continue
                    try:
                        study.optimize(objective, n_trials=1)
                    except (optuna.exceptions.UpdateFinishedTrialError, ValueError) as exc:
                        # another worker marked this trial FAIL because its heartbeat looked stale (an
                        # overloaded machine); the trial is lost, not duplicated: carry on with a new one
                        if not isinstance(exc, optuna.exceptions.UpdateFinishedTrialError) and \
                                "Cannot tell" not in str(exc):
                            raise
                        _LOG.warning("a trial was failed by another worker as stale (%s); raise grace_period on "
                                     "overloaded machines", exc)
        finally:
            if bar is not None:
                bar.close()

    def _worker_main(self, problem: SearchProblem, worker: int) -> None:
        """A forked worker: Ctrl-C ends it quietly (the parent reports what the study holds)."""
        try:
            self._run_worker(problem, worker, False)
        except KeyboardInterrupt:
            sys.exit(130)

    def stored_trials(self, problem: SearchProblem) -> tuple[str, int]:
        """(study name, number of COMPLETE trials) of the problem's study in the storage."""
        optuna = lazy_import("optuna")
        prev = optuna.logging.get_verbosity()
        optuna.logging.set_verbosity(optuna.logging.ERROR)
        try:
            study = self._open(problem)
            done = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
        finally:
            optuna.logging.set_verbosity(prev)
        return study.study_name, len(done)

    # ---- Solver API -----------------------------------------------------------------------------------
    def solve(self, problem: SearchProblem, *, progress: bool = False) -> SearchResult:
        self.check_problem(problem)
        optuna = lazy_import("optuna")
        prev_level = optuna.logging.get_verbosity()
        # ERROR: Optuna's per-trial warnings (e.g. a trial failed by Ctrl-C, with its parameter dict) are noise
        optuna.logging.set_verbosity(optuna.logging.ERROR)
        try:
            return self._solve(problem, progress)
        finally:
            optuna.logging.set_verbosity(prev_level)

    def _solve(self, problem: SearchProblem, progress: bool) -> SearchResult:
        t0 = time.perf_counter()
        self._storage_object()  # fail early on a bad URL
        if self.n_workers == 1:
            self._run_worker(problem, self.worker_id, progress)
        else:
            ctx = multiprocessing.get_context("fork")
            procs = [ctx.Process(target=self._worker_main, args=(problem, self.worker_id + w),
                                 daemon=False) for w in range(self.n_workers)]
            for p in procs:
                p.start()
            try:
                for p in procs:
                    p.join()
            except KeyboardInterrupt:
                for p in procs:  # they got the same Ctrl-C; give them a moment to record their trials
                    p.join(timeout=10)
                raise
            bad = [p.exitcode for p in procs if p.exitcode]
            if bad:
                raise ConfigError(f"{len(bad)} of {self.n_workers} search workers failed (exit codes {bad}); "
                                  "the study keeps every finished trial, re-run the same command to resume.")
        return self.result_from_study(problem, t0)

    def result_from_study(self, problem: SearchProblem, t0: float | None = None) -> SearchResult:
        """Every COMPLETE trial of the problem's study as a :class:`SearchResult`."""
        optuna = lazy_import("optuna")
        study = self._open(problem)
        trials = sorted(study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,)),
                        key=lambda t: t.number)
        cands = [Candidate.from_json(t.user_attrs["config"]) for t in trials]
        values = np.array([t.values for t in trials], dtype=np.float64).reshape(len(trials), len(problem.names))
        all_trials = study.get_trials(deepcopy=False)
        states: dict[str, int] = {}
        for t in all_trials:
            states[t.state.name] = states.get(t.state.name, 0) + 1
        meta = {"solver": "optuna", "sampler": self.sampler, "seed": self.seed, "study_name": study.study_name,
                "storage": _redact(self.storage_url), "trial_states": states,
                "solve_s": (time.perf_counter() - t0) if t0 is not None else None}
        dummy = np.zeros((len(cands), 0), dtype=np.int64)
        return problem.result(dummy, dummy, values, [f"trial {t.number}" for t in trials], meta,
                              candidates=cands, extra={"trial": [t.number for t in trials]})
