"""Training configs: the paper profile against the paper's values (written out here
independently), profiles change values only, serialisation, and the command line."""

from __future__ import annotations

import dataclasses
import json

import pytest

from sr_bench.train.__main__ import build_parser, config_from_args
from sr_bench.train.config import (
    PROFILES,
    TrainConfig,
    config_diff,
    make_config,
)

# Lim et al. 2017, Section 4.2 (docs/protocol.md#training-recipe; docs/paper-tables.md), typed in by hand.
PAPER = {
    "lr_patch": 48,
    "hr_patch": {2: 96, 3: 144, 4: 192},
    "hflip": True,
    "rot90": True,
    "batch": 16,
    "adam_betas": (0.9, 0.999),
    "adam_eps": 1e-8,
    "lr": 1e-4,
    "halve_every": 200_000,
    "loss": "l1",
    "updates": 300_000,
    "data": "DIV2K-train",
}
# Table 1: SRResNet (reproduced) is trained with L2; VDSR is one network for x2/x3/x4, L2 (its paper).
LOSS = {"edsr-baseline": "l1", "edsr": "l1", "mdsr-baseline": "l1", "mdsr": "l1", "srresnet": "l2", "vdsr": "l2"}
MULTI_SCALE = {"mdsr-baseline", "mdsr", "vdsr"}


@pytest.mark.parametrize("model", sorted(LOSS))
@pytest.mark.parametrize("scale", [2, 3, 4])
def test_paper_profile_is_the_papers_recipe(model, scale):
    cfg = PROFILES["paper"](model, scale)
    assert cfg.data.patch_size == PAPER["lr_patch"]
    assert cfg.data.patch_size * scale == PAPER["hr_patch"][scale]
    assert cfg.data.hflip is PAPER["hflip"] and cfg.data.rot90 is PAPER["rot90"]
    assert cfg.data.batch_size == PAPER["batch"]
    assert cfg.data.dataset == PAPER["data"]
    assert tuple(cfg.optim.betas) == PAPER["adam_betas"]
    assert cfg.optim.eps == PAPER["adam_eps"]
    assert cfg.optim.weight_decay == 0.0
    assert cfg.optim.lr == PAPER["lr"]
    assert cfg.optim.lr_step == PAPER["halve_every"] and cfg.optim.lr_gamma == 0.5
    assert cfg.optim.iterations == PAPER["updates"]
    assert cfg.model.loss == LOSS[model]
    if model in MULTI_SCALE:
        assert cfg.model.scales == (2, 3, 4)
    else:
        assert cfg.model.scales == (scale,)


def test_paper_profile_points_x3_x4_edsr_at_the_x2_warm_start():
    assert any("--init" in n for n in PROFILES["paper"]("edsr", 4).notes)
    assert not any("--init" in n for n in PROFILES["paper"]("edsr", 2).notes)


# What a shorter profile may change: length, lr schedule, data source, validation, logging.
ALLOWED = {
    "quick": {"profile", "notes", "data.dataset", "data.cache", "data.num_workers", "optim.iterations", "optim.lr",
              "optim.lr_step", "val.every", "val.max_images", "runtime.save_every", "runtime.log_every"},
    "smoke": {"profile", "notes", "data.dataset", "data.cache", "data.num_workers", "data.patch_size",
              "data.batch_size", "optim.iterations", "optim.lr_step", "val.every", "val.max_images",
              "runtime.save_every", "runtime.log_every", "runtime.amp"},
}


@pytest.mark.parametrize("profile", ["quick", "smoke"])
def test_profiles_only_change_values(profile):
    paper, other = PROFILES["paper"]("edsr-baseline", 2), PROFILES[profile]("edsr-baseline", 2)
    assert type(other) is TrainConfig
    assert [f.name for f in dataclasses.fields(other)] == [f.name for f in dataclasses.fields(paper)]
    changed = set(config_diff(paper, other))
    assert changed <= ALLOWED[profile], changed - ALLOWED[profile]
    assert "optim.iterations" in changed
    assert any(profile in n for n in other.notes)  # what it changed is stated


def test_quick_profile_keeps_the_recipe_and_says_what_it_changed():
    cfg = PROFILES["quick"]("edsr-baseline", 2)
    assert (cfg.data.patch_size, cfg.data.batch_size, cfg.model.loss) == (48, 16, "l1")
    assert cfg.optim.iterations < 300_000 and cfg.optim.lr_step < cfg.optim.iterations
    note = " ".join(cfg.notes)
    assert str(cfg.optim.iterations) in note and f"{cfg.optim.lr:g}" in note


def test_json_round_trip_and_strict_types(tmp_path):
    cfg = make_config("paper", "mdsr-baseline", None, **{"model.options": {"blocks": 4}, "seed": 7})
    path = cfg.save(tmp_path / "c.json")
    back = TrainConfig.load(path)
    assert back == cfg and back.model.scales == (2, 3, 4) and isinstance(back.optim.betas, tuple)
    d = json.loads(path.read_text())
    d["optim"]["lr_stepz"] = 3
    with pytest.raises(ValueError, match="lr_stepz"):
        TrainConfig.from_dict(d)
    d = cfg.to_dict()
    d["data"]["batch_size"] = "16"
    with pytest.raises(TypeError, match="batch_size"):
        TrainConfig.from_dict(d)
    with pytest.raises(KeyError):
        cfg.replace(**{"optim.learning_rate": 1.0})
    with pytest.raises(ValueError, match="amp"):
        make_config("paper", "edsr-baseline", 2, **{"runtime.amp": "fp8"})


def test_single_scale_models_need_a_scale():
    with pytest.raises(ValueError, match="scale"):
        make_config("paper", "edsr-baseline", None)
    with pytest.raises(ValueError, match="x8"):
        make_config("paper", "mdsr", 8)


def test_command_line_maps_to_config_fields(tmp_path):
    args = build_parser().parse_args(
        ["--model", "edsr-baseline", "--scale", "3", "--profile", "quick", "--data", "DIV2K", "--iterations", "50",
         "--save-every", "10", "--seed", "4", "--option", "blocks=4", "--option", "batch_norm=true",
         "--set", "data.hflip=false", "--lr", "2e-4", "--channels-last", "false", "--out", str(tmp_path)]
    )
    cfg = config_from_args(args)
    assert cfg.profile == "quick" and cfg.model.scales == (3,)
    assert cfg.data.dataset == "DIV2K-train"  # training on "DIV2K" means its 800 training images
    assert (cfg.optim.iterations, cfg.runtime.save_every, cfg.seed, cfg.optim.lr) == (50, 10, 4, 2e-4)
    assert cfg.model.options == {"blocks": 4, "batch_norm": True}
    assert cfg.data.hflip is False and cfg.runtime.channels_last is False
    assert cfg.out == str(tmp_path)
    with pytest.raises(SystemExit):
        config_from_args(build_parser().parse_args(["--out", str(tmp_path)]))


def test_a_config_json_from_before_compile_modes_still_loads(tmp_path):
    """runtime.compile was true/false before it took a torch.compile mode; old run folders'
    config.json (and --config files) must still load, mapped to the mode they meant."""
    cfg = make_config("smoke", "edsr-baseline", 2)
    for old, mode in ((False, "none"), (True, "default")):
        plain = json.loads(cfg.to_json())
        plain["runtime"]["compile"] = old
        path = tmp_path / f"config-{old}.json"
        path.write_text(json.dumps(plain))
        assert TrainConfig.load(path).runtime.compile == mode


def test_fixy_train_set_unknown_field_iterations_note_and_bad_config(tmp_path, capsys):
    from sr_bench.train.__main__ import main as train_main

    base = ["--model", "edsr-baseline", "--scale", "2", "--profile", "smoke", "--out", str(tmp_path / "run")]
    rc = train_main([*base, "--set", "optim.iterationz=1"])
    err = capsys.readouterr().err
    assert rc == 2 and "optim.iterationz" in err and "optim.iterations" in err
    rc = train_main([*base, "--set", "bogus.field=1"])
    err = capsys.readouterr().err
    assert rc == 2 and "bogus.field" in err and "Traceback" not in err
    cfg = config_from_args(build_parser().parse_args([*base, "--iterations", "2"]))
    assert cfg.optim.iterations == 2
    assert any("smoke profile: 2 updates" in n for n in cfg.notes)
    assert not any("8 updates" in n for n in cfg.notes)
    bad = tmp_path / "bad.json"
    bad.write_text("{oops")
    rc = train_main(["--config", str(bad), "--out", str(tmp_path / "run2")])
    err = capsys.readouterr().err
    assert rc == 1 and str(bad) in err


# --- run configuration files (--config run.toml) ------------------------------------------------------------

RUN_TOML = """\
# a run configuration, as BasicSR users keep option files
profile = "quick"
seed = 3
data.hflip = false
data.patch_size = 24

[model]
name = "edsr-baseline"
scales = [3]
options = { blocks = 4, res_scale = 0.5 }

[optim]
lr = 2e-4
iterations = 40
"""


def _toml(tmp_path, text=RUN_TOML, name="run.toml"):
    path = tmp_path / name
    path.write_text(text)
    return path


def test_a_run_file_sets_fields_and_the_command_line_wins(tmp_path):
    import hashlib

    path = _toml(tmp_path)
    cfg = config_from_args(build_parser().parse_args(
        ["--config", str(path), "--out", str(tmp_path / "o"), "--set", "optim.iterations=60", "--lr", "3e-4"]))
    assert (cfg.profile, cfg.model.name, cfg.model.scales, cfg.seed) == ("quick", "edsr-baseline", (3,), 3)
    assert cfg.model.options == {"blocks": 4, "res_scale": 0.5}
    assert (cfg.data.hflip, cfg.data.patch_size) == (False, 24)  # dotted keys
    assert (cfg.optim.iterations, cfg.optim.lr) == (60, 3e-4)  # --set and --lr over the file
    assert cfg.data.batch_size == 16 and cfg.optim.lr_step == 500  # the rest: the quick profile's values
    assert any("quick profile: 60 updates" in n for n in cfg.notes)
    assert cfg.config_file == {"path": str(path.resolve()), "sha256": hashlib.sha256(RUN_TOML.encode()).hexdigest(),
                               "text": RUN_TOML}
    assert TrainConfig.from_dict(json.loads(cfg.to_json())).config_file["text"] == RUN_TOML  # kept in config.json
    plain = config_from_args(build_parser().parse_args(["--model", "edsr-baseline", "--scale", "3", "--profile",
                                                        "quick", "--out", str(tmp_path / "p")]))
    assert set(config_diff(plain, cfg)) == {"config_file", "seed", "model.options", "optim.lr", "optim.iterations",
                                            "data.hflip", "data.patch_size", "notes", "out"}


def test_the_profile_note_lists_what_the_run_file_and_flags_changed(tmp_path):
    """The quick profile's note states its lr, batch and validation; a run that changes them says so
    (config.json keeps the note), and a config started from that saved config lists its own changes
    against the profile, not the old list plus the new one."""
    path = _toml(tmp_path)
    cfg = config_from_args(build_parser().parse_args(
        ["--config", str(path), "--out", str(tmp_path / "o"), "--batch-size", "2", "--set", "val.every=10"]))
    (note,) = [n for n in cfg.notes if n.startswith("quick profile: 40 updates")]
    said, changed = note.split("; changed here: ")
    assert "lr 0.0006 instead of 1e-4" in said and "batch 16" in said  # the profile's own words, kept
    assert changed == ("data.batch_size 16 -> 2, data.hflip True -> False, data.patch_size 48 -> 24, "
                       "model.options {} -> {'blocks': 4, 'res_scale': 0.5}, optim.lr 0.0006 -> 0.0002, "
                       "val.every 250 -> 10")
    saved = tmp_path / "config.json"
    saved.write_text(cfg.to_json())
    again = config_from_args(build_parser().parse_args(["--config", str(saved), "--out", str(tmp_path / "o2"),
                                                        "--lr", "6e-4", "--iterations", "50"]))
    (note,) = [n for n in again.notes if n.startswith("quick profile: 50 updates")]
    assert note.count("; changed here: ") == 1 and "optim.lr" not in note and "data.batch_size 16 -> 2" in note
    plain = config_from_args(build_parser().parse_args(["--model", "edsr-baseline", "--scale", "3", "--profile",
                                                        "quick", "--out", str(tmp_path / "p")]))
    assert not any("changed here" in n for n in plain.notes)


@pytest.mark.parametrize("text,flags,rc,match", [
    (RUN_TOML.replace("lr = 2e-4", "lrr = 2e-4"), [], 2, r"run.toml: optim.lrr: TrainConfig has no field .*did you "
                                                        r"mean optim.lr"),
    (RUN_TOML + "hflip = true\n", [], 2, r"optim.hflip: TrainConfig has no field .*did you mean data.hflip"),
    (RUN_TOML.replace("seed = 3", "seed = 'x'"), [], 2, r"run.toml: TrainConfig.seed: expected an integer"),
    (RUN_TOML.replace("[optim]", "[optim"), [], 1, r"run.toml: not valid TOML"),
    (RUN_TOML, ["--model", "edsr"], 2, r"--model edsr differs from .*run.toml's edsr-baseline"),
    (RUN_TOML, ["--scale", "2"], 2, r"--scale 2 differs from .*run.toml's 3"),
])
def test_bad_run_files_are_refused_naming_the_file(tmp_path, capsys, text, flags, rc, match):
    from sr_bench.train.__main__ import main as train_main

    path = _toml(tmp_path, text)
    assert train_main(["--config", str(path), "--out", str(tmp_path / "o"), *flags]) == rc
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    import re
    assert re.search(match, err), err


def test_reproduce_takes_a_run_file_as_set_fields(tmp_path):
    from sr_bench.cli import UsageError
    from sr_bench.reproduce import _config
    from sr_bench.reproduce import build_parser as reproduce_parser

    body = "profile = 'smoke'\n[optim]\niterations = 3\nlr = 2e-4\n"
    path = _toml(tmp_path, body)
    a = reproduce_parser().parse_args(["--config", str(path), "--set", "optim.lr=5e-4", "--results", str(tmp_path)])
    config = _config(a)
    assert config.profile == "smoke"
    assert {k: v for k, v in config.overrides.items() if k != "config_file"} == {"optim.iterations": 3,
                                                                                  "optim.lr": 5e-4}
    assert config.overrides["config_file"]["text"] == body
    assert make_config("smoke", "edsr-baseline", 2, **config.overrides).config_file["path"] == str(path.resolve())
    with pytest.raises(UsageError, match="reproduce trains every model"):
        _config(reproduce_parser().parse_args(["--config", str(_toml(tmp_path, RUN_TOML, "m.toml")),
                                               "--results", str(tmp_path)]))
    with pytest.raises(UsageError, match="--profile quick differs from .*profile smoke"):
        _config(reproduce_parser().parse_args(["--config", str(path), "--profile", "quick", "--results",
                                               str(tmp_path)]))


def test_a_smoke_run_from_a_run_file_keeps_it_in_config_json(tmp_path, small_train_folders):
    from sr_bench.train.__main__ import main as train_main

    body = ("profile = 'smoke'\n[model]\nname = 'edsr-baseline'\nscales = [2]\noptions = { blocks = 1, filters = 4 }\n"
            f"[data]\ndataset = '{small_train_folders['train']}'\n[val]\ndataset = '{small_train_folders['val']}'\n"
            "[optim]\niterations = 2\n")
    path = _toml(tmp_path, body)
    assert train_main(["--config", str(path), "--out", str(tmp_path / "run"), "--device", "cpu", "--no-progress",
                       "-q"]) == 0
    saved = json.loads((tmp_path / "run" / "config.json").read_text())
    assert saved["config_file"]["text"] == body and saved["optim"]["iterations"] == 2
    assert saved["model"]["options"] == {"blocks": 1, "filters": 4}
