"""Load shapes, chosen with --shape, meaning what `workbench publish --profile` means, in users over time.

They use Locust's common options (-u users, -r spawn rate, -t run time) as the scale:
    steady   -u users for the whole run (after ramping at -r)
    step     a quarter of -u more every quarter of the run
    ramp     from one user to -u linearly over the run
    spike    -u / 4 users, with -u for the middle fifth of the run
"""

from __future__ import annotations

from locust import LoadTestShape

from loadtest.profiles import users_at

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
