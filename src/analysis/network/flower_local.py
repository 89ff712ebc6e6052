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
import logging
import os
import signal
import socket
import sys
import tempfile
import time
import traceback
import warnings
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


def app_pyproject(run_config: dict[str, Any]) -> str:
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

    sci.time = _Time()  # type: ignore[assignment,attr-defined]
    set_pull_backoff(poll_s)
    sys.argv = ["flower-supernode", *argv]
    flower_supernode()


def _succeeded(stdout: bytes) -> bool:
    """``flwr run --format json`` exits 0 also when it failed; its JSON says."""
    return b'"success": true' in stdout


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


def _exited(pid: int) -> bool:
    with contextlib.suppress(ChildProcessError):
        return os.waitpid(pid, os.WNOHANG)[0] == pid
    return True


def _stop(pids: list[int]) -> None:
    """SIGTERM, then SIGKILL, to the processes started here and their descendants, and to nothing else."""
    everyone = [q for p in pids for q in (p, *_descendants(p))]
    alive = list(pids)
    for sig in (signal.SIGTERM, signal.SIGKILL):
        for pid in everyone:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, sig)
        end = time.monotonic() + 10
        while alive and time.monotonic() < end:
            alive = [p for p in alive if not _exited(p)]
            time.sleep(0.05)
        if not alive:
            break


def _warm_superexec(argv: list[str], poll_s: float) -> None:
    """``flower-superexec`` that forks a warm process per task (a ServerApp or one message of a ClientApp)
    instead of starting ``flwr-serverapp``/``flwr-clientapp`` afresh."""
    import flwr.supercore.superexec.executor.subprocess_executor as se
    from flwr.supercore.cli.flower_superexec import flower_superexec
    from flwr.supercore.constant import TaskType
    from flwr.supercore.superexec.executor.types import ExecutionSpec, LaunchResult
    from flwr.superlink.cli import flwr_serverapp
    from flwr.supernode.cli import flwr_clientapp

    from . import flower_apps  # noqa: F401 - imported once, before the forks

    set_pull_backoff(poll_s)
    original = se.SubprocessExecutor.launch
    mains = {TaskType.CLIENT_APP: flwr_clientapp, TaskType.SERVER_APP: flwr_serverapp}

    def launch(self: se.SubprocessExecutor, spec: ExecutionSpec) -> LaunchResult:
        if spec.task_type not in mains or not spec.insecure:
            return original(self, spec)
        args = [str(spec.task_type), "--runtime-api-address", spec.runtime_api_address, "--token", spec.token]
        args += ["--insecure"] + (["--parent-pid", str(spec.parent_pid)] if spec.parent_pid is not None else [])
        if os.fork() == 0:  # the child: one task, then exit without running the parent's cleanup
            signal.signal(signal.SIGCHLD, signal.SIG_DFL)
            _run_main(mains[spec.task_type], args)
        return LaunchResult.accepted()

    signal.signal(signal.SIGCHLD, signal.SIG_IGN)  # the forks are reaped automatically
    se.SubprocessExecutor.launch = launch  # type: ignore[method-assign]
    _run_main(flower_superexec, ["flower-superexec", *argv], exit_=False)


def _cli(which: str, argv: list[str]) -> None:
    """``flower-superlink`` or ``flwr`` (imported in the child: the CLI's import warns, which a test runner
    in the parent may treat as an error)."""
    if which == "superlink":
        from flwr.superlink.cli import flower_superlink as main
    else:
        from flwr.cli.app import app as main
    _run_main(main, argv)


def _run_main(main: Any, argv: list[str], exit_: bool = True) -> None:
    """Call a console-script main with ``argv``; in a fork (``exit_``), leave with its exit code."""
    code = 1
    try:
        sys.argv = list(argv)
        main()
        code = 0
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    except BaseException:
        traceback.print_exc()
    finally:
        if exit_:
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(code)


def _fork(target: Any, args: tuple[Any, ...], log: Path, env: dict[str, str], cwd: Path) -> int:
    """A new process (its own session) running ``target(*args)`` with output to ``log``; returns its PID.

    Forked from this process, so Flower's imports are already done (starting each process afresh costs
    seconds on a small machine).
    """
    pid = os.fork()
    if pid:
        return pid
    code = 1
    try:
        os.setsid()
        fd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        os.dup2(fd, 1)
        os.dup2(fd, 2)
        sys.stdout = open(1, "w", buffering=1, closefd=False)  # noqa: SIM115
        sys.stderr = open(2, "w", buffering=1, closefd=False)  # noqa: SIM115
        for handler in logging.getLogger("flwr").handlers:
            if isinstance(handler, logging.StreamHandler):
                handler.setStream(sys.stderr)
        warnings.resetwarnings()  # a test runner's "warnings are errors" is for its own process
        os.environ.clear()
        os.environ.update(env)
        os.chdir(cwd)
        target(*args)
        code = 0
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    except BaseException:
        traceback.print_exc()
    finally:
        os._exit(code)


def simulate_federation(
    node_configs: list[dict[str, Any]],
    driver_factory: str,
    run_config: dict[str, Any],
    out: Path,
    secure: bool = True,
    timeout_s: float = 30.0,
    total_timeout_s: float = 300.0,
    poll_s: float = 0.2,
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
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    pids: list[int] = []

    def start(target: Any, args: tuple[Any, ...], name: str) -> int:
        pids.append(_fork(target, args, work / f"{name}.log", env, work))
        return pids[-1]

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
    (app / "pyproject.toml").write_text(app_pyproject(cfg), encoding="utf-8")
    home = work / "flwr-home"
    home.mkdir(exist_ok=True)
    (home / "config.toml").write_text(
        f'[superlink]\ndefault = "local-net"\n\n[superlink.local-net]\naddress = "127.0.0.1:{port}"\ninsecure = true\n',
        encoding="utf-8",
    )
    try:
        link = ["flower-superlink", "--insecure", "--host", "127.0.0.1", "--port", str(port), "--isolation", "process"]
        link_pid = start(_cli, ("superlink", [*link, "--disable-runtime-dependency-installation"]), "superlink")
        link_exec = ["--insecure", "--runtime-api-address", f"127.0.0.1:{port}", "--parent-pid", str(link_pid)]
        start(_warm_superexec, (link_exec, poll_s), "superexec-link")
        for i, node in enumerate(node_configs):
            node_cfg = " ".join(f"{k}={toml_value(v)}" for k, v in node.items())
            node_port = _free_port()
            args = ["--insecure", "--superlink", f"127.0.0.1:{port}", "--port", str(node_port)]
            args += ["--node-config", node_cfg, "--max-wait-time", str(total_timeout_s), "--isolation", "process"]
            node_pid = start(_supernode, (args, poll_s), f"supernode-{i}")
            node_exec = ["--insecure", "--runtime-api-address", f"127.0.0.1:{node_port}", "--parent-pid", str(node_pid)]
            start(_warm_superexec, (node_exec, poll_s), f"superexec-{i}")
        deadline = time.monotonic() + total_timeout_s
        submitted = False
        while time.monotonic() < deadline:
            if not submitted:
                sub_log = work / "flwr-run.log"
                cli = ["flwr", "run", str(app), "local-net", "--format", "json"]
                sub = _fork(_cli, ("flwr", cli), sub_log, env, work)
                while not _exited(sub) and time.monotonic() < deadline:
                    time.sleep(poll_s)
                submitted = _succeeded(sub_log.read_bytes())
                if not submitted:
                    time.sleep(0.5)  # the SuperLink may still be starting
                    continue
            if out.exists():
                return dict(json.loads(out.read_text(encoding="utf-8")))
            lost = Path(f"{out}.lost.json")
            if lost.exists():
                raise ClinicLost(json.loads(lost.read_text(encoding="utf-8"))["lost"])
            if any(_exited(p) for p in pids):
                raise RuntimeError(f"a Flower process ended early; logs in {work}")
            time.sleep(poll_s * 4)
        raise RuntimeError(f"the network run did not finish in {total_timeout_s:g} s; logs in {work}")
    finally:
        _stop(pids)
        if tmp is not None:
            tmp.cleanup()
