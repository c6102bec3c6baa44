"""Money: one way to compare dollar amounts, one way to show them, and the least an attempt may bill.

Every limit check uses MONEY_EPSILON, so float sums of dollars never flip a decision at the exact
limit; every person-facing amount goes through ``usd``, so a tiny estimate never prints as $0.00.
"""

from __future__ import annotations

import math

from tools.core.errors import GuardRefusal

# Float sums of dollar amounts must not flip a decision at the exact limit.
MONEY_EPSILON = 1e-9
# What an attempt may bill beyond its time limit: start-up before the clock and the grace of the kill.
HOLD_MARGIN_S = 30.0
# An attempt whose time limit (cut to what the budget left can pay) is under this multiple of its
# estimate would most likely be stopped before it finishes: that money is refused, not risked.
MIN_TIME_COVER = 1.25
DASH = "—"


SMALLEST_SHOWN = 0.0001  # an amount above zero but under this reads "under $0.0001", never "$0.0000"


def usd(value: float | None) -> str:
    """Dollars with enough digits that a cent's fraction shows: $0.0092, $0.50, $12.00; — when unknown; a positive
    amount too small for four decimals says so rather than print as nothing."""
    if value is None:
        return DASH
    if value == 0 or abs(value) >= 0.1:
        return f"${value:,.2f}"
    if abs(value) < SMALLEST_SHOWN:
        return f"{'-' if value < 0 else ''}under ${SMALLEST_SHOWN:.4f}"
    return f"${value:,.4f}"


def minimum_hold_usd(estimated_seconds: float, price_usd_per_s: float) -> float:
    """The least an attempt must be allowed to bill: a time limit of MIN_TIME_COVER x its estimate, plus margin."""
    return (MIN_TIME_COVER * estimated_seconds + HOLD_MARGIN_S) * price_usd_per_s


def require_price(price_usd_per_s: object, what: str) -> float:
    """A price Aegis can state, or a refusal: an unknown price is never billed as $0."""
    if (
        isinstance(price_usd_per_s, bool)
        or not isinstance(price_usd_per_s, int | float)
        or not math.isfinite(price_usd_per_s)
        or price_usd_per_s < 0
    ):
        raise GuardRefusal(
            f"no price can be stated for {what} (got {price_usd_per_s!r}); Aegis refuses rather than bill it as "
            "$0: give it a price (the GPU catalog, or the backend's price) and estimate again"
        )
    return float(price_usd_per_s)
