"""Parameter changes while the node runs: which take effect live, and the reason a change is refused.

Unconfigured, any change is taken (it takes effect at configure) unless it introduces an error that validation
would report at configure. Configured (inactive or active), the LIVE parameters are validated and applied at
once; any other change is refused with "takes effect at configure; reconfigure the node" rather than accepted
and ignored. The memory_* parameters are all configure-only: the memory's frame, thresholds and pose
subscription are built at configure, and changing a threshold under remembered objects would mix two models. diagnostics_period_s drives a timer that exists in every state, so it is live in every state.
"""

from __future__ import annotations

from typing import Optional

from ..core.types import InputError
from .params import PARAMETERS, check_bounds, validate

LIVE = frozenset({
    "max_frame_age_s", "max_future_stamp_s", "query_timeout_s", "tf_timeout_s", "sync_slop_s",
    "no_input_warning_s", "detection_rate_hz", "detection_prompt", "publish_debug_image", "max_queued_queries",
    "diagnostics_period_s",
})
ALWAYS_LIVE = frozenset({"diagnostics_period_s"})


def _validation_error(values: dict, node_name: str, namespace: str) -> Optional[str]:
    try:
        validate(values, node_name, namespace)
    except InputError as exc:
        return str(exc)
    return None


def refusal(changes: dict, current: dict, configured: bool, node_name: str, namespace: str) -> Optional[str]:
    """None when ``changes`` (name -> new value) may be made, else why not. Names that are not the node's own
    parameters (use_sim_time, ...) are not judged here."""
    ours = {name: value for name, value in changes.items() if name in PARAMETERS}
    for name in ours.keys() & ALWAYS_LIVE:
        try:
            check_bounds(name, ours[name])
        except InputError as exc:
            return str(exc)
    if configured:
        frozen = sorted(ours.keys() - LIVE)
        if frozen:
            return (f"parameter {', '.join(frozen)} takes effect at configure; reconfigure the node (deactivate and "
                    "cleanup it, set the parameter, then configure and activate). Live parameters: "
                    + ", ".join(sorted(LIVE)))
    if not ours.keys() - ALWAYS_LIVE:
        return None
    after = _validation_error({**current, **ours}, node_name, namespace)
    if after is None or (not configured and after == _validation_error(current, node_name, namespace)):
        return None  # unconfigured: an error that was already there is configure's to report
    return after
