"""Search-space files (backdrop.search_space): what they accept, how Optuna draws from them, and
every mistake as a one-line error naming the file and the key — also through the command line."""
import optuna
import pytest

from backdrop.errors import UserError
from backdrop.search_space import load_space, parse
from backdrop.sweep import pareto_front
from conftest import REPO, assert_one_line_error, run_cli

GOOD = {
    "lr_f": {"loguniform": [1e-4, 1e-2]},
    "mask_tv": {"uniform": [0.0, 0.3]},
    "noise_dim": {"int": [1, 16]},
    "ascent_per_descent": {"choice": [0.5, 1, 2]},
    "widths": {"choice": [[8, 16, 32], [16, 32, 64]]},
    "background": {"choice": ["adv", "noise"]},
    "epochs_adv": 3,
    "fixed": {"dataset": "digits", "limit": 50},
    "sweep": {"trials": 6, "workers": 2, "gpus_per_worker": 1},
}


def test_shipped_spaces_load():
    for name in ("quick", "default"):
        space = load_space(REPO / "search_spaces" / f"{name}.yaml")
        assert space.params and space.base_config()["method"] == "adversarial"
    assert load_space(REPO / "search_spaces" / "quick.yaml").base_config()["dataset"] == "digits"
    assert load_space(REPO / "search_spaces" / "default.yaml").base_config()["dataset"] == "mnist"


def test_optuna_draws_valid_configs():
    space = parse(GOOD, "good.yaml")
    assert space.fixed == {"epochs_adv": 3, "dataset": "digits", "limit": 50}
    assert space.sweep == {"trials": 6, "workers": 2, "gpus_per_worker": 1.0}
    study = optuna.create_study(sampler=optuna.samplers.TPESampler(seed=0))
    seen = set()
    for _ in range(12):
        trial = study.ask()
        space.suggest(trial)
        cfg = space.config(trial.params)                  # what a Tune trial receives, decoded
        assert 1e-4 <= cfg["lr_f"] <= 1e-2 and 0 <= cfg["mask_tv"] <= 0.3 and 1 <= cfg["noise_dim"] <= 16
        assert cfg["ascent_per_descent"] in (0.5, 1.0, 2.0) and isinstance(cfg["ascent_per_descent"], float)
        assert cfg["widths"] in ([8, 16, 32], [16, 32, 64]) and cfg["background"] in ("adv", "noise")
        assert (cfg["epochs_adv"], cfg["dataset"], cfg["limit"]) == (3, "digits", 50)
        seen.add(tuple(cfg["widths"]))
        study.tell(trial, cfg["lr_f"])
    assert len(seen) == 2
    assert parse(space.to_dict(), "again").to_dict() == space.to_dict()   # saved with a sweep


@pytest.mark.parametrize("data, needles", [
    ({"lr_ff": {"uniform": [0, 1]}}, ["'lr_ff'", "unknown key"]),
    ({"lr_f": {"gaussian": [0, 1]}}, ["'lr_f'", "unknown distribution 'gaussian'"]),
    ({"lr_f": {"uniform": [0.1, 0.01]}}, ["'lr_f'", "low 0.1 must be below high 0.01"]),
    ({"lr_f": {"uniform": [0.1, 0.1]}}, ["'lr_f'", "must be below"]),
    ({"lr_f": {"loguniform": [0, 0.1]}}, ["'lr_f'", "loguniform needs low > 0"]),
    ({"lr_f": {"uniform": [0.1, 5.0]}}, ["'lr_f'", "outside"]),
    ({"lr_f": {"uniform": [0.1]}}, ["'lr_f'", "[low, high]"]),
    ({"lr_f": {"uniform": [0.1, 0.2], "log": True}}, ["'lr_f'", "a distribution is one of"]),
    ({"noise_dim": {"uniform": [1, 4]}}, ["'noise_dim'", "integer"]),
    ({"noise_dim": {"int": [1, 100]}}, ["'noise_dim'", "outside"]),
    ({"noise_dim": {"int": [1.5, 4]}}, ["'noise_dim'", "integer bounds"]),
    ({"tiles": {"int": [1, 4]}}, ["'tiles'", "[1, 2, 4, 8]"]),
    ({"tiles": {"choice": [1, 3]}}, ["'tiles'", "[1, 2, 4, 8]"]),
    ({"background": {"uniform": [0, 1]}}, ["'background'", "not numeric"]),
    ({"background": {"choice": ["adv", "plaid"]}}, ["'background'", "one of"]),
    ({"batch_size": {"choice": []}}, ["'batch_size'", "non-empty list"]),
    ({"batch_size": {"choice": [32, 32]}}, ["'batch_size'", "twice"]),
    ({"lr_f": {"uniform": [0.001, 0.01]}, "fixed": {"lr_f": 0.1}}, ["'lr_f'", "twice"]),
    ({"lr_f": {"uniform": [0.001, 0.01]}, "fixed": {"epochs": 3}}, ["'epochs'", "unknown key"]),
    ({"lr_f": {"uniform": [0.001, 0.01]}, "fixed": {"dataset": "cifar"}}, ["'dataset'", "one of"]),
    ({"lr_f": {"uniform": [0.001, 0.01]}, "sweep": {"trails": 3}}, ["'sweep.trails'", "unknown key"]),
    ({"lr_f": {"uniform": [0.001, 0.01]}, "sweep": {"trials": 0}}, ["'sweep.trials'", ">= 1"]),
    ({"lr_f": {"uniform": [0.001, 0.01]}, "fixed": [1, 2]}, ["'fixed'", "mapping"]),
    ({"epochs_adv": 3}, ["nothing to search"]),
    ({"lr_f": {"uniform": [0.001, 0.01]}, "val_every": 3}, ["every epoch", "'val_every'"]),
    ({"val_every": {"int": [1, 3]}}, ["every epoch", "'val_every'"]),
])
def test_bad_spaces_are_one_line_errors(data, needles):
    with pytest.raises(UserError) as e:
        parse(data, "bad.yaml")
    message = str(e.value)
    assert "\n" not in message and message.startswith("bad.yaml: ")
    for needle in needles:
        assert needle in message, message


@pytest.mark.parametrize("text, needles", [
    ("lr_f: {uniform: [0.1, 0.01]}\n", ["bad.yaml", "'lr_f'", "must be below"]),
    ("lr_f: {loguniform: [-1, 0.01]}\n", ["bad.yaml", "'lr_f'", "loguniform needs low > 0"]),
    ("lr_f: {normal: [0, 1]}\n", ["bad.yaml", "'lr_f'", "unknown distribution"]),
    ("learning_rate: {uniform: [0.1, 0.2]}\n", ["bad.yaml", "'learning_rate'", "unknown key"]),
    ("lr_f: {uniform: [0.1, 0.2]\n", ["bad.yaml", "invalid YAML"]),
])
def test_cli_reports_bad_space_in_one_line(tmp_path, text, needles):
    bad = tmp_path / "bad.yaml"
    bad.write_text(text)
    assert_one_line_error(run_cli("platform.sweep", "--space", str(bad)), "platform.sweep: error:", *needles)


def test_cli_one_line_errors_for_flags_and_resume(tmp_path):
    assert_one_line_error(run_cli("platform.sweep", "--space", str(tmp_path / "none.yaml")), "no such file")
    assert_one_line_error(run_cli("platform.sweep", "--trials", "zero"), "--trials")
    assert_one_line_error(run_cli("platform.sweep", "--resume", "--storage-path", str(tmp_path)), "no sweep to resume")
    assert_one_line_error(run_cli("platform.sweep", "--resume", "--trials", "3"), "saved settings")
    assert_one_line_error(run_cli("platform.sweep", "--trials", "0", "--storage-path", str(tmp_path)),
                          "--trials must be at least 1")
    assert_one_line_error(run_cli("platform.sweep", "--name", "my sweep", "--storage-path", str(tmp_path)),
                          "--name 'my sweep'")
    mnist = tmp_path / "mnist.yaml"
    mnist.write_text("fixed: {dataset: mnist}\nlr_f: {loguniform: [1.0e-4, 1.0e-2]}\n")
    assert_one_line_error(run_cli("platform.sweep", "--space", str(mnist), "--data-dir", str(tmp_path / "nowhere"),
                                  "--storage-path", str(tmp_path)), "nowhere", "does not exist")
    assert not list(tmp_path.glob("*/backdrop_sweep.json"))      # nothing half-started to --resume


def test_pareto_front():
    rows = [{"id": i, "val/clean": c, "val/worst": w}
            for i, (c, w) in enumerate([(0.9, 0.5), (0.8, 0.7), (0.7, 0.6), (0.95, 0.4), (0.8, 0.7)])]
    assert sorted(r["id"] for r in pareto_front(rows)) == [0, 1, 3, 4]   # (0.7, 0.6) is dominated


@pytest.mark.parametrize("extra, flags, needle", [
    ("seed: {int: [0, 9]}\n", {"seeds": 2}, "'seed' is searched"),
    ("sweep: {grace_period: 2}\n", {"seeds": 2}, "no ASHA"),
    ("", {"seeds": 2, "multi_objective": True}, "do not combine"),
    ("", {"seeds": 0}, "--seeds must be at least 1"),
])
def test_sweep_over_seeds_refuses_what_it_cannot_honour(tmp_path, extra, flags, needle):
    from backdrop import sweep
    space = tmp_path / "s.yaml"
    space.write_text("fixed: {dataset: digits}\nlr_f: {loguniform: [1.0e-4, 1.0e-2]}\n" + extra)
    with pytest.raises(UserError, match=needle) as e:
        sweep.new_options(load_space(space), {"name": "s", "storage_path": str(tmp_path / "ray"), **flags})
    assert "\n" not in str(e.value)


def test_a_resume_with_another_store_is_refused_and_leaves_no_store_behind(tmp_path):
    from backdrop import sweep
    space = tmp_path / "s.yaml"
    space.write_text("fixed: {dataset: digits}\nlr_f: {loguniform: [1.0e-4, 1.0e-2]}\n")
    opts = sweep.new_options(load_space(space), {"name": "s", "storage_path": str(tmp_path / "ray"),
                                                 "tracking_uri": f"sqlite:///{tmp_path / 'first.db'}"})
    other = tmp_path / "other.db"
    with pytest.raises(UserError, match="drop --tracking-uri") as e:
        sweep.check_same_records(opts, {"tracking_uri": f"sqlite:///{other}"})
    assert "\n" not in str(e.value) and not other.exists() and not (tmp_path / "first.db").exists()
