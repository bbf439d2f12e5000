"""A run's model is an MLflow Model: pyfunc loads it, `mlflow models serve` answers with it,
backdrop.api.load_model takes its URI; and no model file can run code when it is loaded.

All real: a real training run on the offline digits, a real sqlite store, a real scoring server."""
import json
import os
import subprocess
import sys
import time
import urllib.request

import mlflow
import numpy as np
import pytest
import torch

from backdrop import api
from backdrop.errors import UserError
from backdrop.job import run_job
from conftest import assert_one_line_error, logged_model, run_cli, tiny_config, trained_record


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """One finished run: (tracking uri, run id, a few test images)."""
    d = tmp_path_factory.mktemp("store")
    uri = f"sqlite:///{d / 'mlflow.db'}"
    out = run_job(tiny_config(), tracking_uri=uri, progress=False, with_noise=False)
    mlflow.set_tracking_uri(uri)
    from backdrop.data import load_dataset
    x = load_dataset("digits").test.x[:5].numpy()
    return uri, out["run_id"], x


def test_pyfunc_loads_the_run_model_with_its_signature(trained):
    uri, run_id, x = trained
    model = mlflow.pyfunc.load_model(f"runs:/{run_id}/model")
    logits = model.predict(x)
    assert logits.shape == (5, 10) and logits.dtype == np.float32
    direct = api.load_model(f"runs:/{run_id}/model")(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(logits, direct, rtol=1e-5, atol=1e-5)
    assert model.metadata.metadata["class_names"] == [str(k) for k in range(10)]    # logit k names class k
    sig = model.metadata.signature
    assert sig.inputs.inputs[0].shape == (-1, 1, 32, 32) and sig.outputs.inputs[0].shape == (-1, 10)
    # the run lists it as its model (the UI's Models column)
    client = mlflow.MlflowClient(uri)
    run = client.get_run(run_id)
    models = client.search_logged_models(experiment_ids=[run.info.experiment_id])
    assert [m.source_run_id for m in models if m.name == "model"] == [run_id]
    # ... its data (the Dataset column), its source and version, and the UI's model-training layout
    inputs = {d.tags[0].value: d.dataset for d in run.inputs.dataset_inputs}
    assert sorted(inputs) == ["test", "train", "validation"] and inputs["train"].name == "digits-train"
    assert json.loads(inputs["test"].profile)["features_shape"][1:] == [1, 32, 32]
    assert run.data.tags["mlflow.source.git.commit"] == run.data.tags["git_commit"] != "unknown"
    assert run.data.tags["mlflow.source.type"] == "LOCAL"
    assert client.get_experiment(run.info.experiment_id).tags["mlflow.experimentKind"] == "custom_model_development"


def test_a_ray_task_record_logs_its_model_whatever_experiment_is_active(tmp_path):
    """The driver turns a record into a run with the client API, then logs the model through
    MLflow's fluent API: an experiment made active earlier in the process must not refuse it."""
    from backdrop.records import write_record
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    previous = mlflow.get_tracking_uri()
    mlflow.set_tracking_uri(uri)
    mlflow.set_experiment("elsewhere")
    try:
        client = mlflow.MlflowClient(uri)
        record = trained_record(tiny_config(method="vanilla", limit=60))
        run_id = write_record(client, client.create_experiment("records"), record, run_name="r")
        assert client.get_run(run_id).info.status == "FINISHED" and logged_model(client, run_id) is not None
        x = torch.from_numpy(record["example"])
        assert api.load_model(f"runs:/{run_id}/model")(x).shape == (len(x), 10)
    finally:
        mlflow.set_tracking_uri(previous)


def test_a_model_file_that_would_run_code_is_refused(tmp_path):
    marker = tmp_path / "ran"

    class Payload:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    evil = tmp_path / "model.pt"
    torch.save({"config": {}, "state": Payload()}, evil)
    with pytest.raises(UserError) as info:
        api.load_model(evil)
    assert "refused" in str(info.value) and "\n" not in str(info.value)
    assert not marker.exists(), "loading the file ran its code"


def test_model_uris_that_name_nothing_are_one_line_errors(trained):
    uri, run_id, _ = trained
    for bad, needle in [(f"runs:/{'0' * 32}/model", "no model there"),
                        ("models:/no-such-model@champion", "no model there"),
                        (f"runs:/{run_id}/nothing", "no model there")]:
        with pytest.raises(UserError) as info:
            api.load_model(bad)
        msg = str(info.value)
        assert needle in msg and bad in msg and "\n" not in msg, msg


def test_an_unreachable_tracking_server_is_one_line_not_minutes_of_retries():
    from backdrop.distributed import free_port
    server = f"http://127.0.0.1:{free_port()}"          # nothing listens there
    start = time.monotonic()
    proc = run_cli("platform.train", "--tracking-uri", server, "--quiet")
    assert_one_line_error(proc, "cannot reach the MLflow tracking server", server)
    previous = mlflow.get_tracking_uri()
    mlflow.set_tracking_uri(server)
    try:
        with pytest.raises(UserError) as info:
            api.load_model("models:/anything@champion")
    finally:
        mlflow.set_tracking_uri(previous)
    assert "cannot reach" in str(info.value)
    assert time.monotonic() - start < 120


def test_mlflow_models_serve_answers_with_the_run_model(trained, tmp_path):
    from backdrop.distributed import free_port
    uri, run_id, x = trained
    port = free_port()
    env = {**os.environ, "MLFLOW_TRACKING_URI": uri}
    server = subprocess.Popen([sys.executable, "-m", "mlflow", "models", "serve", "-m", f"runs:/{run_id}/model",
                               "--env-manager", "local", "-h", "127.0.0.1", "-p", str(port)],
                              env=env, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 120
        while True:
            assert server.poll() is None, server.stdout.read()[-3000:]
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/ping", timeout=2):
                    break
            except OSError:
                assert time.monotonic() < deadline, "the scoring server did not start in 120 s"
                time.sleep(1)
        request = urllib.request.Request(f"http://127.0.0.1:{port}/invocations",
                                         data=json.dumps({"inputs": x.tolist()}).encode(),
                                         headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=60) as answer:
            logits = np.array(json.loads(answer.read())["predictions"], dtype=np.float32)
    finally:
        server.terminate()
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            server.kill()
    direct = api.load_model(f"runs:/{run_id}/model")(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(logits, direct, rtol=1e-4, atol=1e-4)
