"""TF_CONFIG checked before TensorFlow reads it, and the workers' join: each mistake one line, without TensorFlow."""

from __future__ import annotations

import json
import socket
import subprocess
import sys

import pytest

from stages.lib import cluster
from stages.lib.errors import PipelineError
from tests.conftest import ROOT


def tf_config(workers: object, task: object = None) -> str:
    return json.dumps({"cluster": workers, "task": {"type": "worker", "index": 0} if task is None else task})


@pytest.mark.parametrize(
    ("tf_config", "expected"),
    [
        (None, "train.strategy: multi_worker needs TF_CONFIG in each worker's environment, e.g. {"),
        ("{not json", "TF_CONFIG: not JSON (Expecting property name enclosed in double quotes at character 1); e.g. {"),
        ("[1, 2]", 'TF_CONFIG: needs a "cluster" and a "task" object, e.g. {'),
        (
            tf_config({"worker": "a:1,b:2"}),  # TensorFlow: TypeError "The tasks for job 'worker' must be a list"
            'TF_CONFIG: the cluster\'s "worker" must be a list of "host:port" addresses, not "a:1,b:2"',
        ),
        (
            tf_config({"worker": ["localhost:12345", "localhost:port"]}),  # TensorFlow: "Could not parse port"
            'TF_CONFIG: worker 1\'s address "localhost:port" is not "host:port" with a port 1-65535',
        ),
        (tf_config({"worker": ["a:70000"]}), 'TF_CONFIG: worker 0\'s address "a:70000" is not "host:port" with a'),
        (tf_config({"worker": ["a:1", "a:1"]}), 'TF_CONFIG: workers 0 and 1 have the same address "a:1"'),
        (
            tf_config({"chief": ["a:1"], "worker": ["b:1"]}),  # TensorFlow waits for the chief forever
            'TF_CONFIG: the cluster has a "chief" job, which train.strategy: multi_worker does not run: list every '
            'process under "worker" (worker 0 is the chief)',
        ),
        (tf_config({"ps": ["a:1"]}, {"type": "ps", "index": 0}), 'TF_CONFIG: the cluster has a "ps" job'),
        (
            tf_config({"worker": ["a:1"]}, {"type": "chief", "index": 0}),
            'TF_CONFIG: the task\'s "type" is "chief"; every process is a "worker" (worker 0 is the chief)',
        ),
        (
            tf_config({"worker": ["a:1", "b:1"]}, {"type": "worker", "index": 2}),
            'TF_CONFIG: the task\'s "index" is 2, but the cluster lists 2 workers (0 to 1)',
        ),
        (tf_config({"worker": ["a:1"]}, {"type": "worker", "index": "0"}), 'TF_CONFIG: the task\'s "index" is "0"'),
    ],
    ids=[
        "missing",
        "not-json",
        "not-an-object",
        "workers-a-string",
        "port-not-a-number",
        "port-out-of-range",
        "same-address",
        "chief-job",
        "ps-job",
        "task-type-chief",
        "index-out-of-range",
        "index-a-string",
    ],
)
def test_a_malformed_tf_config_is_one_line_before_tensorflow_reads_it(monkeypatch, tf_config, expected):
    if tf_config is None:
        monkeypatch.delenv("TF_CONFIG", raising=False)
    else:
        monkeypatch.setenv("TF_CONFIG", tf_config)
    with pytest.raises(PipelineError) as raised:
        cluster.tf_config()
    assert str(raised.value).startswith(expected)


def test_a_port_another_program_holds_is_one_line_before_tensorflow_starts(monkeypatch):
    # TensorFlow: "UnknownError: Could not start gRPC server", after its start-up.
    with socket.create_server(("127.0.0.1", 0)) as holder:
        address = f"127.0.0.1:{holder.getsockname()[1]}"
        monkeypatch.setenv("TF_CONFIG", tf_config({"worker": [address, "127.0.0.1:1"]}))
        with pytest.raises(PipelineError) as raised:
            cluster.join(cluster.tf_config(), 600)
    assert str(raised.value) == (
        f"TF_CONFIG: worker 0's port {address.split(':')[1]} ({address}) is taken on this host (Address already in "
        "use); stop what holds it, or give worker 0 another port in every worker's TF_CONFIG"
    )


def test_the_join_waits_for_every_worker_and_names_those_that_never_came(monkeypatch):
    monkeypatch.setattr(cluster, "JOIN_POLL_SECONDS", 0.05)
    with socket.create_server(("127.0.0.1", 0)) as other:  # worker 1 listens already
        workers = [*cluster.local_workers(1)["worker"], f"127.0.0.1:{other.getsockname()[1]}"]
        cluster.join({"cluster": {"worker": workers}, "task": {"type": "worker", "index": 0}}, 5)
    never = cluster.local_workers(2)["worker"]  # nothing listens on worker 1's port
    with pytest.raises(PipelineError) as raised:
        cluster.join({"cluster": {"worker": never}, "task": {"type": "worker", "index": 0}}, 0.2)
    assert str(raised.value) == (
        f"worker 1 ({never[1]}) of TF_CONFIG did not start within train.join_timeout (0.2 s); start it with the same "
        "stage command and its own TF_CONFIG, then this one again"
    )


def test_checking_tf_config_and_joining_need_no_tensorflow():
    code = "import sys; import stages.lib.cluster; print(sorted({'tensorflow', 'keras'} & set(sys.modules)))"
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert done.stdout == "[]\n"
