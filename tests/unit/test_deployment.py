"""Rendering the supervisord and systemd configuration (no services needed)."""

import configparser
import re

import pytest
from django.core.management import CommandError, call_command

from tests.helpers import ROOT
from zerver.lib.deployment import DeploymentConfig, default_queues, render, worker_names

QUEUES = ["missedmessage_mobile_notifications", "email_notifications", "sms_notifications", "test"]
MOBILE = "missedmessage_mobile_notifications"


def supervisord(shards: int, **config) -> configparser.ConfigParser:
    [(name, text)] = render("supervisord", DeploymentConfig(**config), shards, QUEUES).items()
    assert name == "notification-workers.conf"
    parser = configparser.ConfigParser(interpolation=None)
    parser.read_string(text)
    return parser


def programs(parser: configparser.ConfigParser) -> list[str]:
    return [s.removeprefix("program:") for s in parser.sections() if s.startswith("program:")]


def systemd_lines(text: str, key: str) -> list[str]:
    return [line.split("=", 1)[1] for line in text.splitlines() if line.startswith(key + "=")]


def test_four_shards_make_four_push_worker_programs_and_no_unsharded_one():
    parser = supervisord(4)
    assert programs(parser) == [
        *(f"notification-worker-{MOBILE}_shard{n}" for n in range(1, 5)),
        "notification-worker-email_notifications",
        "notification-worker-sms_notifications",
        "notification-worker-test",
    ]
    assert parser["group:notification-workers"]["programs"].split(",") == programs(parser)
    program = parser[f"program:notification-worker-{MOBILE}_shard3"]
    assert program["command"].endswith(f"process_queue --queue_name={MOBILE}_shard3'")
    # A worker for shard 3 only starts if its settings agree there are 4 shards.
    assert 'MOBILE_NOTIFICATIONS_SHARDS="4"' in program["environment"]


def test_one_shard_makes_one_unsharded_push_worker_program():
    parser = supervisord(1)
    assert [p for p in programs(parser) if MOBILE in p] == [f"notification-worker-{MOBILE}"]
    assert parser[f"program:notification-worker-{MOBILE}"]["command"].endswith(f"--queue_name={MOBILE}'")


def test_supervisord_program_stops_gracefully_and_restarts():
    program = supervisord(1, stop_wait_seconds=90)["program:notification-worker-email_notifications"]
    assert program["stopsignal"] == "TERM"
    assert program["stopwaitsecs"] == "90"
    assert program["autorestart"] == "true"
    assert program["killasgroup"] == "true"
    assert program["stdout_logfile"] == "/var/log/notifications/email_notifications.log"
    assert program["redirect_stderr"] == "true"
    assert program["directory"] == "/srv/notifications"
    assert program["user"] == "notifications"
    # The env file is sourced, then exec hands the process (and SIGTERM) to Python.
    assert program["command"] == (
        "/bin/sh -c 'set -a && . /etc/notifications/env && exec /srv/notifications/.venv/bin/python "
        "/srv/notifications/manage.py process_queue --queue_name=email_notifications'"
    )


def test_supervisord_program_without_env_file_or_user_runs_python_directly():
    program = supervisord(1, env_file=None, user=None, venv="/opt/venv")["program:notification-worker-test"]
    assert program["command"] == "/opt/venv/bin/python /srv/notifications/manage.py process_queue --queue_name=test"
    assert "user" not in program


def test_systemd_template_unit_and_target_list_every_instance():
    files = render("systemd", DeploymentConfig(stop_wait_seconds=75), 4, QUEUES)
    unit, target = files["notification-worker@.service"], files["notification-workers.target"]
    assert systemd_lines(unit, "ExecStart") == [
        "/srv/notifications/.venv/bin/python /srv/notifications/manage.py process_queue --queue_name=%i"
    ]
    assert systemd_lines(unit, "KillSignal") == ["SIGTERM"]
    assert systemd_lines(unit, "TimeoutStopSec") == ["75"]
    assert systemd_lines(unit, "Restart") == ["always"]
    assert systemd_lines(unit, "PartOf") == ["notification-workers.target"]
    assert systemd_lines(unit, "EnvironmentFile") == ["/etc/notifications/env"]
    assert '"MOBILE_NOTIFICATIONS_SHARDS=4"' in systemd_lines(unit, "Environment")
    instances = [f"{MOBILE}_shard{n}" for n in range(1, 5)] + ["email_notifications", "sms_notifications", "test"]
    assert systemd_lines(target, "Wants") == [f"notification-worker@{name}.service" for name in instances]
    assert render("instances", DeploymentConfig(), 4, QUEUES) == {
        "notification-workers.instances": "".join(f"{name}\n" for name in instances)
    }


def test_systemd_with_one_shard_wants_the_unsharded_push_worker():
    target = render("systemd", DeploymentConfig(), 1, QUEUES)["notification-workers.target"]
    assert f"notification-worker@{MOBILE}.service" in systemd_lines(target, "Wants")
    assert not [w for w in systemd_lines(target, "Wants") if "_shard" in w]


def test_default_queues_are_the_registered_ones_with_settings_sharding(settings):
    assert {"noop", "test"} <= set(default_queues())
    settings.SHARDED_QUEUES = {**settings.SHARDED_QUEUES, "test": 3}
    assert default_queues().count("test") == 1  # without its shards
    assert worker_names(["noop", "test"], shards=2) == ["noop", "test_shard1", "test_shard2", "test_shard3"]


@pytest.mark.parametrize(
    "bad",
    [
        lambda: worker_names(["test\n[program:evil]"], 1),
        lambda: worker_names(["test", "test"], 1),
        lambda: worker_names(["test"], 0),
        lambda: render("nginx", DeploymentConfig(), 1, ["test"]),
        lambda: render("supervisord", DeploymentConfig(app_dir="/srv/my app"), 1, ["test"]),
        lambda: render("systemd", DeploymentConfig(extra_env={"X": "50%"}), 1, ["test"]),
    ],
)
def test_refuses_what_would_make_a_broken_or_injected_configuration(bad):
    with pytest.raises(ValueError):
        bad()


def test_command_writes_only_on_change_and_check_detects_drift(tmp_path, capsys):
    args = ["--format", "systemd", "--shards", "2", "--queues", *QUEUES, "--output", str(tmp_path)]
    call_command("render_deployment", *args)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notification-worker@.service", "notification-workers.target"]
    call_command("render_deployment", *args, "--check")  # up to date: no error

    capsys.readouterr()
    call_command("render_deployment", *args)
    assert "wrote" not in capsys.readouterr().out  # nothing changed, nothing rewritten

    with pytest.raises(CommandError, match=r"out of date.*notification-workers\.target"):
        call_command("render_deployment", *args[:3], "3", *args[4:], "--check")
    call_command("render_deployment", *args[:3], "3", *args[4:])
    target = (tmp_path / "notification-workers.target").read_text()
    assert re.findall(r"_shard\d", target) == ["_shard1", "_shard2", "_shard3"]


def test_command_prints_to_stdout_and_warns_about_unregistered_queues(capsys):
    call_command("render_deployment", "--format", "instances", "--shards", "2", "--queues", MOBILE, "test")
    out, err = capsys.readouterr()
    assert out == f"{MOBILE}_shard1\n{MOBILE}_shard2\ntest\n"
    if MOBILE not in default_queues():
        assert f"no worker is registered for queue '{MOBILE}'" in err


def test_docker_compose_runs_one_service_per_rendered_worker():
    """Read as text: PyYAML is not a dependency, and the file keeps one service per line block."""
    compose = (ROOT / "docker-compose.yml").read_text()
    shards = int(re.search(r'MOBILE_NOTIFICATIONS_SHARDS: "(\d+)"', compose).group(1))
    services = re.findall(r"^  worker-(\S+):\n    <<: \*worker\n    command: \[(.*)\]$", compose, re.M)
    expected = worker_names([MOBILE, "email_notifications", "sms_notifications"], shards)
    assert [name for name, _ in services] == expected
    for name, command in services:
        assert command == f'"python", "manage.py", "process_queue", "--queue_name={name}"'
    assert "stop_signal: SIGTERM" in compose
    assert "stop_grace_period: 60s" in compose
