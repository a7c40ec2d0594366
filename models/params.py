"""One validation layer for configuration values: types declared once, checked everywhere.

Every model parameter (the fields of a :class:`~marginlab.models.MarginModel`
dataclass, checked from their type annotations before the model's own range
checks) and every study-file key (:mod:`marginlab.validation.study`, from a table
of key -> type) goes through :func:`check_value`. Nothing is coerced:

* ``bool`` accepts only ``True``/``False`` (TOML ``true``/``false``), never
  ``"no"`` or ``0``;
* ``int`` accepts integers but not booleans; ``float`` accepts finite integers
  and floats but not booleans (``rate = true`` is an error, not 100%);
* ``str`` accepts only strings (``label = 42`` is an error, not ``"42"``);
* :data:`Cap` (a bracket cap) accepts a positive number or ``inf``;
* :data:`Asset` accepts only an asset code of the bundled catalogue, exactly as
  spelled there (``"eth"`` is an error listing ``"ETH"`` and the others);
* ``X | Y``, ``Literal[...]``, ``list[X]``, ``tuple[X, ...]``, ``tuple[X, Y]``
  and ``dict[K, V]`` check every element; a list given for a tuple annotation
  (TOML has only arrays) becomes a tuple, so that a frozen model stays immutable;
* ``datetime.date``/``datetime.datetime`` accept those objects (TOML dates) and
  ISO 8601 strings; an integer such as ``20220101`` is an error, not 1970;
* any other class is checked with ``isinstance``; ``Any`` and unsupported
  annotations are not checked.

Errors are ``ValueError`` naming where the value sits (``"static: rates['eth']"``,
``"study.seed"``), what was expected and what was given.
"""

from __future__ import annotations

import datetime as dt
import functools
import math
import numbers
import sys
import types
import typing
from collections.abc import Callable, Mapping
from dataclasses import fields, is_dataclass
from typing import Any, Literal, NewType, Union

import numpy as np

__all__ = ["Asset", "Cap", "check_value", "describe_type", "validate_fields", "install_field_validation"]

#: An asset code of the bundled catalogue (``marginlab.datasets.known_assets()``), exactly as spelled there.
Asset = NewType("Asset", str)
#: A bracket cap: a positive number, or ``inf`` for the last bracket when a venue publishes no cap.
Cap = NewType("Cap", float)


def _known_assets() -> list[str]:
    from marginlab.datasets import known_assets

    return known_assets()


def describe_type(annotation: Any) -> str:
    """Words for what ``annotation`` accepts, as used in error messages."""
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if annotation is Any:
        return "any value"
    if annotation is bool:
        return "true or false"
    if annotation is int:
        return "an integer"
    if annotation is float:
        return "a number"
    if annotation is str:
        return "a string"
    if annotation is Cap:
        return "a positive number or inf"
    if annotation is Asset:
        return "an asset code"
    if annotation is type(None):
        return "none"
    if annotation in (dt.date, dt.datetime):
        return "a date (YYYY-MM-DD)"
    if origin in (Union, types.UnionType):
        return " or ".join(describe_type(a) for a in args if a is not type(None))
    if origin is Literal:
        return " or ".join(repr(a) for a in args)
    if origin is list:
        return f"a list of {_plural(args[0])}" if args else "a list"
    if origin is tuple:
        if len(args) == 2 and args[1] is Ellipsis:
            return f"a list of {_plural(args[0])}"
        return f"a [{', '.join(_short(a) for a in args)}] list"
    if origin in (dict, Mapping):
        if not args or args[1] is Any:
            return "a table"
        return f"a table of {describe_type(args[0])} -> {describe_type(args[1])}"
    return f"a {getattr(annotation, '__name__', annotation)}"


_SHORT = {bool: "true/false", int: "integer", float: "number", str: "string", Asset: "asset code"}


def _short(annotation: Any) -> str:
    return _SHORT.get(annotation, describe_type(annotation))


def _plural(annotation: Any) -> str:
    if annotation in _SHORT:
        return _SHORT[annotation] + ("" if annotation is bool else "s")
    text = describe_type(annotation)
    return text[2:] + "s" if text.startswith("a [") else f"({text})"


def _got(value: Any) -> str:
    text = repr(value)
    if len(text) > 60:
        text = text[:57] + "..."
    return f"{text} ({type(value).__name__})"


class _WrongType(ValueError):
    """A value of the wrong type at ``where`` (as opposed to a value of the right type that is not allowed)."""

    def __init__(self, message: str, where: str) -> None:
        super().__init__(message)
        self.where = where


def _fail(where: str, annotation: Any, value: Any) -> ValueError:
    return _WrongType(f"{where} must be {describe_type(annotation)}, got {_got(value)}", where)


def _is_bool(value: Any) -> bool:
    return isinstance(value, bool | np.bool_)


def _date(value: Any, annotation: Any, where: str) -> Any:
    if isinstance(value, dt.date):  # TOML dates and datetimes
        return value
    if isinstance(value, str):
        text = value.strip()
        try:
            parsed = dt.datetime.fromisoformat(text[:-1] + "+00:00" if text.endswith(("Z", "z")) else text)
        except ValueError:
            raise ValueError(f"{where} is not an ISO 8601 date (YYYY-MM-DD): {value!r}") from None
        return parsed.date() if annotation is dt.date and len(text) <= 10 else parsed
    raise _fail(where, annotation, value)


def check_value(value: Any, annotation: Any, where: str) -> Any:
    """Check ``value`` against the type ``annotation``; return it (lists given for tuples become tuples).

    Raises
    ------
    ValueError
        ``"{where} must be <what annotation accepts>, got <value> (<type>)"``, or
        for an :data:`Asset`, the unknown code and the known ones.
    """
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if annotation is Any or annotation is object:
        return value
    if annotation is type(None) or annotation is None:
        if value is not None:
            raise _fail(where, annotation, value)
        return value
    if annotation is bool:
        if not _is_bool(value):
            raise _fail(where, annotation, value)
        return value
    if annotation is int:
        if _is_bool(value) or not isinstance(value, numbers.Integral):
            raise _fail(where, annotation, value)
        return value
    if annotation is float:
        if _is_bool(value) or not isinstance(value, numbers.Real):
            raise _fail(where, annotation, value)
        if not math.isfinite(value):
            raise ValueError(f"{where} must be a finite number, got {value!r}")
        return value
    if annotation is str:
        if not isinstance(value, str):
            raise _fail(where, annotation, value)
        return value
    if annotation is Cap:
        if _is_bool(value) or not isinstance(value, numbers.Real) or not value > 0:
            raise _fail(where, annotation, value)
        return value
    if annotation is Asset:
        if not isinstance(value, str):
            raise _fail(where, annotation, value)
        known = _known_assets()
        if value not in known:
            hint = [a for a in known if a.lower() == value.lower()]
            also = f" (did you mean {hint[0]!r}?)" if hint else ""
            raise ValueError(f"{where}: unknown asset {value!r}{also}; known assets: {known}")
        return value
    if annotation in (dt.date, dt.datetime):
        return _date(value, annotation, where)
    if origin in (Union, types.UnionType):
        if value is None and type(None) in args:
            return value
        errors = []
        for option in args:
            if option is type(None):
                continue
            try:
                return check_value(value, option, where)
            except ValueError as exc:
                errors.append(exc)
        # an option of the right outer type with a bad value or element (an unknown asset, nan, a table with
        # a string value) says why; otherwise the message lists the options
        specific = [e for e in errors if not (isinstance(e, _WrongType) and e.where == where)]
        if len(specific) == 1:
            raise specific[0]
        raise _fail(where, annotation, value)
    if origin is Literal:
        if not any(type(value) is type(a) and value == a for a in args):
            raise _fail(where, annotation, value)
        return value
    if origin is list:
        if not isinstance(value, list | tuple):
            raise _fail(where, annotation, value)
        return [check_value(v, args[0], f"{where}[{k}]") for k, v in enumerate(value)] if args else list(value)
    if origin is tuple:
        if not isinstance(value, list | tuple):
            raise _fail(where, annotation, value)
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(check_value(v, args[0], f"{where}[{k}]") for k, v in enumerate(value))
        if args and len(value) != len(args):
            raise _fail(where, annotation, value)
        return tuple(check_value(v, a, f"{where}[{k}]") for k, (v, a) in enumerate(zip(value, args, strict=True)))
    if origin in (dict, Mapping):
        if not isinstance(value, Mapping):
            raise _fail(where, annotation, value)
        if not args:
            return dict(value)
        key_type, value_type = args
        return {check_value(k, key_type, where): check_value(v, value_type, f"{where}[{k!r}]")
                for k, v in value.items()}
    if origin is not None or not isinstance(annotation, type):
        return value  # Callable[...] and other forms: not checked here
    if not isinstance(value, annotation):
        raise _fail(where, annotation, value)
    return value


@functools.cache
def _field_types(cls: type) -> dict[str, Any]:
    """Resolved annotations of the ``__init__`` fields of ``cls``; one that cannot be resolved is not checked."""
    try:
        hints = typing.get_type_hints(cls)
    except (NameError, TypeError, AttributeError):  # e.g. a name imported only under TYPE_CHECKING
        hints = {}
        for klass in reversed(cls.__mro__):
            namespace = vars(sys.modules[klass.__module__]) if klass.__module__ in sys.modules else {}
            for name, annotation in klass.__dict__.get("__annotations__", {}).items():
                try:
                    hints[name] = eval(annotation, namespace) if isinstance(annotation, str) else annotation
                except Exception:  # an annotation that cannot be evaluated: that field is not checked
                    hints.pop(name, None)
    return {f.name: hints[f.name] for f in fields(cls) if f.init and f.name in hints}


def validate_fields(obj: Any, prefix: str | None = None) -> None:
    """Check every field of the dataclass instance ``obj`` against its annotation (see module docstring).

    A list given for a tuple annotation is replaced by a tuple (also on frozen
    dataclasses). Error messages start with ``prefix`` (default: ``obj.name``,
    else the class name), e.g. ``"static: rate must be a number, got True (bool)"``.
    """
    if not is_dataclass(obj):
        raise TypeError(f"validate_fields needs a dataclass instance, got {type(obj).__name__}")
    prefix = prefix if prefix is not None else str(getattr(obj, "name", type(obj).__name__))
    for name, annotation in _field_types(type(obj)).items():
        value = getattr(obj, name)
        checked = check_value(value, annotation, f"{prefix}: {name}")
        if checked is not value:  # a tuple for a list, a checked copy of a mapping
            object.__setattr__(obj, name, checked)


def install_field_validation(cls: type) -> None:
    """Make ``cls``'s ``__post_init__`` run :func:`validate_fields` first (for ``__init_subclass__``).

    A class defining ``__post_init__`` gets it wrapped (its own range checks then
    see values of the right type); a class without one inherits the wrapped
    method of its parent or, at the top, gets one that only validates.
    """
    own: Callable | None = cls.__dict__.get("__post_init__")
    if own is not None and getattr(own, "_validates_fields", False):
        return
    if own is None:
        if hasattr(cls, "__post_init__"):
            return

        def __post_init__(self) -> None:
            validate_fields(self)
    else:
        @functools.wraps(own)
        def __post_init__(self) -> None:
            validate_fields(self)
            own(self)

    __post_init__._validates_fields = True
    cls.__post_init__ = __post_init__
