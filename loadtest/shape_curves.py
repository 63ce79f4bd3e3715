"""Users over the run for each --shape: pure (no Locust import), so the meaning is testable and documented.

steady   -u users for the whole run (after ramping at -r)
step     a quarter of -u more every quarter of the run
ramp     from one user to -u linearly over the run
spike    -u / 4 users, with -u for the middle fifth of the run
"""

from __future__ import annotations

import math


def users_at(shape: str, progress: float, users: int) -> int:
    """Users at `progress` (0..1) of the run for a shape of at most `users` users; pure, for tests and docs."""
    if shape == "step":
        return max(1, math.ceil(users * (min(3, int(progress * 4)) + 1) / 4))
    if shape == "ramp":
        return max(1, round(1 + (users - 1) * progress))
    if shape == "spike":
        return users if 0.4 <= progress < 0.6 else max(1, users // 4)
    return users
