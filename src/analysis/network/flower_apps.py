"""The Flower apps of the clinic network: ``server_app`` (the network lead) and ``client_app`` (a clinic).

Both are built from configuration, so one Flower App serves every analysis:

* a clinic's SuperNode is started with ``--node-config`` holding ``node-factory="module:function"``; the
  function is called with the node-config dict and returns a :class:`~.protocol.Node` (the clinic's own
  data stay behind it). ``allow-plain=true`` lets the clinic answer a plain (non-secure) run; by default
  it refuses one. A node may define ``hello(run: dict) -> None`` and raise :class:`~.protocol.Refusal`
  to refuse a run at the handshake; the refusal is printed on the clinic's console and named at the lead.
* the run config holds ``driver-factory="module:function"`` (called with the run-config dict, returns a
  :class:`~.protocol.Driver` with a ``result() -> dict`` method), ``out`` (the result file, written once at
  the end, atomically), ``clinics`` (how many SuperNodes to wait for), ``secure`` (default true),
  ``timeout-s`` (per message exchange), ``connect-timeout-s``, ``poll-s``, ``on-lost`` (``stop``: a lost
  clinic ends the run; ``drop``: it is dropped and the driver starts again over the others, down to
  ``min-clinics``: every round of one fit must be a sum over the same clinics), and optionally the
  fixed-point layout ``frac-bits``, ``limbs``, ``limb-bits``.

If the run ends with a lost clinic, nothing is written to ``out``; ``out`` + ``.lost.json`` names the
clinics and what happened (with the round log), and the ServerApp fails.
"""

from __future__ import annotations

import importlib
import json
import sys
import traceback
from pathlib import Path
from typing import Any

import numpy as np
from flwr.app import ConfigRecord, Context, Message, RecordDict
from flwr.client.mod import secaggplus_mod
from flwr.clientapp import ClientApp
from flwr.common import Code, FitRes, Status, ndarrays_to_parameters
from flwr.compat.common import recorddict_compat as compat
from flwr.serverapp import Grid, ServerApp

from ..store import write_text
from .fixedpoint import FixedPoint, FixedPointRangeError
from .flower_transport import FlowerTransport, fitins_to_request, set_pull_backoff
from .protocol import ClinicLost, Driver, Node, Refusal, run


def load_factory(spec: str) -> Any:
    """``"package.module:function"`` -> the function."""
    module, _, name = str(spec).partition(":")
    if not module or not name:
        raise ValueError(f"a factory is 'module:function', got {spec!r}")
    return getattr(importlib.import_module(module), name)


def flag(value: Any) -> bool:
    return value is True or str(value).strip().lower() in {"1", "true", "yes"}


def codec_from(config: dict[str, Any]) -> FixedPoint:
    d = FixedPoint()
    return FixedPoint(
        frac_bits=int(config.get("frac-bits", d.frac_bits)),
        limbs=int(config.get("limbs", d.limbs)),
        limb_bits=int(config.get("limb-bits", d.limb_bits)),
    )


# -- the clinic's side --------------------------------------------------------------------------------------
client_app = ClientApp()


def _node(context: Context) -> Node:
    """The clinic's node, rebuilt for each message (Flower runs a ClientApp per message); a node with
    ``snapshot() -> dict`` and ``restore(dict)`` keeps its state (e.g. rounds answered) in the run's context."""
    node: Node = load_factory(str(context.node_config["node-factory"]))(dict(context.node_config))
    saved = context.state.config_records.get("node-state")
    if saved is not None and callable(getattr(node, "restore", None)):
        node.restore(dict(saved))  # type: ignore[attr-defined]
    return node


def _keep(node: Node, context: Context) -> None:
    if callable(getattr(node, "snapshot", None)):
        context.state.config_records["node-state"] = ConfigRecord(node.snapshot())  # type: ignore[attr-defined]


def _say(label: str, text: str) -> None:
    """One line on the clinic's own console (the SuperNode's terminal or log)."""
    print(f"[clinic {label}] {text}", file=sys.stderr, flush=True)


@client_app.query("hello")
def hello(msg: Message, context: Context) -> Message:
    node = _node(context)
    info = json.loads(str(msg.content.config_records["hello"]["run"]))
    refused = ""
    if not info.get("secure", True) and not flag(context.node_config.get("allow-plain", False)):
        refused = "this clinic answers only through secure aggregation (node config allow-plain is false)"
    elif callable(getattr(node, "hello", None)):
        try:
            node.hello(info)  # type: ignore[attr-defined]
        except Refusal as exc:
            refused = exc.reason
    _say(node.label, f"refused the run: {refused}" if refused else f"joined the run (secure={info.get('secure')})")
    reply = ConfigRecord({"label": node.label, "refused": refused})
    return Message(RecordDict({"hello": reply}), reply_to=msg)


def _answer(msg: Message, context: Context, secure: bool) -> Message:
    fitins = compat.recorddict_to_fitins(msg.content, keep_input=True)
    request = fitins_to_request(fitins)
    node = _node(context)
    metrics: dict[str, Any] = {}
    payload = np.zeros(0)
    try:
        if not secure and not flag(context.node_config.get("allow-plain", False)):
            raise Refusal("plain (non-secure) answers are not allowed by this clinic")
        vec = np.asarray(node.answer(request), dtype=np.float64).ravel()
        metrics["length"] = int(vec.size)
        if not np.all(np.isfinite(vec)):
            metrics["malformed"] = "values that are not finite"
        elif secure:
            payload = codec_from(fitins.config).encode(vec)
        else:
            payload = vec
        _say(node.label, f"answered round {request.round} ({request.kind}, {vec.size} values)")
    except Refusal as exc:
        metrics["refused"] = exc.reason
        _say(node.label, f"refused round {request.round}: {exc.reason}")
    except FixedPointRangeError as exc:
        metrics["malformed"] = str(exc)
        _say(node.label, f"could not encode round {request.round}: {exc}")
    except Exception as exc:  # the details stay on the clinic's console; the lead learns only the type
        traceback.print_exc()
        metrics["error"] = f"{type(exc).__name__} (details on the clinic's console)"
    _keep(node, context)
    if len(metrics) > 1 or "length" not in metrics:
        payload = np.zeros(0)
    res = FitRes(Status(Code.OK, "ok"), ndarrays_to_parameters([payload]), num_examples=1, metrics=metrics)
    return Message(compat.fitres_to_recorddict(res, keep_input=True), reply_to=msg)


@client_app.train(mods=[secaggplus_mod])
def secure_round(msg: Message, context: Context) -> Message:
    return _answer(msg, context, secure=True)


@client_app.train("plain")
def plain_round(msg: Message, context: Context) -> Message:
    return _answer(msg, context, secure=False)


# -- the network lead's side --------------------------------------------------------------------------------
def run_network(grid: Grid, context: Context) -> dict[str, Any]:
    """The ServerApp's work: hello, the driver's rounds, the result written once. Returns what was written."""
    cfg = dict(context.run_config)
    out = Path(str(cfg["out"]))
    if "pull-backoff-s" in cfg:
        set_pull_backoff(float(cfg["pull-backoff-s"]))
    secure = flag(cfg.get("secure", True))
    transport = FlowerTransport(
        grid,
        context,
        secure=secure,
        timeout_s=float(cfg.get("timeout-s", 60.0)),
        poll_s=float(cfg.get("poll-s", 0.1)),
        codec=codec_from(cfg),
    )
    drop = str(cfg.get("on-lost", "stop")) == "drop"
    min_clinics = int(cfg.get("min-clinics", 2))
    dropped: dict[str, str] = {}

    def lose(exc: ClinicLost) -> None:
        """The ``on-lost=drop`` rule: drop the clinics named, or re-raise when the rule or the count forbids it."""
        named = {lab for lab in exc.problems if lab in transport.active().values()}
        if not drop or not named or len(transport.active()) - len(named) < min_clinics:
            raise exc
        dropped.update({lab: exc.problems[lab] for lab in named})
        transport.drop(named)

    try:
        try:
            transport.hello(int(cfg["clinics"]), float(cfg.get("connect-timeout-s", 60.0)))
        except ClinicLost as exc:
            lose(exc)
        while True:
            # a fit's rounds must all be sums over the same clinics: after a loss the driver starts again
            driver: Driver = load_factory(str(cfg["driver-factory"]))(cfg)
            try:
                rounds = run(driver, transport)
                break
            except ClinicLost as exc:
                lose(exc)
    except ClinicLost as exc:
        lost = {"lost": exc.problems, "log": transport.log, "clinics": sorted(transport.labels.values())}
        write_text(Path(f"{out}.lost.json"), json.dumps(lost, indent=2, sort_keys=True) + "\n", private=True)
        raise
    result = {
        "result": driver.result(),  # type: ignore[attr-defined]
        "rounds": rounds,
        "secure": secure,
        "clinics": sorted(transport.active().values()),
        "dropped": dropped,
        "log": transport.log,
    }
    write_text(out, json.dumps(result, indent=2, sort_keys=True) + "\n", private=True)
    return result


server_app = ServerApp()


@server_app.main()
def main(grid: Grid, context: Context) -> None:
    run_network(grid, context)
