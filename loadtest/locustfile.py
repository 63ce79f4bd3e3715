"""The Locust load test for Pub/Sub (thin: the users, shape, options and manifest live beside it in loadtest/).

    locust -f loadtest/locustfile.py --headless -u 50 -r 10 -t 60s --emulator-host 127.0.0.1:8085
    workbench loadtest --users 50 --spawn-rate 10 --run-time 60s      # reports, manifest, optional reconcile

`locust` is imported first: it patches the standard library with gevent, which must happen before grpc loads.

Locust's web UI and its master listen on every interface by default; here both default to loopback
(--web-host / --master-bind-host, or LOCUST_WEB_HOST / LOCUST_MASTER_BIND_HOST, choose otherwise, with a warning).
"""

import locust  # noqa: F401  (first: gevent's monkey patching before grpc is imported)
from locust import events

from loadtest import options as workbench_options
from loadtest import run_manifest
from loadtest.shapes import WorkbenchShape  # noqa: F401  (Locust picks up the shape class from this module)
from loadtest.users import InventoryUser, OrderUser, SessionUser, build_universe_before_the_run  # noqa: F401


@events.init_command_line_parser.add_listener
def _options(parser):
    workbench_options.add_options(parser)
    workbench_options.listen_on_loopback(parser)


@events.init.add_listener
def _check(environment, **_):
    workbench_options.check(environment.parsed_options)
    workbench_options.warn_if_exposed(environment.parsed_options)
    run_manifest.name_run(environment)  # the master's run id reaches its workers with their first spawn message
    build_universe_before_the_run(environment)


@events.test_start.add_listener
def _started(environment, **_):
    run_manifest.write(environment, "running")


@events.test_stop.add_listener
def _stopped(environment, **_):
    run_manifest.close_log(environment)


@events.quitting.add_listener
def _quitting(environment, **_):
    run_manifest.close_log(environment)
    run_manifest.write(environment, "completed")
