"""Resource-name validation (pure): the official id rules and INVALID_ARGUMENT messages."""

from __future__ import annotations

import pytest

from emulator.pubsub import names
from emulator.pubsub.errors import PubSubError


@pytest.mark.parametrize(
    "name",
    [
        "projects/p/topics/abc",
        "projects/my-project/topics/backend-events-topic",
        "projects/p/topics/A.b_c~d+e%f-g",
        "projects/p/topics/" + "a" * 255,
    ],
)
def test_valid_topic_names(name):
    assert names.topic_name(name)[0] == name.split("/")[1]


@pytest.mark.parametrize(
    "name",
    [
        "projects/p/topics/ab",  # too short
        "projects/p/topics/" + "a" * 256,  # too long
        "projects/p/topics/1abc",  # must start with a letter
        "projects/p/topics/goog-reserved",
        "projects/p/topics/has space",
        "projects/p/topics/slash/extra",
        "projects/p/subscriptions/abc",  # wrong collection
        "projects//topics/abc",
        "topics/abc",
        "",
    ],
)
def test_invalid_topic_names(name):
    with pytest.raises(PubSubError) as raised:
        names.topic_name(name)
    assert raised.value.code.name == "INVALID_ARGUMENT"
    assert raised.value.message == f"Invalid [topics] name: (name={name})"


def test_subscription_names():
    assert names.subscription_name("projects/p/subscriptions/backend-events-topic-sub") == (
        "p",
        "backend-events-topic-sub",
    )
    with pytest.raises(PubSubError):
        names.subscription_name("projects/p/topics/abc")


def test_project_names():
    assert names.project_name("projects/p") == "p"
    with pytest.raises(PubSubError):
        names.project_name("projects/p/topics")
