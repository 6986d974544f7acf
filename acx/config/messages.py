"""Validation and its messages: a pydantic error rendered as one line naming the key, the value and what
is allowed, with a "did you mean" for a misspelt key."""

from __future__ import annotations

import difflib
import re
import types
import typing
from collections.abc import Mapping
from typing import Annotated, Any, Union

from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException
from pydantic import BaseModel, Tag, ValidationError
from pydantic.fields import FieldInfo

from acx.errors import ConfigError


def close_keys(key: str, candidates: list[str]) -> list[str]:
    """The candidates a misspelt ``key`` most likely meant: those ending in the same last part, or else
    the closest spellings (only the ones about as close as the best)."""
    last = key.rpartition(".")[2]
    pool = [c for c in candidates if c.rpartition(".")[2] == last and c != key] or candidates
    scored = sorted(((difflib.SequenceMatcher(None, key, c).ratio(), c) for c in pool), reverse=True)
    best = scored[0][0] if scored else 0.0
    return [c for r, c in scored[:3] if r >= max(0.6, best - 0.05)]


def validate(model: type[BaseModel], cfg: DictConfig | Mapping[str, Any]) -> Any:
    """``cfg`` checked against ``model``; the first mistake raised as a one-line ConfigError."""
    try:
        data = OmegaConf.to_container(cfg, resolve=True) if isinstance(cfg, DictConfig) else dict(cfg)
    except OmegaConfBaseException as exc:  # an interpolation that does not resolve
        key = getattr(exc, "full_key", "") or ""
        raise ConfigError(f"{key}: {str(exc).splitlines()[0]}" if key else str(exc).splitlines()[0]) from None
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(describe(exc.errors()[0], model)) from None


def describe(error: Mapping[str, Any], model: type[BaseModel]) -> str:
    """One line for one pydantic error: the key, what it must be, the value it got."""
    keys, field, siblings = _walk(model, error["loc"])
    key = ".".join(keys)
    kind, value = error["type"], error.get("input")
    if kind == "value_error":  # a rule of the model's own: its message names the key, or gets it here
        message = str(error["msg"]).removeprefix("Value error, ")
        if message.startswith("."):  # a key below this model's: ".alpha: ..." -> "optimizer.alpha: ..."
            return key + message
        return message if re.match(r"^[\w.\[\]]+: ", message) else f"{key}: {message}"
    if kind == "extra_forbidden":
        parent = key.rpartition(".")[0]
        close = close_keys(key, [f"{parent}.{c}" if parent else c for c in siblings])
        hint = f"; did you mean {', '.join(close)}?" if close else ""
        return f"{key}: no such key{hint}"
    if kind == "missing":
        return f"{key}: required, and not set"
    if kind == "literal_error":
        choices = [str(c) for c in typing.get_args(_unwrap(field.annotation))] if field is not None else []
        choices = [c for c in choices if c != "None"]
        close = difflib.get_close_matches(str(value), choices, n=1, cutoff=0.5)
        hint = f"; did you mean {close[0]}?" if close else ""
        return f"{key}: must be one of {', '.join(choices)}, got {value!r}{hint}"
    return f"{key}: must be {allowed(field)}, got {value!r}"


def allowed(field: FieldInfo | None) -> str:
    """What a field accepts, in words: 'in (0, 1]', 'an integer >= 1 (or null: ...)'."""
    if field is None:
        return "valid"
    bounds = {k: getattr(m, k) for m in field.metadata for k in ("gt", "ge", "lt", "le", "min_length") if hasattr(m, k)}
    low = f"({bounds['gt']:g}" if "gt" in bounds else f"[{bounds['ge']:g}" if "ge" in bounds else None
    high = f"{bounds['lt']:g})" if "lt" in bounds else f"{bounds['le']:g}]" if "le" in bounds else None
    base = _unwrap(field.annotation)
    kind = {int: "an integer", bool: "true or false", str: "a string"}.get(base, "")  # a float: just the range
    if typing.get_origin(base) is list:
        length = bounds.get("min_length")
        kind = f"a list of at least {length} item{'s' if length != 1 else ''}" if length else "a list"
    if low and high:
        text = f"{kind} in {low}, {high}".strip()
    elif low:
        text = f"{kind} {'>' if low[0] == '(' else '>='} {low[1:]}".strip()
    elif high:
        text = f"{kind} {'<' if high[-1] == ')' else '<='} {high[:-1]}".strip()
    else:
        text = kind or "valid"
    if _optional(field.annotation):
        text += f" (or null{': ' + field.description.removeprefix('null: ') if field.description else ''})"
    return text


def _optional(annotation: Any) -> bool:
    return type(None) in typing.get_args(annotation)


def _unwrap(annotation: Any) -> Any:
    """``int | None`` -> int, ``Annotated[int, ...]`` -> int."""
    if typing.get_origin(annotation) is Annotated:
        annotation = typing.get_args(annotation)[0]
    args = [a for a in typing.get_args(annotation) if a is not type(None)]
    if typing.get_origin(annotation) in (Union, types.UnionType) and len(args) == 1:
        return _unwrap(args[0])
    return annotation


def _members(annotation: Any) -> dict[str, Any]:
    """The tagged members of a ``by_target`` union, by tag."""
    if typing.get_origin(annotation) is Annotated:
        annotation = typing.get_args(annotation)[0]
    found = {}
    for member in typing.get_args(annotation):
        if typing.get_origin(member) is Annotated:
            inner, *meta = typing.get_args(member)
            tags = {m.tag: inner for m in meta if isinstance(m, Tag)}
            found.update(tags or _members(inner))  # no tag: a union inside an Optional
        elif member is not type(None):
            found.update(_members(member))
    return found


def _walk(model: type[BaseModel], loc: tuple[Any, ...]) -> tuple[list[str], FieldInfo | None, list[str]]:
    """Follow a pydantic error location through the models: the config keys (union tags dropped),
    the FieldInfo at the end, and the keys beside the last one (for "did you mean")."""
    keys: list[str] = []
    node: Any = model
    field: FieldInfo | None = None
    siblings: list[str] = []
    for part in loc:
        tagged = _members(node) if not (isinstance(node, type) and issubclass(node, BaseModel)) else {}
        if part in tagged:  # a union's tag: the model it chose
            node = tagged[part]
            continue
        if isinstance(node, type) and issubclass(node, BaseModel):
            fields = node.model_fields
            siblings = [f.alias or name for name, f in fields.items()]
            name = next((n for n, f in fields.items() if part in (n, f.alias)), None)
            keys.append(str(part))
            field = fields[name] if name else None
            node = field.annotation if field else None
            continue
        # a dict key or a list index: the element's own constraints, if it has any
        keys[-1:] = [f"{keys[-1]}[{part}]"] if isinstance(part, int) and keys else [*keys[-1:], str(part)]
        args = typing.get_args(_unwrap(node))
        node = args[-1] if args else None
        field = FieldInfo.from_annotation(node) if node is not None else None
    return keys, field, siblings
