"""policylab.config: one coercion for YAML, keyword arguments and command-line text; ranges; help."""

import argparse
import math
from dataclasses import dataclass, field
from typing import ClassVar

import pytest
import yaml
from hypothesis import given
from hypothesis import strategies as st

from policylab.config import (
    Range,
    add_config_arguments,
    coerce,
    config_from_args,
    field_specs,
    load_yaml,
    make_config,
)
from policylab.errors import ConfigError, MissingFileError


@dataclass
class Base:
    """A test config."""

    steps: int = 10  # number of steps
    #: learning rate of the optimizer
    lr: float = 0.1
    name: str = "x"  #: a name


@dataclass
class Child(Base):
    group: int = 4  # group size G
    betas: tuple[float, float] = (0.9, 0.999)  # two betas
    widths: tuple[int, ...] = (64, 64)  # layer widths
    tags: list[str] = field(default_factory=lambda: ["a"])  # some tags
    limit: float | None = None  # optional limit
    flag: bool = False  # a switch
    doc: int = field(default=1, metadata={"help": "from metadata"})
    mode: str = "fast"  # fast or slow

    RANGES: ClassVar[dict] = {"steps": "[1, 1000]", "group": "[1, 64]", "betas": "[0, 1)", "lr": "(0, 1]",
                              "mode": ("fast", "slow")}

    def __post_init__(self):
        self.ratio = self.steps % self.group  # would divide by zero if the range were not checked first

    def validate(self):
        if self.limit is not None and self.limit < self.lr:
            raise ConfigError("limit must be ≥ lr")


def test_field_specs_read_comment_docs_metadata_and_merged_ranges():
    specs = {s.name: s for s in field_specs(Child)}
    assert specs["steps"].help == "number of steps" and specs["lr"].help == "learning rate of the optimizer"
    assert specs["name"].help == "a name" and specs["doc"].help == "from metadata"
    assert str(specs["steps"].range) == "[1, 1000]" and str(specs["lr"].range) == "(0, 1]"
    assert specs["mode"].choices == ("fast", "slow")
    assert str(specs["doc"].range) == "[0, 2147483647]"  # the default range of an int field
    assert specs["tags"].default == ["a"] and specs["limit"].range is not None


def test_ranges_naming_an_unknown_field_is_a_bug():
    @dataclass
    class Bad:
        a: int = 1
        RANGES: ClassVar[dict] = {"b": "[0, 1]"}

    with pytest.raises(TypeError, match="unknown field"):
        field_specs(Bad)


@pytest.mark.parametrize("value, hint, expected", [
    ("1e5", int, 100000), (1e5, int, 100000), ("1_000", int, 1000), (7, int, 7),
    ("3e-4", float, 3e-4), (2, float, 2.0), ("true", bool, True), ("0", bool, False), (False, bool, False),
    ("none", float | None, None), (None, int | None, None), ("null", str | None, None),
    ("a,b", list[str], ["a", "b"]), ("[1, 0.5]", list[float], [1.0, 0.5]), (64, tuple[int, ...], (64,)),
    ("0.9,0.95", tuple[float, float], (0.9, 0.95)), (0.2, str, "0.2"),
])
def test_coerce_accepts(value, hint, expected):
    assert coerce("f", value, hint) == expected


@pytest.mark.parametrize("value, hint, needle", [
    ("1.5", int, "must be an integer"), (2.5, int, "must be an integer"), (True, int, "must be an integer"),
    ("abc", float, "must be a number"), ("yes", bool, "true/false"), (None, int, "must not be None"),
    (0.9, tuple[float, float], "list of 2 values"), ("[1, 2", list[int], "as a list"), (float("inf"), int, "integer"),
])
def test_coerce_rejects_naming_the_field(value, hint, needle):
    with pytest.raises(ConfigError, match=needle) as exc:
        coerce("hyperparameter foo", value, hint)
    assert "foo" in str(exc.value)


@given(st.one_of(st.integers(-10**12, 10**12), st.floats(allow_nan=False, allow_infinity=False)))
def test_yaml_text_and_python_values_coerce_alike(x):
    """The same number typed on the command line, written in YAML, or passed from Python."""
    hint = int if isinstance(x, int) else float
    from_text = coerce("f", str(x), hint)
    from_yaml = coerce("f", yaml.safe_load(yaml.safe_dump(x)), hint)
    assert from_text == from_yaml == coerce("f", x, hint) == x


def test_range_parse_contains_and_str():
    r = Range.parse("(0, 1]")
    assert 1 in r and 0.5 in r and 0 not in r and 1.0000001 not in r
    assert math.nan not in r  # noqa: PLW0177 (membership, not equality)
    assert str(Range.parse("[1, 1e12]")) == "[1, 1e12]" and str(Range.parse("[0, inf)")) == "[0, inf)"
    with pytest.raises(ValueError):
        Range.parse("1..2")


def test_make_config_checks_before_building():
    assert make_config(Child, {"steps": "20"}, group=5).ratio == 0
    for bad, needle in [({"group": 0}, r"group=0 must be in \[1, 64\]"),  # range checked before __post_init__
                        ({"betas": [0.9, 1.0]}, r"betas=1.0 must be in \[0, 1\)"),
                        ({"lr": float("nan")}, "lr=nan must be in"), ({"mode": "medium"}, "mode='medium' must be one of"),
                        ({"doc": 2**40}, "doc=1099511627776 must be in"), ({"limit": 0.01}, "limit must be ≥ lr"),
                        ({"stepz": 3}, "unknown config field 'stepz'.*did you mean steps")]:
        with pytest.raises(ConfigError, match=needle):
            make_config(Child, bad)


def test_make_config_float_fields_must_be_finite_by_default():
    @dataclass
    class C:
        x: float = 0.0  # any finite number

    with pytest.raises(ConfigError, match="x must be finite"):
        make_config(C, x=math.inf)
    assert make_config(C, x="-1e300").x == -1e300


@pytest.mark.parametrize("text, needle", [
    ("steps: [1\n", "line 2: malformed YAML"),
    ("steps: !!python/object/apply:os.system ['true']\n", "Python tags"),
    ("- 1\n- 2\n", "must be a mapping"),
])
def test_load_yaml_one_line_errors_name_the_file(tmp_path, text, needle):
    path = tmp_path / "c.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=needle) as exc:
        load_yaml(path)
    assert str(path) in str(exc.value) and "\n" not in str(exc.value)


def test_load_yaml_binary_and_missing(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_bytes(bytes(range(256)))
    with pytest.raises(ConfigError, match="binary"):
        load_yaml(path)
    with pytest.raises(MissingFileError, match="not found"):
        load_yaml(tmp_path / "nope.yaml")


def _parser():
    p = argparse.ArgumentParser(allow_abbrev=False)
    p.add_argument("--config")
    p.add_argument("--set", dest="assignments", action="append", default=[])
    add_config_arguments(p, Child)
    return p


def test_options_yaml_and_set_share_coercion_and_precedence(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("steps: 1e2\ngroup: 5\nbetas: [0.8, 0.9]\nflag: true\n")
    args = _parser().parse_args(["--config", str(path), "--set", "group=10", "--limit", "0.5", "--no-flag",
                                 "--widths", "[8, 16]"])
    cfg = config_from_args(Child, args, args.config, args.assignments)
    assert (cfg.steps, cfg.group, cfg.betas, cfg.limit, cfg.flag, cfg.widths) == (100, 10, (0.8, 0.9), 0.5, False, (8, 16))
    args = _parser().parse_args(["--set", "group=3", "--group", "2"])  # a typed option wins over --set
    assert config_from_args(Child, args, None, args.assignments).group == 2


def test_help_lists_every_field_with_help_range_and_default():
    text = " ".join(_parser().format_help().split())
    for spec in field_specs(Child):
        assert f"--{spec.name}" in text and spec.help in text
    assert "number of steps; range [1, 1000]; default 10" in text and "two betas; range [0, 1); default 0.9, 0.999" in text


def test_bad_option_values_are_argparse_errors_naming_the_option(capsys):
    with pytest.raises(SystemExit):
        _parser().parse_args(["--group", "0"])
    assert "argument --group: must be in [1, 64], got '0'" in capsys.readouterr().err


def test_unknown_tokens_are_named(tmp_path):
    args = _parser().parse_args([])
    with pytest.raises(ConfigError, match="unknown config field 'gruop'.*did you mean group"):
        config_from_args(Child, args, extra=["--gruop", "3"])
    path = tmp_path / "c.yaml"
    path.write_text("gruop: 3\n")
    with pytest.raises(ConfigError, match=f"'gruop'.*in {path}"):
        config_from_args(Child, args, path)
