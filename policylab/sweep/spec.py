"""A sweep spec: what to run, over which configurations and seeds, and what to report.

    name: ppo-cartpole
    kind: train                  # train (deep RL) | learn (tabular) | llm (language models)
    algo: ppo                    # train: ppo, a2c, ...; learn: q-learning, sarsa, ...; llm: sft, dpo, grpo
    env: CartPole-v1             # train: a Gymnasium id;  learn: a catalog MDP;  llm: (none)
    config: CartPole-v1          # optional base config: bundled preset name, YAML path, or a mapping
                                 #   (llm: e.g. configs/llm/grpo.yaml; model and data files come from it)
    steps: 20000                 # total env steps of every trial
    seeds: [0, 1, 2]             # every configuration runs on every seed
    metric: charts/episodic_return
    mode: max                    # max | min
    space:                       # search space over config fields
      learning_rate: {loguniform: [1.0e-4, 3.0e-3]}
      n_epochs: {grid: [10, 20]}
      clip_eps: {choice: [0.1, 0.2]}
      n_steps: {randint: [16, 65]}         # low inclusive, high exclusive
      gae_lambda: {uniform: [0.8, 0.99]}
    num_samples: 2               # draws of the non-grid dimensions per grid point (default 1)
    sample_seed: 0               # seeds those draws, so a re-run proposes the same configurations
    scheduler: asha              # optional: stop bad trials early (Ray Tune's ASHA)
    searcher: optuna             # optional: propose configurations adaptively (needs optuna)

Everything is checked here, before Ray starts: unknown fields, empty grids, ranges with
low > high, unknown schedulers/searchers, seeds that are not integers, a metric the run kind does
not log. Each problem is a :class:`~policylab.errors.ConfigError` naming the spec field.
"""

from __future__ import annotations

import dataclasses
import hashlib
import itertools
import json
import math
from pathlib import Path

import numpy as np

from policylab.errors import ConfigError, MissingFileError

__all__ = ["DISTRIBUTIONS", "KINDS", "SweepSpec", "Trial", "load_spec"]

KINDS = ("train", "learn", "llm")
DISTRIBUTIONS = ("grid", "choice", "uniform", "loguniform", "randint")
SCHEDULERS = ("asha",)
SEARCHERS = ("optuna",)
LEARN_ALGOS = ("q-learning", "sarsa", "expected-sarsa")
#: config fields of a tabular ``learn`` trial (the arguments of ``tabular.q_learning`` & co.)
LEARN_FIELDS = {"alpha": float, "epsilon": float, "gamma": float, "max_episode_steps": int}
#: metrics every run of a kind logs in its progress.csv (train adds the algorithm's own losses)
LEARN_METRICS = ("charts/episodic_return", "charts/episodic_length")
#: llm algorithms -> (trainer, config) names in ``policylab.llm``; ``steps`` is the trainer's max_steps
LLM_TRAINERS = {"sft": ("SFTTrainer", "SFTConfig"), "dpo": ("DPOTrainer", "DPOConfig"),
                "grpo": ("GRPOTrainer", "GRPOConfig")}
#: fields a sweep sets itself in every llm trial
LLM_OWN_FIELDS = ("output_dir", "seed", "max_steps", "progress")
MAX_TRIALS = 10_000


@dataclasses.dataclass(frozen=True)
class Trial:
    """One (configuration, seed) pair: its own run directory ``<out>/trials/<name>``."""

    config_id: str      # "c003-1a2b3c": index of the configuration + hash of its params
    params: dict        # the searched fields' values
    seed: int

    @property
    def name(self) -> str:
        return f"{self.config_id}-s{self.seed}"


@dataclasses.dataclass
class SweepSpec:
    name: str
    kind: str
    algo: str
    env: str
    steps: int
    seeds: list
    metric: str
    mode: str = "max"
    config: dict = dataclasses.field(default_factory=dict)   # base config (resolved to a mapping)
    space: dict = dataclasses.field(default_factory=dict)
    num_samples: int = 1
    sample_seed: int = 0
    scheduler: str | None = None
    searcher: str | None = None
    checkpoint_every: int = 10      # train: checkpoint every N iterations (resume point)
    source: str | None = None       # the spec file

    # ------------------------------------------------------------------ configurations
    def configurations(self) -> list[tuple[str, dict]]:
        """[(config_id, params)]: the grid's product × ``num_samples`` seeded draws of the rest.
        Deterministic in the spec, so a re-run of the same spec finds the same trials. (With a
        searcher, the configurations are the searcher's proposals, found in the output folder.)"""
        grid = {k: v["grid"] for k, v in self.space.items() if "grid" in v}
        rest = {k: v for k, v in self.space.items() if "grid" not in v}
        rng = np.random.default_rng(self.sample_seed)
        out = []
        for point in itertools.product(*grid.values()) if grid else [()]:
            for _ in range(self.num_samples if rest else 1):
                params = dict(zip(grid, point)) | {k: _draw(v, rng) for k, v in rest.items()}
                out.append(params)
        return [(_config_id(i, p), p) for i, p in enumerate(out)]

    def trials(self) -> list[Trial]:
        """Every configuration on every seed, configuration-major."""
        return [Trial(cid, params, seed) for cid, params in self.configurations() for seed in self.seeds]

    def run_params(self, params: dict) -> dict:
        """Base config + a configuration's values: what the trial's run is built with."""
        return {**self.config, **params}


def _digest(params: dict) -> str:
    return hashlib.sha256(json.dumps(params, sort_keys=True, default=str).encode()).hexdigest()[:6]


def _config_id(index: int, params: dict) -> str:
    return f"c{index:03d}-{_digest(params)}"


def searched_config_id(params: dict) -> str:
    """The id of a configuration a searcher proposed (no index: proposals arrive in any order)."""
    return f"opt-{_digest(params)}"


def _draw(dim: dict, rng: np.random.Generator):
    (kind, arg), = dim.items()
    if kind == "choice":
        return arg[int(rng.integers(len(arg)))]
    lo, hi = arg
    if kind == "uniform":
        return float(rng.uniform(lo, hi))
    if kind == "loguniform":
        return float(math.exp(rng.uniform(math.log(lo), math.log(hi))))
    return int(rng.integers(lo, hi))  # randint: [lo, hi)


# ---------------------------------------------------------------------------- loading + checks
def load_spec(spec) -> SweepSpec:
    """A validated :class:`SweepSpec` from a YAML path or a mapping (errors name the field)."""
    source = None
    if isinstance(spec, (str, Path)):
        source = str(spec)
        data = _read_yaml(Path(spec))
    elif isinstance(spec, dict):
        data = dict(spec)
    else:
        raise ConfigError(f"a sweep spec is a YAML path or a mapping, got {type(spec).__name__}")
    if not isinstance(data, dict):
        raise ConfigError(f"sweep spec {source}: the top level must be a mapping of fields")
    known = {f.name for f in dataclasses.fields(SweepSpec)} - {"source"}
    unknown = sorted(set(data) - known)
    if unknown:
        raise ConfigError(f"sweep spec: unknown field(s) {', '.join(unknown)}; valid: {', '.join(sorted(known))}")
    for need in ("kind", "algo", "steps", "seeds", "metric"):
        if need not in data:
            raise ConfigError(f"sweep spec: missing field {need!r}")
    kind = data["kind"]
    if kind not in KINDS:
        raise ConfigError(f"sweep spec: kind must be one of {', '.join(KINDS)}, got {kind!r}")
    if kind != "llm" and "env" not in data:
        raise ConfigError("sweep spec: missing field 'env'")
    if kind == "llm" and data.get("env") is not None:
        raise ConfigError("sweep spec: kind llm takes no env (the model and data come from config)")
    steps = _whole(data["steps"], "steps", 1, 10**12)
    seeds = data["seeds"]
    if not isinstance(seeds, list) or not seeds:
        raise ConfigError(f"sweep spec: seeds must be a non-empty list of integers, got {seeds!r}")
    for s in seeds:
        if isinstance(s, bool) or not isinstance(s, int) or s < 0:
            raise ConfigError(f"sweep spec: seeds must be integers >= 0, got {s!r}")
    if len(set(seeds)) != len(seeds):
        raise ConfigError(f"sweep spec: seeds must be distinct, got {seeds}")
    mode = data.get("mode", "max")
    if mode not in ("max", "min"):
        raise ConfigError(f"sweep spec: mode must be max or min, got {mode!r}")
    scheduler, searcher = data.get("scheduler"), data.get("searcher")
    if scheduler is not None and scheduler not in SCHEDULERS:
        raise ConfigError(f"sweep spec: unknown scheduler {scheduler!r}; choose from {', '.join(SCHEDULERS)}")
    if searcher is not None and searcher not in SEARCHERS:
        raise ConfigError(f"sweep spec: unknown searcher {searcher!r}; choose from {', '.join(SEARCHERS)}")
    space = data.get("space") or {}
    if not isinstance(space, dict):
        raise ConfigError("sweep spec: space must be a mapping of field -> {distribution: args}")
    spec = SweepSpec(
        name=str(data.get("name") or (Path(source).stem if source else "sweep")),
        kind=kind, algo=str(data["algo"]), env=str(data.get("env") or ""), steps=steps, seeds=list(seeds),
        metric=str(data["metric"]), mode=mode, config=_base_config(data.get("config"), kind, data),
        space={k: _check_dim(k, v) for k, v in space.items()},
        num_samples=_whole(data.get("num_samples", 1), "num_samples", 1, MAX_TRIALS),
        sample_seed=_whole(data.get("sample_seed", 0), "sample_seed", 0, 2**63 - 1),
        scheduler=scheduler, searcher=searcher,
        checkpoint_every=_whole(data.get("checkpoint_every", 10), "checkpoint_every", 1, 10**9),
        source=source,
    )
    if searcher is not None and any("grid" in d for d in spec.space.values()):
        raise ConfigError("sweep spec: a searcher proposes every field itself; use choice instead of grid")
    if searcher == "optuna":
        try:
            import optuna  # noqa: F401
        except ImportError:
            raise ConfigError("sweep spec: searcher optuna needs the optuna package: "
                              "pip install -e \".[sweep]\"") from None
    n = len(spec.trials())
    if n > MAX_TRIALS:
        raise ConfigError(f"sweep spec: {n} trials exceed the limit of {MAX_TRIALS}")
    _check_fields_and_metric(spec)
    return spec


def _read_yaml(path: Path) -> dict:
    import yaml

    if not path.is_file():
        raise MissingFileError(f"sweep spec {str(path)!r} not found")
    try:
        return yaml.safe_load(path.read_text())
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ConfigError(f"sweep spec {path}: not valid YAML ({first})") from None


def _whole(value, field: str, low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) \
            or value != int(value) or not low <= value <= high:
        raise ConfigError(f"sweep spec: {field} must be a whole number in [{low}, {high}], got {value!r}")
    return int(value)


def _check_dim(name: str, dim) -> dict:
    where = f"sweep spec: space.{name}"
    if not isinstance(dim, dict) or len(dim) != 1:
        raise ConfigError(f"{where} must be one of {{{'|'.join(DISTRIBUTIONS)}: ...}}, got {dim!r}")
    (kind, arg), = dim.items()
    if kind not in DISTRIBUTIONS:
        raise ConfigError(f"{where}: unknown distribution {kind!r}; choose from {', '.join(DISTRIBUTIONS)}")
    if kind in ("grid", "choice"):
        if not isinstance(arg, list) or not arg:
            raise ConfigError(f"{where}: {kind} needs a non-empty list of values, got {arg!r}")
        return {kind: list(arg)}
    if not (isinstance(arg, list) and len(arg) == 2
            and all(isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x) for x in arg)):
        raise ConfigError(f"{where}: {kind} needs [low, high] (two finite numbers), got {arg!r}")
    lo, hi = arg
    if lo > hi or (kind == "randint" and (lo >= hi or lo != int(lo) or hi != int(hi))):
        raise ConfigError(f"{where}: {kind} range [{lo}, {hi}] is empty (low must be below high"
                          + (", whole numbers, high exclusive)" if kind == "randint" else ")"))
    if kind == "loguniform" and lo <= 0:
        raise ConfigError(f"{where}: loguniform needs low > 0, got {lo}")
    return {kind: [int(lo), int(hi)] if kind == "randint" else [float(lo), float(hi)]}


def _base_config(config, kind: str, data: dict) -> dict:
    """The base config as a mapping: inline, a YAML file, or a bundled preset (train only; the
    env's bundled preset is the default, as for ``policylab train``)."""
    if isinstance(config, dict):
        return dict(config)
    if kind == "llm":
        from policylab.config import load_yaml

        if config is None:
            raise ConfigError("sweep spec: kind llm needs config (a YAML file or mapping naming model and data)")
        return dict(load_yaml(config))
    if kind != "train":
        if config is not None:
            raise ConfigError("sweep spec: config for kind learn must be a mapping of fields")
        return {}
    from policylab.config import load_preset, preset_path

    algo = str(data["algo"])
    name = config if config is not None else str(data["env"])
    if config is None and not preset_path(name).is_file():
        return {}
    try:
        return load_preset(name, algo)
    except (ValueError, FileNotFoundError) as exc:
        if config is None:  # the env's bundled preset has no section for this algorithm
            return {}
        raise ConfigError(f"sweep spec: config {config!r}: {exc}") from None


def _check_fields_and_metric(spec: SweepSpec) -> None:
    """Config fields exist for the run kind and every configuration builds a valid config; the
    metric is one the kind logs."""
    names = set(spec.config) | set(spec.space)
    if spec.kind == "learn":
        from policylab.mdp import catalog

        if spec.algo not in LEARN_ALGOS:
            raise ConfigError(f"sweep spec: algo for kind learn must be one of {', '.join(LEARN_ALGOS)}, "
                              f"got {spec.algo!r}")
        if spec.env not in catalog.NAMES:
            raise ConfigError(f"sweep spec: env for kind learn must be a catalog MDP "
                              f"({', '.join(catalog.NAMES)}), got {spec.env!r}")
        unknown = sorted(names - set(LEARN_FIELDS))
        if unknown:
            raise ConfigError(f"sweep spec: unknown config field(s) {', '.join(unknown)} for {spec.algo}; "
                              f"valid: {', '.join(LEARN_FIELDS)}")
        if spec.metric not in LEARN_METRICS:
            raise ConfigError(f"sweep spec: metric {spec.metric!r} is not logged by kind learn; "
                              f"choose from {', '.join(LEARN_METRICS)}")
        return
    from policylab.config import make_config

    if spec.kind == "llm":
        trainer_cls, config_cls = llm_classes(spec.algo)
        own = sorted(names & set(LLM_OWN_FIELDS))
        if own:
            raise ConfigError(f"sweep spec: {', '.join(own)} are set by the sweep for every trial "
                              "(steps, seeds, the trial folder); remove them from config/space")
        logged = trainer_cls.progress_keys
    else:
        from policylab.io.logger import STANDARD_KEYS

        config_cls, logged = _algorithm_class(spec.algo).config_class, STANDARD_KEYS
    valid = [f.name for f in dataclasses.fields(config_cls)]
    unknown = sorted(names - set(valid))
    if unknown:
        raise ConfigError(f"sweep spec: unknown config field(s) {', '.join(unknown)} for {spec.algo}; "
                          f"valid: {', '.join(valid)}")
    for cid, params in spec.configurations():
        try:
            make_config(config_cls, None, **spec.run_params(params))
        except ValueError as exc:
            raise ConfigError(f"sweep spec: configuration {cid} {params}: {exc}") from None
    if spec.metric not in logged:
        raise ConfigError(f"sweep spec: metric {spec.metric!r} is not logged by kind {spec.kind} "
                          f"{spec.algo}; choose from {', '.join(logged)}")


def llm_classes(algo: str):
    """(Trainer, Config) classes of an llm algorithm (imports torch and transformers)."""
    if algo not in LLM_TRAINERS:
        raise ConfigError(f"sweep spec: algo for kind llm must be one of {', '.join(LLM_TRAINERS)}, got {algo!r}")
    from policylab import llm

    return tuple(getattr(llm, name) for name in LLM_TRAINERS[algo])


def _algorithm_class(algo: str):
    from policylab.deep.registry import algorithm_class

    try:
        return algorithm_class(algo)
    except ValueError as exc:
        raise ConfigError(f"sweep spec: algo for kind train: {exc}") from None
