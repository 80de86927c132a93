"""What a sweep runs, checked before its first trial, and the plan it keeps in the runs folder.

A request (`--grid FIELD=V1,V2`, `--random FIELD=LOW:HIGH[:log]` with `--trials N` and
`--sweep-seed S`, `--seeds K`, the same from a `[sweep]` section of a TOML file) becomes a
`SweepPlan`: every trial with its parameters and seed, each trial's config built and validated by
engine/config.py exactly as `train` would. Every problem is one line naming the flag (or the TOML
key) and the fix, all of them at once, before anything is written.

The plan is saved to `<runs>/.sweeps/<sweep id>.json` (atomically; the name is spelled in
engine/run_layout.py) so that `sweep --resume` knows every trial, including those not started.
Which run belongs to which trial is recorded in the run itself (run.json's `sweep`), not here.
"""

from __future__ import annotations

import dataclasses
import difflib
import itertools
import math
import random
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from engine import commands
from engine.config import (
    FIELD_NAMES,
    FIELD_TYPES,
    MAX_NAME_LENGTH,
    ConfigError,
    TrainConfig,
    base_type,
    build_config,
    coerce,
    is_optional,
    read_toml,
)
from engine.run_layout import SWEEPS_DIR, new_run_id, sweep_plan_path
from engine.safe_io import MiB, Unreadable, atomic_write_json, read_json, utc_now

PLAN_VERSION = 1
MAX_TRIALS = 10_000
PLAN_CAP = 64 * MiB
DEFAULT_NAME = "sweep"
# Fields a sweep sets itself, and why they cannot be swept.
NOT_SWEPT = {
    "name": "each trial is named after the sweep (--name names the sweep)",
    "runs_dir": "a sweep writes all its trials into one runs folder (--runs-dir)",
    "seed": "use --seeds K for K seeds per setting (--seed, --seed+1, ...)",
}
SECTION_KEYS = ("name", "grid", "random", "trials", "sweep_seed", "seeds", "ray", "gpus_per_trial")


class SweepError(ValueError):
    """A sweep that cannot run as asked; one line per problem, each naming it and the fix."""


@dataclass(frozen=True)
class Range:
    """`--random FIELD=LOW:HIGH[:log]`: values drawn uniformly (or log-uniformly) in [low, high]."""

    low: float
    high: float
    log: bool = False

    def spelled(self) -> str:
        return f"{self.low}:{self.high}" + (":log" if self.log else "")

    def draw(self, rng: random.Random, kind: type) -> int | float:
        """One value: an integer field gets an integer in [low, high], a float field a number
        rounded to 4 significant digits (readable in a table), kept within the range."""
        if kind is int:
            if self.log:
                value = int(math.exp(rng.uniform(math.log(self.low), math.log(self.high + 1))))
            else:
                value = rng.randint(int(self.low), int(self.high))
            return min(max(value, int(self.low)), int(self.high))
        value = math.exp(rng.uniform(math.log(self.low), math.log(self.high))) if self.log \
            else rng.uniform(self.low, self.high)
        return min(max(float(f"{value:.4g}"), self.low), self.high)


@dataclass
class SweepRequest:
    """What a person asked for, before it is checked. `base` holds the config values under every
    trial (the TOML file's top level, $RUNS_DIR, the `train` flags); `sources` says where each
    swept field was given, for messages; `flags` are the config fields given as flags."""

    base: dict[str, Any] = field(default_factory=dict)
    grid: dict[str, Any] = field(default_factory=dict)  # field -> values (strings from flags, typed from TOML)
    random: dict[str, Any] = field(default_factory=dict)  # field -> "LOW:HIGH[:log]" or {low, high, log}
    trials: int | None = None
    sweep_seed: int = 0
    seeds: int = 1
    name: str = DEFAULT_NAME
    sources: dict[str, str] = field(default_factory=dict)
    flags: tuple[str, ...] = ()
    ray: str | None = None
    gpus_per_trial: float | None = None
    problems: list[str] = field(default_factory=list)  # found while reading it; plan_sweep adds the rest


@dataclass(frozen=True)
class Trial:
    """One run of a sweep: its number (1-based), its swept values, and its seed."""

    number: int
    params: dict[str, Any]
    seed: int


@dataclass
class SweepPlan:
    """Every trial of a sweep, with what is needed to build each one's config again."""

    id: str
    name: str
    created: str
    base: dict[str, Any]
    grid: dict[str, list[Any]]
    random: dict[str, Range]
    random_trials: int | None
    sweep_seed: int
    seeds: int
    trials: list[Trial]
    command: list[str] = field(default_factory=list)

    @property
    def swept(self) -> list[str]:
        """The fields that vary between trials, in the order they were given (`seed` last, when
        there are several seeds): the axes of a parallel-coordinates chart."""
        return [*self.grid, *self.random] + (["seed"] if self.seeds > 1 else [])

    def trial_name(self, trial: Trial) -> str:
        return f"{self.name}-{trial.number}"

    def trial_config(self, trial: Trial) -> TrainConfig:
        return build_config({**self.base, **trial.params, "seed": trial.seed, "name": self.trial_name(trial)})

    def record(self, trial: Trial) -> dict[str, Any]:
        """What the trial's run.json holds as `sweep`."""
        return {"id": self.id, "name": self.name, "trial": trial.number, "params": dict(trial.params),
                "seed": trial.seed}

    def to_dict(self) -> dict[str, Any]:
        return {"plan_version": PLAN_VERSION, "id": self.id, "name": self.name, "created": self.created,
                "command": self.command, "base": self.base, "grid": self.grid,
                "random": {k: dataclasses.asdict(r) for k, r in self.random.items()},
                "random_trials": self.random_trials, "sweep_seed": self.sweep_seed, "seeds": self.seeds,
                "trials": [dataclasses.asdict(t) for t in self.trials]}


# ---------------------------------------------------------------- reading the request


def field_name(text: str) -> str | None:
    """The config field `text` names (`batch-size` and `batch_size` alike), or None."""
    name = text.strip().replace("-", "_")
    return name if name in FIELD_TYPES else None


def unknown_field(source: str, text: str) -> str:
    close = difflib.get_close_matches(text.strip().replace("-", "_"), FIELD_NAMES, n=1)
    hint = f" (did you mean {close[0]}?)" if close else ""
    return f"{source}: no config field {text.strip()!r}{hint}; `{commands.command('train', '--help')}` lists them"


def request_from_command_line(flags: Mapping[str, Any], grid: Sequence[str] = (), random_: Sequence[str] = (),
                              trials: int | None = None, sweep_seed: int | None = None, seeds: int | None = None,
                              config_file: str | None = None, environment: Mapping[str, Any] | None = None,
                              ray: str | None = None, gpus_per_trial: float | None = None) -> SweepRequest:
    """The request from `resnet-runs sweep`'s flags over its `--config` file (its top level is the
    base config, its `[sweep]` section the sweep). Flags win over the file, field by field. What
    cannot be read is kept in `problems`, which `plan_sweep` reports with its own."""
    problems: list[str] = []
    file_values = read_toml(config_file) if config_file else {}
    section = file_values.pop("sweep", {})
    where = f"in {config_file}"
    if not isinstance(section, dict):
        problems.append(f"[sweep] {where} must be a table (a [sweep] section), not {section!r}")
        section = {}
    for key in section:
        if key not in SECTION_KEYS:
            close = difflib.get_close_matches(key, SECTION_KEYS, n=1)
            hint = f" (did you mean {close[0]}?)" if close else ""
            problems.append(f"[sweep] {where}: unknown key {key!r}{hint}; it takes {', '.join(SECTION_KEYS)}")
    request = SweepRequest()
    request.base = {**(environment or {}), **file_values, **flags}
    request.flags = tuple(flags)
    top_name = request.base.pop("name", None)  # the file's `name` names the sweep, as --name does
    request.name = flags.get("name") or section.get("name") or top_name or DEFAULT_NAME
    for kind, entries, flag in (("grid", grid, "--grid"), ("random", random_, "--random")):
        table = section.get(kind, {})
        target = getattr(request, kind)
        if not isinstance(table, dict):
            problems.append(f"[sweep] {kind} {where} must be a table of FIELD = values, not {table!r}")
            table = {}
        for key, value in table.items():
            name = field_name(key)
            if name is None:
                problems.append(unknown_field(f"[sweep] {kind}.{key} {where}", key))
                continue
            target[name] = value
            request.sources[name] = f"[sweep] {kind}.{key} {where}"
        given: set[str] = set()
        for entry in entries:
            source = f"{flag} {entry}"
            key, equals, value = entry.partition("=")
            if not equals or not key.strip():
                example = "lr=0.01,0.05,0.1" if kind == "grid" else "weight_decay=1e-5:1e-3:log"
                problems.append(f"{source}: write {flag} FIELD={'V1,V2,...' if kind == 'grid' else 'LOW:HIGH[:log]'},"
                                f" e.g. {flag} {example}")
                continue
            name = field_name(key)
            if name is None:
                problems.append(unknown_field(source, key))
                continue
            if name in given:
                problems.append(f"{source}: {name} is given to {flag} twice; give it once")
                continue
            given.add(name)
            target[name] = value.split(",") if kind == "grid" else value
            request.sources[name] = source
    for key, value in (("trials", trials), ("sweep_seed", sweep_seed), ("seeds", seeds), ("ray", ray),
                       ("gpus_per_trial", gpus_per_trial)):
        chosen = value if value is not None else section.get(key)
        if chosen is not None:
            setattr(request, key, chosen)
    request.problems = problems
    return request


# ---------------------------------------------------------------- checking it


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def _value(name: str, raw: Any) -> Any:
    """One value for field `name`: typed values (TOML) checked by the config's own coercion,
    strings (a flag's list) parsed by the field's type; `none` for a field that may be unset."""
    kind = base_type(FIELD_TYPES[name])
    if isinstance(raw, str) and not raw.strip():
        raise ConfigError("an empty value; remove the extra comma")
    raw = raw.strip() if isinstance(raw, str) else raw
    if not isinstance(raw, str) or kind is str:
        if isinstance(raw, float) and not math.isfinite(raw):
            raise ConfigError(f"{raw!r} is not a finite number")
        try:
            return coerce(name, raw)
        except ConfigError:
            raise ConfigError(f"{raw!r} is not {_kind_name(name)}") from None
    text = raw
    if text.lower() in ("none", "null") and is_optional(name):
        return None
    try:
        if kind is bool:
            if text.lower() not in ("true", "false"):
                raise ValueError
            return text.lower() == "true"
        value = kind(text)
    except ValueError:
        raise ConfigError(f"{text!r} is not {_kind_name(name)}") from None
    if isinstance(value, float) and not math.isfinite(value):
        raise ConfigError(f"{text!r} is not a finite number")
    return value


def _kind_name(name: str) -> str:
    kind = base_type(FIELD_TYPES[name])
    words = {int: "an integer", float: "a number", bool: "true or false", str: "text"}[kind]
    return words + (" (or none)" if is_optional(name) else "")


def _problems_of(base: Mapping[str, Any], values: Mapping[str, Any]) -> list[str]:
    """What the config's validation says about `values` over `base` (empty when it is valid)."""
    try:
        build_config({**base, **values})
    except ConfigError as exc:
        return str(exc).splitlines()
    return []


def _check_field(name: str, source: str, problems: list[str]) -> bool:
    if name in NOT_SWEPT:
        problems.append(f"{source}: {name} cannot be swept: {NOT_SWEPT[name]}")
        return False
    return True


def _grid_values(name: str, raw: Any, source: str, base: Mapping[str, Any], problems: list[str]) -> list[Any]:
    items = raw if isinstance(raw, list) else None
    if items is None:
        problems.append(f"{source}: give a list of values, e.g. {name} = [1, 2]")
        return []
    if not items or items == [""]:
        problems.append(f"{source}: the list of values is empty; give at least one, e.g. "
                        f"--grid {name}=V1,V2")
        return []
    values, seen = [], set()
    for item in items:
        try:
            value = _value(name, item)
        except ConfigError as exc:
            problems.append(f"{source}: {exc}")
            continue
        key = repr(value)
        if key in seen:
            problems.append(f"{source}: {value!r} is listed twice; list each value once")
            continue
        seen.add(key)
        found = _problems_of(base, {name: value})
        problems += [f"{source}: {p}" for p in found]
        values.append(value)
    return values


def _range(name: str, raw: Any, source: str, base: Mapping[str, Any], problems: list[str]) -> Range | None:
    kind = base_type(FIELD_TYPES[name])
    if kind not in (int, float):
        problems.append(f"{source}: {name} is {_kind_name(name)}, not a number, so it has no range; "
                        f"list its values with --grid {name}=V1,V2")
        return None
    if isinstance(raw, dict):
        unknown = set(raw) - {"low", "high", "log"}
        if unknown or "low" not in raw or "high" not in raw:
            problems.append(f"{source}: write {{ low = LOW, high = HIGH, log = true }} or \"LOW:HIGH[:log]\"")
            return None
        parts, log = [raw["low"], raw["high"]], raw.get("log", False)
        if not isinstance(log, bool):
            problems.append(f"{source}: log must be true or false")
            return None
    elif isinstance(raw, str):
        pieces = raw.split(":")
        log = len(pieces) == 3 and pieces[2].strip().lower() == "log"
        if len(pieces) not in (2, 3) or (len(pieces) == 3 and not log):
            problems.append(f"{source}: write {_flag_or_key(source)}{name}=LOW:HIGH or LOW:HIGH:log, "
                            f"e.g. {name}=1e-4:1e-1:log")
            return None
        parts = pieces[:2]
    else:
        problems.append(f"{source}: write \"LOW:HIGH[:log]\" or {{ low = LOW, high = HIGH, log = true }}")
        return None
    ends = []
    for part in parts:
        try:
            value = _value(name, part)
        except ConfigError as exc:
            problems.append(f"{source}: {exc}")
            return None
        if value is None:
            problems.append(f"{source}: a range needs two numbers, not none")
            return None
        ends.append(value)
    low, high = ends
    if not low < high:
        problems.append(f"{source}: LOW ({low}) must be below HIGH ({high})")
        return None
    if log and low <= 0:
        problems.append(f"{source}: a log range needs LOW above 0 (got {low}); use a positive LOW or drop :log")
        return None
    ok = True
    for end in (low, high):
        found = _problems_of(base, {name: end})
        problems += [f"{source}: {name} cannot take the range {low}..{high}: {p}" for p in found]
        ok = ok and not found
    return Range(low, high, log) if ok else None


def _flag_or_key(source: str) -> str:
    return "--random " if source.startswith("--") else ""


def _integer(value: Any, what: str, lowest: int, problems: list[str]) -> int | None:
    if isinstance(value, bool) or not isinstance(value, int):
        problems.append(f"{what} must be a whole number, not {value!r}")
        return None
    if value < lowest:
        problems.append(f"{what} must be at least {lowest} (got {value})")
        return None
    return value


def plan_sweep(request: SweepRequest, command: Sequence[str] | None = None) -> SweepPlan:
    """Check the whole request and expand it into trials; SweepError lists every problem.

    Trials are the product of the grid's lists, crossed with `trials` random draws (seeded by
    `sweep_seed`) when there are ranges, each setting with `seeds` seeds (--seed, --seed+1, ...)."""
    problems: list[str] = list(request.problems)
    base = dict(request.base)
    try:
        base_config = build_config(base)
    except ConfigError as exc:  # every value below is checked on top of it: nothing more to say until it is right
        problems += [f"the config under every trial: {p}" for p in str(exc).splitlines()]
        raise SweepError("\n".join(problems)) from None
    grid: dict[str, list[Any]] = {}
    ranges: dict[str, Range] = {}
    for name, raw in request.grid.items():
        source = request.sources.get(name, f"--grid {name}")
        if _check_field(name, source, problems):
            grid[name] = _grid_values(name, raw, source, base, problems)
    for name, raw in request.random.items():
        source = request.sources.get(name, f"--random {name}")
        if name in request.grid:
            problems.append(f"{source}: {name} is also in the grid ({request.sources.get(name)}); sweep it one way")
            continue
        if _check_field(name, source, problems):
            found = _range(name, raw, source, base, problems)
            if found is not None:
                ranges[name] = found
    for name in (*request.grid, *request.random):
        if name in request.flags and name not in NOT_SWEPT:
            problems.append(f"{_flag(name)} {request.base[name]} is given, and {name} is swept too "
                            f"({request.sources.get(name)}); drop one of them")
    seeds = _integer(request.seeds, "--seeds", 1, problems)
    sweep_seed = _integer(request.sweep_seed, "--sweep-seed", 0, problems)
    draws = None
    if request.random:
        if request.trials is None:
            problems.append("--random needs --trials N, the number of random draws (e.g. --trials 8)")
        else:
            draws = _integer(request.trials, "--trials", 1, problems)
    elif request.trials is not None:
        problems.append("--trials N counts random draws, but no --random FIELD=LOW:HIGH is given; "
                        "add one, or drop --trials")
    if not problems and not request.grid and not request.random and (seeds or 1) == 1:
        problems.append("nothing to sweep: give --grid FIELD=V1,V2,..., --random FIELD=LOW:HIGH with --trials N, "
                        "or --seeds K")
    name = request.name
    room = MAX_NAME_LENGTH - 6  # "-NNNNN" is added per trial
    if not isinstance(name, str) or len(name) > room or not name.isprintable():
        problems.append(f"--name {name!r}: a sweep's name is at most {room} printable characters "
                        "(each trial adds -N to it)")
    count = math.prod(len(v) for v in grid.values()) * (draws or 1) * (seeds or 1)
    if count > MAX_TRIALS:
        problems.append(f"the sweep would have {count:,} trials, more than {MAX_TRIALS:,}; shorten the lists, "
                        "--trials or --seeds")
    if count == 0 and not problems:
        problems.append("the sweep has no trials")
    if problems:
        raise SweepError("\n".join(problems))

    rng = random.Random(sweep_seed)
    kinds = {f: base_type(FIELD_TYPES[f]) for f in ranges}
    drawn = [{f: r.draw(rng, kinds[f]) for f, r in ranges.items()} for _ in range(draws or 0)] or [{}]
    settings = [{**dict(zip(grid, point)), **d} for point in itertools.product(*grid.values()) for d in drawn]
    trials = [Trial(number=i + 1, params=setting, seed=base_config.seed + j)
              for i, (setting, j) in enumerate((s, j) for s in settings for j in range(seeds))]
    plan = SweepPlan(id=new_run_id(name), name=name, created=utc_now(), base=base, grid=grid, random=ranges,
                     random_trials=draws, sweep_seed=sweep_seed, seeds=seeds, trials=trials,
                     command=list(sys.argv if command is None else command))
    _check_combinations(plan, settings)
    return plan


def _check_combinations(plan: SweepPlan, settings: list[dict[str, Any]]) -> None:
    """Each setting's whole config, as `train` would check it (fields checked together, such as
    lr_finder_start below lr_finder_end); one line per distinct problem, naming the first setting."""
    found: dict[str, str] = {}
    for setting in settings:
        for problem in _problems_of(plan.base, {**setting, "name": plan.name}):
            found.setdefault(problem, ", ".join(f"{k}={v}" for k, v in setting.items()))
    if found:
        raise SweepError("\n".join(f"the setting {where}: {problem}" for problem, where in found.items()))


# ---------------------------------------------------------------- the plan file


def write_plan(runs_dir: Path, plan: SweepPlan) -> Path:
    path = sweep_plan_path(runs_dir, plan.id)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_json(path, plan.to_dict())
    return path


def plan_from_dict(data: Any, source: Path) -> SweepPlan:
    """A saved plan, checked: every trial's params must still be values of config fields."""
    def bad(why: str) -> SweepError:
        return SweepError(f"{source}: {why}; the sweep's plan is damaged, so it cannot be resumed "
                          "(its runs are still in the runs folder)")

    if not isinstance(data, dict) or data.get("plan_version") != PLAN_VERSION:
        raise bad(f"not a plan of version {PLAN_VERSION}")
    try:
        trials = []
        for row in data["trials"]:
            params = {k: coerce(k, v) for k, v in row["params"].items()}
            if set(params) & set(NOT_SWEPT) or not isinstance(row["seed"], int) or not isinstance(row["number"], int):
                raise ValueError("a trial with a bad number, seed or parameter")
            trials.append(Trial(number=row["number"], params=params, seed=row["seed"]))
        ranges = {k: Range(float(r["low"]), float(r["high"]), bool(r["log"])) for k, r in data["random"].items()}
        plan = SweepPlan(id=str(data["id"]), name=str(data["name"]), created=str(data["created"]),
                         base=dict(data["base"]), grid={k: list(v) for k, v in data["grid"].items()},
                         random=ranges, random_trials=data["random_trials"], sweep_seed=int(data["sweep_seed"]),
                         seeds=int(data["seeds"]), trials=trials, command=list(data.get("command") or []))
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise bad(f"{exc.__class__.__name__}: {exc}") from None
    if [t.number for t in plan.trials] != list(range(1, len(plan.trials) + 1)):
        raise bad("its trials are not numbered 1, 2, ...")
    if plan.id != source.stem:
        raise bad(f"it names the sweep {plan.id!r}, not {source.stem!r}")
    return plan


def read_plan(path: Path) -> SweepPlan:
    try:
        data = read_json(path, PLAN_CAP)
    except (Unreadable, OSError) as exc:
        raise SweepError(f"{path}: {exc}; the sweep's plan cannot be read") from None
    return plan_from_dict(data, Path(path))


def plan_paths(runs_dir: Path) -> list[Path]:
    """The plans in a runs folder, newest first (ids sort by creation time)."""
    folder = Path(runs_dir) / SWEEPS_DIR
    if not folder.is_dir():
        return []
    return sorted((p for p in folder.glob("*.json") if not p.name.startswith(".")), reverse=True)


def list_sweeps(runs_dir: Path) -> tuple[list[SweepPlan], list[str]]:
    """Every readable plan, newest first, and one line for each plan that could not be read."""
    plans, problems = [], []
    for path in plan_paths(runs_dir):
        try:
            plans.append(read_plan(path))
        except SweepError as exc:
            problems.append(str(exc))
    return plans, problems


def find_sweep(runs_dir: Path, reference: str) -> SweepPlan:
    """The sweep a person means: its whole id, a start of its id that no other sweep shares, or
    its name when one sweep has it."""
    paths = plan_paths(runs_dir)
    exact = [p for p in paths if p.stem == reference]
    found = exact or [p for p in paths if reference and p.stem.startswith(reference)]
    if not found:
        found = [p for p in paths if _name_of(p) == reference]
    if not found:
        known = ", ".join(p.stem for p in paths[:5]) or "none yet"
        raise SweepError(f"no sweep {reference!r} in {runs_dir}/{SWEEPS_DIR} (sweeps there: {known}); "
                         "give a sweep's id, a unique start of it, or its name, and --runs-dir if it is elsewhere")
    if len(found) > 1:
        raise SweepError(f"{reference!r} matches {len(found)} sweeps ({', '.join(p.stem for p in found[:5])}); "
                         "give more of the id")
    return read_plan(found[0])


def _name_of(path: Path) -> str | None:
    try:
        data = read_json(path, PLAN_CAP)
    except (Unreadable, OSError):
        return None
    return data.get("name") if isinstance(data, dict) else None
