"""Rendering the supervisord, systemd and Prometheus configuration (no services needed)."""

import configparser
import re

import pytest
from django.core.management import CommandError, call_command

from tests.helpers import ROOT
from zerver.lib.deployment import DeploymentConfig, default_queues, render, web_argv, worker_names

QUEUES = ["missedmessage_mobile_notifications", "email_notifications", "sms_notifications", "test"]
MOBILE = "missedmessage_mobile_notifications"
SERVICES = ["notification-web", "notification-outbox-relay-1", "notification-expo-receipts"]


def supervisord(shards: int, **config) -> configparser.ConfigParser:
    [(name, text)] = render("supervisord", DeploymentConfig(**config), shards, QUEUES).items()
    assert name == "notification-workers.conf"
    parser = configparser.ConfigParser(interpolation=None)
    parser.read_string(text)
    return parser


def programs(parser: configparser.ConfigParser) -> list[str]:
    return [s.removeprefix("program:") for s in parser.sections() if s.startswith("program:")]


def worker_programs(parser: configparser.ConfigParser) -> list[str]:
    return [p for p in programs(parser) if p.startswith("notification-worker-")]


def systemd_lines(text: str, key: str) -> list[str]:
    return [line.split("=", 1)[1] for line in text.splitlines() if line.startswith(key + "=")]


def supervisord_ports(parser: configparser.ConfigParser) -> dict[str, int]:
    """{worker: the --metrics-port its program's command gives it}."""
    ports = {}
    for program in worker_programs(parser):
        match = re.search(r"--queue_name=(\S+) --metrics-port=(\d+)'?$", parser[f"program:{program}"]["command"])
        assert match, parser[f"program:{program}"]["command"]
        ports[match.group(1)] = int(match.group(2))
    return ports


def scrape_targets(text: str, job: str) -> list[tuple[str, str | None]]:
    """(target, worker label) of every static target of ``job`` in the rendered scrape configuration."""
    [block] = re.findall(rf"^  - job_name: {job}\n((?:    .*\n?)*)", text, re.M)
    return re.findall(
        r'^      - targets: \["([^"]+)"\](?:\n        labels:\n          worker: "([^"]+)")?', block, re.M
    )


def test_four_shards_make_four_push_worker_programs_and_no_unsharded_one():
    parser = supervisord(4)
    assert programs(parser) == [
        *(f"notification-worker-{MOBILE}_shard{n}" for n in range(1, 5)),
        "notification-worker-email_notifications",
        "notification-worker-sms_notifications",
        "notification-worker-test",
        *SERVICES,
    ]
    assert parser["group:notification-workers"]["programs"].split(",") == programs(parser)
    program = parser[f"program:notification-worker-{MOBILE}_shard3"]
    assert re.search(rf"process_queue --queue_name={MOBILE}_shard3 --metrics-port=\d+'$", program["command"])
    # A worker for shard 3 only starts if its settings agree there are 4 shards.
    assert 'MOBILE_NOTIFICATIONS_SHARDS="4"' in program["environment"]


def test_one_shard_makes_one_unsharded_push_worker_program():
    parser = supervisord(1)
    assert [p for p in programs(parser) if MOBILE in p] == [f"notification-worker-{MOBILE}"]
    assert re.search(
        rf"--queue_name={MOBILE} --metrics-port=\d+'$", parser[f"program:notification-worker-{MOBILE}"]["command"]
    )


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
        "/srv/notifications/manage.py process_queue --queue_name=email_notifications --metrics-port=9100'"
    )


def test_supervisord_program_without_env_file_or_user_runs_python_directly():
    program = supervisord(1, env_file=None, user=None, venv="/opt/venv", metrics_base_port=0)[
        "program:notification-worker-test"
    ]
    assert program["command"] == (
        "/opt/venv/bin/python /srv/notifications/manage.py process_queue --queue_name=test --metrics-port=0"
    )
    assert "user" not in program


def test_systemd_template_unit_and_target_list_every_instance():
    files = render("systemd", DeploymentConfig(stop_wait_seconds=75), 4, QUEUES)
    unit, target = files["notification-worker@.service"], files["notification-workers.target"]
    assert systemd_lines(unit, "ExecStart") == [
        "/srv/notifications/.venv/bin/python /srv/notifications/manage.py process_queue --queue_name=%i "
        "--metrics-port=${NOTIFICATION_WORKER_METRICS_PORT}"
    ]
    assert systemd_lines(unit, "KillSignal") == ["SIGTERM"]
    assert systemd_lines(unit, "TimeoutStopSec") == ["75"]
    assert systemd_lines(unit, "Restart") == ["always"]
    assert systemd_lines(unit, "PartOf") == ["notification-workers.target"]
    assert systemd_lines(unit, "EnvironmentFile") == ["/etc/notifications/env"]
    assert '"MOBILE_NOTIFICATIONS_SHARDS=4"' in systemd_lines(unit, "Environment")
    instances = [f"{MOBILE}_shard{n}" for n in range(1, 5)] + ["email_notifications", "sms_notifications", "test"]
    assert systemd_lines(target, "Wants") == [
        *(f"notification-worker@{name}.service" for name in instances),
        *(f"{service}.service" for service in SERVICES),
    ]
    assert render("instances", DeploymentConfig(), 4, QUEUES) == {
        "notification-workers.instances": "".join(f"{name}\n" for name in instances)
    }


def test_systemd_with_one_shard_wants_the_unsharded_push_worker():
    target = render("systemd", DeploymentConfig(), 1, QUEUES)["notification-workers.target"]
    assert f"notification-worker@{MOBILE}.service" in systemd_lines(target, "Wants")
    assert not [w for w in systemd_lines(target, "Wants") if "_shard" in w]


def test_default_queues_are_the_registered_ones_with_settings_sharding(settings):
    assert {"email_notifications", "sms_notifications", MOBILE, "message_notifications"} == set(default_queues())
    assert not {"noop", "test"} & set(default_queues())  # the framework's own test workers stay out of production
    settings.SHARDED_QUEUES = {**settings.SHARDED_QUEUES, MOBILE: 3}
    assert default_queues().count(MOBILE) == 1  # without its shards
    settings.SHARDED_QUEUES = {**settings.SHARDED_QUEUES, "test": 3}
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
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        [
            "notification-worker@.service",
            "notification-workers.target",
            *(f"{service}.service" for service in SERVICES),
            *(f"notification-worker@{name}.service.d" for name in worker_names(QUEUES, 2)),
        ]
    )
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
    services = re.findall(
        r'^  worker-(\S+):\n    <<: \*worker\n    command: \[(.*)\]\n    expose: \["(\d+)"\]$', compose, re.M
    )
    queues = [MOBILE, "email_notifications", "sms_notifications", "message_notifications"]
    expected = worker_names(queues, shards)
    assert [name for name, _, _ in services] == expected
    for name, command, port in services:
        assert command == f'"python", "manage.py", "process_queue", "--queue_name={name}", "--metrics-port={port}"'
    # What Prometheus scrapes is what the containers serve on.
    config = DeploymentConfig(metrics_host="worker-{name}", web_target="web:8000")
    [scrape] = render("prometheus", config, shards, queues).values()
    assert scrape_targets(scrape, "notifications-workers") == [
        (f"worker-{name}:{port}", name) for name, _, port in services
    ]
    assert scrape_targets(scrape, "notifications-web") == [("web:8000", "")]
    assert "stop_signal: SIGTERM" in compose
    assert "stop_grace_period: 60s" in compose


def compose_command(compose: str, service: str) -> list[str]:
    [command] = re.findall(rf"^  {service}:\n    <<: \*worker\n    command: \[(.*)\]$", compose, re.M)
    return [arg.strip().strip('"') for arg in command.split(",")]


def test_docker_compose_runs_gunicorn_the_relay_and_the_receipts_checker_as_rendered():
    compose = (ROOT / "docker-compose.yml").read_text()
    assert "runserver" not in compose
    assert compose_command(compose, "web") == ["python", *web_argv(DeploymentConfig(web_bind="0.0.0.0:8000"))]
    assert compose_command(compose, "outbox-relay") == ["python", "manage.py", "outbox_relay"]
    assert compose_command(compose, "expo-receipts") == ["python", "manage.py", "check_expo_receipts", "--loop", "60"]


def test_relay_receipts_checker_and_web_run_once_each_with_graceful_stops():
    parser = supervisord(4, stop_wait_seconds=30)
    assert [p for p in programs(parser) if not p.startswith("notification-worker-")] == SERVICES
    env = "/bin/sh -c 'set -a && . /etc/notifications/env && exec /srv/notifications/.venv/bin/python"
    commands = {name: parser[f"program:{name}"]["command"] for name in SERVICES}
    assert commands == {
        "notification-web": f"{env} -m gunicorn zerver.wsgi:application --bind 127.0.0.1:8000 --workers 1 "
        "--threads 8 --graceful-timeout 25 --access-logfile -'",
        "notification-outbox-relay-1": f"{env} /srv/notifications/manage.py outbox_relay'",
        "notification-expo-receipts": f"{env} /srv/notifications/manage.py check_expo_receipts --loop 60'",
    }
    for name in SERVICES:
        assert parser[f"program:{name}"]["stopsignal"] == "TERM"
        assert parser[f"program:{name}"]["stopwaitsecs"] == "30"
    assert parser["program:notification-web"]["stdout_logfile"] == "/var/log/notifications/web.log"

    files = render("systemd", DeploymentConfig(stop_wait_seconds=30), 4, QUEUES)
    units = {name: files.pop(f"{name}.service") for name in SERVICES}
    assert not [name for name in files if "web" in name or "relay" in name or "receipts" in name]
    for name, unit in units.items():
        assert systemd_lines(unit, "ExecStart") == [
            commands[name].removeprefix("/bin/sh -c 'set -a && . /etc/notifications/env && exec ").removesuffix("'")
        ]
        assert systemd_lines(unit, "KillSignal") == ["SIGTERM"]
        assert systemd_lines(unit, "TimeoutStopSec") == ["30"]
        assert systemd_lines(unit, "PartOf") == ["notification-workers.target"]
        assert systemd_lines(unit, "EnvironmentFile") == ["/etc/notifications/env"]
    assert systemd_lines(units["notification-web"], "ExecReload") == ["/bin/kill -HUP $MAINPID"]
    assert "runserver" not in "".join(units.values()) + str(commands)


def test_relay_count_web_and_receipts_are_parameters():
    parser = supervisord(1, outbox_relays=3, web=False, expo_receipts_seconds=0, web_workers=4, web_threads=2)
    assert [p for p in programs(parser) if not p.startswith("notification-worker-")] == [
        f"notification-outbox-relay-{n}" for n in (1, 2, 3)
    ]
    web = supervisord(1, web_workers=4, web_threads=2, web_bind="0.0.0.0:8080")["program:notification-web"]
    assert "--bind 0.0.0.0:8080 --workers 4 --threads 2 " in web["command"]
    target = render("systemd", DeploymentConfig(outbox_relays=0, web=False), 1, QUEUES)["notification-workers.target"]
    assert [w for w in systemd_lines(target, "Wants") if not w.startswith("notification-worker@")] == [
        "notification-expo-receipts.service"
    ]
    [scrape] = render("prometheus", DeploymentConfig(web=False), 1, QUEUES).values()
    assert scrape_targets(scrape, "notifications-web") == []


def test_scrape_config_names_the_ports_the_worker_programs_and_units_get():
    config = DeploymentConfig(metrics_host="10.0.0.7")
    [scrape] = render("prometheus", config, 4, QUEUES).values()
    targets = scrape_targets(scrape, "notifications-workers")
    scraped = {worker: int(target.removeprefix("10.0.0.7:")) for target, worker in targets}
    assert len(targets) == len(scraped) == 7
    assert [w for w in scraped if w.startswith(MOBILE)] == [f"{MOBILE}_shard{n}" for n in range(1, 5)]

    assert supervisord_ports(supervisord(4, metrics_host="10.0.0.7")) == scraped
    drop_ins = {
        name.removeprefix("notification-worker@").removesuffix(".service.d/metrics-port.conf"): text
        for name, text in render("systemd", config, 4, QUEUES).items()
        if name.endswith(".service.d/metrics-port.conf")
    }
    systemd_ports = {
        worker: int(systemd_lines(text, "Environment")[0].strip('"').split("=")[1]) for worker, text in drop_ins.items()
    }
    assert systemd_ports == scraped
    assert len(set(scraped.values())) == len(scraped)  # no two workers share a port
    assert scrape_targets(scrape, "notifications-web") == [("10.0.0.7:8000", "")]


def test_worker_ports_are_the_ones_process_queue_list_prints(settings, capsys):
    settings.WORKER_METRICS_BASE_PORT = 9200
    call_command("process_queue", "--list", "-v", "2")
    listed = dict(line.split("\tmetrics port ") for line in capsys.readouterr().out.splitlines())
    ports = supervisord_ports(supervisord(settings.MOBILE_NOTIFICATIONS_SHARDS, metrics_base_port=9200))
    assert {name: int(listed[name]) for name in ports} == ports
    # A subset of the queues keeps the same ports.
    [text] = render("supervisord", DeploymentConfig(metrics_base_port=9200), 1, ["test"]).values()
    assert text.count("--metrics-port=") == 1
    assert f"--queue_name=test --metrics-port={listed['test']}'" in text


def test_no_worker_metrics_means_port_zero_and_no_worker_targets():
    config = DeploymentConfig(metrics_base_port=0)
    assert set(supervisord_ports(supervisord(2, metrics_base_port=0)).values()) == {0}
    [scrape] = render("prometheus", config, 2, QUEUES).values()
    assert scrape_targets(scrape, "notifications-workers") == []
    assert "static_configs: []" in scrape


def test_process_queue_serves_metrics_on_the_port_it_is_given(monkeypatch):
    from workers.base import get_worker
    from zerver.management.commands import process_queue

    served = []
    monkeypatch.setattr(process_queue.metrics, "serve", served.append)
    monkeypatch.setattr(process_queue.metrics, "register_queue_depth", lambda queues: None)
    process_queue.serve_metrics([get_worker("test")], 9555)
    process_queue.serve_metrics([get_worker("test")], 0)
    assert served == [9555]


@pytest.mark.parametrize(
    "config",
    [
        {"web_bind": "127.0.0.1:9102"},  # shard 1's metrics port
        {"web_workers": 0},
        {"outbox_relays": -1},
        {"metrics_host": "worker-{name}"},  # then the web target must be given
        {"metrics_host": "evil host"},
        {"web_target": "web"},
        {"web_bind": "127.0.0.1:8000 --reload"},
        {"metrics_base_port": 65530},
    ],
)
def test_refuses_inconsistent_service_parameters(config):
    with pytest.raises(ValueError):
        render("prometheus", DeploymentConfig(**config), 4, QUEUES)


def test_production_secrets_come_from_the_host_never_from_the_repo():
    needed = {
        "SECRET_KEY", "PUSH_TOKEN_KEYS", "PUSH_TOKEN_HASH_KEY", "DATABASE_URL", "RABBITMQ_URL", "REDIS_URL",
        "PUSH_BOUNCER_URL", "PUSH_BOUNCER_SERVER_UUID", "PUSH_BOUNCER_API_KEY", "APNS_AUTH_KEY_FILE", "APNS_KEY_ID",
        "APNS_TEAM_ID", "FCM_SERVICE_ACCOUNT_FILE", "EXPO_ACCESS_TOKEN", "EMAIL_HOST", "EMAIL_HOST_PASSWORD",
        "SMS_ACCOUNT_SID", "SMS_AUTH_TOKEN",
    }  # fmt: skip
    example = (ROOT / "deploy" / "production.env.example").read_text()
    values = dict(line.split("=", 1) for line in example.splitlines() if line and not line.startswith("#"))
    assert needed <= set(values)
    for name, value in values.items():
        if any(word in name for word in ("KEY", "TOKEN", "PASSWORD", "SID")) and not name.endswith("_FILE"):
            assert value == "''" or value.startswith("'<"), f"{name} holds a value, not a placeholder"

    env_template = (ROOT / "puppet" / "notifications" / "templates" / "env.erb").read_text()
    for name in ("SECRET_KEY", "PUSH_TOKEN_KEYS", "PUSH_TOKEN_HASH_KEY", "DATABASE_URL", "RABBITMQ_URL"):
        assert f"{name}='<%= @" in env_template
    assert "@secrets.keys.sort.each" in env_template  # providers, bouncer, SMTP, SMS, Redis: from the caller
    init = (ROOT / "puppet" / "notifications" / "manifests" / "init.pp").read_text()
    for parameter in ("secret_key", "database_url", "rabbitmq_url", "push_token_keys", "push_token_hash_key"):
        assert re.search(rf"Sensitive\[String\[1\]\] \${parameter},", init), parameter  # required, no default
    compose = (ROOT / "docker-compose.yml").read_text()
    assert "path: .env.secrets" in compose and "SECRET_KEY:" not in compose
    assert (
        ".env.secrets" in (ROOT / ".gitignore").read_text() and ".env.secrets" in (ROOT / ".dockerignore").read_text()
    )
