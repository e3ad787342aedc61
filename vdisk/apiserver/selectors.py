"""Label and field selectors, as in `?labelSelector=` and `?fieldSelector=`.

Upstream: k8s.io/apimachinery pkg/labels/selector.go (Parse) and pkg/fields/selector.go
(ParseSelector), plus each registry's GetAttrs for the field labels a kind supports
(pkg/registry/core/event/strategy.go, pod/strategy.go, ...). Bad selectors are 400 BadRequest.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ..labels import label_selector_matches
from .errors import APIError, bad_request

Obj = dict[str, Any]
Predicate = Callable[[Obj], bool]

# --- labels ---------------------------------------------------------------------------------------------------

_KEY_RE = re.compile(r"^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$")
_VALUE_RE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")


@dataclass(frozen=True)
class Requirement:
    key: str
    op: str  # "=", "!=", "in", "notin", "exists", "!", "gt", "lt"
    values: tuple[str, ...] = ()

    def matches(self, labels: dict[str, str]) -> bool:
        has = self.key in labels
        if self.op == "exists":
            return has
        if self.op == "!":
            return not has
        if self.op in ("=", "in"):
            return has and labels[self.key] in self.values
        if self.op in ("!=", "notin"):
            return not has or labels[self.key] not in self.values
        if self.op in ("gt", "lt"):
            if not has:
                return False
            try:
                v = int(labels[self.key])
            except ValueError:
                return False
            bound = int(self.values[0])
            return v > bound if self.op == "gt" else v < bound
        return False


_SPECIAL = set(" \t,!=()<>")


def _tokens(text: str) -> list[str]:
    """Lexer of labels.Parse: identifiers, and the operators ! = == != ( ) , < >."""
    out: list[str] = []
    i = 0
    while i < len(text):
        c = text[i]
        if c in " \t":
            i += 1
        elif text.startswith("!=", i) or text.startswith("==", i):
            out.append(text[i:i + 2])
            i += 2
        elif c in "!=(),<>":
            out.append(c)
            i += 1
        else:
            j = i
            while j < len(text) and text[j] not in _SPECIAL:
                j += 1
            out.append(text[i:j])
            i = j
    return out


def _is_ident(tok: str | None) -> bool:
    return bool(tok) and tok not in ("!", "=", "==", "!=", "(", ")", ",", "<", ">")


def parse_label_selector(text: str) -> list[Requirement]:
    """Parse `a=b,c!=d,e in (f,g),!h,i`; raises 400 on syntax errors, as labels.Parse does."""
    toks = _tokens(text)
    if not toks:
        return []
    reqs: list[Requirement] = []
    i = 0

    def err(msg: str) -> APIError:
        return bad_request(f"unable to parse requirement: {msg}")

    def peek(k: int = 0) -> str | None:
        return toks[i + k] if i + k < len(toks) else None

    while True:
        if peek() == "!":
            if not _is_ident(peek(1)):
                raise err(f"found '{peek(1) or ''}', expected: identifier")
            _check_key(toks[i + 1])
            reqs.append(Requirement(toks[i + 1], "!"))
            i += 2
        else:
            key = peek()
            if not _is_ident(key):
                raise err(f"found '{key or ''}', expected: !, identifier, or 'end of string'")
            assert key is not None
            _check_key(key)
            i += 1
            op = peek()
            if op is None or op == ",":
                reqs.append(Requirement(key, "exists"))
            elif op in ("=", "==", "!="):
                i += 1
                val = str(peek() or "") if _is_ident(peek()) else ""
                if val:
                    i += 1
                _check_value(val)
                reqs.append(Requirement(key, "!=" if op == "!=" else "=", (val,)))
            elif op in ("in", "notin"):
                i += 1
                if peek() != "(":
                    raise err(f"found '{peek() or ''}', expected: '('")
                i += 1
                vals: list[str] = []
                if peek() == ")":
                    i += 1
                else:
                    while True:
                        v = peek()
                        if not _is_ident(v):
                            raise err(f"found '{v or ''}', expected: identifier")
                        assert v is not None
                        _check_value(v)
                        vals.append(v)
                        i += 1
                        sep = peek()
                        if sep == ",":
                            i += 1
                            continue
                        if sep == ")":
                            i += 1
                            break
                        raise err(f"found '{sep or ''}', expected: ',' or ')'")
                reqs.append(Requirement(key, op, tuple(vals)))
            elif op in (">", "<"):
                i += 1
                v = peek()
                try:
                    int(v or "")
                except ValueError:
                    raise err(f"for 'Gt', 'Lt' operators, the value must be an integer: {v}") from None
                assert v is not None
                reqs.append(Requirement(key, "gt" if op == ">" else "lt", (v,)))
                i += 1
            else:
                raise err(f"found '{op}', expected: '=', '!=', '==', 'in', notin'")
        nxt = peek()
        if nxt is None:
            return reqs
        if nxt != ",":
            raise err(f"found '{nxt}', expected: ',' or 'end of string'")
        i += 1
        if peek() is None:
            raise err("found '', expected: identifier after ','")


def _check_key(key: str) -> None:
    if len(key) > 317 or not _KEY_RE.match(key) or len(key.rpartition("/")[2]) > 63:
        raise bad_request(f"unable to parse requirement: invalid label key \"{key}\": name part must consist of "
                          "alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric "
                          "character")


def _check_value(val: str) -> None:
    if len(val) > 63 or not _VALUE_RE.match(val):
        raise bad_request(f"unable to parse requirement: invalid label value: \"{val}\": a valid label must be an "
                          "empty string or consist of alphanumeric characters, '-', '_' or '.', and must start "
                          "and end with an alphanumeric character")


def label_predicate(text: str | None) -> Predicate | None:
    if not text:
        return None
    reqs = parse_label_selector(text)
    if not reqs:
        return None

    def pred(obj: Obj) -> bool:
        labels = obj.get("metadata", {}).get("labels") or {}
        return all(r.matches(labels) for r in reqs)

    return pred


def match_label_selector_obj(selector: Obj | None, labels: dict[str, str]) -> bool:
    """A metav1.LabelSelector object (matchLabels + matchExpressions); an empty selector matches everything."""
    return label_selector_matches(selector, labels)


# --- fields ---------------------------------------------------------------------------------------------------

def _get(obj: Obj, path: str) -> str:
    cur: Any = obj
    for part in path.split("."):
        if not isinstance(cur, dict):
            return ""
        cur = cur.get(part)
        if cur is None:
            return ""
    if isinstance(cur, bool):
        return "true" if cur else "false"
    return str(cur)


def _field_getter(path: str) -> Callable[[Obj], str]:
    return lambda o: _get(o, path)


def _event_source(obj: Obj) -> str:
    src = obj.get("source") or {}
    return src.get("component") or obj.get("reportingComponent") or ""


# Field labels per (group, plural) beyond metadata.name/metadata.namespace, with how to read them.
FIELD_LABELS: dict[tuple[str, str], dict[str, Callable[[Obj], str]]] = {
    ("", "events"): {
        **{f"involvedObject.{f}": _field_getter(f"involvedObject.{f}")
           for f in ("kind", "namespace", "name", "uid", "apiVersion", "resourceVersion", "fieldPath")},
        "reason": lambda o: _get(o, "reason"),
        "reportingComponent": lambda o: _get(o, "reportingComponent"),
        "source": _event_source,
        "type": lambda o: _get(o, "type"),
    },
    ("events.k8s.io", "events"): {
        **{f"regarding.{f}": _field_getter(f"involvedObject.{f}")
           for f in ("kind", "namespace", "name", "uid", "apiVersion", "resourceVersion", "fieldPath")},
        "reason": lambda o: _get(o, "reason"),
        "reportingController": lambda o: _get(o, "reportingComponent"),
        "type": lambda o: _get(o, "type"),
    },
    ("", "pods"): {
        "spec.nodeName": lambda o: _get(o, "spec.nodeName"),
        "spec.restartPolicy": lambda o: _get(o, "spec.restartPolicy"),
        "spec.schedulerName": lambda o: _get(o, "spec.schedulerName"),
        "spec.serviceAccountName": lambda o: _get(o, "spec.serviceAccountName"),
        "status.phase": lambda o: _get(o, "status.phase"),
        "status.podIP": lambda o: _get(o, "status.podIP"),
        "status.nominatedNodeName": lambda o: _get(o, "status.nominatedNodeName"),
    },
    ("", "secrets"): {"type": lambda o: _get(o, "type")},
    ("", "namespaces"): {"status.phase": lambda o: _get(o, "status.phase")},
    ("", "nodes"): {"spec.unschedulable": lambda o: _get(o, "spec.unschedulable") or "false"},
    ("", "persistentvolumeclaims"): {},
    ("", "persistentvolumes"): {},
}


def _split_unescaped(text: str, sep: str) -> list[str]:
    out, cur, esc = [], [], False
    for ch in text:
        if esc:
            cur.append(ch)
            esc = False
        elif ch == "\\":
            cur.append(ch)
            esc = True
        elif ch == sep:
            out.append("".join(cur))
            cur = []
        else:
            cur.append(ch)
    out.append("".join(cur))
    return out


def _unescape(v: str) -> str:
    """fields.UnescapeValue: only \\\\, \\, and \\= are escapes; a bare = or , is an error."""
    out = []
    i = 0
    while i < len(v):
        c = v[i]
        if c == "\\":
            if i + 1 >= len(v):
                raise bad_request(f"invalid field selector: unterminated escape sequence in {v!r}")
            n = v[i + 1]
            if n not in "\\,=":
                raise bad_request(f"invalid field selector: invalid escape sequence \\{n} in {v!r}")
            out.append(n)
            i += 2
            continue
        if c in ",=":
            raise bad_request(f"invalid field selector: unescaped {c} in value {v!r}")
        out.append(c)
        i += 1
    return "".join(out)


def field_predicate(text: str | None, rid: tuple[str, str], selectable: dict[str, str] | None = None
                    ) -> Predicate | None:
    """Parse `metadata.name=x,involvedObject.kind!=Pod` for one resource; 400 on unknown field labels.

    `selectable` maps extra field labels to object paths (CRD spec.selectableFields).
    """
    if not text or not text.strip():
        return None
    getters = dict(FIELD_LABELS.get(rid, {}))
    for label, path in (selectable or {}).items():
        getters[label] = _field_getter(path)
    terms: list[tuple[Callable[[Obj], str], bool, str]] = []
    for term in _split_unescaped(text, ","):
        if not term:
            continue
        m = re.match(r"^(.*?)(==|!=|=)(.*)$", term)
        if not m:
            raise bad_request(f"invalid selector: '{text}'; can't understand '{term}'")
        field, op, value = m.group(1).strip(), m.group(2), _unescape(m.group(3))
        if field == "metadata.name":
            getter: Callable[[Obj], str] = lambda o: o.get("metadata", {}).get("name", "")  # noqa: E731
        elif field == "metadata.namespace":
            getter = lambda o: o.get("metadata", {}).get("namespace", "")  # noqa: E731
        elif field in getters:
            getter = getters[field]
        else:
            raise bad_request(f'"{field}" is not a known field selector: only "metadata.name", "metadata.namespace"'
                              if not getters else f"field label not supported: {field}")
        terms.append((getter, op == "!=", value))

    def pred(obj: Obj) -> bool:
        for getter, negate, value in terms:
            if (getter(obj) == value) == negate:
                return False
        return True

    return pred


def exact_name(text: str | None) -> str | None:
    """The name if the field selector is exactly `metadata.name=X` (a cheap direct lookup)."""
    if not text:
        return None
    m = re.fullmatch(r"metadata\.name==?([^,\\]+)", text.strip())
    return m.group(1) if m else None
