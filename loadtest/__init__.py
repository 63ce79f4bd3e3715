"""The Locust load test for Pub/Sub: scenario users that publish the generator's events, reconcilable like a
`workbench publish` run (the same run manifest).

    locust -f loadtest/locustfile.py --headless -u 50 -r 10 -t 60s      # plain Locust, options: --help
    workbench loadtest --users 50 --spawn-rate 10 --run-time 60s          # the same with reports and a manifest

gevent and gRPC: Locust patches the standard library with gevent when `locust` is imported, so it must be
imported before grpc; loadtest.client then calls grpc.experimental.gevent.init_gevent() so that gRPC's blocking
calls yield to other users instead of blocking the hub. Every publish is a blocking unary call made by the user's
own greenlet (no background threads or futures, which is what crashed the official client under gevent,
locust issue #2692), over a channel the user opens in on_start.
"""
