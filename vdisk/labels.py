"""metav1.LabelSelector matching (matchLabels + matchExpressions), shared by the API server and controllers.

Upstream: k8s.io/apimachinery pkg/apis/meta/v1/helpers.go LabelSelectorAsSelector.
"""

from __future__ import annotations

from typing import Any


def label_selector_matches(selector: dict[str, Any] | None, labels: dict[str, str]) -> bool:
    """An empty or missing selector matches everything."""
    if not selector:
        return True
    for k, v in (selector.get("matchLabels") or {}).items():
        if labels.get(k) != v:
            return False
    for expr in selector.get("matchExpressions") or []:
        op = expr.get("operator")
        key = expr.get("key")
        values = expr.get("values") or []
        if op == "In" and labels.get(key) not in values:
            return False
        if op == "NotIn" and key in labels and labels[key] in values:
            return False
        if op == "Exists" and key not in labels:
            return False
        if op == "DoesNotExist" and key in labels:
            return False
    return True
