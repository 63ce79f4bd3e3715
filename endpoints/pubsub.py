"""gRPC channels and google-cloud-pubsub clients for the Pub/Sub emulator at HOST:PORT, or for Pub/Sub itself
(emulator None: Application Default Credentials).

Every channel here lifts gRPC's 4 MiB message limit: a pull of 1,000 large messages exceeds it (the client would
fail every pull), and a publish request may carry 10 MB.
"""

from __future__ import annotations

from typing import Any

PUBSUB_ENDPOINT = "pubsub.googleapis.com:443"
PUBSUB_SCOPES = ("https://www.googleapis.com/auth/pubsub",)
UNLIMITED_MESSAGES = (("grpc.max_send_message_length", -1), ("grpc.max_receive_message_length", -1))


def pubsub_channel(emulator: str | None) -> Any:
    """A grpc.Channel: insecure loopback to the emulator at HOST:PORT, or authenticated (ADC) to Pub/Sub."""
    import grpc

    if emulator:
        return grpc.insecure_channel(emulator, options=list(UNLIMITED_MESSAGES))
    import google.auth
    from google.api_core import grpc_helpers

    credentials, _ = google.auth.default(scopes=PUBSUB_SCOPES)
    return grpc_helpers.create_channel(PUBSUB_ENDPOINT, credentials=credentials, options=list(UNLIMITED_MESSAGES))


def publisher_client(emulator: str | None) -> Any:
    """pubsub_v1.PublisherClient for the emulator at HOST:PORT, or for Pub/Sub itself."""
    from google.cloud import pubsub_v1

    if not emulator:
        return pubsub_v1.PublisherClient()
    from google.pubsub_v1.services.publisher.transports import PublisherGrpcTransport

    return pubsub_v1.PublisherClient(transport=PublisherGrpcTransport(channel=pubsub_channel(emulator)))


def subscriber_client(emulator: str | None) -> Any:
    """pubsub_v1.SubscriberClient for the emulator at HOST:PORT, or for Pub/Sub itself."""
    from google.cloud import pubsub_v1

    if not emulator:
        return pubsub_v1.SubscriberClient()
    from google.pubsub_v1.services.subscriber.transports import SubscriberGrpcTransport

    return pubsub_v1.SubscriberClient(transport=SubscriberGrpcTransport(channel=pubsub_channel(emulator)))
