"""FLOPs counting (against hand counts) and the regenerated Table 1."""

from __future__ import annotations

import pytest
import torch

from sr_bench import models
from sr_bench.flops import count_flops, flops_per_lr_megapixel, flops_per_lr_pixel
from sr_bench.tables import table1
from sr_bench.tables.table1 import Measured, render_table1, write_table1

pytestmark = pytest.mark.usefixtures("one_thread")


def conv(cin, cout, k=3):
    """FLOPs per output pixel of a convolution: 2 per multiply-add, bias not counted."""
    return 2 * cin * cout * k * k


def test_edsr_baseline_x2_hand_count():
    per_lr_pixel = (
        conv(3, 3, 1)  # sub_mean
        + conv(3, 64)  # head
        + 33 * conv(64, 64)  # 16 blocks x 2 convs + body conv
        + conv(64, 256)  # upsampler conv at LR
        + 4 * conv(64, 3)  # tail conv at HR: 4 HR pixels per LR pixel
        + 4 * conv(3, 3, 1)  # add_mean at HR
    )
    assert per_lr_pixel == 2_745_306
    assert flops_per_lr_pixel("edsr-baseline", 2) == per_lr_pixel
    # 256x256 LR: the ~180 GFLOP of the brief
    assert per_lr_pixel * 256 * 256 == pytest.approx(180e9, rel=0.01)
    assert flops_per_lr_megapixel("edsr-baseline", 2) == per_lr_pixel * 1e6


def test_edsr_x4_and_mdsr_hand_counts():
    edsr_x4 = conv(3, 3, 1) + conv(3, 256) + 65 * conv(256, 256) + conv(256, 1024) + 4 * conv(256, 1024) + 16 * (
        conv(256, 3) + conv(3, 3, 1)
    )
    assert flops_per_lr_pixel("edsr", 4) == edsr_x4
    mdsr_x3 = conv(3, 3, 1) + conv(3, 64) + 4 * conv(64, 64, 5) + 161 * conv(64, 64) + conv(64, 576) + 9 * (
        conv(64, 3) + conv(3, 3, 1)
    )
    assert flops_per_lr_pixel("mdsr", 3) == mdsr_x3  # only the x3 branch runs


def test_vdsr_and_bicubic_counts():
    convs = conv(1, 64) + 18 * conv(64, 64) + conv(64, 1)
    for s in (2, 3, 4):
        bicubic = 8 * s + 8 * s * s  # 4 taps x 2 FLOPs, height pass (s samples) + width pass (s^2)
        assert flops_per_lr_pixel("bicubic", s, channels=1) == bicubic
        assert flops_per_lr_pixel("vdsr", s, in_channels=1) == s * s * convs + bicubic


def test_real_model_counts_like_meta_and_linearly():
    m = models.create("srresnet", scale=3, blocks=2)
    assert flops_per_lr_pixel(m, 3, probe=8) == flops_per_lr_pixel("srresnet", 3, blocks=2)
    assert count_flops(m, 3, 8, 12) * 2 == count_flops(m, 3, 16, 12)
    bn = [mod for mod in m.modules() if isinstance(mod, torch.nn.BatchNorm2d)][0]
    before = bn.running_mean.clone()
    m.train()
    count_flops(m, 3, 8, 8)
    assert m.training and torch.equal(bn.running_mean, before)  # counting changed nothing


# ---------------------------------------------------------------------------------------------
# Table 1


def test_write_table1(tmp_path):
    names = ["edsr-baseline", "mdsr-baseline", "bicubic"]
    out = write_table1(tmp_path / "t1.md", "cpu", size=16, repeats=1, names=names)
    text = out.read_text()
    assert "CPU" in text and "threads" in text  # the machine is named
    for expected in ("1,369,883", "1,554,523", "1,517,595", "3,227,227", "Baseline (single-scale)", "`bicubic`"):
        assert expected in text
    assert "✗" not in text
    assert "2,745" in text  # GFLOPs per LR megapixel, x2 edsr-baseline
    # one row per option, one column per model, as in the paper
    rows = [ln for ln in text.splitlines() if ln.startswith("| # Residual blocks")]
    assert rows[0] == "| # Residual blocks | 16 ✓ | 16 ✓ |"
    assert not list(tmp_path.glob(".*tmp"))


def test_render_flags_disagreement():
    paper = table1.paper_table1()
    wrong = Measured("edsr", 16, 256, {2: 40_000_000}, None, False, "l1", {2: 1.0}, 1.0, 2)
    text = render_table1([wrong], paper, "test machine")
    assert "16 ✗ (paper: 32)" in text and "– ✗ (paper: 0.1)" in text and "256 ✓" in text


def test_table1_cli(tmp_path, capsys):
    assert table1.main(["--out", str(tmp_path / "t.md"), "--size", "8", "--repeats", "1", "--models", "bicubic"]) == 0
    assert "wrote" in capsys.readouterr().out and (tmp_path / "t.md").is_file()


def test_fixy_table1_unknown_model_is_usage_error(tmp_path, capsys):
    rc = table1.main(["--models", "edsrr", "--out", str(tmp_path / "t1.md")])
    err = capsys.readouterr().err
    assert rc == 2 and "edsrr" in err and "edsr" in err and "Traceback" not in err
    assert not (tmp_path / "t1.md").exists()


def test_fixy_table1_size_zero_and_out_folder(tmp_path, capsys):
    with pytest.raises(SystemExit) as e:
        table1.main(["--models", "bicubic", "--size", "0", "--out", str(tmp_path / "t1.md")])
    assert e.value.code == 2 and "--size" in capsys.readouterr().err
    rc = table1.main(["--models", "bicubic", "--size", "8", "--repeats", "1", "--out", str(tmp_path)])
    err = capsys.readouterr().err
    assert rc == 2 and str(tmp_path) in err and "is a folder" in err
