"""Ablations as registered objects: claims, verdict rules, the bicubic bar, training stability."""

from __future__ import annotations

import json

import pytest

import sr_bench.ablate as ablate
from sr_bench import cli
from sr_bench.ablate import ABLATIONS, AblateConfig, Ablation, Variant, register_ablation, stability, verdict


def _measured(psnr: float, history=()) -> dict:
    return {"label": "x", "mean_psnr": psnr, "history": list(history), "diverged": False,
            "memory": {"saved_for_backward_mib": 10.0}}


def test_the_papers_four_ablations_are_registered_with_their_own_rules():
    assert ABLATIONS.names() == ["loss", "no-bn", "res-scale", "warm-start"]
    config = AblateConfig([], res_scale=0.2, loss="l2")
    built = {name: ABLATIONS.get(name)(config) for name in ABLATIONS}
    assert built["res-scale"].reference.changes == {"model.options.res_scale": 0.2}
    assert built["loss"].variant.changes == {"model.loss": "l2"}
    assert built["warm-start"].scale == 4 and built["warm-start"].mark_best_of_variant
    # each of the four has a rule of its own; none falls back to the generic sentence
    assert all(ab.verdict is not ablate.default_verdict for ab in built.values())


def test_a_verdict_without_its_own_rule_does_not_talk_about_l1():
    ab = Ablation("wider", "edsr-baseline", 2, Variant("64 filters (paper)"), Variant("96 filters"))
    text = verdict(ab, _measured(30.5), _measured(30.2), bicubic_psnr=29.0)
    assert text.startswith("held") and "+0.300 dB" in text and "L1" not in text
    loss = ABLATIONS.get("loss")(AblateConfig([]))
    assert "L1" in verdict(loss, _measured(30.5), _measured(30.2), bicubic_psnr=29.0)


def test_runs_that_do_not_beat_bicubic_are_inconclusive():
    loss = ABLATIONS.get("loss")(AblateConfig([]))
    # the paper's choice "wins" by 1 dB, but both runs are 9 dB below bicubic (smoke runs)
    text = verdict(loss, _measured(21.0), _measured(20.0), bicubic_psnr=30.0)
    assert text.startswith("inconclusive") and "30.00" in text and "held" not in text
    # one run at bicubic's level is not enough either
    assert verdict(loss, _measured(31.0), _measured(30.0), bicubic_psnr=30.0).startswith("inconclusive")
    assert verdict(loss, _measured(31.0), _measured(30.5), bicubic_psnr=30.0).startswith("held")


def test_a_missing_claim_is_a_clear_error_before_any_training(tmp_path, monkeypatch):
    monkeypatch.setattr(ABLATIONS, "_items", dict(ABLATIONS._items))  # register for this test only
    register_ablation("wider")(lambda c: Ablation("wider", "edsr-baseline", 2, Variant("a"), Variant("b")))
    monkeypatch.setattr(ablate, "_train_variant", lambda *a, **k: pytest.fail("trained before checking the claim"))
    with pytest.raises(cli.DataError, match=r"claims\.csv has no row for ablation 'wider'"):
        ablate.run(AblateConfig(["wider"], results=str(tmp_path), runs=str(tmp_path / "runs")))
    # and the registered ablation got a command-line flag of its own
    assert ablate.parse_args(["--wider"]).ablations == ["wider"]


def test_unknown_profile_and_bad_flags_are_one_line_errors(capsys):
    with pytest.raises(SystemExit) as e:
        ablate.main(["--no-bn", "--profile", "quik"])
    assert e.value.code == 2 and "invalid choice: 'quik'" in capsys.readouterr().err


def test_stability_reads_spikes_grad_norms_and_validation_drops(tmp_path):
    log = tmp_path / "log.jsonl"
    events = [
        {"event": "start"},
        {"event": "train", "iteration": 50, "loss": 0.10, "loss_max": 0.12, "grad_norm": 1.0, "grad_norm_max": 2.0},
        {"event": "train", "iteration": 100, "loss": 0.08, "loss_max": 0.50, "grad_norm": 1.5, "grad_norm_max": 9.5},
        {"event": "train", "iteration": 150, "loss": 0.07, "loss_max": 0.09, "grad_norm": 1.0, "grad_norm_max": 3.0},
    ]
    log.write_text("\n".join(json.dumps(e) for e in events) + "\n")
    history = [{"iteration": 500, "psnr": 30.0}, {"iteration": 1500, "psnr": 28.0}, {"iteration": 1000, "psnr": 31.5},
               {"iteration": 2000, "psnr": 32.0}]
    got = stability(log, history)
    assert got["largest_loss_spike"] == pytest.approx(0.50 / 0.10)  # iteration 100's worst over 50's mean
    assert got["largest_grad_norm"] == 9.5
    assert got["largest_validation_drop_db"] == pytest.approx(3.5)  # 31.5 at 1000 -> 28.0 at 1500


def test_stability_tolerates_older_logs_without_the_new_fields(tmp_path):
    log = tmp_path / "log.jsonl"
    log.write_text(json.dumps({"event": "train", "iteration": 25, "loss": 0.1}) + "\n")
    got = stability(log, [{"iteration": 250, "psnr": 30.0}])
    assert got == {"largest_loss_spike": None, "largest_grad_norm": None, "largest_validation_drop_db": None}
    assert stability(None, [])["largest_loss_spike"] is None


def test_res_scale_verdict_sees_a_validation_drop_that_final_psnr_hides():
    ab = ABLATIONS.get("res-scale")(AblateConfig([]))
    ref = {**_measured(36.66), "stability": {"largest_validation_drop_db": 0.0}}
    alt = {**_measured(36.77), "stability": {"largest_validation_drop_db": 1.95}}  # a measured run: 36.77 after a dip
    text = verdict(ab, ref, alt, bicubic_psnr=33.66)
    assert text.startswith("partly held") and "1.95 dB" in text
    calm = {**alt, "stability": {"largest_validation_drop_db": 0.1}}
    assert verdict(ab, ref, calm, bicubic_psnr=33.66).startswith("not observed")


def test_gpu_profile_runs_the_real_edsr_for_res_scale():
    ab = ABLATIONS.get("res-scale")(AblateConfig([]))
    assert ablate._model_options(ab, ab.reference, "gpu") == {"res_scale": 0.1}  # 32 x 256: the factory's own
    assert ablate._model_options(ab, ab.reference, "quick") == {"blocks": 8, "filters": 128, "res_scale": 0.1}


def test_fixy_ablate_res_scale_positive_and_unknown_set(tmp_path, capsys):
    with pytest.raises(SystemExit) as e:
        ablate.main(["--res-scale", "-1", "--results", str(tmp_path)])
    assert e.value.code == 2 and "--res-scale" in capsys.readouterr().err
    rc = ablate.main(["--no-bn", "--profile", "smoke", "--set", "bogus=1", "--results", str(tmp_path),
                      "--runs", str(tmp_path / "runs")])
    err = capsys.readouterr().err
    assert rc == 2 and "bogus" in err and "Traceback" not in err
    assert not (tmp_path / "runs").exists()
