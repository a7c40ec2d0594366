"""A model's methodology for a reader: formula, parameters, sources, known limitations.

:meth:`MarginModel.methodology() <marginlab.models.MarginModel.methodology>` builds a
:class:`Methodology` from what every model already has, so that a new model gets one
for free:

* the **summary** is the first line of the class docstring, the **description** its
  prose (reStructuredText roles such as ``:math:`...``` and ``:data:`~x.y``` reduced to
  their text);
* the **formula** is every ``.. math::`` block of the docstring, in order (LaTeX as
  written);
* the **parameters** are the dataclass fields: value, default, declared type and the
  description given for that name in the docstring's numpydoc ``Parameters`` section
  (empty when the docstring does not describe it);
* the **sources** are the items of a ``References`` section, and sentences that
  start with "Reference", "Source" or "Sources";
* the **limitations** are the items of a ``Limitations`` section, and paragraphs or
  bullets that state one ("not modelled", "limitation", "unverified", "approximation",
  "simplified", "inferred", "not applicable").

A model may override any of it by defining the class attributes ``sources`` or
``limitations`` (tuples of strings) or by overriding ``methodology()``.
"""

from __future__ import annotations

import dataclasses
import inspect
import re
from dataclasses import dataclass
from typing import Any

__all__ = ["Methodology", "ParameterDoc", "methodology_of", "plain_text", "class_summary"]

_SECTION = re.compile(r"^(?P<title>[A-Z][A-Za-z ]+)\n-{3,}\s*$", re.MULTILINE)
_ROLE = re.compile(r":(?:math|data|class|func|meth|attr|mod|obj|ref):`~?([^`]*)`")
_LIMITS = re.compile(r"not modelled|limitation|unverified|approximation|simplif|inferred|not applicable"
                     r"|does \*\*not apply\*\*|does not apply", re.IGNORECASE)
_SOURCE_START = re.compile(r"^(References?|Sources?)\s*:\s*", re.IGNORECASE)


@dataclass(frozen=True)
class ParameterDoc:
    """One parameter of a model: name, value in this model, class default, declared type, description."""

    name: str
    value: Any
    default: Any
    type: str
    description: str = ""

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (values as their ``repr`` when not plain JSON scalars)."""
        return {"name": self.name, "value": _jsonable(self.value), "default": _jsonable(self.default),
                "type": self.type, "description": self.description}


@dataclass(frozen=True)
class Methodology:
    """What a reader needs to know about a model (see module docstring)."""

    name: str
    summary: str
    description: str
    formula: tuple[str, ...]
    parameters: tuple[ParameterDoc, ...]
    sources: tuple[str, ...]
    limitations: tuple[str, ...]
    tail_prob: float | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict."""
        return {"name": self.name, "summary": self.summary, "description": self.description,
                "formula": list(self.formula), "parameters": [p.to_dict() for p in self.parameters],
                "sources": list(self.sources), "limitations": list(self.limitations), "tail_prob": self.tail_prob}


def _jsonable(value: Any) -> Any:
    if value is None or isinstance(value, bool | int | float | str):
        return value
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    return repr(value)


def plain_text(text: str) -> str:
    """ReStructuredText prose as plain text: roles reduced to their content, ``literals`` and **bold** unwrapped."""
    text = _ROLE.sub(lambda m: m.group(1).split(".")[-1] if m.group(0).startswith((":data", ":class", ":func",
                                                                                   ":meth", ":attr", ":mod",
                                                                                   ":obj", ":ref"))
                     else m.group(1), text)
    text = re.sub(r"``([^`]*)``", r"\1", text)
    text = re.sub(r"\*\*([^*]+)\*\*", r"\1", text)
    return text


def _sections(doc: str) -> tuple[str, dict[str, str]]:
    """The docstring's body (before the first numpydoc section) and its sections (title -> text)."""
    matches = list(_SECTION.finditer(doc))
    if not matches:
        return doc, {}
    body = doc[:matches[0].start()]
    out = {}
    for k, m in enumerate(matches):
        end = matches[k + 1].start() if k + 1 < len(matches) else len(doc)
        out[m.group("title").strip()] = doc[m.end():end].strip("\n")
    return body, out


def _math_blocks(body: str) -> tuple[str, list[str]]:
    """Remove ``.. math::`` blocks from ``body``; return the rest and the blocks' LaTeX."""
    lines, formulas, k = body.splitlines(), [], 0
    rest: list[str] = []
    while k < len(lines):
        line = lines[k]
        m = re.match(r"^(\s*)\.\. math::\s*(.*)$", line)
        if m is None:
            rest.append(line)
            k += 1
            continue
        indent, block = len(m.group(1)), [m.group(2)] if m.group(2).strip() else []
        k += 1
        while k < len(lines) and (not lines[k].strip() or len(lines[k]) - len(lines[k].lstrip()) > indent):
            block.append(lines[k].strip())
            k += 1
        formula = " ".join(b for b in block if b)
        if formula:
            formulas.append(formula)
    return "\n".join(rest), formulas


def _paragraphs(text: str) -> list[str]:
    """Paragraphs and bullet items of reStructuredText prose, each as one line of plain text."""
    items: list[str] = []
    current: list[str] = []

    def flush() -> None:
        if current:
            items.append(plain_text(" ".join(current)).strip())
            current.clear()

    for line in text.splitlines():
        s = line.strip()
        if not s:
            flush()
        elif s.startswith(("* ", "- ")):
            flush()
            current.append(s[2:])
        else:
            current.append(s)
    flush()
    return [p for p in items if p]


def _parameter_docs(section: str) -> dict[str, str]:
    """Numpydoc ``Parameters`` section: name -> description (one line)."""
    out: dict[str, str] = {}
    names: list[str] = []
    desc: list[str] = []

    def flush() -> None:
        for n in names:  # "var, es : float" documents two names with one description
            out[n] = plain_text(" ".join(desc)).strip()

    for line in section.splitlines():
        if line and not line.startswith(" "):
            flush()
            names, desc = [n.strip() for n in line.split(":")[0].split(",") if n.strip()], []
        elif names:
            desc.append(line.strip())
    flush()
    return out


def _type_name(annotation: Any) -> str:
    if isinstance(annotation, str):
        return annotation
    return getattr(annotation, "__name__", None) or str(annotation).replace("typing.", "")


def _parsed(cls: type) -> tuple[list[str], list[str], dict[str, str], dict[str, str]]:
    """A class docstring's paragraphs, formulas, sections and parameter descriptions."""
    body, sections = _sections(inspect.cleandoc(cls.__doc__ or ""))
    prose, formulas = _math_blocks(body)
    return _paragraphs(prose), formulas, sections, _parameter_docs(sections.get("Parameters", ""))


def methodology_of(model: Any) -> Methodology:
    """The :class:`Methodology` of a model instance, from its class docstring and its fields."""
    cls = type(model)
    paragraphs, formulas, sections, described = _parsed(cls)
    summary = paragraphs[0] if paragraphs else cls.__name__
    params = []
    for f in dataclasses.fields(model):
        default = f.default if f.default is not dataclasses.MISSING else (
            f.default_factory() if f.default_factory is not dataclasses.MISSING else None)
        params.append(ParameterDoc(name=f.name, value=getattr(model, f.name), default=default,
                                   type=_type_name(f.type), description=described.get(f.name, "")))
    sources = list(getattr(cls, "sources", ()) or ())
    if not sources:
        sources = _paragraphs(sections.get("References", ""))
        for p in paragraphs:
            for sentence in re.split(r"(?<=\.)\s+(?=[A-Z])", p):
                if _SOURCE_START.match(sentence):
                    sources.append(_SOURCE_START.sub("", sentence).strip())
    limitations = list(getattr(cls, "limitations", ()) or ())
    if not limitations:
        limitations = _paragraphs(sections.get("Limitations", ""))
        limitations += [p for p in paragraphs[1:] if _LIMITS.search(p) and p not in limitations]
    description = "\n\n".join(p for p in paragraphs[1:] if not _SOURCE_START.match(p))
    tail = getattr(model, "tail_prob", None)
    return Methodology(name=getattr(cls, "name", cls.__name__), summary=summary, description=description,
                       formula=tuple(formulas), parameters=tuple(params), sources=tuple(dict.fromkeys(sources)),
                       limitations=tuple(dict.fromkeys(limitations)),
                       tail_prob=None if tail is None else float(tail))


def class_summary(cls: type) -> tuple[str, list[ParameterDoc]]:
    """A registered class's one-line description and its parameters (defaults, types, descriptions).

    Works on the class (nothing is built), for models and overlays alike: the first paragraph of the
    docstring and the dataclass fields.
    """
    paragraphs, _, _, described = _parsed(cls)
    summary = paragraphs[0] if paragraphs else cls.__name__
    params = []
    for f in dataclasses.fields(cls) if dataclasses.is_dataclass(cls) else ():
        default = f.default if f.default is not dataclasses.MISSING else (
            f.default_factory() if f.default_factory is not dataclasses.MISSING else dataclasses.MISSING)
        params.append(ParameterDoc(name=f.name, value=default, default=default, type=_type_name(f.type),
                                   description=described.get(f.name, "")))
    return summary, params
