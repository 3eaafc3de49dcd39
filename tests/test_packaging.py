"""What an operator deploys (SPEC 1, 2): the wheel carries the menu, the prompts and the demo
accounts and runs from them alone; the Procfile's lines serve the hotline and the account
service with gunicorn on the ports the platform gives."""

from __future__ import annotations

import json
import os
import shlex
import shutil
import signal
import subprocess
import sys
import time
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
from conftest import fresh_database
from hotline_server import BIN, PEPPER, free_port

ROOT = Path(__file__).resolve().parent.parent
PACKAGE_DATA = (
    "ivr/menu.toml",
    "ivr/prompts/cmn-CN.toml",
    "ivr/prompts/en-US.toml",
    "services/accounts/demo_accounts.json",
)
NOT_SOURCE = shutil.ignore_patterns(
    ".git", ".venv", "build", "dist", "*.egg-info", "instance", "__pycache__", ".*_cache",
    ".hypothesis", "tests", "bench",
)  # fmt: skip


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """`pip wheel --no-deps` of a clean copy of the project (no stale build/ to hide a gap)."""
    folder = tmp_path_factory.mktemp("wheel")
    source = folder / "source"
    shutil.copytree(ROOT, source, ignore=NOT_SOURCE)
    built = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet", "-w", str(folder / "out"),
         str(source)],
        capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert built.returncode == 0, built.stdout + built.stderr
    wheels = list((folder / "out").glob("hotline_12333-*.whl"))
    assert len(wheels) == 1, wheels
    return wheels[0]


def test_the_wheel_carries_the_menu_the_prompts_and_the_demo_accounts(wheel: Path) -> None:
    with zipfile.ZipFile(wheel) as zf:
        names = set(zf.namelist())
        for name in PACKAGE_DATA:
            assert name in names, f"{name} is not in {wheel.name}"
        demo = json.loads(zf.read("services/accounts/demo_accounts.json"))
        assert len(demo["accounts"]) >= 4
        entry_points = next(n for n in names if n.endswith(".dist-info/entry_points.txt"))
        assert "ivr = ivr.cli:main" in zf.read(entry_points).decode()
    assert not [n for n in names if n.startswith(("tests/", "bench/"))]


def test_the_hotline_runs_from_the_wheel_alone(wheel: Path, tmp_path: Path) -> None:
    unpacked = tmp_path / "site"
    with zipfile.ZipFile(wheel) as zf:
        zf.extractall(unpacked)
    check = (
        "import ivr, services.accounts.demo as demo\n"
        "from ivr import catalog, menu\n"
        "from importlib import resources\n"
        "menu.load(); catalog.load()\n"
        "json = resources.files('services.accounts').joinpath(demo.DEMO_FILE).read_text('utf-8')\n"
        "print(ivr.__file__, len(json) > 0)\n"
    )
    ran = subprocess.run([sys.executable, "-c", check], cwd=tmp_path,
                         env={**os.environ, "PYTHONPATH": str(unpacked)},
                         capture_output=True, text=True, timeout=60, check=False)  # fmt: skip
    assert ran.returncode == 0, ran.stderr
    where, loaded = ran.stdout.split()
    assert Path(where).is_relative_to(unpacked), where  # the wheel's code, not the source tree
    assert loaded == "True"


# --- the Procfile ----------------------------------------------------------------------------


def procfile() -> dict[str, str]:
    """The Procfile's process types and their commands."""
    path = ROOT / "Procfile"
    assert path.is_file(), "there is no Procfile"
    lines = [x for x in path.read_text().splitlines() if x.strip() and not x.startswith("#")]
    kinds = {}
    for line in lines:
        kind, _, command = line.partition(":")
        kinds[kind.strip()] = command.strip()
    return kinds


def test_the_procfile_web_line_runs_the_hotline_with_gunicorn_on_port() -> None:
    web = procfile().get("web")
    assert web, "the Procfile has no web: line"
    words = shlex.split(web)
    assert words[0] == "gunicorn"
    assert "ivr:create_app()" in words
    bind = words[words.index("--bind") + 1] if "--bind" in words else ""
    assert bind.endswith(":$PORT"), bind


@pytest.fixture
def platform_env(tmp_path: Path, redis_url: str) -> Iterator[dict[str, str]]:
    """What a platform gives the Procfile's commands: the configuration, gunicorn on PATH."""
    with fresh_database(tmp_path) as url:
        env = {k: v for k, v in os.environ.items() if k not in ("ACCOUNTS_URL", "IVR_DEV_MODE")}
        yield env | {
            "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
            "IVR_INSTANCE_PATH": str(tmp_path / "instance"),
            "REDIS_URL": redis_url,
            "DATABASE_URL": url,
            "IVR_PIN_PEPPER": PEPPER,
            "TWILIO_AUTH_TOKEN": "procfile-test-token",
            "WEB_CONCURRENCY": "1",
        }


def run_procfile_line(command: str, env: dict[str, str], url: str, log: Path) -> int:
    """Run a Procfile command as a platform does (`sh -c`); the status of GET `url` once it
    answers; then stop the command's whole process group."""
    with open(log, "wb") as out:
        process = subprocess.Popen(["sh", "-c", command], env=env, stdout=out,
                                   stderr=subprocess.STDOUT, start_new_session=True)  # fmt: skip
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            assert process.poll() is None, log.read_text()
            try:
                return requests.get(url, timeout=5).status_code
            except (requests.ConnectionError, requests.Timeout):
                time.sleep(0.1)
        raise AssertionError(f"{command!r} did not answer at {url}:\n{log.read_text()}")
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


def test_the_procfile_web_line_serves_the_hotline(
    platform_env: dict[str, str], tmp_path: Path
) -> None:
    port = free_port()
    command = procfile()["web"]
    url = f"http://127.0.0.1:{port}/healthz"
    assert run_procfile_line(command, platform_env | {"PORT": str(port)}, url,
                             tmp_path / "web.log") == 200  # fmt: skip


def test_the_procfile_accounts_line_serves_the_account_service(
    platform_env: dict[str, str], tmp_path: Path
) -> None:
    command = procfile().get("accounts")
    assert command, "the Procfile has no accounts: line"
    assert "services.accounts.api:create_app()" in shlex.split(command)
    port = free_port()
    url = f"http://127.0.0.1:{port}/healthz"
    assert run_procfile_line(command, platform_env | {"ACCOUNTS_PORT": str(port)}, url,
                             tmp_path / "accounts.log") == 200  # fmt: skip


def test_ivr_serve_runs_gevent_workers_or_threads_when_asked(
    platform_env: dict[str, str], tmp_path: Path
) -> None:
    """`ivr serve` runs ivr/gunicorn_conf.py's gevent workers; `--threads N` alone asks for
    threaded workers (gevent's have no threads, and gunicorn would drop the option without a
    word); with `--worker-class gevent` it is refused, saying why."""
    for extra, worker in (((), "gevent"), (("--threads", "4"), "gthread")):
        port = free_port()
        log = tmp_path / f"serve-{worker}.log"
        command = shlex.join([str(BIN / "ivr"), "serve", "--port", str(port), *extra])
        assert run_procfile_line(command, platform_env, f"http://127.0.0.1:{port}/healthz",
                                 log) == 200  # fmt: skip
        assert f"Using worker: {worker}" in log.read_text()
    refused = subprocess.run(
        [str(BIN / "ivr"), "serve", "--threads", "4", "--worker-class", "gevent"],
        env=platform_env, capture_output=True, text=True, timeout=30, check=False,
    )  # fmt: skip
    assert refused.returncode == 2
    assert "--threads is for threaded workers (--worker-class gthread)" in refused.stderr
