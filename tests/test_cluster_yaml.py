"""cluster.yaml validates against the autoscaler schema shipped inside the ray package, and holds
what docs/RAY.md promises: CPU head, autoscaling GPU workers, the project synced and installed on
every node, an MLflow server on the head with a database store and S3 artifacts."""
import copy

import jsonschema
import pytest
import yaml
from ray.autoscaler._private.util import prepare_config, validate_config

from conftest import REPO


@pytest.fixture(scope="module")
def cluster():
    return yaml.safe_load((REPO / "cluster.yaml").read_text())


def test_cluster_yaml_validates_against_ray_schema(cluster):
    validate_config(prepare_config(copy.deepcopy(cluster)))
    broken = copy.deepcopy(cluster)
    broken["available_node_types"]["worker.gpu"]["min_workers"] = "none"
    with pytest.raises(jsonschema.ValidationError):      # the check can fail
        validate_config(prepare_config(broken))


def test_cluster_yaml_layout(cluster):
    assert cluster["provider"]["type"] == "aws"
    head = cluster["available_node_types"][cluster["head_node_type"]]
    assert head["resources"].get("GPU", 0) == 0
    gpu = [t for name, t in cluster["available_node_types"].items() if name != cluster["head_node_type"]]
    assert gpu and all(t["resources"]["GPU"] >= 1 and t.get("min_workers", 0) == 0 < t["max_workers"] for t in gpu)
    assert list(cluster["file_mounts"].values()) == ["."]          # the project, on every node
    assert any("pip install" in c and "/home/ubuntu/backdrop" in c for c in cluster["setup_commands"])
    server = " ".join(cluster["head_start_ray_commands"])
    assert "mlflow server" in server and "--backend-store-uri sqlite:" in server and "s3://" in server
    # the sqlite store survives the head: restored from S3 before the server starts, kept copied there
    commands = cluster["head_start_ray_commands"]
    order = [next(i for i, c in enumerate(commands) if what in c)
             for what in ("backdrop store restore", "mlflow server", "backdrop store keep")]
    assert order == sorted(order), commands
    db = "/home/ubuntu/mlflow/mlflow.db"
    assert all(f"--store {db} --copy s3://" in commands[i] for i in (order[0], order[2]))
    assert f"sqlite:///{db}" in commands[order[1]]
