"""Locust's LoadTestShape for --shape, on Locust's common options (-u users, -r spawn rate, -t run time).

What each shape means (users over the run, as `workbench publish --profile` means it) is written once, in the
pure loadtest/shape_curves.py; this class only asks it, every tick.
"""

from __future__ import annotations

from locust import LoadTestShape

from loadtest.shape_curves import users_at

DEFAULT_RUN_TIME_S = 60


class WorkbenchShape(LoadTestShape):
    use_common_options = True

    def tick(self):
        options = self.runner.environment.parsed_options
        users = max(1, int(options.num_users or 1))
        spawn_rate = float(options.spawn_rate or users)
        run_time = float(options.run_time or DEFAULT_RUN_TIME_S)
        now = self.get_run_time()
        if now >= run_time:
            return None
        return users_at(options.shape, now / run_time, users), spawn_rate
