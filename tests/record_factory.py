"""Records for tests whose values hold (each aggregate is the mean of its per-image values)."""

from __future__ import annotations

import json
from pathlib import Path

from sr_bench.records import Record

COMMITTED = Path(__file__).resolve().parents[1] / "results" / "records.jsonl"


def make_record(psnr: float = 30.0, ssim: float = 0.9, n_images: int = 5, **changes) -> Record:
    """An ``edsr (quick)`` Set5 x2 record whose ``n_images`` images all score ``psnr`` / ``ssim``
    (so the means hold exactly)."""
    rows = [{"image": f"img{k}", "psnr": psnr, "ssim": ssim} for k in range(n_images)]
    base = dict(model="edsr", weights="a" * 64, dataset="Set5", scale=2, self_ensemble=False, protocol="paper",
                psnr=psnr, ssim=ssim, n_images=n_images, per_image=rows, profile="quick",
                date="2026-11-28T10:00:00+00:00", data_sha256="d" * 64, n_expected=max(5, n_images))
    return Record(**{**base, **changes})


def legacy_line(line: str, schema: int) -> dict:
    """A committed schema-3 line as schema ``schema`` wrote it: without the fields it did not
    have (schema 1 also lacked label, n_expected, source and the sr-folder fields)."""
    data = json.loads(line)
    for name in ("checksum", "previous", "sr_bench_commit"):
        data.pop(name)
    if schema == 1:
        for name in ("label", "n_expected", "source", "sr_dir", "sr_sha256"):
            data.pop(name)
    data["schema"] = schema
    return data
