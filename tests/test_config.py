"""Configuration: every key accepted, strict validation, clear errors, environment overrides."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from civicrealtime.config import (
    ConfigError,
    RealtimeConfig,
    apply_environment,
    dump_yaml,
    load,
    structure,
)

ROOT = Path(__file__).resolve().parent.parent

SEED_EXAMPLE = """
realtime:
  enabled: true
  port: 3001
  host: '0.0.0.0'
  path: '/realtime'

  rooms:
    max_rooms: 100
    cleanup_timeout: 3600

  snapshots:
    enabled: true
    interval: 300
    max_updates: 100
    storage: 'database'

  rate_limiting:
    messages_per_second: 10
    connections_per_ip: 100
    connections_per_user: 10
"""

# Every key of the reference page's list, with a non-default value.
REFERENCE_KEYS = {
    "enabled": True,
    "port": 3005,
    "host": "127.0.0.1",
    "path": "/rt",
    "rooms": {"max_rooms": 7, "cleanup_timeout": 60, "grace_period_ms": 1500},
    "snapshots": {"enabled": False, "interval": 0, "max_updates": 5, "storage": "filesystem"},
    "rate_limiting": {
        "messages_per_second": 20,
        "connections_per_ip": 3,
        "connections_per_user": 2,
    },
    "connection_cleanup": {"enabled": False, "check_interval": 5, "stale_threshold": 30},
}


def test_seed_example_is_accepted() -> None:
    config = structure(yaml.safe_load(SEED_EXAMPLE))
    assert config.port == 3001
    assert config.rooms.cleanup_timeout == 3600
    assert config.rooms.grace_seconds == 3600
    assert config.snapshots.storage == "database"


def test_every_reference_key_is_accepted_nested_or_not() -> None:
    flat = structure(REFERENCE_KEYS)
    nested = structure({"realtime": REFERENCE_KEYS})
    assert flat == nested
    assert flat.rooms.grace_seconds == 1.5  # grace_period_ms wins, as in the original
    assert flat.connection_cleanup.stale_threshold == 30
    assert flat.snapshots.storage == "filesystem"


def test_example_file_is_valid_and_documents_every_key() -> None:
    text = (ROOT / "config.example.yml").read_text()
    example = structure(yaml.safe_load(text))
    assert isinstance(example, RealtimeConfig)

    def keys(data: object, prefix: str = "") -> set[str]:
        if not isinstance(data, dict):
            return set()
        found = set()
        for key, value in data.items():
            found.add(prefix + key)
            found |= keys(value, prefix + key + ".")
        return found

    every_key = keys(yaml.safe_load(dump_yaml(RealtimeConfig()))["realtime"])
    documented = {line.strip().lstrip("#").strip().split(":")[0] for line in text.splitlines()}
    for dotted in every_key:
        assert dotted.rsplit(".", 1)[-1] in documented, f"{dotted} missing from the example"


def test_example_file_loads_with_the_real_loader() -> None:
    # The file operators copy goes through load(): path handling, YAML parsing and the
    # environment step, not only structure(); an empty environment keeps it deterministic.
    path = ROOT / "config.example.yml"
    loaded = load(path, environ={})
    assert loaded.found
    assert loaded.source == path
    assert loaded.config == structure(yaml.safe_load(path.read_text()))


def test_example_room_type_comment_is_a_valid_entry() -> None:
    # The commented-out room_types entry is what operators uncomment; its keys must exist.
    text = (ROOT / "config.example.yml").read_text()
    lines = text.splitlines()
    start = lines.index("  room_types: {}")
    uncommented = ["  room_types:"]
    for line in lines[start + 1 :]:
        if not line.startswith("  #  "):
            break
        body = line[len("  #") :]
        if not body.strip().startswith("#"):
            uncommented.append("  " + body)
    assert len(uncommented) > 5
    config = structure(yaml.safe_load("\n".join(lines[:start] + uncommented)))
    notes = config.room_types["notes"]
    assert notes.handler == "civicrealtime_notes:NotesRoomType"
    assert notes.options == {"directory": "/srv/civicpress/notes"}
    assert dict(notes.roles) == {"clerk": "edit", "public": "view"}


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ({"prot": 1}, "prot: unknown key; did you mean 'port'?"),
        ({"rooms": {"max_room": 1}}, "rooms.max_room: unknown key; did you mean 'max_rooms'?"),
        ({"port": "abc"}, "port: 'abc' is invalid: expected an integer"),
        ({"port": True}, "port: True is invalid: expected an integer"),
        ({"port": 70000}, "port: 70000 is invalid: expected a value of at most 65535"),
        (
            {"rooms": {"max_rooms": 0}},
            "rooms.max_rooms: 0 is invalid: expected a value of at least 1",
        ),
        ({"rooms": 5}, "rooms: expected a mapping of keys, got 5"),
        (
            {"snapshots": {"storage": "s3"}},
            "snapshots.storage: 's3' is invalid: expected one of 'database', 'filesystem'",
        ),
        ({"enabled": "no"}, "enabled: 'no' is invalid: expected true or false"),
        (
            {"connection_cleanup": {"check_interval": 0}},
            "connection_cleanup.check_interval: 0 is invalid: expected a value greater than 0",
        ),
        ({"path": "realtime"}, "path: 'realtime' is invalid: expected a path starting with '/'"),
        ({"realtime": {}, "port": 1}, "keys beside 'realtime:' (port) must be nested inside it"),
        ([1, 2], "(top level): expected a mapping of keys"),
        ({"realtime": {"rooms": {"cleanup_timeout": "1h"}}}, "rooms.cleanup_timeout: '1h'"),
        (
            {"awareness": {"max_state_bytes": 4096, "max_room_bytes": 2048}},
            "awareness.max_room_bytes: 2048 is invalid: expected at least max_state_bytes",
        ),
        (
            {"awareness": {"max_client_ids_per_connection": 0}},
            "awareness.max_client_ids_per_connection: 0 is invalid",
        ),
        (
            {"connection": {"outbound_queue_bytes": 1000}},
            "connection.outbound_queue_bytes: 1000 is invalid: expected a value of at least 65536",
        ),
        (
            {"rate_limiting": {"pings_per_second": 0}},
            "rate_limiting.pings_per_second: 0 is invalid: expected a value greater than 0",
        ),
        (
            {"protocol": {"control_frames": "yes"}},
            "protocol.control_frames: 'yes' is invalid: expected one of 'opt-in', 'always', "
            "'never'",
        ),
        ({"protocol": {"control_frames": 1}}, "protocol.control_frames: 1 is invalid"),
    ],
)
def test_invalid_values_name_key_value_and_expectation(raw: object, expected: str) -> None:
    with pytest.raises(ConfigError) as info:
        structure(raw)
    assert expected in str(info.value)


@pytest.mark.parametrize(
    ("value", "mode"),
    [
        ("opt-in", "opt-in"),
        ("always", "always"),
        ("never", "never"),
        # The former booleans keep what they did: true sent the frames to everyone.
        (True, "always"),
        (False, "never"),
    ],
)
def test_control_frames_modes_and_former_booleans(value: object, mode: str) -> None:
    assert structure({"protocol": {"control_frames": value}}).protocol.control_frames == mode


def test_control_frames_are_opt_in_by_default() -> None:
    assert RealtimeConfig().protocol.control_frames == "opt-in"
    assert structure({}).protocol.control_frames == "opt-in"


def test_several_problems_are_all_reported() -> None:
    with pytest.raises(ConfigError) as info:
        structure({"port": "x", "host": 5, "bogus": 1})
    text = str(info.value)
    assert "port: 'x'" in text
    assert "host: 5" in text
    assert "bogus: unknown key" in text


def test_missing_default_file_means_defaults(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    loaded = load(None, environ={})
    assert not loaded.found
    assert loaded.config == RealtimeConfig()


def test_default_location_is_system_data(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / ".system-data").mkdir()
    (tmp_path / ".system-data" / "realtime.yml").write_text("realtime:\n  port: 4000\n")
    loaded = load(None, environ={})
    assert loaded.found
    assert loaded.config.port == 4000


def test_named_file_must_exist(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="file not found"):
        load(tmp_path / "nope.yml", environ={})
    with pytest.raises(ConfigError, match="file not found"):
        load(None, environ={"CIVICREALTIME_CONFIG": str(tmp_path / "nope.yml")})


def test_environment_variable_points_to_the_file(tmp_path: Path) -> None:
    path = tmp_path / "rt.yml"
    path.write_text("port: 4100\n")
    assert load(None, environ={"CIVICREALTIME_CONFIG": str(path)}).config.port == 4100


def test_yaml_syntax_error_is_reported(tmp_path: Path) -> None:
    path = tmp_path / "rt.yml"
    path.write_text("port: [\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load(path, environ={})


def test_empty_file_means_defaults(tmp_path: Path) -> None:
    path = tmp_path / "rt.yml"
    path.write_text("")
    assert load(path, environ={}).config == RealtimeConfig()


def test_host_and_port_environment_overrides() -> None:
    config = apply_environment(
        RealtimeConfig(), {"CIVICREALTIME_HOST": "127.0.0.2", "CIVICREALTIME_PORT": "4321"}
    )
    assert (config.host, config.port) == ("127.0.0.2", 4321)
    with pytest.raises(ConfigError, match="CIVICREALTIME_PORT: 'http' is invalid"):
        apply_environment(RealtimeConfig(), {"CIVICREALTIME_PORT": "http"})


def test_dump_round_trips() -> None:
    config = structure(REFERENCE_KEYS)
    assert structure(yaml.safe_load(dump_yaml(config))) == config
