"""HyperConverged admission: the one HCO lives in openshift-cnv.

Upstream: hyperconverged-cluster-operator pkg/webhooks/validator (ValidateCreate: "invalid namespace for
v1beta1.HyperConverged - please use the openshift-cnv namespace").
"""

from __future__ import annotations

from ..errors import FieldError, cause
from . import Request, validator

HCO_NAMESPACE = "openshift-cnv"


@validator("hco.kubevirt.io", "hyperconvergeds", operations=("CREATE",))
def validate_hco(req: Request) -> list[FieldError]:
    if req.namespace != HCO_NAMESPACE:
        return [cause("metadata.namespace", "invalid namespace for v1beta1.HyperConverged - please use the "
                      f"{HCO_NAMESPACE} namespace")]
    return []
