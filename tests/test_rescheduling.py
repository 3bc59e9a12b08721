"""How a create body asks to be rescheduled, in classic Swarm's two spellings."""

from __future__ import annotations

import pytest

from swarmproxy.cluster.rescheduling import POLICIES_LABEL, extract_reschedule
from swarmproxy.errors import BadRequest


def test_the_environment_form_becomes_the_label() -> None:
    config = {"Image": "x", "Env": ["A=1", "reschedule:on-node-failure"], "Labels": {"k": "v"}}
    sent, asked = extract_reschedule(config)
    assert asked
    assert sent["Env"] == ["A=1"]
    assert sent["Labels"] == {"k": "v", POLICIES_LABEL: '["on-node-failure"]'}
    assert config["Env"] == ["A=1", "reschedule:on-node-failure"]  # not changed in place


def test_the_label_form_and_off() -> None:
    sent, asked = extract_reschedule({"Labels": {POLICIES_LABEL: '["on-node-failure"]'}})
    assert asked and sent["Labels"][POLICIES_LABEL] == '["on-node-failure"]'
    assert extract_reschedule({"Env": ["reschedule:off"]})[1] is False
    plain = {"Image": "x", "Env": ["A=1"]}
    assert extract_reschedule(plain) == (plain, False)


@pytest.mark.parametrize(
    "config",
    [
        {"Env": ["reschedule:always"]},
        {"Labels": {POLICIES_LABEL: "on-node-failure"}},
        {"Labels": {POLICIES_LABEL: "[1]"}},
    ],
)
def test_a_bad_policy_is_refused(config: dict[str, object]) -> None:
    with pytest.raises(BadRequest):
        extract_reschedule(config)
