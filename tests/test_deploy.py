"""The scheduling examples of deploy/ (cron and a systemd timer) are valid and run the weekly cycle as written.

Each example's command is run with its paths moved into a temporary folder (a `.venv/bin/hotspot` that is this
environment's, the sample's config as configs/city.toml) and `--dry-run` added, so what the README tells an agency
to install is what is checked.
"""

from __future__ import annotations

import configparser
import datetime
import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO_ROOT, SAMPLE_CONFIG

DEPLOY = REPO_ROOT / "deploy"
CRON = DEPLOY / "cron" / "hotspot-cycle"
SERVICE = DEPLOY / "systemd" / "hotspot-cycle.service"
TIMER = DEPLOY / "systemd" / "hotspot-cycle.timer"
ROOT = "/srv/hotspot"


def fake_root(tmp_path: Path) -> Path:
    """/srv/hotspot moved to tmp: this environment's hotspot as .venv/bin/hotspot, the sample as configs/city.toml."""
    root = tmp_path / "srv"
    (root / ".venv" / "bin").mkdir(parents=True)
    (root / ".venv" / "bin" / "hotspot").symlink_to(Path(sys.executable).with_name("hotspot"))
    (root / "configs").mkdir()
    text = SAMPLE_CONFIG.read_text().replace('path = "../data/',
                                             f'path = "{SAMPLE_CONFIG.parent.parent / "data"}/')
    (root / "configs" / "city.toml").write_text(text)
    return root


def dry_run_ok(output: str) -> None:
    # the sample ends on Tuesday 2019-12-31, so the week after it is stale: the dry run says it would refuse
    assert "dry run for the week of 2020-01-06: nothing was changed; the cycle would" in output, output
    assert "build the history from the config's sources" in output, output
    assert "refuse the week of 2020-01-06: stale:" in output, output


def cron_entries(text: str) -> tuple[dict[str, str], list[str]]:
    """The cron.d file's variables and job lines (comments and blank lines left out)."""
    env, jobs = {}, []
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        if re.match(r"^[A-Z_]+=", line):
            key, value = line.split("=", 1)
            env[key] = value
        else:
            jobs.append(line)
    return env, jobs


def test_the_cron_example_runs_the_cycle_weekly_and_its_command_works(tmp_path):
    from croniter import croniter

    env, jobs = cron_entries(CRON.read_text())
    assert len(jobs) == 1
    fields = jobs[0].split(None, 6)
    schedule, user, command = " ".join(fields[:5]), fields[5], fields[6]
    assert croniter.is_valid(schedule), schedule
    runs = croniter(schedule, datetime.datetime(2026, 1, 1))
    first, second = runs.get_next(datetime.datetime), runs.get_next(datetime.datetime)
    assert second - first == datetime.timedelta(weeks=1) and first.strftime("%a %H:%M") == "Tue 06:15"
    assert user == "hotspot" and ".venv/bin/hotspot cycle -c configs/city.toml" in command
    assert env["MLFLOW_TRACKING_URI"].startswith("sqlite:////srv/hotspot/")
    assert env["HOTSPOT_DATABASE_URL"].startswith("sqlite:////srv/hotspot/")

    root = fake_root(tmp_path)
    logs = tmp_path / "log"
    logs.mkdir()
    run = (command.replace(ROOT, str(root)).replace("/var/log/hotspot", str(logs))
           .replace("configs/city.toml", "configs/city.toml --dry-run"))
    job_env = {k: v.replace(ROOT, str(root)) for k, v in env.items() if k != "MAILTO"}
    proc = subprocess.run(["/bin/sh", "-c", run], capture_output=True, text=True, timeout=600,
                          env={**os.environ, **job_env, "PATH": os.environ["PATH"]})
    assert proc.returncode == 0, proc.stdout + proc.stderr
    dry_run_ok((logs / "cycle.log").read_text())
    assert not list(root.rglob("incidents.parquet"))  # a dry run stores no history


def unit(path: Path) -> configparser.ConfigParser:
    parser = configparser.ConfigParser(strict=False, interpolation=None)
    parser.optionxform = str  # systemd keys are case-sensitive
    parser.read_string(path.read_text())
    return parser


def test_the_systemd_timer_and_service_run_the_cycle_weekly(tmp_path):
    timer, service = unit(TIMER), unit(SERVICE)
    assert timer["Timer"]["Unit"] == SERVICE.name and timer["Timer"]["Persistent"] == "true"
    assert timer["Install"]["WantedBy"] == "timers.target"
    assert service["Service"]["Type"] == "oneshot"
    exec_start = shlex.split(service["Service"]["ExecStart"])
    assert exec_start[:4] == [f"{ROOT}/.venv/bin/hotspot", "cycle", "-c", f"{ROOT}/configs/city.toml"]
    environment = dict(line.split("=", 1) for line in re.findall(r"^Environment=(.+)$", SERVICE.read_text(), re.M))
    assert set(environment) == {"MLFLOW_TRACKING_URI", "HOTSPOT_DATABASE_URL"}

    # what the service runs, with its environment and working directory, as a dry run
    root = fake_root(tmp_path)
    command = [part.replace(ROOT, str(root)) for part in exec_start] + ["--dry-run"]
    proc = subprocess.run(command, capture_output=True, text=True, timeout=600, cwd=root,
                          env={**os.environ, **{k: v.replace(ROOT, str(root)) for k, v in environment.items()}})
    assert proc.returncode == 0, proc.stdout + proc.stderr
    dry_run_ok(proc.stdout)
    assert not list(root.rglob("incidents.parquet"))


def test_systemd_analyze_verifies_the_units(tmp_path):
    analyze = shutil.which("systemd-analyze")
    if not analyze:
        pytest.skip("systemd-analyze not installed (package systemd): the units are parsed and run by the test above")
    timer = unit(TIMER)
    calendar = subprocess.run([analyze, "calendar", "--iterations=2", timer["Timer"]["OnCalendar"]],
                              capture_output=True, text=True)
    assert calendar.returncode == 0 and calendar.stdout.count("Tue ") >= 2, calendar.stdout + calendar.stderr
    root = fake_root(tmp_path)
    units = tmp_path / "units"
    units.mkdir()
    for path in (SERVICE, TIMER):
        (units / path.name).write_text(path.read_text().replace(ROOT, str(root)))
    verified = subprocess.run([analyze, "verify", str(units / SERVICE.name), str(units / TIMER.name)],
                              capture_output=True, text=True, cwd=units)
    assert verified.returncode == 0, verified.stdout + verified.stderr
    broken = units / "hotspot-cycle.timer"
    broken.write_text(broken.read_text().replace("OnCalendar=Tue", "OnCalendar=Tuesdayish"))
    refused = subprocess.run([analyze, "verify", str(units / SERVICE.name), str(broken)],
                             capture_output=True, text=True, cwd=units)
    assert refused.returncode != 0 or "Failed to parse" in refused.stderr, refused.stderr  # the check can fail


COMPOSE = REPO_ROOT / "compose.yaml"


def test_the_compose_example_names_services_and_commands_that_exist():
    """compose.yaml (docs/scale-out.md): its services, the files its image copies, and every command it runs takes
    the options it is given; `docker compose config` validates it where docker exists."""
    import yaml

    spec = yaml.safe_load(COMPOSE.read_text())
    services = spec["services"]
    assert {"postgres", "mlflow", "scheduler", "worker", "api", "hotspot"} <= set(services)
    assert services["worker"]["deploy"]["replicas"] == 2
    dockerfile = REPO_ROOT / services["api"]["build"]["dockerfile"]
    for line in dockerfile.read_text().splitlines():
        if line.startswith("COPY "):
            for name in line.split()[1:-1]:
                assert (REPO_ROOT / name).exists(), f"{dockerfile.name} copies {name}, which is not in the repository"
    for volume in services["postgres"]["volumes"]:
        if volume.startswith("./"):
            assert (REPO_ROOT / volume.split(":")[0]).exists(), volume
    bin_dir = Path(sys.executable).parent
    for name, service in services.items():
        command = service.get("command")
        if not command:
            continue
        words = shlex.split(command.replace("${POSTGRES_PASSWORD:-hotspot}", "pw"))
        options = [w for w in words if w.startswith("--")]
        exe = shutil.which(words[0], path=str(bin_dir)) or shutil.which(words[0])
        assert exe, f"{name}: {words[0]} is not installed"
        sub = [w for w in words[1:3] if not w.startswith("-")][:1]
        helped = subprocess.run([exe, *sub, "--help"], capture_output=True, text=True, timeout=120)
        assert helped.returncode == 0, f"{name}: {words[0]} {sub} --help failed: {helped.stderr[-300:]}"
        for option in options:
            assert option in helped.stdout, f"{name}: `{' '.join([words[0], *sub])}` has no option {option}"
    docker = shutil.which("docker")
    if docker and subprocess.run([docker, "compose", "version"], capture_output=True).returncode == 0:
        checked = subprocess.run([docker, "compose", "-f", str(COMPOSE), "config", "--quiet"], capture_output=True,
                                 text=True, timeout=120)
        assert checked.returncode == 0, checked.stderr
