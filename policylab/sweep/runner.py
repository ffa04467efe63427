"""Run a sweep on Ray Tune: local ``ray.init()`` by default, an existing cluster with ``address``.

Data flow: spec → the pending trials (configuration × seed, minus those a previous run of the same
spec and folder already finished); one Tune trial per CPU ("lane") claims them one at a time,
each calling :func:`policylab.sweep.trials.run_trial` into ``<out>/trials/<name>`` →
:mod:`policylab.sweep.report` (table, curves, best preset). With ``scheduler: asha`` every sweep
trial is its own Tune trial instead, so ASHA can compare and stop them. With ``searcher: optuna`` Tune proposes the configurations and each
Tune trial runs its configuration on every seed in turn; finished configurations of an earlier
run are fed back to Optuna as evaluated points.

Where files land: ``<out>`` must be a path every Ray node can write (local disk for a one-machine
sweep; a shared filesystem such as NFS for a cluster). Ray's own experiment state goes to
``<out>/ray``.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

from policylab.errors import UsageError
from policylab.io.lock import RunLock
from policylab.sweep.spec import SweepSpec, Trial, load_spec, searched_config_id
from policylab.sweep.trials import DONE, read_status, run_trial, searched, write_status

__all__ = ["SweepInterrupted", "pending_trials", "run"]

#: every trial process: one thread for torch and BLAS (the agents also pin them)
THREAD_ENV = {"OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


class SweepInterrupted(KeyboardInterrupt):
    """Ctrl-C during a sweep: Ray's workers were stopped, finished trials are kept and reported.

    ``report`` is the summary of what finished; running the same sweep again runs only the rest
    (an unfinished trial resumes from its last checkpoint).
    """

    def __init__(self, report: dict):
        super().__init__("sweep interrupted")
        self.report = report


def pending_trials(spec: SweepSpec, out: Path) -> list[Trial]:
    """Trials whose run directory is not finished, failed or stopped yet."""
    return [t for t in spec.trials() if (read_status(out / "trials" / t.name) or {}).get("status") not in DONE]


def run(spec, out=None, *, num_cpus: int | None = None, address: str | None = None,
        verbose: int = 0) -> dict:
    """Run every pending trial of ``spec`` (a path, mapping or SweepSpec) and write the report.

    Returns the report (see :func:`policylab.sweep.report.summarize`). ``num_cpus`` (local Ray only)
    defaults to the machine's cores; ``address`` ("auto", "ray://host:10001", "host:6379") joins a
    running cluster instead. Safe to re-run after a crash or Ctrl-C: finished trials are kept.
    """
    from policylab.sweep.report import summarize

    spec = spec if isinstance(spec, SweepSpec) else load_spec(spec)
    out = Path(out if out is not None else Path("sweeps") / spec.name).resolve()
    if num_cpus is not None and (isinstance(num_cpus, bool) or not isinstance(num_cpus, int) or num_cpus < 1):
        raise UsageError(f"--num-cpus must be a whole number >= 1, got {num_cpus!r}")
    if address is not None and num_cpus is not None:
        raise UsageError("--num-cpus applies to a local Ray instance; a cluster brings its own CPUs")
    if out.exists() and not out.is_dir():
        raise UsageError(f"sweep output {str(out)!r} is an existing file")
    with RunLock(out):  # one driver per sweep folder: a second one fails at once, naming the first
        (out / "trials").mkdir(parents=True, exist_ok=True)
        _write_spec_copy(spec, out)
        todo = pending_trials(spec, out)
        try:
            with _sigint_stops_now():
                if spec.searcher is not None:
                    _run_searcher(spec, out, num_cpus, address, verbose)
                elif todo:
                    _run_grid(spec, out, todo, num_cpus, address, verbose)
        except KeyboardInterrupt:  # Ray is shut down by now (the runners' finally): report what finished
            raise SweepInterrupted(summarize(spec, out)) from None
        return summarize(spec, out)


class _sigint_stops_now:
    """Ctrl-C raises KeyboardInterrupt in the driver at once, instead of Tune's graceful stop (which
    waits for running trials and lets a lane start the next one): the workers are shut down, a
    trial that was running keeps its last checkpoint and resumes on the next run."""

    def __enter__(self):
        self.old = os.environ.get("TUNE_DISABLE_SIGINT_HANDLER")
        os.environ["TUNE_DISABLE_SIGINT_HANDLER"] = "1"

    def __exit__(self, *exc):
        if self.old is None:
            os.environ.pop("TUNE_DISABLE_SIGINT_HANDLER", None)
        else:
            os.environ["TUNE_DISABLE_SIGINT_HANDLER"] = self.old


def _write_spec_copy(spec: SweepSpec, out: Path) -> None:
    """``<out>/spec.json``: a re-run into the same folder must use the same spec."""
    import dataclasses
    import json

    from policylab.io.checkpoint import atomic_write_bytes

    doc = {k: v for k, v in dataclasses.asdict(spec).items() if k != "source"}
    path = out / "spec.json"
    if path.is_file():
        old = json.loads(path.read_text())
        if old != json.loads(json.dumps(doc, default=str)):
            changed = sorted(k for k in doc if old.get(k) != json.loads(json.dumps(doc[k], default=str)))
            raise UsageError(f"{out} holds a sweep with a different spec (fields {', '.join(changed)} "
                             "differ); use another output folder")
        return
    atomic_write_bytes(path, json.dumps(doc, indent=1, default=str).encode())


def _init_ray(num_cpus, address):
    import ray

    if ray.is_initialized():  # e.g. a test fixture or the user's own session
        return False
    kwargs = {"include_dashboard": False, "log_to_driver": False,
              "runtime_env": {"env_vars": THREAD_ENV}}
    if address is None:
        # "local": a new instance even when a `ray start` cluster runs on this machine (without it,
        # ray.init() joins that cluster, and refuses num_cpus there)
        ray.init(address="local", num_cpus=num_cpus or os.cpu_count(), **kwargs)
    else:
        try:
            ray.init(address=address, **kwargs)
        except ConnectionError as exc:
            raise UsageError(f"--address {address}: cannot connect to a Ray cluster ({exc})") from None
    return True


def _scheduler(spec: SweepSpec, runs_per_trial: int):
    """ASHA over env steps (a trial that runs several seeds counts all of their steps)."""
    if spec.scheduler != "asha":
        return None
    from ray.tune.schedulers import ASHAScheduler

    max_t = spec.steps * runs_per_trial
    return ASHAScheduler(time_attr="step", max_t=max_t, grace_period=max(1, max_t // 8), reduction_factor=2)


def _worker_start(cwd: str) -> None:
    """In the Ray worker, before its first trial: back to the driver's folder (Tune starts a trial
    in its own, and relative paths in the spec — data files, a model folder — mean what they meant
    where the sweep was started), and no ``torch._dynamo`` import (~2 s per worker; a trial never
    compiles, see :mod:`policylab.startup`)."""
    from policylab.startup import skip_optimizer_dynamo

    skip_optimizer_dynamo()
    if os.path.isdir(cwd):
        os.chdir(cwd)


def _tune_trainable(config, spec=None, todo=None, out=None, cwd="."):
    """What a Ray worker runs for one Tune trial = one sweep trial (``config["trial_index"]`` into
    ``todo``); used when a scheduler (ASHA) needs each trial's intermediate results."""
    from ray import tune

    _worker_start(cwd)
    trial = todo[config["trial_index"]]
    report = lambda step, score: tune.report({"score": score, "step": step})
    status = run_trial(spec, trial, Path(out) / "trials" / trial.name, report=report)
    final = status.get("final_score")
    tune.report({"score": float("nan") if final is None else final, "step": spec.steps})


def _lane_trainable(config, spec=None, todo=None, claims=None, out=None, cwd="."):
    """One lane = one CPU: runs pending trials until every one is claimed.

    Without a scheduler nothing needs a trial's intermediate results, so Tune runs one trial per
    CPU ("lane") instead of one per sweep trial: Tune's per-trial cost (actor hand-over, result
    processing, experiment-state writes; ~0.7 s measured) is paid once per CPU, the worker's
    imports once per CPU, and every CPU stays busy however long each trial takes. A lane claims a
    trial by creating ``<claims>/<index>`` with O_EXCL (atomic, also on the shared filesystem a
    cluster's ``<out>`` lives on), so no queue actor has to start first.
    """
    from ray import tune

    _worker_start(cwd)
    done = 0
    start = config["lane"]  # lanes start at different trials: fewer lost races for the first claims
    for index in [*range(start, len(todo)), *range(start)]:
        try:
            os.close(os.open(os.path.join(claims, str(index)), os.O_CREAT | os.O_EXCL | os.O_WRONLY))
        except FileExistsError:
            continue
        trial = todo[index]
        run_trial(spec, trial, Path(out) / "trials" / trial.name)
        done += 1
    tune.report({"score": float(done), "step": done})


def _run_grid(spec: SweepSpec, out: Path, todo: list[Trial], num_cpus, address, verbose) -> None:
    import ray
    from ray import tune

    started = _init_ray(num_cpus, address)
    claims = None
    try:
        if spec.scheduler:  # one Tune trial per sweep trial: ASHA compares their reports
            trainable = tune.with_parameters(_tune_trainable, spec=spec, todo=todo, out=str(out), cwd=os.getcwd())
            space = {"trial_index": tune.grid_search(list(range(len(todo))))}
            name = lambda tr: todo[tr.config["trial_index"]].name
        else:  # one Tune trial per CPU; lanes claim sweep trials through files of this run
            (out / "ray").mkdir(parents=True, exist_ok=True)
            for old in (out / "ray").glob("claims-*"):  # of a killed driver (this one holds the folder's lock)
                shutil.rmtree(old, ignore_errors=True)
            claims = tempfile.mkdtemp(prefix="claims-", dir=out / "ray")
            lanes = max(1, min(len(todo), int(ray.cluster_resources().get("CPU", 1))))
            trainable = tune.with_parameters(_lane_trainable, spec=spec, todo=todo, claims=claims, out=str(out),
                                             cwd=os.getcwd())
            space = {"lane": tune.grid_search(list(range(lanes)))}
            name = lambda tr: f"lane{tr.config['lane']}"
        tuner = tune.Tuner(
            tune.with_resources(trainable, {"cpu": 1}),
            param_space=space,
            tune_config=tune.TuneConfig(metric="score", mode=spec.mode if spec.scheduler else "max",
                                        scheduler=_scheduler(spec, 1), reuse_actors=True,
                                        trial_name_creator=name, trial_dirname_creator=name),
            run_config=tune.RunConfig(name=spec.name, storage_path=str(out / "ray"), verbose=verbose,
                                      failure_config=tune.FailureConfig(max_failures=0)),
        )
        results = tuner.fit()
        if spec.scheduler:
            for res in results:  # ended without an error but never said so: stopped by the scheduler
                trial = todo[res.config["trial_index"]]
                run_dir = out / "trials" / trial.name
                if res.error is None and (read_status(run_dir) or {}).get("status") == "running":
                    write_status(run_dir, status="stopped")
    finally:
        if claims is not None:
            shutil.rmtree(claims, ignore_errors=True)
        if started:
            ray.shutdown()


def _searcher_trainable(config, spec=None, out=None, cwd="."):
    """One searcher trial: its configuration on every seed in turn; reports the mean final score."""
    from ray import tune

    _worker_start(cwd)
    params = {k: (v.item() if hasattr(v, "item") else v) for k, v in config.items()}
    cid, scores = searched_config_id(params), []
    for i, seed in enumerate(spec.seeds):
        trial = Trial(cid, params, seed)
        offset = i * spec.steps
        status = run_trial(spec, trial, Path(out) / "trials" / trial.name,
                           report=lambda step, score, o=offset: tune.report({"score": score, "step": o + step}))
        if status.get("final_score") is not None:
            scores.append(status["final_score"])
    tune.report({"score": float(sum(scores) / len(scores)) if scores else float("nan"),
                 "step": len(spec.seeds) * spec.steps})


def _run_searcher(spec: SweepSpec, out: Path, num_cpus, address, verbose) -> None:
    """Optuna proposes ``num_samples`` configurations; those finished earlier are told to it."""
    from ray import tune
    from ray.tune.search.optuna import OptunaSearch

    dims = {"choice": tune.choice, "uniform": tune.uniform, "loguniform": tune.loguniform,
            "randint": tune.randint}
    space = {k: dims[kind](arg) if kind == "choice" else dims[kind](*arg)
             for k, d in spec.space.items() for kind, arg in d.items()}
    done = [e for e in searched(out).values()
            if len(e["seeds"]) == len(spec.seeds) and all(s.get("status") in DONE for s in e["seeds"].values())]
    remaining = spec.num_samples - len(done)
    if remaining <= 0:
        return
    scores = [[s["final_score"] for s in e["seeds"].values() if s.get("final_score") is not None] for e in done]
    points = [e["params"] for e, sc in zip(done, scores) if sc]
    rewards = [sum(sc) / len(sc) for sc in scores if sc]
    searcher = OptunaSearch(metric="score", mode=spec.mode, seed=spec.sample_seed,
                            points_to_evaluate=points or None, evaluated_rewards=rewards or None)
    started = _init_ray(num_cpus, address)
    try:
        tuner = tune.Tuner(
            tune.with_resources(tune.with_parameters(_searcher_trainable, spec=spec, out=str(out), cwd=os.getcwd()),
                                {"cpu": 1}),
            param_space=space,
            tune_config=tune.TuneConfig(metric="score", mode=spec.mode, search_alg=searcher, reuse_actors=True,
                                        num_samples=remaining, scheduler=_scheduler(spec, len(spec.seeds))),
            run_config=tune.RunConfig(name=spec.name, storage_path=str(out / "ray"), verbose=verbose,
                                      failure_config=tune.FailureConfig(max_failures=0)),
        )
        for res in tuner.fit():  # stopped early by the scheduler: mark the seeds it did not finish
            params = {k: (v.item() if hasattr(v, "item") else v) for k, v in res.config.items()}
            cid = searched_config_id(params)
            for seed in spec.seeds:
                run_dir = out / "trials" / Trial(cid, params, seed).name
                if res.error is None and (read_status(run_dir) or {}).get("status") not in DONE:
                    write_status(run_dir, name=run_dir.name, config_id=cid, params=params, seed=seed,
                                 status="stopped")
    finally:
        if started:
            import ray

            ray.shutdown()
