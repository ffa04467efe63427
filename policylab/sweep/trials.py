"""One trial = one ordinary run directory, written by the library's own run functions.

``run_trial`` is what a Ray worker executes: it builds the run exactly as ``policylab train``
(deep RL: ``Agent(env, seed, **config).learn(steps, log_dir=run, checkpoint_dir=run)``) or
``policylab learn`` (tabular) would, so ``policylab eval`` / ``policylab plot`` work on trials
unchanged and the numbers equal a plain run with the same config and seed. Progress is reported to
the caller through ``report(step, score)`` (Ray Tune's ``tune.report`` under a sweep).

Each trial directory holds ``trial.json`` — status (running | finished | failed | stopped), seed,
params, host and Ray node, start and end (Unix time), wall time, steps/s, final score, error —
written atomically. A re-run skips finished,
failed and stopped trials and resumes running ones from their last checkpoint.
"""

from __future__ import annotations

import json
import time
import traceback
from pathlib import Path

import numpy as np

from policylab.io.checkpoint import atomic_write_bytes
from policylab.io.lock import RunLock

__all__ = ["STATUS_FILE", "final_score", "read_status", "run_trial", "searched", "write_status"]

STATUS_FILE = "trial.json"
DONE = ("finished", "failed", "stopped")


def read_status(run_dir) -> dict | None:
    path = Path(run_dir) / STATUS_FILE
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError):
        return None  # a torn write of a killed driver: treat the trial as not started


def write_status(run_dir, **fields) -> dict:
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    status = (read_status(run_dir) or {}) | fields
    atomic_write_bytes(run_dir / STATUS_FILE, json.dumps(status, indent=1, default=str).encode())
    return status


def final_score(run_dir, metric: str, fraction: float = 0.1) -> float | None:
    """Mean of ``metric`` over the last ``fraction`` of the rows that logged it (at least one)."""
    from policylab.figures.curves import load_run

    try:
        _, values = load_run(run_dir, metric)
    except ValueError:
        return None
    k = max(1, int(np.ceil(fraction * len(values))))
    return float(np.mean(values[-k:]))


def run_trial(spec, trial, run_dir, report=None) -> dict:
    """Run (or resume) one trial in ``run_dir``; returns its final status dict.

    A failure is recorded (status failed, the error's last line and traceback) and not raised:
    the sweep goes on with the other trials.
    """
    run_dir = Path(run_dir)
    status = read_status(run_dir)
    if status is not None and status.get("status") in DONE:
        return status
    base = {"name": trial.name, "config_id": trial.config_id, "params": trial.params, "seed": trial.seed,
            "kind": spec.kind, "algo": spec.algo, "env": spec.env, "steps": spec.steps, **_where()}
    with RunLock(run_dir):  # one writer: a worker of a killed driver still running here fails this one
        write_status(run_dir, **base, status="running", started_at=time.time())
        t0 = time.perf_counter()
        try:
            runner = {"train": _train, "learn": _learn, "llm": _llm}[spec.kind]
            steps_done = runner(spec, trial, run_dir, report or (lambda step, score: None))
        except Exception as exc:  # noqa: BLE001 (recorded and reported; the sweep goes on)
            return write_status(run_dir, status="failed", error=f"{type(exc).__name__}: {exc}",
                                traceback=traceback.format_exc(), wall_seconds=time.perf_counter() - t0,
                                ended_at=time.time())
        wall = time.perf_counter() - t0 + (status or {}).get("wall_seconds", 0.0)
        return write_status(run_dir, status="finished", error=None, wall_seconds=wall, ended_at=time.time(),
                            steps_done=steps_done, steps_per_second=steps_done / max(wall, 1e-9),
                            final_score=final_score(run_dir, spec.metric))


def _where() -> dict:
    """Host and Ray node that run the trial (which machine of a cluster wrote this run)."""
    import socket
    import sys

    node = None
    if "ray" in sys.modules:
        import ray

        if ray.is_initialized():
            node = ray.get_runtime_context().get_node_id()
    return {"host": socket.gethostname(), "ray_node": node}


def _train(spec, trial, run_dir: Path, report) -> int:
    """Deep RL, exactly as ``policylab train ALGO --env ENV --steps N --seed S --out RUN``."""
    from policylab.sweep.spec import _algorithm_class

    cls = _algorithm_class(spec.algo)
    if (run_dir / "checkpoint.json").is_file():
        agent = cls.load(run_dir)  # learn() cuts progress.csv back to the checkpoint's step
    else:  # a trial killed before its first checkpoint starts again, log included (learn refuses foreign logs)
        (run_dir / "progress.csv").unlink(missing_ok=True)
        agent = cls(spec.env, seed=trial.seed, **spec.run_params(trial.params))
    last = [None]

    def callback(agent, metrics):
        value = metrics.get(spec.metric)
        if value is not None and np.isfinite(value):
            last[0] = float(value)
        if last[0] is not None:
            report(agent.num_steps, last[0])

    if agent.num_steps < spec.steps:
        agent.learn(spec.steps, log_dir=run_dir, checkpoint_dir=run_dir,
                    checkpoint_every=spec.checkpoint_every, callback=callback)
    return agent.num_steps


def _llm(spec, trial, run_dir: Path, report) -> int:
    """SFT / DPO / GRPO exactly as ``policylab llm ALGO --config C --output_dir RUN --seed S
    --max_steps N [--resume]``; log.jsonl is mirrored to progress.csv so ``policylab plot`` reads it."""
    from policylab.config import make_config
    from policylab.llm.checkpoint import latest_checkpoint
    from policylab.sweep.spec import llm_classes

    trainer_cls, config_cls = llm_classes(spec.algo)
    cfg = make_config(config_cls, None, **spec.run_params(trial.params), output_dir=str(run_dir),
                      seed=trial.seed, max_steps=spec.steps, progress=False)
    trainer = trainer_cls(cfg.model, None, cfg)
    trainer.train(resume_from="latest" if latest_checkpoint(run_dir) is not None else None)
    rows = [json.loads(line) for line in (run_dir / "log.jsonl").read_text().splitlines() if line.strip()]
    keys = sorted({k for r in rows for k in r if k != "step" and isinstance(r[k], (int, float))})
    lines = [",".join(["step", *keys])] + [",".join([str(r["step"]), *(_cell(r.get(k)) for k in keys)]) for r in rows]
    atomic_write_bytes(run_dir / "progress.csv", ("\n".join(lines) + "\n").encode())
    if rows and spec.metric in rows[-1]:
        report(int(rows[-1]["step"]), float(rows[-1][spec.metric]))
    return int(trainer.step)


def _cell(v) -> str:
    return "" if v is None else f"{float(v):.9g}"


def _learn(spec, trial, run_dir: Path, report) -> int:
    """Tabular control on a catalog MDP, as ``policylab learn ALGO --mdp ENV``; writes the run's
    progress.csv (episodic return/length at ~100 evenly spaced steps) and ``result.npz`` (Q, V,
    greedy policy, episode returns/lengths). Deterministic, so a resumed trial simply re-runs."""
    from policylab import tabular
    from policylab.io.logger import RunLogger
    from policylab.mdp import catalog

    params = spec.run_params(trial.params)
    mdp = catalog.get(spec.env, gamma=params.get("gamma"))
    learner = {"q-learning": tabular.q_learning, "sarsa": tabular.sarsa,
               "expected-sarsa": tabular.expected_sarsa}[spec.algo]
    res = learner(mdp, spec.steps, params.get("alpha", 0.1), params.get("epsilon", 0.1), seed=trial.seed,
                  max_episode_steps=params.get("max_episode_steps"))
    ends = np.cumsum(res.episode_lengths)                                    # (E,) step of each episode end
    (run_dir / "progress.csv").unlink(missing_ok=True)
    logger = RunLogger(run_dir, tensorboard=False)
    try:
        edges = np.unique(np.linspace(0, spec.steps, 101).astype(np.int64))[1:]
        lo = 0
        for step in edges:
            hi = int(np.searchsorted(ends, step, side="right"))
            if hi > lo:
                ret = float(res.episode_returns[lo:hi].mean())
                logger.log(int(step), {"charts/episodic_return": ret,
                                       "charts/episodic_length": float(res.episode_lengths[lo:hi].mean())})
                report(int(step), ret if spec.metric == "charts/episodic_return"
                       else float(res.episode_lengths[lo:hi].mean()))
            lo = hi
    finally:
        logger.close()
    np.savez(run_dir / "result.npz", Q=res.Q, V=res.V, policy=res.policy,
             episode_returns=res.episode_returns, episode_lengths=res.episode_lengths)
    return int(res.steps)


def searched(out: Path) -> dict[str, dict]:
    """Configurations a searcher already ran in ``out``: config_id -> {params, seeds: {seed: status}}."""
    found: dict[str, dict] = {}
    for st_file in sorted((out / "trials").glob("*/trial.json")):
        st = read_status(st_file.parent) or {}
        if "config_id" in st:
            entry = found.setdefault(st["config_id"], {"params": st["params"], "seeds": {}})
            entry["seeds"][st["seed"]] = st
    return found
