"""``policylab train ALGO --env ID [--steps N] --seed S --out runs/NAME [--config preset.yaml] [--resume]
[--eval-every STEPS --eval-episodes K --stop-at-return R]``

Trains a policylab.deep agent with a progress bar, writing ``progress.csv`` + TensorBoard logs and
a checkpoint (safetensors + JSON) to ``--out`` every ``--checkpoint-every`` iterations and at the
end. ``--resume`` continues the run in ``--out`` towards the same ``--steps`` with identical
numbers to an uninterrupted run (same ``--steps``: the learning-rate and clip schedules run over
it). Hyperparameters: ``--config`` (a YAML preset) or else the bundled
preset for the env when it has a section for the algorithm, then ``--set key=value`` overrides;
names are the fields of the algorithm's config dataclass (e.g. ``PPOConfig``).

Guarantees: ``--out`` is locked while the run writes it (a second writer fails at once, exit 2);
a NaN/inf loss, gradient, reward or parameter stops the run with the step and the quantity
(exit 2) and keeps the last good checkpoint; Ctrl-C saves a checkpoint at the end of the current
iteration, then exits 130; ``--resume`` truncates the logs to the checkpoint's step and keeps the
run's saved hyperparameters (``--config``/``--set`` are validated and must repeat them).

Offline (``dqn`` only): ``--offline-data FILE --steps N`` fits the Q-network on a logged replay
buffer (``ReplayBuffer.save``, or a run's ``replay_buffer.safetensors`` written with ``--set
save_replay_buffer=true``) for N gradient steps with no env interaction (``DQN.learn_offline``:
CQL with ``cql_alpha`` = 1 unless set), then evaluates it and saves the checkpoint in ``--out``.
"""

from __future__ import annotations

from pathlib import Path

from policylab.deep.registry import ALGORITHMS as ALGOS  # the registry's names (no torch import)


def add_parser(subparsers) -> None:
    from policylab.cli import SUMMARY

    p = subparsers.add_parser("train", help=SUMMARY["train"],
                              description=__doc__.split("\n\n")[1] if __doc__ else None)
    p.add_argument("algo", choices=ALGOS, help="algorithm")
    p.add_argument("--env", required=True, help="Gymnasium env id, e.g. CartPole-v1")
    p.add_argument("--config", default=None,
                   help="YAML preset (path, or an env id for the bundled one); default: bundled preset if any")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override one hyperparameter (repeatable), e.g. --set learning_rate=1e-3")
    p.add_argument("--steps", default=None,
                   help="total env steps of the run, e.g. 1e5 (default: the preset's n_timesteps) [range [1, 1e12]]")
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    p.add_argument("--out", required=True, help="run directory, e.g. runs/ppo-cartpole")
    p.add_argument("--resume", action="store_true", help="continue the run in --out")
    p.add_argument("--checkpoint-every", type=int, default=10, metavar="ITERS",
                   help="checkpoint every ITERS training iterations, 0: only at the end (default 10)")
    p.add_argument("--eval-every", type=int, default=0, metavar="STEPS",
                   help="deterministic evaluation every STEPS env steps (eval/mean_return; best model in OUT/best)")
    p.add_argument("--eval-episodes", type=int, default=10, help="episodes per evaluation (default 10)")
    p.add_argument("--stop-at-return", type=float, default=None, metavar="R",
                   help="stop at the first evaluation whose mean return is ≥ R (needs --eval-every)")
    p.add_argument("--no-tensorboard", action="store_true", help="CSV log only")
    p.add_argument("--offline-data", default=None, metavar="FILE",
                   help="dqn only: learn from this logged replay buffer for --steps gradient steps, no env steps")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    p.on_help.append(_list_hyperparameters)
    p.set_defaults(func=run)


def _list_hyperparameters(parser) -> None:
    from policylab.cli import list_fields
    from policylab.deep.registry import algorithm_class  # imports torch: only for --help

    list_fields(parser, {algo: algorithm_class(algo).config_class for algo in ALGOS})


def _hyperparameters(args) -> tuple[dict, str | None]:
    """Preset (bundled or --config) + --set overrides → (dict, description of the source)."""
    from policylab.config import load_preset, parse_assignments, preset_path

    params, source = {}, None
    if args.config is not None:
        params, source = load_preset(args.config, args.algo), str(preset_path(args.config))
    elif preset_path(args.env).is_file():
        try:
            params, source = load_preset(args.env, args.algo), str(preset_path(args.env))
        except ValueError:  # bundled preset has no section for this algorithm
            params = {}
    params.update(parse_assignments(args.overrides))  # text values: coerced like YAML by make_config
    return params, source


def _check_unchanged(args, agent) -> None:
    """``--resume`` keeps the run's saved hyperparameters: ``--config``/``--set`` are validated and
    must repeat them; a value that differs is refused (UsageError naming the field)."""
    from policylab.cli import UsageError
    from policylab.config import make_config

    params, _ = _hyperparameters(args)
    given = make_config(type(agent.config), params)  # ConfigError for a bad value, e.g. gamma=5
    for key in params:
        old, new = getattr(agent.config, key), getattr(given, key)
        if old != new:
            raise UsageError(f"--resume: {args.out} was trained with {key}={old!r}, not {new!r}; a resumed run "
                             "keeps its saved hyperparameters (drop --set/--config or use another --out)")


def run(args) -> int:
    from policylab.cli import parse_count
    from policylab.errors import PolicylabError
    from policylab.io.lock import RunLock

    # --seed, --checkpoint-every, --eval-every, --eval-episodes: in [0, 2147483647], checked while parsing
    steps = None if args.steps is None else parse_count(args.steps)
    out = Path(args.out)
    created = not out.exists()
    try:
        with RunLock(out):  # one writer per run directory: a second `train` fails here at once
            return _train(args, out, steps)
    except PolicylabError:
        if created and out.is_dir() and not any(out.iterdir()):  # a refused run leaves no empty folder
            out.rmdir()
        raise


def _train(args, out: Path, steps: int) -> int:
    import sys

    from policylab.cli import UsageError

    has_ckpt = (out / "checkpoint.json").is_file()
    if args.resume and not has_ckpt:
        raise UsageError(f"--resume: no checkpoint in {out}")
    if not args.resume and has_ckpt:
        raise UsageError(f"{out} already holds a run; pass --resume to continue it or choose another --out")
    if args.eval_every < 0 or (args.stop_at_return is not None and args.eval_every == 0):
        raise UsageError("--eval-every must be a positive number of env steps (--stop-at-return needs it)")
    if args.eval_episodes < 1:
        raise UsageError("--eval-episodes must be ≥ 1")

    if args.offline_data is not None:
        if args.resume or steps is None:
            raise UsageError("--offline-data needs --steps (gradient steps) and a new --out (no --resume)")
        if not Path(args.offline_data).is_file():
            from policylab.errors import MissingFileError

            raise MissingFileError(f"--offline-data: no file {args.offline_data}")
    from policylab.deep.registry import algorithm_class  # imports torch on first use

    try:
        cls = algorithm_class(args.algo)
    except (ImportError, AttributeError) as exc:
        raise UsageError(f"algorithm {args.algo!r} is not available in this build ({exc})") from None
    if args.offline_data is not None and not hasattr(cls, "learn_offline"):
        raise UsageError(f"--offline-data: {args.algo} does not learn offline (dqn does)")
    if args.resume:
        agent = cls.load(out)
        if agent.env_id != args.env:
            raise UsageError(f"{out} was trained on {agent.env_id}, not {args.env}")
        if agent.seed != args.seed:
            raise UsageError(f"{out} was trained with --seed {agent.seed}, not {args.seed}")
        if args.overrides or args.config is not None:
            _check_unchanged(args, agent)
        steps = steps or agent.config.n_timesteps
        if steps is None:
            raise UsageError("--steps is required to resume this run (its config has no n_timesteps)")
        print(f"resuming {args.algo} on {args.env} from step {agent.num_steps:,} of {steps:,}")
    else:
        params, source = _hyperparameters(args)
        agent = cls(args.env, seed=args.seed, **params)  # validates env + hyperparameters first
        if args.offline_data is not None:
            return _train_offline(args, agent, out, steps)
        steps = steps or agent.config.n_timesteps
        if steps is None:
            raise UsageError(f"--steps is required: the preset for {args.env} has no n_timesteps")
        print(f"training {args.algo} on {args.env} for {steps:,} steps (seed {args.seed}"
              + (f", preset {source}" if source else "") + f") -> {out}")
    if agent.num_steps >= steps:
        print(f"nothing to do: the run already has {agent.num_steps:,} ≥ {steps:,} steps")
        return 0
    try:
        agent.learn(steps, progress_bar=not args.no_progress, log_dir=out, tensorboard=not args.no_tensorboard,
                    checkpoint_dir=out, checkpoint_every=args.checkpoint_every, eval_every=args.eval_every,
                    eval_episodes=args.eval_episodes, stop_at_return=args.stop_at_return)
    except KeyboardInterrupt:
        print(f"policylab train: interrupted at step {agent.num_steps:,}; checkpoint saved in {out} "
              "(continue with --resume)", file=sys.stderr)
        return 130
    recent = list(agent.recent_returns)
    tail = f"; mean return of the last {len(recent)} episodes {sum(recent) / len(recent):.1f}" if recent else ""
    if agent.eval_callback is not None and agent.eval_callback.history:
        ev = agent.eval_callback
        tail += (f"; last evaluation {ev.history[-1][1]:.1f}, best {ev.best_mean:.1f} (checkpoint in {out / 'best'})"
                 + ("; stopped: --stop-at-return reached" if ev.stopped else ""))
    print(f"done: {agent.num_steps:,} steps{tail}; checkpoint + logs in {out}")
    return 0


def _train_offline(args, agent, out: Path, steps: int) -> int:
    """``--offline-data``: ``learn_offline`` for ``steps`` gradient steps, evaluate, save."""
    from tqdm.auto import tqdm

    from policylab.deep.replay import discrete_dataset

    data = discrete_dataset(agent, args.offline_data)  # DataError (fields, shapes, actions) before any work
    every = max(1, min(1000, steps // 100))
    print(f"training {args.algo} on {args.env} offline from {args.offline_data} for {steps:,} gradient steps "
          f"(seed {args.seed}) -> {out}")
    with tqdm(total=steps, disable=args.no_progress, unit="step") as bar:
        agent.learn_offline(data, steps, log_dir=out, tensorboard=not args.no_tensorboard,
                            log_every=every, callback=lambda a, m: bar.update(min(every, steps - bar.n)) and None)
    agent.save(out)
    score = agent.evaluate(args.eval_episodes)
    print(f"done: {steps:,} gradient steps; greedy evaluation over {args.eval_episodes} episodes "
          f"{score.mean:.1f} ± {score.std:.1f}; checkpoint + logs in {out}")
    return 0
