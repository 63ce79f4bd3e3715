"""A Pub/Sub emulator speaking the real google.pubsub.v1 gRPC API, with fault injection and optional durability.

Run it with `python -m emulator.pubsub --port 8085` or `workbench emulator pubsub`, then point any client at it
with `PUBSUB_EMULATOR_HOST=127.0.0.1:8085`. From Python: `emulator.pubsub.server.start(port=0)`.
"""
