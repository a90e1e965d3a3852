"""SLA configuration: inheritance, both file formats, and a clear error for every mistake."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import pytest
import yaml

from stream_app.domain.sla import (
    QueueSla,
    SlaConfig,
    SlaConfigError,
    load_sla_config,
    parse_sla_config,
)

ROOT = Path(__file__).resolve().parents[2]

YAML = """\
defaults:
  service_level_seconds: 30
  target_service_level: 0.9
queues:
  sales:
    service_level_seconds: 10.5
    max_calls_waiting: 3
  support: {}
"""
TOML = """\
[defaults]
service_level_seconds = 30
target_service_level = 0.9

[queues.sales]
service_level_seconds = 10.5
max_calls_waiting = 3

[queues.support]
"""


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def error_of(data: object) -> str:
    with pytest.raises(SlaConfigError) as info:
        parse_sla_config(data, source="sla.yaml")
    return str(info.value)


# -- the built-in defaults ----------------------------------------------------------------------


def test_built_in_defaults() -> None:
    sla = QueueSla()
    assert (sla.service_level_seconds, sla.short_abandon_seconds) == (20.0, 5.0)
    assert (sla.target_service_level, sla.target_asa_seconds, sla.target_abandon_rate) == (
        0.8,
        30.0,
        0.05,
    )
    assert (sla.max_oldest_waiting_seconds, sla.max_calls_waiting) == (120.0, 10)
    assert sla.max_occupancy == 0.9
    assert (sla.service_level_ms, sla.short_abandon_ms) == (20_000, 5_000)


@pytest.mark.parametrize(
    ("seconds", "ms"), [(20, 20_000), (0.25, 250), (10.5, 10_500), (0.0016, 2), (2.0004, 2_000)]
)
def test_thresholds_in_ms_are_rounded(seconds: float, ms: int) -> None:
    sla = QueueSla(service_level_seconds=seconds, short_abandon_seconds=seconds)
    assert sla.service_level_ms == sla.short_abandon_ms == ms


def test_queue_sla_is_immutable() -> None:
    with pytest.raises(dataclasses.FrozenInstanceError):
        QueueSla().service_level_seconds = 1.0  # type: ignore[misc]


@pytest.mark.parametrize("path", [None, ""])
def test_no_file_means_all_defaults(path: str | None) -> None:
    config = load_sla_config(path)
    assert config == SlaConfig()
    assert config.default == QueueSla()
    assert dict(config.queues) == {}
    assert config.for_queue("anything") == QueueSla()


# -- loading and inheritance --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "text"), [("sla.yaml", YAML), ("sla.yml", YAML), ("sla.toml", TOML), ("S.YAML", YAML)]
)
def test_queues_inherit_from_defaults_which_inherit_from_built_ins(
    tmp_path: Path, name: str, text: str
) -> None:
    config = load_sla_config(write(tmp_path, name, text))
    built_in = QueueSla()
    assert config.default == dataclasses.replace(
        built_in, service_level_seconds=30.0, target_service_level=0.9
    )
    assert config.for_queue("sales") == dataclasses.replace(
        config.default, service_level_seconds=10.5, max_calls_waiting=3
    )
    assert config.for_queue("support") == config.default
    assert config.for_queue("unknown") == config.default
    assert config.for_queue(None) == config.default


def test_yaml_and_toml_give_the_same_config(tmp_path: Path) -> None:
    assert load_sla_config(write(tmp_path, "a.yaml", YAML)) == load_sla_config(
        write(tmp_path, "a.toml", TOML)
    )


def test_a_path_object_and_a_str_both_load(tmp_path: Path) -> None:
    path = write(tmp_path, "sla.yaml", YAML)
    assert load_sla_config(path) == load_sla_config(str(path))


def test_values_get_their_field_types() -> None:
    config = parse_sla_config(
        {"defaults": {"service_level_seconds": 20, "target_service_level": 1}}, source="x"
    )
    assert type(config.default.service_level_seconds) is float
    assert type(config.default.target_service_level) is float
    assert type(config.default.max_calls_waiting) is int


@pytest.mark.parametrize("text", ["", "# nothing\n", "defaults:\nqueues:\n", "{}"])
def test_an_empty_yaml_file_means_all_defaults(tmp_path: Path, text: str) -> None:
    assert load_sla_config(write(tmp_path, "sla.yaml", text)) == SlaConfig()


def test_a_queue_without_settings_gets_the_defaults() -> None:
    config = parse_sla_config({"queues": {"support": None}}, source="x")
    assert config.for_queue("support") == QueueSla()


def test_boundary_values_are_accepted() -> None:
    config = parse_sla_config(
        {
            "defaults": {
                "short_abandon_seconds": 0,  # turns short abandons off
                "target_service_level": 0,
                "target_abandon_rate": 1.0,
                "service_level_seconds": 0.001,
                "max_calls_waiting": 1,
                "max_occupancy": 1,
            }
        },
        source="x",
    )
    assert config.default.short_abandon_ms == 0
    assert config.default.target_service_level == 0.0
    assert config.default.target_abandon_rate == 1.0
    assert config.default.max_occupancy == 1.0


def test_yaml_anchors_and_merge_keys_work(tmp_path: Path) -> None:
    text = """\
queues:
  sales: &fast
    service_level_seconds: 10
    target_asa_seconds: 8
  sales_eu:
    <<: *fast
    target_asa_seconds: 12
"""
    config = load_sla_config(write(tmp_path, "sla.yaml", text))
    assert config.for_queue("sales_eu").service_level_seconds == 10.0
    assert config.for_queue("sales_eu").target_asa_seconds == 12.0


def test_the_config_cannot_be_changed_after_loading() -> None:
    config = parse_sla_config({"queues": {"sales": {}}}, source="x")
    with pytest.raises(TypeError):
        config.queues["vip"] = QueueSla()  # type: ignore[index]
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.default = QueueSla()  # type: ignore[misc]


def test_the_example_file_loads_and_documents_every_field() -> None:
    path = ROOT / "sla.example.yaml"
    config = load_sla_config(path)
    assert set(config.queues) == {"sales", "support", "vip"}
    assert config.for_queue("support").service_level_seconds == 60.0
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    # Its `defaults` section spells out the built-in values, every one of them.
    assert set(data["defaults"]) == {f.name for f in dataclasses.fields(QueueSla)}
    assert config.default == QueueSla()


# -- errors name the file and the exact key -----------------------------------------------------


def test_the_message_names_the_file_and_key_path(tmp_path: Path, monkeypatch: Any) -> None:
    monkeypatch.chdir(tmp_path)
    write(tmp_path, "sla.yaml", "queues:\n  sales:\n    service_level_seconds: abc\n")
    with pytest.raises(SlaConfigError) as info:
        load_sla_config("sla.yaml")
    assert str(info.value) == (
        "sla.yaml: queues.sales.service_level_seconds must be a positive number, got 'abc'"
    )


def test_an_sla_config_error_is_a_value_error() -> None:
    assert issubclass(SlaConfigError, ValueError)


@pytest.mark.parametrize(
    ("field", "value", "must_be"),
    [
        ("service_level_seconds", "20", "a positive number"),
        ("service_level_seconds", True, "a positive number"),
        ("service_level_seconds", 0, "a positive number"),
        ("service_level_seconds", -3, "a positive number"),
        ("service_level_seconds", float("nan"), "a positive number"),
        ("service_level_seconds", float("inf"), "a positive number"),
        ("service_level_seconds", None, "a positive number"),
        ("service_level_seconds", [20], "a positive number"),
        ("service_level_seconds", 10**400, "a positive number"),
        ("short_abandon_seconds", -0.5, "a number >= 0"),
        ("short_abandon_seconds", False, "a number >= 0"),
        ("target_service_level", 80, "a ratio from 0 to 1"),
        ("target_service_level", 1.01, "a ratio from 0 to 1"),
        ("target_service_level", -0.1, "a ratio from 0 to 1"),
        ("target_service_level", "80%", "a ratio from 0 to 1"),
        ("target_abandon_rate", 5, "a ratio from 0 to 1"),
        ("target_abandon_rate", True, "a ratio from 0 to 1"),
        ("target_asa_seconds", 0, "a positive number"),
        ("max_oldest_waiting_seconds", -1, "a positive number"),
        ("max_calls_waiting", 2.5, "a positive integer"),
        ("max_calls_waiting", 10.0, "a positive integer"),
        ("max_calls_waiting", 0, "a positive integer"),
        ("max_calls_waiting", True, "a positive integer"),
        ("max_calls_waiting", "10", "a positive integer"),
        ("max_occupancy", 0, "a ratio above 0, at most 1"),
        ("max_occupancy", 1.2, "a ratio above 0, at most 1"),
        ("max_occupancy", 90, "a ratio above 0, at most 1"),
        ("max_occupancy", True, "a ratio above 0, at most 1"),
        ("max_occupancy", "0.9", "a ratio above 0, at most 1"),
    ],
)
@pytest.mark.parametrize("section", ["defaults", "queues.sales"])
def test_every_bad_value_is_refused_with_its_key_path(
    section: str, field: str, value: object, must_be: str
) -> None:
    overrides = {field: value}
    data = {"defaults": overrides} if section == "defaults" else {"queues": {"sales": overrides}}
    message = error_of(data)
    shown = repr(value) if len(repr(value)) <= 60 else repr(value)[:57] + "..."
    assert message.startswith(f"sla.yaml: {section}.{field} must be {must_be}")
    assert message.endswith(f", got {shown}")


def test_unknown_keys_are_refused_with_a_suggestion() -> None:
    assert error_of({"defaults": {"service_level_secs": 10}}) == (
        "sla.yaml: unknown key defaults.service_level_secs (did you mean 'service_level_seconds'?)"
    )
    assert error_of({"queues": {"sales": {"target_sl": 0.8}}}).startswith(
        "sla.yaml: unknown key queues.sales.target_sl"
    )
    assert error_of({"default": {}}) == ("sla.yaml: unknown key default (did you mean 'defaults'?)")
    assert "known: defaults, queues" in error_of({"thresholds": {}})


def test_queue_names_that_are_not_bare_words_are_quoted_in_the_path() -> None:
    message = error_of({"queues": {"sales.eu": {"max_calls_waiting": 0}}})
    assert message.startswith('sla.yaml: queues."sales.eu".max_calls_waiting must be')


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        ([1, 2], "sla.yaml: the top level must be a mapping, got [1, 2]"),
        ("text", "sla.yaml: the top level must be a mapping, got 'text'"),
        ({"defaults": [1]}, "sla.yaml: defaults must be a mapping, got [1]"),
        ({"defaults": 20}, "sla.yaml: defaults must be a mapping, got 20"),
        ({"queues": ["sales"]}, "sla.yaml: queues must be a mapping, got ['sales']"),
        ({"queues": {"sales": 20}}, "sla.yaml: queues.sales must be a mapping, got 20"),
        ({"queues": {100: {}}}, "sla.yaml: queues: queue name 100 must be a non-empty string"),
        ({"queues": {"": {}}}, "sla.yaml: queues: queue name '' must be a non-empty string"),
    ],
)
def test_wrong_shapes_are_refused(data: object, expected: str) -> None:
    assert error_of(data).startswith(expected)


def test_a_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "nope.yaml"
    with pytest.raises(SlaConfigError, match=r"nope\.yaml: no such file"):
        load_sla_config(path)


def test_a_directory_is_not_a_file(tmp_path: Path) -> None:
    path = tmp_path / "dir.yaml"
    path.mkdir()
    with pytest.raises(SlaConfigError, match=r"dir\.yaml: cannot read"):
        load_sla_config(path)


@pytest.mark.parametrize("name", ["sla.json", "sla.ini", "sla", "sla.yaml.bak"])
def test_an_unsupported_extension(tmp_path: Path, name: str) -> None:
    path = write(tmp_path, name, YAML)
    with pytest.raises(SlaConfigError, match=r"unsupported format .*use \.yaml, \.yml or \.toml"):
        load_sla_config(path)


@pytest.mark.parametrize(
    ("name", "text", "kind"),
    [
        ("sla.yaml", "defaults: [unclosed\n", "YAML"),
        ("sla.yaml", "defaults:\n  a: 1\n b: 2\n", "YAML"),
        ("sla.yaml", "x: !!python/object:os.system {}\n", "YAML"),  # safe loading only
        ("sla.toml", "[defaults\n", "TOML"),
        ("sla.toml", "[defaults]\nservice_level_seconds = \n", "TOML"),
        ("sla.toml", "[defaults]\na = 1\na = 2\n", "TOML"),
    ],
)
def test_an_unparseable_file(tmp_path: Path, name: str, text: str, kind: str) -> None:
    path = write(tmp_path, name, text)
    with pytest.raises(SlaConfigError, match=rf"{name}: not valid {kind}"):
        load_sla_config(path)


def test_a_file_that_is_not_utf8(tmp_path: Path) -> None:
    path = tmp_path / "sla.yaml"
    path.write_bytes(b"defaults:\n  service_level_seconds: \xff\n")
    with pytest.raises(SlaConfigError, match=r"sla\.yaml: cannot read"):
        load_sla_config(path)


def test_duplicate_yaml_keys_are_refused(tmp_path: Path) -> None:
    text = "queues:\n  sales:\n    service_level_seconds: 10\n    service_level_seconds: 30\n"
    with pytest.raises(SlaConfigError, match="duplicate key 'service_level_seconds'"):
        load_sla_config(write(tmp_path, "sla.yaml", text))
    text = "queues:\n  sales: {}\n  sales: {}\n"
    with pytest.raises(SlaConfigError, match="duplicate key 'sales'"):
        load_sla_config(write(tmp_path, "sla.yaml", text))


def test_a_bad_value_in_toml_names_the_key_too(tmp_path: Path) -> None:
    path = write(tmp_path, "sla.toml", '[queues."sales eu"]\ntarget_service_level = 80\n')
    with pytest.raises(SlaConfigError) as info:
        load_sla_config(path)
    assert str(info.value) == (
        f'{path}: queues."sales eu".target_service_level must be a ratio from 0 to 1 '
        "(0.8 means 80%), got 80"
    )
