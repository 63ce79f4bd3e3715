"""The hand-built delivery responses parse as the real protobuf messages (pure)."""

from __future__ import annotations

import pytest
from google.protobuf.internal.encoder import _VarintBytes
from google.pubsub_v1.types import PubsubMessage, PullResponse, StreamingPullResponse

from emulator.pubsub.wire import pull_response, received_message, varint


@pytest.mark.parametrize("value", [0, 1, 127, 128, 300, 16383, 16384, 2**31 - 1, 2**40])
def test_varint_matches_protobuf(value):
    assert varint(value) == _VarintBytes(value)


@pytest.mark.parametrize("response_class", [PullResponse, StreamingPullResponse])
def test_responses_parse_as_protobuf(response_class):
    big = PubsubMessage.pb()(data=b"x" * 70_000, message_id="7", attributes={"k": "v"}).SerializeToString()
    small = PubsubMessage.pb()(data=b"y", message_id="8").SerializeToString()
    raw = pull_response([received_message(b"7-1", big, 3), received_message(b"8-2", small)])
    parsed = response_class.pb().FromString(raw)
    first, second = parsed.received_messages
    assert (first.ack_id, first.delivery_attempt, len(first.message.data)) == ("7-1", 3, 70_000)
    assert dict(first.message.attributes) == {"k": "v"}
    assert (second.ack_id, second.delivery_attempt, second.message.message_id) == ("8-2", 0, "8")


def test_empty_response_is_empty_bytes():
    assert pull_response([]) == b""
    assert PullResponse.pb().FromString(b"").received_messages == []


def test_ordered_subscription_properties_parse():
    from emulator.pubsub.subscriber_service import ORDERED_PROPERTIES

    message = PubsubMessage.pb()(data=b"x").SerializeToString()
    parsed = StreamingPullResponse.pb().FromString(
        pull_response([received_message(b"1-1", message)]) + ORDERED_PROPERTIES
    )
    assert parsed.subscription_properties.message_ordering_enabled
    assert not parsed.subscription_properties.exactly_once_delivery_enabled
    assert len(parsed.received_messages) == 1
