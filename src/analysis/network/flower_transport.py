"""The network's rounds carried by real Flower nodes: a :class:`~.protocol.Transport` over a Flower ``Grid``.

One :class:`FlowerTransport` lives in the network lead's ``ServerApp`` (:mod:`.flower_apps`). It first
says hello to every connected SuperNode (plain message ``query.hello``: each clinic answers with the label
it announces and accepts the run or refuses it with one line), then carries each driver
:class:`~.protocol.Request` to the clinics still in the network:

* ``secure=True`` (the default): one Flower SecAgg+ round (:class:`SecAggPlusWorkflow`) whose strategy
  sends the request (kind, round, spec as JSON; thetas as an array) and whose result is the exact sum of
  the clinics' answers, encoded as fixed-point limbs (:mod:`.fixedpoint`). The server sees only masked
  vectors and their sum; a clinic's own vector never leaves it in the clear.
* ``secure=False``: each clinic's float64 answer in the clear (``train.plain``), summed here in the
  clinics' label order exactly as :class:`~.protocol.InProcess` does. For debugging and comparison; a
  clinic refuses it unless its node config says ``allow-plain=true``.

A clinic that refuses, fails, answers with a vector of the wrong length or values that are not finite,
or does not answer within ``timeout_s`` is named in the :class:`~.protocol.ClinicLost` that ``ask``
raises (and no total is returned). ``log`` gets one entry per round: kind, thetas, values, clinics,
seconds and the bytes of the serialized messages each way.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable
from typing import Any, cast

import numpy as np
from flwr.app import ArrayRecord, ConfigRecord, Context, Message, RecordDict
from flwr.common import FitIns, FitRes, Parameters, ndarrays_to_parameters, parameters_to_ndarrays
from flwr.common.secure_aggregation.secaggplus_constants import RECORD_KEY_CONFIGS
from flwr.common.secure_aggregation.secaggplus_constants import Key as SecKey
from flwr.common.serde import message_to_proto
from flwr.compat.common import recorddict_compat as compat
from flwr.server import LegacyContext
from flwr.server.client_manager import ClientManager
from flwr.server.client_proxy import ClientProxy
from flwr.server.compat.grid_client_proxy import GridClientProxy
from flwr.server.strategy import Strategy
from flwr.server.workflow import SecAggPlusWorkflow
from flwr.server.workflow.constant import MAIN_CONFIGS_RECORD, MAIN_PARAMS_RECORD
from flwr.server.workflow.constant import Key as WorkflowKey
from flwr.serverapp import Grid

from .fixedpoint import FixedPoint
from .protocol import ClinicLost, Request, Total

HELLO = "query.hello"
PLAIN = "train.plain"
SECURE = "train"


def request_to_fitins(request: Request, codec: FixedPoint | None = None) -> FitIns:
    """The request as Flower's FitIns: thetas as the one array, the rest (and the limb layout) as config values."""
    thetas = np.ascontiguousarray(np.asarray(request.thetas, dtype=np.float64))
    config: dict[str, Any] = {"kind": request.kind, "round": int(request.round), "spec": json.dumps(request.spec)}
    if codec is not None:
        config.update({"frac-bits": codec.frac_bits, "limbs": codec.limbs, "limb-bits": codec.limb_bits})
    return FitIns(parameters=ndarrays_to_parameters([thetas]), config=config)


def fitins_to_request(fitins: FitIns) -> Request:
    cfg = fitins.config
    (thetas,) = parameters_to_ndarrays(fitins.parameters)
    return Request(round=int(cfg["round"]), kind=str(cfg["kind"]), spec=json.loads(str(cfg["spec"])), thetas=thetas)


def set_pull_backoff(seconds: float) -> None:
    """Flower pulls a message's parts with a backoff starting at 1 s (cap 10 s); on loopback, ``seconds``.

    For local simulations only (run config ``pull-backoff-s``): it changes when parts are fetched, not what.
    """
    from flwr.supercore.inflatable import inflatable_utils

    defaults = inflatable_utils.pull_objects.__kwdefaults__
    if defaults is not None:
        defaults["initial_backoff"] = float(seconds)
        defaults["backoff_cap"] = max(float(seconds), 4 * float(seconds))


def message_bytes(msg: Message) -> int:
    """The size of the serialized message (metadata, content or error), as Flower's protobuf writes it."""
    return int(message_to_proto(msg).ByteSize())


class _Tracked:
    """Wraps the Grid: polls replies every ``poll_s``, counts bytes, records who replied, filters replies.

    ``check`` (set per round) looks at a stage's good replies and returns ``{node id: one-line reason}``; those
    replies are withheld from the workflow (the clinic counts as dropped out; SecAgg+ removes its masks).
    """

    def __init__(self, grid: Grid, poll_s: float) -> None:
        self.grid = grid
        self.poll_s = poll_s
        self.bytes_out = 0
        self.bytes_in = 0
        self.problems: dict[int, str] = {}
        self.check: Any = None
        self.exchanges: list[float] = []

    def reset(self) -> None:
        self.bytes_out = self.bytes_in = 0
        self.problems = {}
        self.check = None
        self.exchanges = []

    def __getattr__(self, name: str) -> Any:  # run, get_node_ids, create_message, ... of the real Grid
        return getattr(self.grid, name)

    def send_and_receive(self, messages: Iterable[Message], *, timeout: float | None = None) -> list[Message]:
        msgs = list(messages)
        t0 = time.monotonic()
        self.bytes_out += sum(message_bytes(m) for m in msgs)
        ids = list(self.grid.push_messages(msgs))
        dst = {mid: m.metadata.dst_node_id for mid, m in zip(ids, msgs, strict=True)}
        waiting = set(ids)
        deadline = time.monotonic() + (timeout if timeout is not None else 3600.0)
        replies: list[Message] = []
        while waiting:
            for reply in self.grid.pull_messages(list(waiting)):
                waiting.discard(reply.metadata.reply_to_message_id)
                self.bytes_in += message_bytes(reply)
                replies.append(reply)
            if not waiting or time.monotonic() >= deadline:
                break
            time.sleep(self.poll_s)
        self.exchanges.append(round(time.monotonic() - t0, 3))
        for mid in waiting:
            self.problems.setdefault(dst[mid], f"timed out (no answer within {timeout:g} s)")
        good: list[Message] = []
        for reply in replies:
            if reply.has_error():
                reason = (reply.error.reason or "").strip().splitlines() or ["(no reason)"]
                self.problems.setdefault(reply.metadata.src_node_id, f"failed: {reason[-1][:200]}")
            else:
                good.append(reply)
        verdicts: dict[int, str] = self.check(good) if self.check is not None else {}
        for nid, why in verdicts.items():
            self.problems.setdefault(nid, why)
        return [r for r in good if r.metadata.src_node_id not in verdicts]


def answer_problem(res: FitRes) -> str | None:
    """A clinic's own verdict on its answer, sent in the clear in the reply's metrics (never its values)."""
    for key in ("refused", "error", "malformed"):
        if key in res.metrics:
            prefix = {"refused": "refused", "error": "failed", "malformed": "malformed answer"}[key]
            return f"{prefix}: {str(res.metrics[key])}"
    return None


class _RequestStrategy(Strategy):
    """Sends one request to the given nodes; keeps the SecAgg+ result (the mean of the limbs) for the transport."""

    def __init__(self, request: Request, proxies: list[ClientProxy], codec: FixedPoint) -> None:
        self.fitins = request_to_fitins(request, codec)
        self.proxies = proxies
        self.mean: np.ndarray | None = None
        self.answered: list[int] = []

    def initialize_parameters(self, client_manager: ClientManager) -> Parameters | None:
        return None

    def configure_fit(
        self, server_round: int, parameters: Parameters, client_manager: ClientManager
    ) -> list[tuple[ClientProxy, FitIns]]:
        return [(p, self.fitins) for p in self.proxies]

    def aggregate_fit(
        self, server_round: int, results: list[tuple[ClientProxy, FitRes]], failures: list[Any]
    ) -> tuple[Parameters | None, dict[str, Any]]:
        if results:
            (self.mean,) = parameters_to_ndarrays(results[0][1].parameters)
        self.answered = [proxy.node_id for proxy, _ in results]
        return None, {}

    def configure_evaluate(self, server_round: int, parameters: Parameters, client_manager: ClientManager) -> list[Any]:
        return []

    def aggregate_evaluate(
        self, server_round: int, results: list[Any], failures: list[Any]
    ) -> tuple[float | None, dict[str, Any]]:
        return None, {}

    def evaluate(self, server_round: int, parameters: Parameters) -> tuple[float, dict[str, Any]] | None:
        return None


class FlowerTransport:
    """A :class:`~.protocol.Transport` over a Flower Grid (inside a ``ServerApp``). Call :meth:`hello` first."""

    def __init__(
        self,
        grid: Grid,
        context: Context,
        *,
        secure: bool = True,
        timeout_s: float = 60.0,
        poll_s: float = 0.1,
        codec: FixedPoint | None = None,
    ) -> None:
        self.grid = _Tracked(grid, poll_s)
        self.context = context
        self.secure = secure
        self.timeout_s = timeout_s
        self.codec = codec or FixedPoint()
        self.labels: dict[int, str] = {}  # node id -> label, in hello order
        self.dropped: set[str] = set()
        self.log: list[dict[str, Any]] = []

    # -- the handshake ---------------------------------------------------------------------------------------
    def hello(self, expected: int, connect_timeout_s: float = 60.0, run_info: dict[str, Any] | None = None) -> None:
        """Wait for ``expected`` SuperNodes, learn their labels; ClinicLost names refusals and silent nodes."""
        deadline = time.monotonic() + connect_timeout_s
        ids = sorted(self.grid.get_node_ids())
        while len(ids) < expected and time.monotonic() < deadline:
            time.sleep(self.grid.poll_s)
            ids = sorted(self.grid.get_node_ids())
        if len(ids) < expected:
            raise ClinicLost(
                {"(network)": f"only {len(ids)} of {expected} clinics connected in {connect_timeout_s:g} s"}
            )
        info = {"secure": self.secure, **(run_info or {})}
        content = RecordDict({"hello": ConfigRecord({"run": json.dumps(info)})})
        self.grid.reset()
        t0 = time.monotonic()
        replies = self.grid.send_and_receive(
            [Message(content=content, dst_node_id=nid, message_type=HELLO, group_id="0") for nid in ids],
            timeout=self.timeout_s,
        )
        problems = {f"node {nid}": why for nid, why in self.grid.problems.items()}
        for reply in replies:
            cfg = reply.content.config_records["hello"]
            label = str(cfg["label"])
            if label in self.labels.values():
                problems[label] = "another clinic announced the same label"
            elif cfg.get("refused"):
                problems[label] = f"refused: {str(cfg['refused'])}"
            self.labels[reply.metadata.src_node_id] = label
        self.labels = dict(sorted(self.labels.items(), key=lambda kv: kv[1]))
        self._log(Request(0, "hello", {}), 0, len(replies), t0)
        if problems:
            raise ClinicLost(problems)

    # -- the Transport protocol ------------------------------------------------------------------------------
    def drop(self, labels: set[str]) -> None:
        self.dropped |= set(labels)

    def active(self) -> dict[int, str]:
        return {nid: lab for nid, lab in self.labels.items() if lab not in self.dropped}

    def ask(self, request: Request) -> Total:
        active = self.active()
        if not active:
            raise ClinicLost({"(network)": "no clinic left"})
        self.grid.reset()
        t0 = time.monotonic()
        vector = self._secure(request, active) if self.secure else self._plain(request, active)
        problems = {active.get(nid, f"node {nid}"): why for nid, why in self.grid.problems.items()}
        if problems or vector is None:
            raise ClinicLost(problems or {"(network)": "secure aggregation halted without a result"})
        self._log(request, int(vector.size), len(active), t0)
        return Total(vector=vector, clinics=tuple(active.values()))

    def _log(self, request: Request, values: int, clinics: int, t0: float) -> None:
        self.log.append(
            {
                "round": request.round,
                "kind": request.kind,
                "thetas": int(request.thetas.shape[0]),
                "values": values,
                "clinics": clinics,
                "seconds": round(time.monotonic() - t0, 4),
                "bytes_to_clinics": self.grid.bytes_out,
                "bytes_from_clinics": self.grid.bytes_in,
                "exchanges_s": list(self.grid.exchanges),
            }
        )

    def _reference_length(self, lengths: dict[int, int], active: dict[int, str]) -> int | None:
        """The first clinic's length in label order, as InProcess takes the first answer's."""
        return next((lengths[nid] for nid in active if nid in lengths), None)

    def _plain(self, request: Request, active: dict[int, str]) -> np.ndarray | None:
        content = compat.fitins_to_recorddict(request_to_fitins(request), True)
        msgs = [
            Message(content=content, dst_node_id=nid, message_type=PLAIN, group_id=str(request.round)) for nid in active
        ]

        def check(replies: list[Message]) -> dict[int, str]:
            verdicts = {
                r.metadata.src_node_id: answer_problem(compat.recorddict_to_fitres(r.content, True)) for r in replies
            }
            return {nid: why for nid, why in verdicts.items() if why}

        self.grid.check = check
        replies = self.grid.send_and_receive(msgs, timeout=self.timeout_s)
        answers: dict[int, np.ndarray] = {}
        for reply in replies:
            (vec,) = parameters_to_ndarrays(compat.recorddict_to_fitres(reply.content, keep_input=True).parameters)
            answers[reply.metadata.src_node_id] = np.asarray(vec, dtype=np.float64).ravel()
        ref = self._reference_length({nid: v.size for nid, v in answers.items()}, active)
        ordered: list[np.ndarray] = []
        for nid in active:
            if nid not in answers:
                continue
            vec = answers[nid]
            if vec.size != ref:
                self.grid.problems[nid] = f"malformed answer: length {vec.size}, expected {ref}"
            elif not np.all(np.isfinite(vec)):
                self.grid.problems[nid] = "malformed answer: values that are not finite"
            else:
                ordered.append(vec)
        return np.sum(ordered, axis=0) if ordered else None

    def _secure(self, request: Request, active: dict[int, str]) -> np.ndarray | None:
        if not 2 <= len(active) <= self.codec.max_parties():
            raise ClinicLost({"(network)": f"secure aggregation needs 2 to {self.codec.max_parties()} clinics"})
        run_id = self.context.run_id
        proxies: list[ClientProxy] = [GridClientProxy(nid, cast(Grid, self.grid), run_id) for nid in active]
        strategy = _RequestStrategy(request, proxies, self.codec)

        def check(replies: list[Message]) -> dict[int, str]:
            verdicts: dict[int, str] = {}
            lengths: dict[int, int] = {}
            for reply in replies:
                cfg = reply.content.config_records.get(RECORD_KEY_CONFIGS)
                if cfg is None or SecKey.MASKED_PARAMETERS not in cfg:
                    continue  # another SecAgg+ stage: nothing of the answer in it
                res = compat.recorddict_to_fitres(reply.content, keep_input=True)
                nid = reply.metadata.src_node_id
                problem = answer_problem(res)
                if problem:
                    verdicts[nid] = problem
                else:
                    lengths[nid] = int(cast(int, res.metrics.get("length", -1)))
            ref = self._reference_length(lengths, active)
            for nid, length in lengths.items():
                if length != ref:
                    verdicts[nid] = f"malformed answer: length {length}, expected {ref}"
            return verdicts

        self.grid.check = check
        ctx = LegacyContext(self.context, strategy=strategy)
        ctx.state.config_records[MAIN_CONFIGS_RECORD] = ConfigRecord({WorkflowKey.CURRENT_ROUND: request.round + 1})
        ctx.state.array_records[MAIN_PARAMS_RECORD] = ArrayRecord()
        workflow = SecAggPlusWorkflow(
            num_shares=1.0,  # every clinic shares its keys with every other
            reconstruction_threshold=0.5,  # a round survives clinics lost mid-round (then ClinicLost names them)
            max_weight=1.0,  # every clinic reports num_examples = 1: the weights are exactly equal
            clipping_range=self.codec.clipping_range,
            quantization_range=self.codec.quantization_range,
            modulus_range=1 << 32,
            timeout=self.timeout_s,
        )
        workflow(cast(Grid, self.grid), ctx)
        if strategy.mean is None:
            return None
        n = len(strategy.answered)
        return self.codec.decode(self.codec.limb_sums_from_mean(strategy.mean, n), n=n)
