"""docker-compose.yml and the Dockerfile, without Docker: valid, complete, and wired together.

The compose file is validated by check-jsonschema against the Compose Specification schema
that package ships and keeps current (installed by the pyproject's dev extra), not by a copied
schema. Docker's own `docker compose config` would be the stricter judge, but the compose
plugin is not installable here (Debian 12 carries only the retired Python docker-compose 1.29).
"""

from __future__ import annotations

import copy
import json
import re
import subprocess
import sys
from functools import cache
from pathlib import Path
from typing import Any

import yaml

from tests.common import tool

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = ROOT / "docker-compose.yml"
DOCKERFILE = ROOT / "Dockerfile"
PROMETHEUS_COMPOSE = ROOT / "prometheus" / "compose" / "prometheus.yml"


@cache
def compose() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load(COMPOSE.read_text())
    return data


def services() -> dict[str, dict[str, Any]]:
    result: dict[str, dict[str, Any]] = compose()["services"]
    return result


def bind_mounts(service: dict[str, Any]) -> list[tuple[str, str]]:
    """(source, target) of the service's host-path volumes (named volumes left out)."""
    out = []
    for volume in service.get("volumes", []):
        if isinstance(volume, dict):
            if volume.get("type") == "bind":
                out.append((volume["source"], volume["target"]))
            continue
        source, target = volume.split(":")[:2]
        if source.startswith((".", "/")):
            out.append((source, target))
    return out


def check_compose(path: Path) -> subprocess.CompletedProcess[str]:
    """check-jsonschema with the Compose Specification schema it ships (a pyproject dev extra)."""
    command = [str(Path(sys.executable).parent / "check-jsonschema"), "--builtin-schema"]
    return subprocess.run(
        [*command, "vendor.compose-spec", str(path)], capture_output=True, text=True, timeout=120
    )


def test_compose_file_matches_the_compose_spec() -> None:
    result = check_compose(COMPOSE)
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_compose_check_rejects_a_broken_file(tmp_path: Path) -> None:
    broken = copy.deepcopy(compose())
    broken["services"]["worker"]["restart_policy"] = "always"  # belongs under deploy:
    path = tmp_path / "docker-compose.yml"
    path.write_text(yaml.safe_dump(broken))
    result = check_compose(path)
    assert result.returncode == 1, result.stdout + result.stderr
    assert "restart_policy" in result.stdout, result.stdout


def test_the_stack_has_every_component() -> None:
    assert set(services()) == {
        "kafka",
        "topics",
        "worker",
        "wallboard",
        "simulator",
        "prometheus",
        "alertmanager",
        "grafana",
    }


def test_every_file_the_stack_mounts_or_builds_exists() -> None:
    for name, service in services().items():
        for source, _ in bind_mounts(service):
            assert not source.startswith("/"), f"{name}: absolute host path {source}"
            assert (ROOT / source).exists(), f"{name} mounts {source}, which does not exist"
        build = service.get("build")
        if build is not None:
            context = build if isinstance(build, str) else build.get("context", ".")
            dockerfile = (
                "Dockerfile" if isinstance(build, str) else build.get("dockerfile", "Dockerfile")
            )
            assert (ROOT / context / dockerfile).is_file(), name
    assert list((ROOT / "prometheus" / "rules").glob("*.yml")), "no rule files to mount"


def test_images_are_pinned() -> None:
    for name, service in services().items():
        image = service.get("image")
        if image is None or "build" in service:
            continue
        repository, _, tag = image.rpartition(":")
        assert repository and tag and tag != "latest", f"{name}: pin {image}"
    assert services()["kafka"]["image"].startswith("apache/kafka:4.")
    assert services()["grafana"]["image"].startswith("grafana/grafana:11.6.")


def test_workers_can_run_as_several_replicas() -> None:
    worker = services()["worker"]
    assert worker["deploy"]["replicas"] >= 2
    assert "container_name" not in worker and "ports" not in worker, (
        "a fixed name or host port stops a second replica: Prometheus finds them by DNS"
    )
    assert worker["command"] == ["worker"]


def test_dependencies_wait_for_health_or_completion() -> None:
    for name, service in services().items():
        depends = service.get("depends_on", {})
        assert isinstance(depends, dict), f"{name}: use the long depends_on form with conditions"
        for other, spec in depends.items():
            condition = spec["condition"]
            if condition == "service_healthy":
                assert "healthcheck" in services()[other], f"{name} waits for {other}'s health"
            else:
                assert condition == "service_completed_successfully", (name, other)
                assert services()[other].get("restart") == "no", f"{other} is a one-shot"
    for name in ("kafka", "worker", "prometheus", "alertmanager", "grafana"):
        assert "healthcheck" in services()[name], name


def test_kafka_is_a_single_kraft_node_reachable_inside_the_network() -> None:
    env = services()["kafka"]["environment"]
    assert env["KAFKA_PROCESS_ROLES"] == "broker,controller"
    assert "PLAINTEXT://kafka:9092" in env["KAFKA_ADVERTISED_LISTENERS"]
    assert env["KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR"] == 1
    cluster_id = env["CLUSTER_ID"]
    assert re.fullmatch(r"[A-Za-z0-9_-]{22}", cluster_id), "a base64url UUID (16 bytes)"
    for name in ("topics", "worker", "simulator"):
        assert services()[name]["environment"]["KAFKA_BOOTSTRAP"] == "kafka:9092", name


def test_grafana_is_provisioned_anonymous_and_opens_on_the_wallboard() -> None:
    grafana = services()["grafana"]
    env = grafana["environment"]
    assert env["GF_AUTH_ANONYMOUS_ENABLED"] == "true"
    assert env["GF_AUTH_ANONYMOUS_ORG_ROLE"] == "Viewer"
    mounts = dict(bind_mounts(grafana))
    home = env["GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"]
    inside = mounts["./grafana/dashboards"]
    assert home.startswith(inside + "/")
    assert (ROOT / "grafana" / "dashboards" / home.removeprefix(inside + "/")).is_file()
    assert mounts["./grafana/provisioning"] == "/etc/grafana/provisioning"


def test_prometheus_finds_the_workers_by_dns_as_job_callcenter() -> None:
    prometheus = services()["prometheus"]
    mounts = dict(bind_mounts(prometheus))
    config_path = mounts["./prometheus/compose/prometheus.yml"]
    assert f"--config.file={config_path}" in prometheus["command"]
    rules_dir = mounts["./prometheus/rules"]
    config = yaml.safe_load(PROMETHEUS_COMPOSE.read_text())
    assert config["rule_files"] == [f"{rules_dir}/*.yml"]
    (job,) = [j for j in config["scrape_configs"] if j["job_name"] == "callcenter"]
    (sd,) = job["dns_sd_configs"]
    assert sd["names"] == ["worker"] and sd["port"] == 6066
    assert "6066" in [str(p) for p in services()["worker"].get("expose", [])]
    (am,) = config["alerting"]["alertmanagers"]
    assert am["static_configs"][0]["targets"] == ["alertmanager:9093"]
    am_mounts = dict(bind_mounts(services()["alertmanager"]))
    assert am_mounts["./alertmanager/alertmanager.yml"] == "/etc/alertmanager/alertmanager.yml"


def test_prometheus_compose_config_passes_promtool(tmp_path: Path) -> None:
    promtool = tool("promtool")
    # The container's rule path, pointed at the repository's rules.
    text = PROMETHEUS_COMPOSE.read_text().replace(
        "/etc/prometheus/rules/", f"{ROOT / 'prometheus' / 'rules'}/"
    )
    path = tmp_path / "prometheus.yml"
    path.write_text(text)
    result = subprocess.run(
        [promtool, "check", "config", str(path)], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stdout + result.stderr


def dockerfile_instructions() -> list[tuple[str, str]]:
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text())
    out = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            keyword, _, rest = line.partition(" ")
            out.append((keyword.upper(), rest.strip()))
    return out


def test_the_image_runs_stream_app_as_a_non_root_user() -> None:
    instructions = dockerfile_instructions()
    assert instructions[0] == ("FROM", "python:3.12-slim")
    values = {k: v for k, v in instructions}  # the last of each kind
    assert json.loads(values["ENTRYPOINT"]) == ["stream-app"]
    assert json.loads(values["CMD"]) == ["worker"]
    assert values["EXPOSE"] == "6066"
    assert values["USER"] not in {"root", "0"}
    last_user = max(i for i, (k, _) in enumerate(instructions) if k == "USER")
    last_run = max(i for i, (k, _) in enumerate(instructions) if k == "RUN")
    assert last_run < last_user, "the user switch comes last: the image's process is unprivileged"


def test_every_file_the_image_copies_exists_and_is_not_ignored() -> None:
    ignored = {
        line.strip()
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    }
    for keyword, rest in dockerfile_instructions():
        if keyword != "COPY":
            continue
        *sources, _ = rest.split()
        for source in sources:
            assert (ROOT / source).exists(), f"COPY {source}: missing"
            assert source.rstrip("/") not in ignored, f"COPY {source}: excluded by .dockerignore"
    env = " ".join(v for k, v in dockerfile_instructions() if k == "ENV")
    # Installed as a package, the code does not find topics/ beside it: the image says where.
    assert "TOPIC_CATALOG=/app/topics/catalog.yaml" in env
