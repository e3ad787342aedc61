"""The JSONPath subset of CRD printer columns, compiled once and evaluated fast.

Upstream: k8s.io/client-go/util/jsonpath as used by apiextensions-apiserver's table convertor
(`.status.phase`, `.status.conditions[?(@.type=='Ready')].status`, `.status.interfaces[0].ipAddress`).
A compiled path is a list of steps; evaluating it is a few dict lookups, which matters when a Table
of 10,000 objects evaluates three columns each (a general JSONPath library costs ~20 µs a lookup).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

Step = Callable[[list[Any]], list[Any]]


class JSONPathError(ValueError):
    pass


def _field(name: str) -> Step:
    def step(values: list[Any]) -> list[Any]:
        out = []
        for v in values:
            if isinstance(v, dict) and name in v:
                out.append(v[name])
        return out

    return step


def _wildcard(values: list[Any]) -> list[Any]:
    out: list[Any] = []
    for v in values:
        if isinstance(v, dict):
            out.extend(v.values())
        elif isinstance(v, list):
            out.extend(v)
    return out


def _index(idx: int) -> Step:
    def step(values: list[Any]) -> list[Any]:
        out = []
        for v in values:
            if isinstance(v, list) and -len(v) <= idx < len(v):
                out.append(v[idx])
        return out

    return step


def _slice(start: int | None, stop: int | None) -> Step:
    def step(values: list[Any]) -> list[Any]:
        out: list[Any] = []
        for v in values:
            if isinstance(v, list):
                out.extend(v[start:stop])
        return out

    return step


def _recursive(name: str) -> Step:
    def visit(v: Any, out: list[Any]) -> None:
        if isinstance(v, dict):
            if name in v:
                out.append(v[name])
            for child in v.values():
                visit(child, out)
        elif isinstance(v, list):
            for child in v:
                visit(child, out)

    def step(values: list[Any]) -> list[Any]:
        out: list[Any] = []
        for v in values:
            visit(v, out)
        return out

    return step


_FILTER_RE = re.compile(r"^\?\(\s*@((?:\.[A-Za-z0-9_\-/]+)+)\s*(?:(==|!=|<=|>=|<|>)\s*(.+?))?\s*\)$")


def _literal(text: str) -> Any:
    text = text.strip()
    if (text.startswith("'") and text.endswith("'")) or (text.startswith('"') and text.endswith('"')):
        return text[1:-1]
    if text == "true":
        return True
    if text == "false":
        return False
    try:
        return int(text)
    except ValueError:
        pass
    try:
        return float(text)
    except ValueError:
        raise JSONPathError(f"unrecognized literal {text!r}") from None


def _filter(expr: str) -> Step:
    m = _FILTER_RE.match(expr)
    if not m:
        raise JSONPathError(f"unsupported filter {expr!r}")
    path = [p for p in m.group(1).split(".") if p]
    op = m.group(2)
    want = _literal(m.group(3)) if op else None

    def get(item: Any) -> tuple[bool, Any]:
        cur = item
        for p in path:
            if not isinstance(cur, dict) or p not in cur:
                return False, None
            cur = cur[p]
        return True, cur

    def test(item: Any) -> bool:
        ok, val = get(item)
        if not ok:
            return False
        if op is None:
            return True
        try:
            if op == "==":
                return bool(val == want)
            if op == "!=":
                return bool(val != want)
            if op == "<":
                return bool(val < want)
            if op == ">":
                return bool(val > want)
            if op == "<=":
                return bool(val <= want)
            if op == ">=":
                return bool(val >= want)
        except TypeError:
            return False
        return False

    def step(values: list[Any]) -> list[Any]:
        out: list[Any] = []
        for v in values:
            items = v if isinstance(v, list) else (list(v.values()) if isinstance(v, dict) else [])
            out.extend(i for i in items if test(i))
        return out

    return step


def compile_path(path: str) -> Callable[[Any], list[Any]]:
    """Compile `.a.b[0]`, `{.a.b}` or `$.a.b` into a function returning all matches."""
    text = path.strip()
    if text.startswith("{") and text.endswith("}"):
        text = text[1:-1].strip()
    if text.startswith("$"):
        text = text[1:]
    steps: list[Step] = []
    i = 0
    while i < len(text):
        c = text[i]
        if c == ".":
            if text.startswith("..", i):
                m = re.match(r"[A-Za-z0-9_\-/]+", text[i + 2:])
                if not m:
                    raise JSONPathError(f"invalid recursive descent in {path!r}")
                steps.append(_recursive(m.group(0)))
                i += 2 + m.end()
                continue
            m = re.match(r"\*|[A-Za-z0-9_\-/]+", text[i + 1:])
            if not m:
                if i + 1 == len(text):  # a lone "." is the object itself
                    i += 1
                    continue
                raise JSONPathError(f"invalid field at {i} in {path!r}")
            steps.append(_wildcard if m.group(0) == "*" else _field(m.group(0)))
            i += 1 + m.end()
        elif c == "[":
            depth, j = 0, i
            while j < len(text):
                if text[j] == "[":
                    depth += 1
                elif text[j] == "]":
                    depth -= 1
                    if depth == 0:
                        break
                j += 1
            if j >= len(text):
                raise JSONPathError(f"unterminated [ in {path!r}")
            inner = text[i + 1:j].strip()
            if inner == "*":
                steps.append(_wildcard)
            elif inner.startswith("?"):
                steps.append(_filter(inner))
            elif (inner.startswith("'") and inner.endswith("'")) or (inner.startswith('"') and inner.endswith('"')):
                steps.append(_field(inner[1:-1]))
            elif ":" in inner:
                a, b = (inner.split(":", 1) + [""])[:2]
                steps.append(_slice(int(a) if a.strip() else None, int(b) if b.strip() else None))
            else:
                try:
                    steps.append(_index(int(inner)))
                except ValueError:
                    raise JSONPathError(f"invalid index {inner!r} in {path!r}") from None
            i = j + 1
        elif c.isspace():
            i += 1
        else:
            m = re.match(r"[A-Za-z0-9_\-/]+", text[i:])
            if not m or i != 0:
                raise JSONPathError(f"unexpected {c!r} at {i} in {path!r}")
            steps.append(_field(m.group(0)))
            i += m.end()

    def evaluate(obj: Any) -> list[Any]:
        values = [obj]
        for step in steps:
            values = step(values)
            if not values:
                return []
        return values

    return evaluate
