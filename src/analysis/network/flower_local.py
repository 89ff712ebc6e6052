"""A whole clinic network on one machine: a SuperLink and one SuperNode per clinic as real processes.

:func:`simulate_federation` starts ``flower-superlink`` and one ``flower-supernode`` per node config on
127.0.0.1 (insecure: loopback only), submits the Flower App (:mod:`.flower_apps`) with ``flwr run``, waits
for the result file (bounded), then stops every process group it started, and only those. The deployment
commands (TLS, node authentication) are in ``docs/network-deployment.md``.

Two simulation-only speed-ups, neither of which changes a message:

* a stock SuperNode sleeps 3 s whenever it finds no message, so each of a SecAgg+ round's four exchanges
  waits up to 3 s; here the SuperNodes run through :func:`_supernode`, which caps that sleep at ``poll_s``;
* a stock SuperNode's SuperExec starts a fresh ``flwr-clientapp`` process per message (seconds of imports
  on a small machine, four times a round); here each SuperNode runs with ``--isolation process`` beside a
  :func:`_warm_superexec`, which has the imports done once and forks for each message instead.

In a deployment the clinics run the stock ``flower-supernode`` (rounds are then slower, not different).
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from .flower_transport import set_pull_backoff
from .protocol import ClinicLost

_QUIET_ENV = {"FLWR_TELEMETRY_ENABLED": "0", "FLWR_DISABLE_UPDATE_CHECK": "1", "PYTHONUNBUFFERED": "1"}


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def toml_value(value: Any) -> str:
    """A Python value as a TOML value (what ``--node-config`` and run-config files take)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    return json.dumps(str(value))  # a TOML basic string (JSON's escapes are TOML's)


def _app_pyproject(run_config: dict[str, Any]) -> str:
    cfg = "\n".join(f"{json.dumps(k)} = {toml_value(v)}" for k, v in sorted(run_config.items()))
    return f"""[build-system]
requires = ["hatchling"]
build-backend = "hatchling.build"

[project]
name = "hipknee-network"
version = "1.0.0"
description = "The hip-knee outcomes clinic network (code installed with the project)"
license = "MIT"
dependencies = []

[tool.flwr.app]
publisher = "hipknee"

[tool.flwr.app.components]
serverapp = "analysis.network.flower_apps:server_app"
clientapp = "analysis.network.flower_apps:client_app"

[tool.flwr.app.config]
{cfg}
"""


def _supernode(argv: list[str], poll_s: float) -> None:
    """``flower-supernode`` with its idle sleep capped at ``poll_s`` (simulation only)."""
    import flwr.supernode.start_client_internal as sci
    from flwr.supernode.cli import flower_supernode

    class _Time:
        def __getattr__(self, name: str) -> Any:
            return getattr(time, name)

        @staticmethod
        def sleep(seconds: float) -> None:
            time.sleep(min(seconds, poll_s))

    sci.time = _Time()  # type: ignore[assignment]
    set_pull_backoff(poll_s)
    sys.argv = ["flower-supernode", *argv]
    flower_supernode()


def _succeeded(stdout: bytes) -> bool:
    """``flwr run --format json`` exits 0 also when it failed; its JSON says."""
    try:
        return bool(json.loads(stdout.decode("utf-8", "replace")).get("success"))
    except ValueError:
        return False


def _descendants(pid: int) -> list[int]:
    """The processes started by ``pid`` and by them (Linux /proc; empty elsewhere)."""
    found: list[int] = []
    todo = [pid]
    while todo and len(found) < 10_000:
        current = todo.pop()
        for children in Path(f"/proc/{current}/task").glob("*/children"):
            with contextlib.suppress(OSError, ValueError):
                kids = [int(k) for k in children.read_text().split()]
                found += kids
                todo += kids
    return found


def _stop(procs: list[subprocess.Popen[bytes]]) -> None:
    """SIGTERM, then SIGKILL, to the processes started here and their descendants (some detach: the SuperLink's
    SuperExec runs in its own session), and to nothing else."""
    pids = [q for p in procs for q in (p.pid, *_descendants(p.pid))]
    for sig in (signal.SIGTERM, signal.SIGKILL):
        for pid in pids:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, sig)
        end = time.monotonic() + 10
        while time.monotonic() < end and any(p.poll() is None for p in procs):
            time.sleep(0.05)
        if all(p.poll() is not None for p in procs):
            break
    for p in procs:
        with contextlib.suppress(subprocess.TimeoutExpired):
            p.wait(timeout=1)


def _warm_superexec(argv: list[str], poll_s: float) -> None:
    """``flower-superexec`` for ClientApps that forks a warm process per message instead of starting one."""
    import flwr.supercore.superexec.executor.subprocess_executor as se
    from flwr.supercore.cli.flower_superexec import flower_superexec
    from flwr.supercore.constant import TaskType
    from flwr.supercore.superexec.executor.types import ExecutionSpec, LaunchResult
    from flwr.supernode.runtime.run_clientapp import run_clientapp

    from . import flower_apps  # noqa: F401 - imported once, before the forks

    set_pull_backoff(poll_s)
    original = se.SubprocessExecutor.launch

    def launch(self: se.SubprocessExecutor, spec: ExecutionSpec) -> LaunchResult:
        if spec.task_type != TaskType.CLIENT_APP or not spec.insecure:
            return original(self, spec)
        pid = os.fork()
        if pid == 0:  # the child: one ClientApp task, then exit without running the parent's cleanup
            signal.signal(signal.SIGCHLD, signal.SIG_DFL)
            code = 1
            try:
                run_clientapp(spec.runtime_api_address, spec.token, insecure=True, parent_pid=spec.parent_pid)
                code = 0
            except SystemExit as exc:
                code = exc.code if isinstance(exc.code, int) else 1
            finally:
                os._exit(code)
        return LaunchResult.accepted()

    signal.signal(signal.SIGCHLD, signal.SIG_IGN)  # the forks are reaped automatically
    se.SubprocessExecutor.launch = launch  # type: ignore[method-assign]
    sys.argv = ["flower-superexec", *argv]
    flower_superexec()


def simulate_federation(
    node_configs: list[dict[str, Any]],
    driver_factory: str,
    run_config: dict[str, Any],
    out: Path,
    secure: bool = True,
    timeout_s: float = 30.0,
    total_timeout_s: float = 300.0,
    poll_s: float = 0.05,
    workdir: Path | None = None,
) -> dict[str, Any]:
    """Run the network with one real SuperNode per node config; returns the result (also written to ``out``).

    ``timeout_s`` is the per-exchange timeout of each round; ``total_timeout_s`` bounds the whole run.
    Raises :class:`ClinicLost` (from the ServerApp's ``.lost.json``) if a clinic was lost, and
    ``RuntimeError`` if the run failed otherwise or did not finish in time. Process logs are kept in
    ``workdir`` (default: a temporary folder, removed at the end).
    """
    out = Path(out).resolve()
    for stale in (out, Path(f"{out}.lost.json")):
        stale.unlink(missing_ok=True)
    tmp = None if workdir is not None else tempfile.TemporaryDirectory(prefix="flower-net-")
    work = Path(workdir) if workdir is not None else Path(tmp.name)  # type: ignore[union-attr]
    work.mkdir(parents=True, exist_ok=True)
    port = _free_port()
    env = {**os.environ, **_QUIET_ENV, "FLWR_HOME": str(work / "flwr-home")}
    env["FLWR_SUPEREXEC_TASK_POLL_INTERVAL"] = str(max(poll_s, 0.01))
    env["PYTHONPATH"] = os.pathsep.join(p for p in sys.path if p and Path(p).is_dir())
    bindir = Path(sys.executable).parent
    env["PATH"] = os.pathsep.join([str(bindir), env.get("PATH", "")])  # the SuperLink/SuperNode start flwr's tools
    procs: list[subprocess.Popen[bytes]] = []

    def start(cmd: list[str], name: str) -> None:
        log = open(work / f"{name}.log", "wb")  # noqa: SIM115 - closed when the process ends
        procs.append(
            subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT, cwd=work, start_new_session=True)
        )
        log.close()

    cfg = {
        "clinics": len(node_configs),
        "secure": secure,
        "timeout-s": float(timeout_s),
        "poll-s": float(poll_s),
        "pull-backoff-s": float(poll_s),
        **run_config,
        "driver-factory": driver_factory,
        "out": str(out),
    }
    app = work / "app"
    app.mkdir(exist_ok=True)
    (app / "pyproject.toml").write_text(_app_pyproject(cfg), encoding="utf-8")
    home = work / "flwr-home"
    home.mkdir(exist_ok=True)
    (home / "config.toml").write_text(
        f'[superlink]\ndefault = "local-net"\n\n[superlink.local-net]\naddress = "127.0.0.1:{port}"\ninsecure = true\n',
        encoding="utf-8",
    )
    try:
        start(
            [str(bindir / "flower-superlink"), "--insecure", "--host", "127.0.0.1", "--port", str(port)]
            + ["--disable-runtime-dependency-installation"],
            "superlink",
        )
        for i, node in enumerate(node_configs):
            node_cfg = " ".join(f"{k}={toml_value(v)}" for k, v in node.items())
            node_port = _free_port()
            args = ["--insecure", "--superlink", f"127.0.0.1:{port}", "--port", str(node_port)]
            args += ["--node-config", node_cfg, "--max-wait-time", str(total_timeout_s), "--isolation", "process"]
            code = f"from analysis.network.flower_local import _supernode; _supernode({args!r}, {poll_s!r})"
            start([sys.executable, "-c", code], f"supernode-{i}")
            exec_args = ["--insecure", "--runtime-api-address", f"127.0.0.1:{node_port}"]
            exec_args += ["--parent-pid", str(procs[-1].pid)]
            code = f"from analysis.network.flower_local import _warm_superexec; _warm_superexec({exec_args!r}, {poll_s!r})"
            start([sys.executable, "-c", code], f"superexec-{i}")
        deadline = time.monotonic() + total_timeout_s
        submitted = False
        while time.monotonic() < deadline:
            if not submitted:
                sub = subprocess.run(
                    [str(bindir / "flwr"), "run", str(app), "local-net", "--format", "json"],
                    env=env,
                    cwd=work,
                    capture_output=True,
                    timeout=max(1.0, deadline - time.monotonic()),
                )
                with open(work / "flwr-run.log", "ab") as fh:
                    fh.write(sub.stdout + sub.stderr)
                submitted = sub.returncode == 0 and _succeeded(sub.stdout)
                if not submitted:
                    time.sleep(0.5)  # the SuperLink may still be starting
                    continue
            if out.exists():
                return dict(json.loads(out.read_text(encoding="utf-8")))
            lost = Path(f"{out}.lost.json")
            if lost.exists():
                raise ClinicLost(json.loads(lost.read_text(encoding="utf-8"))["lost"])
            if any(p.poll() is not None for p in procs):
                raise RuntimeError(f"a Flower process ended early; logs in {work}")
            time.sleep(poll_s * 4)
        raise RuntimeError(f"the network run did not finish in {total_timeout_s:g} s; logs in {work}")
    finally:
        _stop(procs)
        if tmp is not None:
            tmp.cleanup()
