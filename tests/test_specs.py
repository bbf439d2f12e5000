"""Ablation specs (ablations/*.yaml) and the `platform.ablate` command line, without Ray.

Specs are validated like config files: every bad key or value is one line naming the file and
the key; the command line turns that into one line on stderr and exit status 2."""
import pytest
import yaml

from backdrop import specs as S
from backdrop.errors import UserError
from backdrop.hparams import make_config
from conftest import assert_one_line_error, run_cli

REQUIRED = ("adversarial", "mask_off", "heuristic_mask", "fixed_backgrounds", "random_backgrounds", "black",
            "real_backgrounds", "soft_mask", "end_to_end", "no_white_penalty", "tiles_1")


def ablate(*args):
    """`python -m platform.ablate ARGS` from the repo root, as a user runs it."""
    return run_cli("platform.ablate", *args, timeout=120)


def write_specs(folder, **files):
    """A spec folder holding a valid reference plus the given {name: mapping or raw text}."""
    folder.mkdir(exist_ok=True)
    (folder / "adversarial.yaml").write_text("description: the reference\nseeds: 2\n")
    for name, body in files.items():
        (folder / f"{name}.yaml").write_text(body if isinstance(body, str) else yaml.safe_dump(body))
    return folder


# ------------------------------------------------------------------------- the shipped specs
def test_shipped_specs_load_and_differ_from_the_reference():
    specs = S.load_specs()
    assert set(REQUIRED) <= set(specs)
    assert specs["adversarial"].is_base and specs["adversarial"].changes == {}
    assert specs["mask_off"].changes == {"mask": "none", "mask_blend": 0.5}
    for name, spec in specs.items():
        plan = S.plan(spec, specs, "digits")
        ref, var = plan.jobs[0].cfg, plan.jobs[1].cfg
        assert all(var[k] == v for k, v in spec.changes.items()), name
        differ = {k for k in ref if ref[k] != var[k]}
        assert differ <= set(spec.changes) and bool(differ) == (not spec.is_base), (name, differ)
        if plan.reference.name == "adversarial":
            assert plan.seeds == tuple(range(10)) and plan.budget == {"epochs_f": 5, "epochs_mask": 2, "epochs_adv": 5,
                                                                      "batch_size": 32, "val_every": 5}
        else:                                   # the adopted config's own schedule on digits
            assert plan.reference.name == "adopted" and plan.seeds == tuple(range(5)) and plan.budget == {}, name


def test_the_adopted_reference_is_the_adopted_config_under_the_mnist_budget():
    """`adopted` reads configs/table1/mnist_adversarial.yaml (no copy of its values to drift); the
    MNIST budget shortens only the data and the validation interval, and every ablation of the
    MNIST set, against it, differs in its own changes alone."""
    from backdrop.hparams import load_config
    specs = S.load_specs()
    adopted = load_config("configs/table1/mnist_adversarial.yaml")
    for name in ("mask_off", "heuristic_mask", "fixed_backgrounds", "random_backgrounds", "no_averaged_f",
                 "no_black_share", "no_symmetric", "no_diversity"):
        named = S.with_reference(specs, name, "adopted") if specs[name].reference != "adopted" else specs
        plan = S.plan(named[name], named, "mnist")
        ref, var = plan.jobs[0].cfg, plan.jobs[1].cfg
        assert ref == {**adopted, "limit": 10000, "val_every": 12, "seed": 0}, name
        assert {k for k in ref if ref[k] != var[k]} <= set(specs[name].changes) and ref != var, name
        assert plan.seeds == tuple(range(5)) and plan.reference.name == "adopted"
    # --reference changes the comparison only: the spec on disk still compares with its own
    assert specs["mask_off"].reference == "adversarial"


def test_a_reference_that_starts_from_a_config_file(tmp_path):
    config = tmp_path / "game.yaml"
    config.write_text("method: adversarial\ndataset: mnist\nseed: 7\ntiles: 4\nepochs_adv: 9\n")
    folder = write_specs(tmp_path / "specs", base={"description": "b", "reference": "base", "config": str(config), "seeds": 1,
                                                   "budget": {"digits": {"epochs_adv": 2}}},
                         no_tiles={"description": "v", "reference": "base", "changes": {"tiles": 2}})
    specs = S.load_specs(folder)
    plan = S.plan(specs["no_tiles"], specs, "digits", seeds=(3,))
    ref, var = plan.jobs[0].cfg, plan.jobs[1].cfg
    # the file's dataset and seed give way to the command line's; the budget overrides the file
    assert (ref["dataset"], ref["seed"], ref["tiles"], ref["epochs_adv"]) == ("digits", 3, 4, 2)
    assert var == {**ref, "tiles": 2}
    # a bad value in the config file: one line naming the spec and the file
    config.write_text("tiles: 0\n")
    with pytest.raises(UserError) as e:
        S.load_specs(folder)
    assert "\n" not in str(e.value) and "base.yaml" in str(e.value) and "game.yaml" in str(e.value)


@pytest.mark.parametrize("body, needle", [
    ({"description": "x", "config": "configs/table1/mnist_adversarial.yaml"}, "only a reference"),
    ({"description": "x", "reference": "bad", "config": "nowhere.yaml"}, "nowhere.yaml: no such file"),
    ({"description": "x", "reference": "bad", "config": 3}, "'config'"),
])
def test_invalid_config_key_is_one_line(tmp_path, body, needle):
    folder = write_specs(tmp_path / "specs", bad=body)
    with pytest.raises(UserError) as e:
        S.load_specs(folder)
    assert "\n" not in str(e.value) and needle in str(e.value), str(e.value)


def test_with_reference_refuses_what_it_cannot_compare():
    specs = S.load_specs()
    with pytest.raises(UserError, match="--reference nothing: no such spec"):
        S.with_reference(specs, "mask_off", "nothing")
    with pytest.raises(UserError, match="'adopted' is a reference itself"):
        S.with_reference(specs, "adopted", "adversarial")


def test_shipped_table1_configs_load_and_match_their_names():
    """configs/table1/<dataset>_<method>[_<candidate>].yaml: each validates and is what it says."""
    from backdrop.hparams import load_config
    from conftest import REPO
    files = sorted((REPO / "configs" / "table1").glob("*.yaml"))
    assert len(files) >= 6
    for path in files:
        cfg = load_config(path)
        assert path.stem.startswith(f"{cfg['dataset']}_{cfg['method']}"), path.name


def test_plan_shares_seeds_and_budget_between_the_sides():
    specs = S.load_specs()
    plan = S.plan(specs["end_to_end"], specs, "digits", seeds=(3, 7), overrides={"epochs_adv": 1, "limit": 50})
    assert [(j.side, j.seed) for j in plan.jobs] == [("reference", 3), ("variant", 3), ("reference", 7), ("variant", 7)]
    for ref, var in zip(plan.side("reference"), plan.side("variant")):
        assert var.cfg == {**ref.cfg, "schedule": "end_to_end"}
        assert ref.cfg["epochs_adv"] == 1 and ref.cfg["limit"] == 50 and ref.cfg["epochs_f"] == 5  # digits budget
        assert ref.key != var.key
    # the reference's runs are the same (same key) whichever ablation asks for them
    other = S.plan(specs["black"], specs, "digits", seeds=(3, 7), overrides={"epochs_adv": 1, "limit": 50})
    assert [j.key for j in other.side("reference")] == [j.key for j in plan.side("reference")]
    # MNIST has no budget entry: registry defaults
    assert S.plan(specs["black"], specs, "mnist").jobs[0].cfg["epochs_f"] == make_config()["epochs_f"]


def test_an_override_that_undoes_the_ablation_is_refused():
    specs = S.load_specs()
    with pytest.raises(UserError, match="identical to its reference"):
        S.plan(specs["tiles_1"], specs, "digits", overrides={"tiles": 1})


# ------------------------------------------------------------------------- invalid spec files
@pytest.mark.parametrize("body, key", [
    ({"description": "x", "changes": {"maks": "none"}}, "'maks'"),              # unknown hparam
    ({"description": "x", "changes": {"mask": "blob"}}, "'mask'"),              # bad choice
    ({"description": "x", "changes": {"tiles": 0}}, "'tiles'"),                 # out of bounds
    ({"description": "x", "changes": {"seed": 3}}, "'seed'"),                   # not settable
    ({"description": "x", "seed": 3}, "'seed'"),                                # unknown top-level key
    ({"description": "x", "seeds": 0}, "'seeds'"),
    ({"description": "x", "budget": {"cifar": {"epochs_f": 1}}}, "'cifar'"),
    ({"description": "x", "budget": {"digits": {"epochs_f": "many"}}}, "'epochs_f'"),
    ({"changes": {"mask": "none"}}, "'description'"),
    ({"description": "x", "reference": "nothing"}, "'nothing'"),
    ("description: [unclosed\n", "invalid YAML at line"),
])
def test_invalid_spec_is_one_line_naming_file_and_key(tmp_path, body, key):
    folder = write_specs(tmp_path / "specs", bad=body)
    with pytest.raises(UserError) as e:
        S.load_specs(folder)
    msg = str(e.value)
    assert "\n" not in msg and str(folder / "bad.yaml") in msg and key in msg, msg


def test_reference_cycle_is_reported(tmp_path):
    folder = write_specs(tmp_path / "specs", a={"description": "a", "reference": "b"},
                         b={"description": "b", "reference": "a"})
    with pytest.raises(UserError, match="cycle"):
        S.load_specs(folder)


# ----------------------------------------------------------------------------- command line
def test_list_shows_every_spec_with_its_description():
    out = ablate("--list")
    assert out.returncode == 0, out.stderr
    lines = out.stdout.strip().splitlines()
    specs = S.load_specs()
    assert len(lines) == len(specs)
    for line, spec in zip(lines, specs.values()):
        assert line.split()[0] == spec.name and spec.description in line


def test_unknown_name_is_one_line_listing_the_available_ones():
    out = ablate("nope")
    assert_one_line_error(out, "'nope'", *REQUIRED)
    assert out.stdout == ""


def test_invalid_spec_file_on_the_command_line(tmp_path):
    folder = write_specs(tmp_path / "specs", broken={"description": "x", "changes": {"background": "plaid"}})
    store = tmp_path / "mlflow.db"
    for args in (["broken"], ["--list"]):
        out = ablate("--specs", str(folder), "--tracking-uri", f"sqlite:///{store}", *args)
        assert_one_line_error(out, str(folder / "broken.yaml"), "'background'")
    assert not store.exists()       # refused before touching MLflow (or Ray)


@pytest.mark.parametrize("args, needle", [(["--seeds", "two"], "--seeds"), (["--epochs-f", "-1"], "epochs_f"),
                                          (["--dataset", "cifar"], "cifar"), (["--seeds", "1,1"], "seeds"),
                                          (["--reference", "nope"], "--reference nope"),
                                          (["mask_off"], "named twice"),
                                          (["--reference", "adopted", "averaged_f"], "identical to its reference")])
def test_bad_flags_are_one_line(tmp_path, args, needle):
    out = ablate("mask_off", "--tracking-uri", f"sqlite:///{tmp_path / 'mlflow.db'}", *args)
    assert_one_line_error(out, needle)
    assert not (tmp_path / "mlflow.db").exists()


def test_a_run_on_your_own_images_is_the_same_run_only_while_the_files_are_the_same(tmp_path):
    """Reuse (ablations, benchmarks) is keyed on a user's files too: a folder whose images changed
    is a new data set, never answered by runs on the old one; a built-in data set's key is its config's."""
    from backdrop.specs import config_key, run_key
    for name in ("a", "b"):
        (tmp_path / "photos" / name).mkdir(parents=True)
        (tmp_path / "photos" / name / "1.png").write_bytes(b"x")
    cfg = make_config({"dataset": f"folder:{tmp_path / 'photos'}"})
    key = run_key(cfg)
    assert run_key(cfg) == key != config_key(cfg)
    (tmp_path / "photos" / "b" / "2.png").write_bytes(b"y")
    assert run_key(cfg) != key
    mnist = make_config({"dataset": "mnist"})
    assert run_key(mnist) == config_key(mnist)
