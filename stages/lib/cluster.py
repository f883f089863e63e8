"""The cluster of `train.strategy: multi_worker`, in plain Python (no TensorFlow): TF_CONFIG checked before TensorFlow
reads it (`tf_config`), and the workers waiting for each other (`join`) with a timeout (train.join_timeout), not in
TensorFlow, whose wait ignores Ctrl-C and SIGTERM. distribution.make_strategy calls both before it creates the
strategy.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import time

from stages.lib import lifecycle
from stages.lib.errors import PipelineError

TF_CONFIG_EXAMPLE = '{"cluster": {"worker": ["host1:12345", "host2:12345"]}, "task": {"type": "worker", "index": 0}}'


def tf_config() -> dict:
    """TF_CONFIG, checked before TensorFlow reads it: {"cluster": {"worker": ["host:port", ...]}, "task": {"type":
    "worker", "index": i}}. Every process is a worker, worker 0 the chief: TensorFlow's other jobs (chief, ps,
    evaluator) are refused, as no process here runs them, and the strategy would wait for them forever."""
    raw = os.environ.get("TF_CONFIG")
    if not raw:
        raise PipelineError(
            f"train.strategy: multi_worker needs TF_CONFIG in each worker's environment, e.g. {TF_CONFIG_EXAMPLE}"
        )
    try:
        config = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise PipelineError(
            f"TF_CONFIG: not JSON ({exc.msg} at character {exc.pos}); e.g. {TF_CONFIG_EXAMPLE}"
        ) from None
    if not (
        isinstance(config, dict) and isinstance(config.get("cluster"), dict) and isinstance(config.get("task"), dict)
    ):
        raise PipelineError(f'TF_CONFIG: needs a "cluster" and a "task" object, e.g. {TF_CONFIG_EXAMPLE}')
    cluster, task = config["cluster"], config["task"]
    for job in cluster:
        if job != "worker":
            raise PipelineError(
                f'TF_CONFIG: the cluster has a "{job}" job, which train.strategy: multi_worker does not run: list '
                'every process under "worker" (worker 0 is the chief)'
            )
    workers = cluster.get("worker")
    if not (isinstance(workers, list) and workers and all(isinstance(address, str) for address in workers)):
        raise PipelineError(
            f'TF_CONFIG: the cluster\'s "worker" must be a list of "host:port" addresses, not {json.dumps(workers)}'
        )
    for i, address in enumerate(workers):
        if host_and_port(address) is None:
            raise PipelineError(f'TF_CONFIG: worker {i}\'s address "{address}" is not "host:port" with a port 1-65535')
        if address in workers[:i]:
            raise PipelineError(
                f'TF_CONFIG: workers {workers.index(address)} and {i} have the same address "{address}"'
            )
    if task.get("type") != "worker":
        raise PipelineError(
            f'TF_CONFIG: the task\'s "type" is {json.dumps(task.get("type"))}; every process is a "worker" (worker 0 '
            "is the chief)"
        )
    index = task.get("index")
    if not (isinstance(index, int) and not isinstance(index, bool) and 0 <= index < len(workers)):
        raise PipelineError(
            f'TF_CONFIG: the task\'s "index" is {json.dumps(index)}, but the cluster lists {len(workers)} workers '
            f"(0 to {len(workers) - 1})"
        )
    return config


def host_and_port(address: str) -> tuple[str, int] | None:
    """("host", port) of "host:port" ("[::1]:port" for IPv6), or None."""
    host, _, port = address.rpartition(":")
    if not host or not port.isascii() or not port.isdigit() or not 1 <= int(port) <= 65535:
        return None
    return host.removeprefix("[").removesuffix("]"), int(port)


JOIN_POLL_SECONDS = 0.5  # how often a waiting worker looks for the others


def join(config: dict, timeout: float) -> None:
    """Wait until every other worker of TF_CONFIG listens on its address, for `timeout` seconds at most, then end
    with a line naming those that never came. TensorFlow's own wait (in the strategy's constructor) has no timeout
    of ours, and ignores Ctrl-C and SIGTERM: it waits in C++, and its coordination service takes SIGTERM. This
    worker holds its own port meanwhile, so the others see it has come, and a port another program holds is
    found before TensorFlow fails on it. Once all listen, the workers go on within a poll of each other."""
    workers, index = config["cluster"]["worker"], config["task"]["index"]
    _, port = host_and_port(workers[index])
    with socket.socket() as own:
        own.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as gRPC: a closed connection's port is free
        try:
            own.bind(("", port))
        except OSError as exc:
            raise PipelineError(
                f"TF_CONFIG: worker {index}'s port {port} ({workers[index]}) is taken on this host ({exc.strerror}); "
                f"stop what holds it, or give worker {index} another port in every worker's TF_CONFIG"
            ) from None
        own.listen()
        own.setblocking(False)
        lifecycle.when_interrupted(" while waiting for the other workers to start", "nothing was written")
        deadline = time.monotonic() + timeout
        waiting = [i for i in range(len(workers)) if i != index]
        while waiting := [i for i in waiting if not listening(workers[i])]:
            if time.monotonic() > deadline:
                raise PipelineError(_not_come(workers, waiting, timeout))
            with contextlib.suppress(BlockingIOError):
                while True:  # the others' looks at this worker, which need no answer
                    own.accept()[0].close()
            time.sleep(JOIN_POLL_SECONDS)
        lifecycle.when_interrupted()


def listening(address: str) -> bool:
    try:
        with socket.create_connection(host_and_port(address), timeout=JOIN_POLL_SECONDS):
            return True
    except OSError:
        return False


def _not_come(workers: list[str], missing: list[int], timeout: float) -> str:
    named, them = ", ".join(f"worker {i} ({workers[i]})" for i in missing), "it" if len(missing) == 1 else "them"
    return (
        f"{named} of TF_CONFIG did not start within train.join_timeout ({timeout:g} s); start {them} with the same "
        "stage command and its own TF_CONFIG, then this one again"
    )


def never_joined(config: dict, timeout: float) -> None:
    """End this worker with a line naming the others that are gone: called when the strategy still waits, in
    TensorFlow, for a worker that had started (distribution.make_strategy), as one stopped before joining."""
    workers, index = config["cluster"]["worker"], config["task"]["index"]
    gone = [f"worker {i} ({workers[i]})" for i in range(len(workers)) if i != index and not listening(workers[i])]
    lifecycle.end_now(
        f"error: {', '.join(gone) or 'a worker'} of TF_CONFIG stopped before joining the others (waited "
        f"train.join_timeout, {timeout:g} s); start every worker again",
        1,
    )


def local_workers(workers: int) -> dict:
    """TF_CONFIG's "cluster" for `workers` processes on this host, each on a free port: multi_worker tried on one
    machine (the tests, benchmarks/multi_worker.py)."""
    ports = []
    for _ in range(workers):
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            ports.append(probe.getsockname()[1])
    return {"worker": [f"127.0.0.1:{port}" for port in ports]}
