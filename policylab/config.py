"""One config system for every command: ``train``, ``learn``, ``llm`` and ``sweep``.

A config is a plain ``@dataclass`` (one per algorithm or command). It is the single source of

- field **names, types and defaults** (the dataclass fields),
- **one-line help**: the comment on the field's line (``lr: float = 3e-4  # Adam step size``;
  ``#:`` works too, or a ``#:`` line just above), or ``field(metadata={"help": ...})``,
- **ranges**: a class attribute ``RANGES = {"lr": "(0, 1]", "n_envs": "[1, 65536]",
  "loss_type": ("sigmoid", "ipo")}`` — an interval for numbers (elementwise for lists), a tuple of
  allowed values for strings; merged along the class's bases. Without a stated range an ``int`` field
  is in [0, 2147483647] and a ``float`` field must be finite. Cross-field rules go in an optional
  ``validate(self)`` method.

YAML files (:func:`load_yaml`, ``safe_load`` only), keyword arguments (:func:`make_config`),
``--field value`` options and ``--set field=value`` all pass through the same :func:`coerce` and
:func:`check_value`; unknown fields, values that do not coerce and values out of range raise a
one-line :class:`~policylab.errors.ConfigError` naming the field. :func:`add_config_arguments` turns a
dataclass into argparse options whose ``--help`` shows each field's help, range and default.

Why plain dataclasses + argparse (not HfArgumentParser or tyro): HfArgumentParser needs
``transformers`` (~1 s to import) just to print ``--help``; tyro is a new dependency with multi-line
rich error output; neither reads our comment docs *and* ranges nor lets YAML and command line share one
coercion with one-line errors. This module is ~300 lines with no dependency beyond PyYAML.
"""

from __future__ import annotations

import argparse
import ast
import dataclasses
import difflib
import functools
import inspect
import io
import math
import re
import textwrap
import tokenize
import types
import typing
from pathlib import Path

from policylab.errors import ConfigError, InputError, MissingFileError

__all__ = [
    "FLOAT_RANGE",
    "INT_MAX",
    "INT_RANGE",
    "PRESET_DIR",
    "Range",
    "add_config_arguments",
    "check",
    "check_fields",
    "check_value",
    "coerce",
    "config_from_args",
    "describe_fields",
    "field_specs",
    "load_preset",
    "load_yaml",
    "make_config",
    "number",
    "parse_assignments",
    "preset_path",
]

PRESET_DIR = Path(__file__).resolve().parent / "presets"
INT_MAX = 2**31 - 1  # default upper bound of an int field or option (fits every seed and count API)
_NONE_WORDS = ("none", "null", "~", "")
_TRUE, _FALSE = ("true", "1"), ("false", "0")


# --------------------------------------------------------------------------- ranges
@dataclasses.dataclass(frozen=True)
class Range:
    """A closed/open interval of allowed numbers, written like ``[1, 65536]`` or ``(0, 1]``."""

    lo: float = -math.inf
    hi: float = math.inf
    lo_open: bool = False
    hi_open: bool = False

    @classmethod
    def parse(cls, text: str) -> Range:
        m = re.fullmatch(r"\s*([\[(])\s*([^,]+?)\s*,\s*([^,]+?)\s*([\])])\s*", text)
        if not m:
            raise ValueError(f"range {text!r} is not an interval like [1, 10] or (0, 1]")
        return cls(float(m[2]), float(m[3]), m[1] == "(", m[4] == ")")

    def __contains__(self, x) -> bool:
        x = float(x)
        if math.isnan(x):
            return False
        above = x > self.lo if self.lo_open else x >= self.lo
        below = x < self.hi if self.hi_open else x <= self.hi
        return above and below

    def __str__(self) -> str:
        def fmt(v):
            if math.isinf(v):
                return "-inf" if v < 0 else "inf"
            return f"{int(v)}" if v == int(v) and abs(v) < 1e10 else f"{v:g}".replace("e+", "e")

        return f"{'(' if self.lo_open else '['}{fmt(self.lo)}, {fmt(self.hi)}{')' if self.hi_open else ']'}"


INT_RANGE = Range(0, INT_MAX)
FLOAT_RANGE = Range(-math.inf, math.inf, True, True)


# --------------------------------------------------------------------------- field specs
@dataclasses.dataclass(frozen=True)
class FieldSpec:
    """Everything the parsers and checks need to know about one config field."""

    name: str
    hint: object  # the type annotation, e.g. int, float | None, tuple[int, ...]
    default: object  # dataclasses.MISSING when required
    help: str
    rule: object  # Range, tuple of allowed values, or None

    @property
    def scalar(self):
        """int, float, bool or str with Optional removed; the element type for lists/tuples."""
        hint = _strip_optional(self.hint)
        if typing.get_origin(hint) in (list, tuple):
            return typing.get_args(hint)[0]
        return hint

    @property
    def range(self) -> Range | None:
        """The numeric range (stated or default) of a number field, else None."""
        if isinstance(self.rule, Range):
            return self.rule
        return {int: INT_RANGE, float: FLOAT_RANGE}.get(self.scalar)

    @property
    def choices(self) -> tuple | None:
        return self.rule if isinstance(self.rule, tuple) else None


def _strip_optional(hint):
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(hint) if a is not type(None)]
        return args[0] if len(args) == 1 else hint
    return hint


def _field_comments(cls) -> dict[str, str]:
    """Help text of each field from the comments in the class's source (its own fields only)."""
    try:
        src = textwrap.dedent(inspect.getsource(cls))
    except (OSError, TypeError):
        return {}
    lines = src.splitlines()
    comments: dict[int, str] = {}  # line number -> comment text
    for tok in tokenize.generate_tokens(io.StringIO(src).readline):
        if tok.type == tokenize.COMMENT:
            comments[tok.start[0]] = tok.string.lstrip("#").lstrip(":").strip()
    docs = {}
    for node in ast.parse(src).body[0].body:
        if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            text = comments.get(node.end_lineno) or comments.get(node.lineno)
            if not text and node.lineno > 1 and lines[node.lineno - 2].strip().startswith("#:"):
                text = comments.get(node.lineno - 1)
            docs[node.target.id] = text or ""
    return docs


@functools.cache
def field_specs(cls) -> tuple[FieldSpec, ...]:
    """One :class:`FieldSpec` per dataclass field of ``cls``, in declaration order."""
    if not dataclasses.is_dataclass(cls):
        raise TypeError(f"{cls!r} is not a dataclass")
    hints = typing.get_type_hints(cls)
    docs, rules = {}, {}
    for base in reversed(cls.__mro__):
        if dataclasses.is_dataclass(base):
            docs.update(_field_comments(base))
            rules.update(base.__dict__.get("RANGES", {}))
    specs = []
    for f in dataclasses.fields(cls):
        default = f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default
        rule = rules.get(f.name)
        if isinstance(rule, str):
            rule = Range.parse(rule)
        elif isinstance(rule, list):
            rule = tuple(rule)
        specs.append(FieldSpec(f.name, hints[f.name], default, f.metadata.get("help", docs.get(f.name, "")), rule))
    unknown = set(rules) - {s.name for s in specs}
    if unknown:
        raise TypeError(f"{cls.__name__}.RANGES names unknown field(s) {sorted(unknown)}")
    return tuple(specs)


# --------------------------------------------------------------------------- coercion and checks
def coerce(name: str, value, hint):
    """``value`` (a YAML value, a Python value or command-line text) as type ``hint``.

    Text is read the same way wherever it comes from: numbers as ``3e-4``, ``1e5``, ``1_000`` (an int
    field takes any whole number); booleans as true/false/1/0; ``none``/``null`` for an
    Optional field; lists as ``a,b`` or ``[a, b]`` (a single value is a list of one). Raises
    :class:`ConfigError` naming ``name`` when the value does not fit the type.
    """
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        if value is None or (isinstance(value, str) and value.strip().lower() in _NONE_WORDS):
            if type(None) in args:
                return None
            raise ConfigError(f"{name} must not be None")
        return coerce(name, value, _strip_optional(hint))
    if value is None:
        raise ConfigError(f"{name} must not be None")
    if origin in (list, tuple):
        if isinstance(value, str):
            text = value.strip()
            value = _yaml_flow(name, text) if text.startswith("[") else [v.strip() for v in text.split(",")]
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            value = [value]
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{name} must be a list, got {value!r}")
        fixed = origin is tuple and not (len(args) == 2 and args[1] is Ellipsis)
        if fixed and len(value) != len(args):
            raise ConfigError(f"{name} must be a list of {len(args)} values, got {value!r}")
        items = [coerce(f"{name}[{i}]", v, args[i] if fixed else args[0]) for i, v in enumerate(value)]
        return tuple(items) if origin is tuple else items
    if hint is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.strip().lower() in _TRUE + _FALSE:
            return value.strip().lower() in _TRUE
        raise ConfigError(f"{name} must be true/false, got {value!r}")
    if hint in (int, float):
        number = value
        if isinstance(value, str):
            text = value.strip().replace("_", "").lower()
            text = {".nan": "nan", ".inf": "inf", "+.inf": "inf", "-.inf": "-inf"}.get(text, text)  # YAML spellings
            try:
                number = float(text)
            except ValueError:
                kind = "an integer" if hint is int else "a number"
                raise ConfigError(f"{name} must be {kind}, got {value!r}") from None
        if isinstance(number, bool) or not isinstance(number, (int, float)):
            raise ConfigError(f"{name} must be {'an integer' if hint is int else 'a number'}, got {value!r}")
        if hint is float:
            return float(number)
        if isinstance(number, int):
            return number
        if not math.isfinite(number) or number != int(number):
            raise ConfigError(f"{name} must be an integer, got {value!r}")
        return int(number)
    if hint is str:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return str(value)  # YAML `epsilon: 0.2` for a field that also takes schedule text
        if not isinstance(value, str):
            raise ConfigError(f"{name} must be a string, got {value!r}")
        return value
    return value


def _yaml_flow(name: str, text: str):
    import yaml

    try:
        return yaml.safe_load(text)
    except yaml.YAMLError:
        raise ConfigError(f"{name}: cannot read {text!r} as a list") from None


def check_value(name: str, value, spec: FieldSpec) -> None:
    """Raise ConfigError unless ``value`` (already coerced) is within the field's range or choices."""
    if value is None:
        return
    items = value if isinstance(value, (list, tuple)) else [value]
    if spec.choices is not None:
        for v in items:
            if v not in spec.choices:
                raise ConfigError(f"{name}={v!r} must be one of {', '.join(map(str, spec.choices))}")
        return
    rng = spec.range
    if rng is None:
        return
    for v in items:
        if isinstance(v, (int, float)) and not isinstance(v, bool) and v not in rng:
            if isinstance(v, float) and not math.isfinite(v) and rng in (FLOAT_RANGE,):
                raise ConfigError(f"{name} must be finite, got {v}")
            raise ConfigError(f"{name}={v!r} must be in {rng}")


def check(cond: bool, name: str, value, requirement: str) -> None:
    """Raise ConfigError("hyperparameter <name>=<value> must be <requirement>") unless cond."""
    if not cond:
        raise ConfigError(f"hyperparameter {name}={value!r} must be {requirement}")


def check_fields(cfg, *, at_least_one=(), positive=(), unit=(), nonnegative=(), positive_or_none=(),
                 widths=()) -> None:
    """Range checks by field name: ≥ 1, > 0, in [0, 1], ≥ 0, > 0 or None, all-positive tuples."""
    for name in at_least_one:
        check(getattr(cfg, name) >= 1, name, getattr(cfg, name), "≥ 1")
    for name in positive:
        check(getattr(cfg, name) > 0, name, getattr(cfg, name), "> 0")
    for name in unit:
        check(0.0 <= getattr(cfg, name) <= 1.0, name, getattr(cfg, name), "in [0, 1]")
    for name in nonnegative:
        check(getattr(cfg, name) >= 0, name, getattr(cfg, name), "≥ 0")
    for name in positive_or_none:
        v = getattr(cfg, name)
        check(v is None or v > 0, name, v, "> 0 or null")
    for name in widths:
        v = getattr(cfg, name)
        check(len(v) >= 1 and all(h >= 1 for h in v), name, v, "a non-empty list of positive widths")


def _unknown_field(cls, name: str, source: str = "") -> ConfigError:
    names = [s.name for s in field_specs(cls)]
    close = difflib.get_close_matches(name, names, n=1)
    hint = f"; did you mean {close[0]}?" if close else f"; fields: {', '.join(names)}"
    return ConfigError(f"unknown config field {name!r} (unknown hyperparameter) for {cls.__name__}{source}{hint}")


def make_config(config_class, config=None, **overrides):
    """``config_class`` instance from an optional base (dataclass instance, dict or YAML path) plus
    keyword overrides. Unknown names, values that do not coerce and out-of-range values raise
    :class:`ConfigError` naming the field, before the instance is built; then ``validate()`` runs."""
    base: dict = {}
    source = ""
    if isinstance(config, (str, Path)):
        base, source = load_preset(config), f" in {preset_path(str(config))}"
    elif dataclasses.is_dataclass(config):
        base = {f.name: getattr(config, f.name) for f in dataclasses.fields(config)}
    elif isinstance(config, dict):
        base = dict(config)
    elif config is not None:
        raise InputError(f"config must be a {config_class.__name__}, dict or YAML path, got {type(config).__name__}")
    specs = {s.name: s for s in field_specs(config_class)}
    values = {**base, **overrides}
    for key in values:
        if key not in specs:
            raise _unknown_field(config_class, key, source if key in base and key not in overrides else "")
    kwargs = {}
    for key, value in values.items():
        label = f"hyperparameter {key}"
        kwargs[key] = coerce(label, value, specs[key].hint)
        check_value(label, kwargs[key], specs[key])
    missing = [n for n, s in specs.items() if s.default is dataclasses.MISSING and n not in kwargs]
    if missing:
        raise ConfigError(f"config field {missing[0]!r} of {config_class.__name__} is required")
    cfg = config_class(**kwargs)
    if hasattr(cfg, "validate"):
        cfg.validate()
    return cfg


# --------------------------------------------------------------------------- YAML
def load_yaml(path) -> dict:
    """A YAML mapping from ``path`` with ``yaml.safe_load`` (no Python tags). A missing, binary or
    malformed file, or one that is not a mapping, is a one-line error naming the file."""
    import yaml

    path = Path(path)
    if not path.exists():
        raise MissingFileError(f"config file {path} not found")
    if not path.is_file():
        raise ConfigError(f"config file {path} is not a file")
    raw = path.read_bytes()
    try:
        if b"\0" in raw:
            raise UnicodeDecodeError("utf-8", raw, 0, 1, "NUL byte")
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise ConfigError(f"config file {path} is not a text YAML file (binary content)") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        if "python/" in str(exc):
            problem = "Python tags (!!python/...) are not allowed; configs are read with yaml.safe_load"
        raise ConfigError(f"config file {path}{where}: malformed YAML: {' '.join(str(problem).split())}") from None
    if data is None:
        return {}
    if not isinstance(data, dict) or not all(isinstance(k, str) for k in data):
        raise ConfigError(f"config file {path} must be a mapping of field: value, got {type(data).__name__}")
    return data


def preset_path(name: str) -> Path:
    """Path of a bundled preset by env id (``"CartPole-v1"``) or an explicit file path."""
    p = Path(name)
    if p.suffix in (".yaml", ".yml"):
        return p
    return PRESET_DIR / f"{name}.yaml"


def load_preset(path, algo: str | None = None) -> dict:
    """Read a YAML preset. A preset is either flat ``{field: value}`` or keyed by algorithm
    (``ppo: {...}, a2c: {...}``); with ``algo`` given, that section is returned."""
    path = preset_path(str(path))
    if not path.is_file() and not path.exists():
        raise MissingFileError(f"preset {path} not found")
    data = load_yaml(path)
    if algo is not None and algo in data and isinstance(data[algo], dict):
        return dict(data[algo])
    if algo is not None and any(isinstance(v, dict) for v in data.values()):
        raise ConfigError(f"preset {path} has no section for {algo!r} (sections: {', '.join(data)})")
    return data


def parse_assignments(items, flag: str = "--set") -> dict[str, str]:
    """``["lr=1e-3", "hidden_sizes=[64, 64]"]`` → ``{"lr": "1e-3", ...}`` (values stay text for coerce)."""
    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"{flag} expects NAME=VALUE, got {item!r}")
        out[key.strip().replace("-", "_")] = value
    return out


# --------------------------------------------------------------------------- argparse
class OptionType:
    """argparse ``type=``: coerce the text with :func:`coerce`, check the range; carries the rule
    (``.kind``, ``.range``) so tests and help can read it."""

    def __init__(self, spec: FieldSpec):
        self.spec = spec
        self.kind = spec.scalar
        self.range = spec.range if self.kind in (int, float) else None
        self.__name__ = getattr(self.kind, "__name__", "value")

    def __call__(self, text):
        try:
            value = coerce("value", text, self.spec.hint)
        except ConfigError as exc:
            if self.range is not None and self.spec.hint in (int, float):
                kind = "an integer" if self.kind is int else "a number"
                raise argparse.ArgumentTypeError(f"must be {kind} in {self.range}, got {text!r}") from None
            raise argparse.ArgumentTypeError(re.sub(r"^value(\[\d+\])?\s*", "", str(exc))) from None
        try:
            check_value("value", value, self.spec)
        except ConfigError:
            allowed = f"one of {', '.join(map(str, self.spec.choices))}" if self.spec.choices else f"in {self.range}"
            raise argparse.ArgumentTypeError(f"must be {allowed}, got {text!r}") from None
        return value


def number(kind=int, rng: str | Range | None = None) -> OptionType:
    """argparse ``type=`` for a plain numeric option with a stated range, e.g. ``number(int, "[1, 1e12]")``."""
    rule = Range.parse(rng) if isinstance(rng, str) else rng
    return OptionType(FieldSpec("value", kind, None, "", rule))


def _help_line(spec: FieldSpec) -> str:
    parts = [spec.help] if spec.help else []
    if spec.range is not None:
        parts.append("finite" if spec.range == FLOAT_RANGE else f"range {spec.range}")
    if spec.default is None and "default" in spec.help.lower():
        pass  # the help says what None means
    elif spec.default is not dataclasses.MISSING:
        d = spec.default
        parts.append(f"default {', '.join(map(str, d)) if isinstance(d, (list, tuple)) else d}")
    else:
        parts.append("required")
    return "; ".join(parts).replace("%", "%%")


def add_config_arguments(parser, cls, *, exclude=(), title=None) -> None:
    """One option per field of ``cls`` (``--max-steps`` and ``--max_steps``), help = the field's help,
    range and default; booleans also get ``--no-NAME``. Absent options leave the namespace untouched,
    so YAML values are only overridden by what was typed. Read them back with :func:`config_from_args`."""
    group = parser.add_argument_group(title or f"{cls.__name__} fields (also in --config YAML or --set NAME=VALUE)")
    for spec in field_specs(cls):
        if spec.name in exclude:
            continue
        flags = list(dict.fromkeys([f"--{spec.name.replace('_', '-')}", f"--{spec.name}"]))
        kwargs = {"dest": spec.name, "default": argparse.SUPPRESS, "type": OptionType(spec), "help": _help_line(spec)}
        if spec.hint is bool:
            group.add_argument(*flags, nargs="?", const=True, metavar="BOOL", **kwargs)
            group.add_argument(f"--no-{spec.name.replace('_', '-')}", dest=spec.name, action="store_false",
                               default=argparse.SUPPRESS, help=argparse.SUPPRESS)
        else:
            metavar = "{" + ",".join(map(str, spec.choices)) + "}" if spec.choices else spec.name.upper()
            group.add_argument(*flags, metavar=metavar, **kwargs)


def config_from_args(cls, args, yaml_path=None, assignments=(), extra=()):
    """``cls`` from a YAML file, then ``--set`` assignments, then typed ``--field`` options (later wins).
    ``extra`` are leftover command-line tokens: each is reported as an unknown field."""
    for tok in extra:
        if tok.startswith("--"):
            raise _unknown_field(cls, tok[2:].partition("=")[0].replace("-", "_"))
        raise ConfigError(f"unexpected argument {tok!r}")
    values = load_yaml(yaml_path) if yaml_path else {}
    source = f" in {yaml_path}" if yaml_path else ""
    names = {s.name for s in field_specs(cls)}
    for key in values:
        if key not in names:
            raise _unknown_field(cls, key, source)
    values.update(parse_assignments(assignments))
    values.update({n: getattr(args, n) for n in names if n in vars(args)})
    return make_config(cls, values)


def describe_fields(cls) -> str:
    """The fields of ``cls`` as text for a ``--help`` epilog: name, type, range, default, help."""
    rows = [f"{cls.__name__} fields (--set NAME=VALUE or YAML):"]
    for spec in field_specs(cls):
        rows.append(f"  {spec.name} — {_help_line(spec).replace('%%', '%')}")
    return "\n".join(rows)
