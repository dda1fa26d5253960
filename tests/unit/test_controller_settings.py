"""Operator settings from the environment."""

import pytest
from migrategate.controller.settings import Settings, describe


def test_environment_and_overrides():
    env = {"MIGRATEGATE_NAMESPACES": "a, b", "MIGRATEGATE_METRICS_PORT": "0"}
    s = Settings.from_env(env, runner_image="img:1", peering=None)
    assert s.namespaces == ("a", "b")
    assert s.metrics_port == 0
    assert s.runner_image == "img:1"
    assert s.peering == ""


def test_bad_value_names_its_variable():
    with pytest.raises(ValueError, match="MIGRATEGATE_LIVENESS_PORT"):
        Settings.from_env({"MIGRATEGATE_LIVENESS_PORT": "eighty"})


def test_every_setting_is_documented():
    text = describe()
    assert "MIGRATEGATE_RUNNER_IMAGE" in text and "MIGRATEGATE_PEERING" in text


@pytest.mark.parametrize("raw", ["-1", "soon", "nan"])
def test_bad_image_pull_grace_fails_fast(raw):
    with pytest.raises(ValueError, match="MIGRATEGATE_IMAGE_PULL_GRACE"):
        Settings.from_env({"MIGRATEGATE_IMAGE_PULL_GRACE": raw})


def test_image_pull_grace_default_and_override():
    assert Settings.from_env({}).image_pull_grace == 60.0
    assert Settings.from_env({"MIGRATEGATE_IMAGE_PULL_GRACE": "0"}).image_pull_grace == 0.0
