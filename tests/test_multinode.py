"""Several nodes: a Ray head and a second node started with `ray start` on this machine (each its
own raylet and resources), a small sweep submitted with --address, trials placed on both nodes and
all recorded in MLflow. The cluster is this test's own: its own temp dir and ports, torn down by
process group (never `ray stop`, which would kill every Ray process on the machine)."""
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

import mlflow
import pytest

from conftest import REPO

RAY = os.path.join(os.path.dirname(sys.executable), "ray")
# Token authentication (Ray's default) for every process of the cluster and for the client.
ENV = {**os.environ, "RAY_AUTH_MODE": "token", "PYTHONUNBUFFERED": "1"}
ENV.pop("RAY_ADDRESS", None)

SPACE = """
sweep: {trials: 2, workers: 2, seed: 1}
fixed:
  dataset: digits
  limit: 64
  widths: [8, 16, 32]
  dense: 32
  gen_width: 8
  batch_size: 16
  augment: false
  epochs_f: 2
  epochs_mask: 1
  epochs_adv: 1
lr_f: {loguniform: [1.0e-4, 1.0e-2]}
"""


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def node_ports():
    return ["--dashboard-agent-listen-port", str(free_port()), "--dashboard-agent-grpc-port", str(free_port()),
            "--runtime-env-agent-port", str(free_port()), "--metrics-export-port", str(free_port()),
            "--node-ip-address", "127.0.0.1", "--disable-usage-stats", "--block"]


def start(args, log):
    # --block keeps `ray start` in the foreground; its own session lets teardown signal the
    # node's processes (gcs, raylet, agents) as one group.
    return subprocess.Popen([RAY, "start", *args], env=ENV, stdout=log, stderr=subprocess.STDOUT,
                            start_new_session=True, cwd=tempfile.gettempdir())


def stop(proc):
    for sig, wait in ((signal.SIGTERM, 3), (signal.SIGKILL, 10)):
        if proc.poll() is not None:
            break
        os.killpg(proc.pid, sig)
        try:
            proc.wait(timeout=wait)
        except subprocess.TimeoutExpired:
            pass
    try:
        os.killpg(proc.pid, signal.SIGKILL)   # raylet, gcs and agents left in the group
    except ProcessLookupError:
        pass


def wait_for_nodes(address, n, timeout=90):
    probe = ("import ray; ray.init(address='%s', logging_level='ERROR'); "
             "print(sum(x['Alive'] for x in ray.nodes()))" % address)
    deadline = time.time() + timeout
    while time.time() < deadline:
        out = subprocess.run([sys.executable, "-c", probe], env=ENV, capture_output=True, text=True, timeout=60)
        if out.returncode == 0 and out.stdout.strip().splitlines()[-1:] == [str(n)]:
            return
        time.sleep(2)
    pytest.fail(f"the {n}-node cluster did not come up at {address}")


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    # A short temp dir: Ray's unix socket paths must stay under ~107 characters.
    temp = tempfile.mkdtemp(prefix="bdray", dir="/tmp")
    logs = tmp_path_factory.mktemp("cluster")
    port = free_port()
    address = f"127.0.0.1:{port}"
    procs = []
    try:
        procs.append(start(["--head", "--port", str(port), "--num-cpus", "2", "--temp-dir", temp,
                            "--dashboard-port", str(free_port()), "--ray-client-server-port", str(free_port()),
                            *node_ports()], open(logs / "head.log", "w")))
        wait_for_nodes(address, 1)
        procs.append(start(["--address", address, "--num-cpus", "2", *node_ports()], open(logs / "node.log", "w")))
        wait_for_nodes(address, 2)
        yield address
    finally:
        for proc in reversed(procs):
            stop(proc)
        shutil.rmtree(temp, ignore_errors=True)


def test_sweep_runs_trials_on_both_nodes(cluster, tmp_path):
    space = tmp_path / "two.yaml"
    space.write_text(SPACE)
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    proc = subprocess.run([sys.executable, "-m", "platform.sweep", "--space", str(space), "--name", "two",
                           "--address", cluster, "--storage-path", str(tmp_path / "ray"), "--tracking-uri", uri],
                          cwd=REPO, env=ENV, capture_output=True, text=True, timeout=400)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
    assert "multiple active Ray instances" not in proc.stderr

    client = mlflow.MlflowClient(uri)
    exp = client.get_experiment_by_name("backdrop-sweeps")
    runs = client.search_runs([exp.experiment_id], filter_string="tags.`backdrop.role` = 'trial'")
    assert len(runs) == 2 and all(r.info.status == "FINISHED" for r in runs)
    nodes = set()
    for run in runs:
        tags = run.data.tags
        assert [m.step for m in client.get_metric_history(run.info.run_id, "val/worst")] == [1, 2, 3, 4]
        trial_node = tags["ray.trial_node"][:12]                         # the trial's Tune driver
        workers = {w.split("/")[1] for w in tags["ray.worker_nodes"].split(",")}   # its Train workers
        nodes |= {trial_node, *workers}
    # a 2-worker trial holds 3 CPUs (its driving function and 2 workers), more than a 2-CPU node:
    # its Ray Train run spans both nodes
    assert len(nodes) == 2, nodes
