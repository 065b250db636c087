"""Load and validate a rock-repro config (``config.yaml``, ``tests/config_toy/config.yaml``).

The JSON schema ``workflow/schemas/config.schema.yaml`` says which keys exist, their types and
ranges (``additionalProperties: false`` at every level). :func:`validate_config` checks a config
against it and adds the checks a schema cannot express (slice order, slice overlap, benchmark
cross-references). Every problem becomes one line of a :class:`rock.errors.ConfigError` that names
the file and the key path, e.g.::

    config.yaml: stage2.lr: 'abc' is not of type 'number'
    config.yaml: unknown key 'stage2.lrr' (allowed: epochs, global_batch, ...)
    config.yaml: missing required key 'models.teacher'

The Snakefile calls this before any job is planned (``workflow/rules/common.smk``), in place of
``snakemake.utils.validate``, whose messages do not name the key path. Stage CLIs call
:func:`stage_config` (once per process) when given ``--config FILE``; library code never reads a
config file.

:func:`resolve_model` decides whether ``models.teacher`` / ``models.student`` is a hub id, an
existing local directory, or the toy world's directory that rule ``toy_world`` builds; anything
else is a clear error before the workflow starts.
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from rock import paths
from rock.errors import ConfigError

log = logging.getLogger(__name__)

#: the schema, found next to the package in the repository checkout (editable install, containers
#: bind the checkout); callers may pass another one.
SCHEMA_PATH = Path(__file__).resolve().parent.parent / "workflow" / "schemas" / "config.schema.yaml"

#: a Hugging Face hub id: "name" or "org/name" (what ``from_pretrained`` accepts as a repo id)
HUB_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*(/[A-Za-z0-9][A-Za-z0-9._-]*)?$")

#: model roles that the config names under ``models``
MODEL_ROLES = ("teacher", "student")


# ------------------------------------------------------------------------------------------------
# YAML loading
# ------------------------------------------------------------------------------------------------

class _StrictLoader(yaml.SafeLoader):
    """SafeLoader that refuses duplicate keys (PyYAML silently keeps the last one)."""


def _construct_mapping(loader: _StrictLoader, node: yaml.MappingNode, deep: bool = False):
    seen: dict[Any, int] = {}
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=deep)
        line = key_node.start_mark.line + 1
        if key in seen:
            raise ConfigError(f"{loader.name}:{line}: duplicate key '{key}' "
                              f"(first defined on line {seen[key]}); keep one of them")
        seen[key] = line
    return loader.construct_mapping(node, deep=deep)


_StrictLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


def load_yaml(path: str | Path) -> dict:
    """Read a YAML mapping; duplicate keys and syntax errors are :class:`ConfigError`."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{path}: config file not found") from None
    try:
        loader = _StrictLoader(text)
        loader.name = str(path)
        try:
            data = loader.get_single_data()
        finally:
            loader.dispose()
    except yaml.YAMLError as err:
        raise ConfigError(f"{path}: not valid YAML: {err}") from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: the top level must be a mapping of sections, "
                          f"got {type(data).__name__}")
    return data


def load_schema(path: str | Path = SCHEMA_PATH) -> dict:
    path = Path(path)
    if not path.exists():
        raise ConfigError(f"{path}: config schema not found (run from the repository checkout)")
    return yaml.safe_load(path.read_text(encoding="utf-8"))


def load_config(path: str | Path, *, schema: str | Path | dict | None = None) -> dict:
    """Read ``path`` and validate it; returns the config dict or raises :class:`ConfigError`."""
    cfg = load_yaml(path)
    validate_config(cfg, str(path), schema=schema)
    return cfg


# ------------------------------------------------------------------------------------------------
# Validation
# ------------------------------------------------------------------------------------------------

def _key_path(parts) -> str:
    return ".".join(str(p) if not isinstance(p, int) else f"[{p}]" for p in parts).replace(".[", "[")


def _looks_numeric(value: str) -> bool:
    try:
        float(value)
    except ValueError:
        return False
    return True


def _format_error(err, source: str) -> list[str]:
    """One line per problem of a ``jsonschema.ValidationError``, naming the key path."""
    where = _key_path(err.absolute_path)
    prefix = f"{source}: {where}: " if where else f"{source}: "
    if err.validator == "additionalProperties" and isinstance(err.instance, dict):
        allowed = sorted(err.schema.get("properties", {}))
        unknown = sorted(k for k in err.instance if k not in err.schema.get("properties", {}))
        return [f"{source}: unknown key '{_key_path([*err.absolute_path, k])}' "
                f"(allowed: {', '.join(allowed)})" for k in unknown]
    if err.validator == "required":
        missing = [k for k in err.validator_value if k not in err.instance]
        return [f"{source}: missing required key '{_key_path([*err.absolute_path, k])}'"
                for k in missing]
    if err.instance is None:
        expected = err.schema.get("type", "a value")
        return [f"{prefix}no value given (expected {expected})"]
    message = err.message
    if err.validator == "type" and isinstance(err.instance, str) and _looks_numeric(err.instance):
        # YAML 1.1 (PyYAML) reads 2e-5 as a string; 2.0e-5 is a float.
        message += " (write numbers with a decimal point, e.g. 2.0e-5, not 2e-5)"
    return [prefix + message]


def _schema_problems(cfg: dict, source: str, schema: dict) -> list[str]:
    import jsonschema

    validator_cls = jsonschema.validators.validator_for(schema)
    validator_cls.check_schema(schema)
    validator = validator_cls(schema)
    problems: list[str] = []
    errors = sorted(validator.iter_errors(cfg), key=lambda e: [str(p) for p in e.absolute_path])
    for err in errors:
        problems.extend(_format_error(err, source))
    return problems


def _slice_problems(cfg: dict, source: str) -> list[str]:
    data = cfg.get("data", {})
    problems = []
    slices = {}
    for key in ("stage1_slice", "stage2_slice"):
        value = data.get(key)
        if isinstance(value, list) and len(value) == 2 and all(isinstance(v, int) for v in value):
            start, end = value
            if start >= end:
                problems.append(f"{source}: data.{key}: start {start} must be smaller than "
                                f"end {end} (positions [start, end) of the math prompt pool)")
            else:
                slices[key] = (start, end)
    pool = data.get("prompt_pool", {})
    if isinstance(pool, dict) and "domain_field" in pool and "domain" in pool:
        if (pool["domain_field"] is None) != (pool["domain"] is None):
            problems.append(f"{source}: data.prompt_pool: domain_field and domain must both be "
                            f"set or both be null (got {pool['domain_field']!r}, {pool['domain']!r})")
    if len(slices) == 2:
        (a0, a1), (b0, b1) = slices["stage1_slice"], slices["stage2_slice"]
        if a0 < b1 and b0 < a1:
            problems.append(f"{source}: data.stage1_slice {[a0, a1]} and data.stage2_slice "
                            f"{[b0, b1]} overlap; stage 2 uses a separate prompt slice [5.1, C]")
    return problems


def _cross_reference_problems(cfg: dict, source: str) -> list[str]:
    problems = []
    benchmarks = cfg.get("data", {}).get("benchmarks")
    evaluated = cfg.get("evaluation", {}).get("benchmarks")
    if isinstance(benchmarks, dict) and isinstance(evaluated, list):
        for name in evaluated:
            if isinstance(name, str) and name not in benchmarks:
                problems.append(f"{source}: evaluation.benchmarks: '{name}' has no entry in "
                                f"data.benchmarks (add it there or drop it here)")
    return problems


def validate_config(cfg: Mapping, source: str, *, schema: str | Path | dict | None = None) -> None:
    """Raise :class:`ConfigError` listing every problem of ``cfg`` (one line each).

    ``source`` names where the config came from (a file name) and starts every line.
    """
    if not isinstance(cfg, Mapping):
        raise ConfigError(f"{source}: the top level must be a mapping of sections")
    schema_dict = schema if isinstance(schema, dict) else load_schema(schema or SCHEMA_PATH)
    cfg = dict(cfg)
    problems = _schema_problems(cfg, source, schema_dict)
    problems += _slice_problems(cfg, source)
    problems += _cross_reference_problems(cfg, source)
    if problems:
        raise ConfigError("\n".join(problems) if len(problems) == 1 else
                          f"{len(problems)} problems:\n" + "\n".join(problems))


# ------------------------------------------------------------------------------------------------
# Models
# ------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class ModelRef:
    """Where a model comes from.

    ``kind`` is ``"hub"`` (a hub id, loaded by ``from_pretrained`` on the compute node),
    ``"local"`` (an existing directory) or ``"toy_world"`` (the directory rule ``toy_world`` builds).
    """

    role: str
    name: str
    kind: str

    @property
    def is_file_input(self) -> bool:
        """Whether a rule should list the model as an input (local and toy-world directories)."""
        return self.kind in ("local", "toy_world")


def _looks_like_path(value: str) -> bool:
    return (value.startswith(("/", "./", "../", "~")) or value.count("/") > 1
            or "\\" in value or not HUB_ID.match(value))


def resolve_model(cfg: Mapping, role: str, source: str) -> ModelRef:
    """Resolve ``models.<role>``: toy world directory, existing local directory, or hub id.

    At ``scale: toy`` a model must be local: the toy world's ``{run_dir}/world/<role>`` (built by
    rule ``toy_world``) or a directory that exists. At paper scale a value that is not an existing
    directory must look like a hub id (``org/name``).
    """
    if role not in MODEL_ROLES:
        raise ValueError(f"role must be one of {MODEL_ROLES}, got {role!r}")
    name = str(cfg["models"][role])
    scale, run_dir = cfg["scale"], cfg["run_dir"]
    key = f"models.{role}"
    built = paths.world_model(run_dir, role)
    if scale == "toy" and Path(name) == built:
        return ModelRef(role, name, "toy_world")
    if Path(name).expanduser().is_dir():
        return ModelRef(role, name, "local")
    if scale == "toy":
        raise ConfigError(
            f"{source}: {key}: local model directory '{name}' does not exist and is not built by "
            f"rule toy_world (which writes {built}); point {key} at {built} or at an existing "
            f"model directory")
    if _looks_like_path(name):
        raise ConfigError(
            f"{source}: {key}: '{name}' is neither an existing directory nor a hub id "
            f"(org/name); fix the path or use a hub id such as Qwen/Qwen3-4B-Instruct-2507")
    return ModelRef(role, name, "hub")


# ------------------------------------------------------------------------------------------------
# Typed sections: one from_dict for every stage's dataclass
# ------------------------------------------------------------------------------------------------

def typed_value(value, default, where: str):
    """``value`` with the type of ``default`` (an int is accepted for a float)."""
    if isinstance(default, bool) or isinstance(value, bool):
        ok = isinstance(value, bool) and isinstance(default, bool)
    elif isinstance(default, float):
        ok = isinstance(value, (int, float))
        value = float(value) if ok else value
    elif isinstance(default, list):
        ok = isinstance(value, (list, tuple))
        value = list(value) if ok else value
    else:
        ok = isinstance(value, type(default))
    if not ok:
        raise ConfigError(f"{where}: expected {type(default).__name__}, got {value!r}")
    return value


def _field_default(f: dataclasses.Field):
    if f.default_factory is not dataclasses.MISSING:
        return f.default_factory()
    return None if f.default is dataclasses.MISSING else f.default


def from_dict(cls, data: Mapping | None, where: str, **extra):
    """Build the dataclass ``cls`` from its config section ``data`` (``where`` names it, e.g.
    ``"stage2"`` or ``"toy.teacher"``); ``extra`` adds values from elsewhere (``seed``), None = skip.

    The schema has already rejected unknown keys and wrong types of a config file; this guards the
    same for a mapping built in code. A value whose field default is a bool, int, float, str or list
    gets that type (an int is accepted for a float); a nested dataclass field starts from the
    field's own default and takes the mapping's keys over it. ``__post_init__`` checks raise
    :class:`ConfigError` naming the key (prefixed with ``where`` unless they name it already).
    """
    if data is not None and not isinstance(data, Mapping):
        raise ConfigError(f"{where}: expected a mapping, got {type(data).__name__}")
    data = {**(data or {}), **{k: v for k, v in extra.items() if v is not None}}
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {unknown}; known: {sorted(fields)}")
    kwargs = {}
    for name, value in data.items():
        default = _field_default(fields[name])
        if dataclasses.is_dataclass(default):
            if not isinstance(value, Mapping):
                raise ConfigError(f"{where}.{name}: expected a mapping, got {type(value).__name__}")
            value = from_dict(type(default), {**dataclasses.asdict(default), **value}, f"{where}.{name}")
        elif isinstance(default, (bool, int, float, str, list)):
            value = typed_value(value, default, f"{where}.{name}")
        kwargs[name] = value
    try:
        return cls(**kwargs)
    except ConfigError as err:   # a __post_init__ check; "key: why" gets the section path in front
        if str(err).startswith(where.split(".")[0]):
            raise
        raise ConfigError(f"{where}.{err}") from err
    except TypeError as err:
        raise ConfigError(f"{where}: {err}") from err


def stage_config(args) -> dict:
    """The validated config of a stage command's ``--config FILE`` (``args.config``).

    Every stage CLI asks this and none reads a config file itself: the file is read and checked
    against the schema once per process (kept on ``args`` as ``config_data``), and a stage builds
    its typed section from it with :func:`from_dict`. A command without ``--config`` gets None.
    """
    if getattr(args, "config_data", None) is None and getattr(args, "config", None) is not None:
        args.config_data = load_config(args.config)
    return getattr(args, "config_data", None)


# ------------------------------------------------------------------------------------------------
# Config selection for Snakemake (used by workflow/rules/common.smk)
# ------------------------------------------------------------------------------------------------

def materialize(cfg: Mapping, directory: str | Path) -> Path:
    """Write ``cfg`` as YAML under ``directory``, named by its content hash; return the path.

    Used when the effective config differs from every file on disk (``--config KEY=VALUE``
    overrides, several ``--configfile`` files), so that ``rock <stage> --config FILE`` sees exactly
    the validated config. Same content, same file: concurrent jobs never disagree. Key order is
    kept as given (a stage must not depend on it, but a reader of the file expects the original's).
    """
    from rock.atomic import write_text

    text = yaml.safe_dump(dict(cfg), sort_keys=False)
    digest = hashlib.sha256(text.encode()).hexdigest()[:12]
    path = Path(directory) / f"config-{digest}.yaml"
    if not path.exists():
        write_text(path, text)
    return path
