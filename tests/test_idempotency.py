"""Idempotency keys of tool calls in runs: what makes two calls the same call."""

from __future__ import annotations

import pytest
from a2a.types import Message

from agentmesh import UserError
from agentmesh._private.idempotency import (
    IdempotencyScope,
    read_idempotency,
    stamp_idempotency,
)
from agentmesh.protocols.a2a_tasks import META_KEY


def keys(scope: IdempotencyScope, calls: list[tuple[str, dict[str, object]]]) -> list[str]:
    return [scope.key(tool, args).key for tool, args in calls]


CALLS: list[tuple[str, dict[str, object]]] = [
    ("bank.pay", {"to": "carol", "amount": 5}),
    ("bank.pay", {"amount": 5, "to": "carol"}),  # the same call again: its second occurrence
    ("bank.pay", {"to": "dave", "amount": 5}),
    ("mail.send", {"to": "carol", "amount": 5}),
]


def test_keys_do_not_depend_on_the_attempt() -> None:
    first, second = IdempotencyScope("r1", "pay"), IdempotencyScope("r1", "pay")
    assert keys(first, CALLS) == keys(second, CALLS)
    again = keys(first.fresh(), CALLS)  # a resumed task starts counting again
    assert again == keys(IdempotencyScope("r1", "pay"), CALLS)
    assert keys(second, CALLS) != again  # made after the first four: later occurrences


def test_keys_tell_calls_apart() -> None:
    made = keys(IdempotencyScope("r1", "pay"), CALLS)
    assert len(set(made)) == len(CALLS)  # a repeat of an identical call is another effect
    assert all(k.startswith("r1:pay:") for k in made)
    for other in (IdempotencyScope("r2", "pay"), IdempotencyScope("r1", "other")):
        assert not set(keys(other, CALLS)) & set(made)
    # interleaving other calls does not move a call's key: ordinals count identical calls only
    shuffled = IdempotencyScope("r1", "pay")
    assert shuffled.key(*CALLS[3]).key == made[3] and shuffled.key(*CALLS[0]).key == made[0]


def test_nested_calls_get_their_own_path() -> None:
    node = IdempotencyScope("r1", "n")
    one, two = node.child("clerk", "pay", {"x": 1}), node.child("clerk", "pay", {"x": 1})
    assert one.path == ("clerk.pay#0",) and two.path == ("clerk.pay#1",)
    assert one.key("bank.pay", {}).key != two.key("bank.pay", {}).key
    again = IdempotencyScope("r1", "n").child("clerk", "pay", {"x": 1})
    assert (
        again.key("bank.pay", {}).key
        == IdempotencyScope("r1", "n").child("clerk", "pay", {"x": 1}).key("bank.pay", {}).key
    )


def test_the_stamp_travels_in_the_message() -> None:
    recorded_key = IdempotencyScope("r1", "n").child("a", "s", {}).key("t.x", {}).key
    scope = IdempotencyScope("r1", "n", ("a.s#0",), frozenset({recorded_key}))
    message = Message(message_id="m")
    assert read_idempotency(message) is None
    stamp_idempotency(message, scope)
    read = read_idempotency(message)
    assert read is not None and (read.run_id, read.step_id, read.path) == ("r1", "n", ("a.s#0",))
    assert read.key("t.x", {}).recorded is True  # the ledger has it: fetch, do not call
    assert read.key("t.x", {}).recorded is False  # a second such call is a new one
    assert IdempotencyScope("r1", "n").key("t.x", {}).recorded is None  # unknown: ask


def test_a_malformed_stamp_is_a_user_error() -> None:
    message = Message(message_id="m")
    message.metadata.fields[META_KEY].struct_value.fields["durable"].string_value = "{nope"
    with pytest.raises(UserError, match="malformed run stamp"):
        read_idempotency(message)
