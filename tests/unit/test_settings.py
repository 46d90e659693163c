"""Settings from the environment, and start-up refusing bad values by name."""

from __future__ import annotations

import pytest

from taskcore import ConfigurationError
from taskcore.entrypoints.settings import Settings, env_name, load_settings


def test_defaults_run_embedded() -> None:
    settings = load_settings({})
    assert settings == Settings()
    assert settings.embedded
    assert settings.reverse_delay_s == 5.0
    assert settings.worker_concurrency == 128
    assert settings.max_body_bytes == 1_048_576


def test_values_are_converted_from_strings() -> None:
    settings = load_settings(
        {
            "TASKCORE_WORKER_CONCURRENCY": "200",
            "TASKCORE_REVERSE_DELAY_S": "0.5",
            "TASKCORE_REDIS_CLUSTER": "true",
            "TASKCORE_DATABASE_URL": "postgresql://db/x",
            "TASKCORE_LOG_LEVEL": "DEBUG",
            "UNRELATED": "ignored",
        }
    )
    assert settings.worker_concurrency == 200
    assert settings.reverse_delay_s == 0.5
    assert settings.redis_cluster is True
    assert settings.log_level == "DEBUG"
    assert not settings.embedded
    assert settings.core.finished_ttl_s == 60


def test_overrides_win_and_none_means_unset() -> None:
    settings = load_settings({"TASKCORE_WORKER_CONCURRENCY": "3"}, worker_concurrency=7, app=None)
    assert settings.worker_concurrency == 7
    assert settings.app is None


@pytest.mark.parametrize(
    ("variable", "value", "reason"),
    [
        ("TASKCORE_WORKER_CONCURRENCY", "0", ">= 1"),
        ("TASKCORE_WORKER_CONCURRENCY", "many", "Expected `int`"),
        ("TASKCORE_LEASE_S", "-1", "> 0"),
        ("TASKCORE_REDIS_CLUSTER", "perhaps", "Expected `bool`"),
        ("TASKCORE_LOG_LEVEL", "LOUD", "Invalid enum value"),
        ("TASKCORE_REVERSE_DELAY_S", "-0.1", ">= 0"),
    ],
)
def test_a_bad_value_names_its_variable(variable: str, value: str, reason: str) -> None:
    with pytest.raises(ConfigurationError) as err:
        load_settings({variable: value})
    assert str(err.value).startswith(variable + ":")
    assert reason in str(err.value)


def test_every_setting_has_an_env_name_documented_in_the_readme() -> None:
    from pathlib import Path

    readme = (Path(__file__).parents[2] / "README.md").read_text()
    missing = [env_name(f) for f in Settings.__struct_fields__ if env_name(f) not in readme]
    assert missing == []
