"""Decode step: each record's bytes become its event, or the record is dead-lettered."""

from __future__ import annotations

import json

from pydantic import BaseModel, ValidationError

from lindung_contracts import event_for_topic
from lindung_runtime.errors import PermanentError
from lindung_runtime.pipeline.batch import Delivery, Step
from lindung_runtime.pipeline.dead_letter import DeadLetters, screening


class UnexpectedEventType(PermanentError):
    code = "unexpected_event_type"


def decode(delivery: Delivery, event_type: type[BaseModel]) -> BaseModel:
    ce_type = delivery.headers.get("ce_type")
    try:
        expected = event_for_topic(delivery.topic).ce_type()
    except KeyError:
        expected = None
    if ce_type and expected and ce_type != expected:
        raise UnexpectedEventType(f"ce_type {ce_type!r} on {delivery.topic}; expected {expected!r}")
    try:
        # pydantic parses and validates the bytes in one pass, half the cost of json.loads first
        return event_type.model_validate_json(delivery.value)
    except ValidationError as error:
        if error.errors(include_url=False)[0]["type"] != "json_invalid":
            raise
    # Not JSON to pydantic: the standard library says why (invalid_json, with its position), or,
    # for what only it accepts (NaN, Infinity), validates as before.
    return event_type.model_validate(json.loads(delivery.value))


def decoding(event_type: type[BaseModel], dead_letters: DeadLetters) -> Step:
    """Invalid JSON, a wrong shape or another topic's event type is dead-lettered at once (no
    retry can fix bytes); the good records around it go on."""

    def set_event(delivery: Delivery) -> None:
        delivery.event = decode(delivery, event_type)

    # ValueError: JSON, Unicode and pydantic's errors; PermanentError: the event type
    return screening(dead_letters, set_event, (ValueError, PermanentError))
