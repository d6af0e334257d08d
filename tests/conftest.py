"""Shared fixtures. Real-data tests read $SR_BENCH_DATA (``.ci/run`` points it at
../shared/datasets); without it they skip locally and fail under CI."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch


def _data_root() -> Path | None:
    root = os.environ.get("SR_BENCH_DATA")
    return Path(root) if root and Path(root, "Set5", "HR").is_dir() else None


@pytest.fixture(scope="session")
def data_root() -> Path:
    """The real benchmark images (Set5, Set14, B100, Urban100, T91)."""
    root = _data_root()
    if root is None:
        message = (
            "the real benchmark images are needed: set SR_BENCH_DATA to a folder with Set5/HR, Set14/HR, "
            "B100/HR, Urban100/HR, T91/HR (e.g. ../shared/datasets)"
        )
        if os.environ.get("CI"):
            pytest.fail(message + f" (SR_BENCH_DATA={os.environ.get('SR_BENCH_DATA')!r})")
        pytest.skip(message)
    return root


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path_factory, monkeypatch):
    """Generated LR images go to a per-session temporary cache, never the user's."""
    monkeypatch.setenv("SR_BENCH_CACHE", str(tmp_path_factory.getbasetemp() / "sr_bench_cache"))


def pytest_collection_modifyitems(config, items):
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA device")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)
