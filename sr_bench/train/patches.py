"""Training patches: decoded images held ready, minibatches as a pure function of (seed, iteration).

* :func:`load_images` decodes every HR image of a dataset once, with its LR counterparts at the
  trained scales (the MATLAB-made files where they exist, else MATLAB-exact bicubic, cached by
  ``sr_bench.data``), and keeps them as uint8 arrays: in RAM (``cache="memory"``) or streamed
  into raw files memory-mapped from disk (``cache="disk"``: DIV2K-sized sets, shared by DataLoader
  workers through the page cache and reused by later runs). Sampling never waits on decoding.
* :class:`PatchBatches` is a map-style dataset whose index is the *iteration*: batch ``i`` is
  drawn from ``numpy.random.default_rng([seed, i])`` alone. The data order is therefore
  independent of workers, prefetching, restarts and the number of processes: a resumed run sees
  exactly the batches the uninterrupted run would have seen, and under DistributedDataParallel
  rank ``r`` of ``w`` takes slice ``r`` of the same global batch.
* :func:`make_loader` wraps it in a standard ``torch.utils.data.DataLoader`` (module-level worker
  init, a seeded generator, no closures, no private torch API).

A batch is a dict ``{"lr": uint8 (b, H, W, 3), "hr": uint8 (b, sH, sW, 3), "scale": int,
"iteration": int}``; :func:`to_model_input` turns the NHWC uint8 arrays into float NCHW tensors
in 0..1 that are already ``channels_last`` in memory.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import tempfile
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from sr_bench.data import cache_dir as default_cache_dir
from sr_bench.errors import DataError, StorageError, storage_error
from sr_bench.images import atomic_write

__all__ = [
    "ImageStore",
    "load_images",
    "PatchBatches",
    "DeviceBatches",
    "make_loader",
    "seed_worker",
    "to_model_input",
]

_PACK_VERSION = 1


def _rgb(a: np.ndarray) -> np.ndarray:
    """Gray (H, W) or (H, W, 1) -> (H, W, 3), replicated; RGB unchanged."""
    if a.ndim == 2:
        a = a[..., None]
    if a.shape[2] == 1:
        a = np.repeat(a, 3, axis=2)
    if a.ndim != 3 or a.shape[2] != 3 or a.dtype != np.uint8:
        raise ValueError(f"expected a uint8 gray or RGB image, got {a.dtype} {a.shape}")
    return np.ascontiguousarray(a)


@dataclass(frozen=True)
class _Entry:
    offset: int  # byte offset in the pack file (disk stores)
    shape: tuple[int, int, int]


def _shape3(shape) -> tuple[int, int, int]:
    h, w, c = (int(d) for d in shape)
    return h, w, c


class ImageStore:
    """HR images and their LR counterparts (uint8 HWC), addressed by image index.

    Memory stores hold lists of arrays (worker processes started by fork share them without
    copying). Disk stores memory-map one raw uint8 file per kind (``hr``, ``x2``, ...); only
    paths travel to worker processes, which map the files lazily and share the page cache.
    """

    def __init__(
        self,
        names: Sequence[str],
        scales: Sequence[int],
        entries: dict[str, list[_Entry]],
        *,
        arrays: dict[str, list[np.ndarray]] | None = None,
        pack: Path | None = None,
        description: str = "",
    ):
        self.names = list(names)
        self.scales = tuple(scales)
        self._entries = entries
        self._arrays = arrays
        self._pack = pack
        self._maps: dict[str, np.ndarray] = {}
        self.description = description

    def __len__(self) -> int:
        return len(self.names)

    def __getstate__(self):
        state = self.__dict__.copy()
        state["_maps"] = {}  # memmaps are reopened in each process
        return state

    def _get(self, kind: str, i: int) -> np.ndarray:
        if self._arrays is not None:
            return self._arrays[kind][i]
        if kind not in self._maps:
            assert self._pack is not None  # a disk store always has its pack folder
            self._maps[kind] = np.memmap(self._pack / f"{kind}.u8", dtype=np.uint8, mode="r")
        e = self._entries[kind][i]
        n = e.shape[0] * e.shape[1] * e.shape[2]
        return self._maps[kind][e.offset : e.offset + n].reshape(e.shape)

    def hr(self, i: int) -> np.ndarray:
        return self._get("hr", i)

    def lr(self, i: int, scale: int) -> np.ndarray:
        return self._get(f"x{scale}", i)

    def lr_shape(self, i: int, scale: int) -> tuple[int, int]:
        s = self._entries[f"x{scale}"][i].shape
        return s[0], s[1]

    def eligible(self, scale: int, patch_size: int) -> np.ndarray:
        """Indices of the images whose LR at ``scale`` holds a ``patch_size`` square."""
        return np.array(
            [i for i, e in enumerate(self._entries[f"x{scale}"]) if min(e.shape[0], e.shape[1]) >= patch_size],
            dtype=np.int64,
        )

    @property
    def nbytes(self) -> int:
        return sum(e.shape[0] * e.shape[1] * e.shape[2] for es in self._entries.values() for e in es)


def _fingerprint(dataset, scales: Sequence[int]) -> str:
    h = hashlib.sha256()
    h.update(f"v{_PACK_VERSION}|{dataset.name}|{dataset.location}|{tuple(scales)}".encode())
    for ref in dataset.images:
        st = ref.hr_path.stat()
        h.update(f"|{ref.stem}:{ref.hr_path}:{st.st_size}:{st.st_mtime_ns}".encode())
        for s in scales:
            p = ref.lr_path(s)
            if p is not None:
                lst = p.stat()
                h.update(f"|{p}:{lst.st_size}:{lst.st_mtime_ns}".encode())
    return h.hexdigest()[:20]


def _decode_one(dataset, i: int, scales: Sequence[int]) -> tuple[np.ndarray, dict[int, np.ndarray]]:
    hr, sha = dataset.read_hr(i)
    hr = _rgb(hr)
    lrs: dict[int, np.ndarray] = {}
    for s in scales:
        lr = _rgb(dataset.read_lr(i, s, hr=hr, hr_sha256=sha, scoring=False)[0])
        h, w = lr.shape[:2]
        if h * s > hr.shape[0] or w * s > hr.shape[1]:
            raise ValueError(
                f"{dataset.images[i].hr_path}: LR x{s} is {w}x{h}, larger than HR {hr.shape[1]}x{hr.shape[0]} / {s}"
            )
        lrs[s] = lr
    return hr, lrs


def _decoded(dataset, scales, threads, log):
    """Yield (hr, {scale: lr}) for every image in order, decoded by a thread pool (PNG decoding
    and the bicubic release the GIL); at most a few images are held at once."""
    n = len(dataset)
    log(f"decoding {n} images of {dataset.name} (HR + LR x{'/x'.join(map(str, scales))}) ...")
    with ThreadPoolExecutor(max_workers=max(1, threads)) as pool:
        window = 2 * max(1, threads)
        futures: list[Any] = [pool.submit(_decode_one, dataset, i, scales) for i in range(min(window, n))]
        for i in range(n):
            result = futures[i].result()
            futures[i] = None  # drop the reference: memory stays bounded
            if i + window < n:
                futures.append(pool.submit(_decode_one, dataset, i + window, scales))
            yield result


def _kinds(scales) -> list[str]:
    return ["hr", *(f"x{s}" for s in scales)]


def _write_pack(folder: Path, names: list[str], scales, images) -> None:
    """Stream decoded images into one raw file per kind; ``index.json`` (sizes, shapes, offsets)
    is written last, so a pack without a complete index is never used."""
    folder.mkdir(parents=True, exist_ok=True)
    kinds = _kinds(scales)
    tmp: dict[str, Path] = {}
    for k in kinds:
        fd, name = tempfile.mkstemp(prefix=f".{k}.", suffix=".tmp", dir=folder)
        os.close(fd)
        tmp[k] = Path(name)
    files = {k: open(tmp[k], "wb") for k in kinds}
    layout: dict[str, Any] = {k: [] for k in kinds}
    try:
        for hr, lrs in images:
            for k, a in (("hr", hr), *((f"x{s}", lrs[s]) for s in scales)):
                layout[k].append([files[k].tell(), list(a.shape)])
                files[k].write(np.ascontiguousarray(a).tobytes())
        for k in kinds:
            files[k].flush()
            os.fsync(files[k].fileno())
            size = files[k].tell()
            files[k].close()
            os.replace(tmp[k], folder / f"{k}.u8")
            layout[k] = {"size": size, "layout": layout[k]}
    except BaseException:
        for k in kinds:
            files[k].close()
            tmp[k].unlink(missing_ok=True)
        raise
    index = {"version": _PACK_VERSION, "names": names, "scales": list(scales), "kinds": layout}
    atomic_write(folder / "index.json", lambda t: Path(t).write_text(json.dumps(index)))


def _open_pack(folder: Path, names: list[str], scales) -> dict[str, list[_Entry]] | None:
    """The entries of a complete, consistent pack, or None (missing, truncated or stale)."""
    try:
        index = json.loads((folder / "index.json").read_text())
    except (OSError, ValueError):
        return None
    if index.get("version") != _PACK_VERSION or index.get("names") != names or index.get("scales") != list(scales):
        return None
    entries: dict[str, list[_Entry]] = {}
    for kind in _kinds(scales):
        info = index["kinds"].get(kind)
        path = folder / f"{kind}.u8"
        if info is None or not path.is_file() or path.stat().st_size != info["size"]:
            return None  # missing or truncated: rebuild
        entries[kind] = [_Entry(int(o), _shape3(sh)) for o, sh in info["layout"]]
        if any(e.offset + e.shape[0] * e.shape[1] * e.shape[2] > info["size"] for e in entries[kind]):
            return None
    return entries


def load_images(
    dataset,
    scales: Sequence[int],
    *,
    cache: str = "memory",
    cache_dir: str | os.PathLike | None = None,
    threads: int | None = None,
    log: Callable[[str], None] = lambda msg: None,
) -> ImageStore:
    """Decode ``dataset`` (an ``sr_bench.data.Dataset``) once: HR as RGB uint8, LR at ``scales``.

    Gray images are replicated to 3 channels. ``cache="disk"`` streams the arrays into a pack
    under ``cache_dir`` (keyed by the dataset's files: paths, sizes, mtimes) and memory-maps it;
    a pack that is incomplete, truncated or stale is rebuilt, never trusted.
    """
    scales = tuple(int(s) for s in scales)
    names = [ref.stem for ref in dataset.images]
    threads = threads or min(8, os.cpu_count() or 1)
    if cache == "memory":
        arrays: dict[str, list[np.ndarray]] = {k: [] for k in _kinds(scales)}
        for hr, lrs in _decoded(dataset, scales, threads, log):
            arrays["hr"].append(hr)
            for s in scales:
                arrays[f"x{s}"].append(lrs[s])
        entries = {k: [_Entry(0, _shape3(a.shape)) for a in v] for k, v in arrays.items()}
        return ImageStore(names, scales, entries, arrays=arrays, description=f"{dataset.name} in memory")
    if cache != "disk":
        raise ValueError(f"cache must be 'memory' or 'disk', got {cache!r}")

    root = Path(cache_dir).expanduser() if cache_dir else default_cache_dir()
    folder = root / "train-packs" / f"{dataset.name}-{_fingerprint(dataset, scales)}"
    packed = _open_pack(folder, names, scales)
    if packed is None:
        try:
            _write_pack(folder, names, scales, _decoded(dataset, scales, threads, log))
        except OSError as e:  # full, read-only (a read-only home): one line; the temps are gone
            if isinstance(e, StorageError) or e.errno is None:
                raise
            fix = "free space, pass --cache-dir DIR in a writable folder, or --cache memory"
            raise storage_error(folder, e, "write the --cache disk image pack in", fix=fix) from None
        packed = _open_pack(folder, names, scales)
        if packed is None:  # pragma: no cover - the filesystem lost what we just wrote
            raise OSError(f"{folder}: the image pack just written cannot be read back")
        log(f"cached decoded images in {folder}")
    else:
        log(f"using cached decoded images in {folder}")
    return ImageStore(names, scales, packed, pack=folder, description=f"{dataset.name} packed in {folder}")


class PatchBatches(torch.utils.data.Dataset):
    """Minibatches of aligned LR/HR patches; item ``i`` is the batch of iteration ``i``.

    Everything random about batch ``i`` (the scale of a multi-scale model, images, crop
    positions, flips, rotations) comes from ``numpy.random.default_rng([seed, i])``; the
    ``batch_size`` patches of the *global* batch are drawn, and this rank keeps its slice.
    """

    def __init__(
        self,
        store: ImageStore,
        scales: Sequence[int],
        patch_size: int,
        batch_size: int,
        seed: int,
        *,
        hflip: bool = True,
        rot90: bool = True,
        rank: int = 0,
        world_size: int = 1,
    ):
        if seed < 0:
            raise ValueError(f"seed must be >= 0, got {seed}")
        if batch_size % world_size:
            raise ValueError(f"the global batch {batch_size} does not split over {world_size} processes")
        self.store = store
        self.scales = tuple(int(s) for s in scales)
        self.patch_size = int(patch_size)
        self.batch_size = int(batch_size)
        self.seed = int(seed)
        self.hflip, self.rot90 = bool(hflip), bool(rot90)
        self.rank, self.world_size = int(rank), int(world_size)
        self.per_rank = batch_size // world_size
        self.eligible = {s: store.eligible(s, self.patch_size) for s in self.scales}
        empty = [s for s, idx in self.eligible.items() if len(idx) == 0]
        if empty:
            raise DataError(
                f"no training image of {store.description} is large enough for a {patch_size}x{patch_size} "
                f"LR patch at x{'/x'.join(map(str, empty))}; use a smaller patch size or larger images"
            )

    def __len__(self) -> int:  # indices are iterations; any non-negative integer is valid
        return 2**62

    def plan(self, iteration: int) -> dict:
        """What batch ``iteration`` is made of (global batch; every rank computes the same plan)."""
        rng = np.random.default_rng([self.seed, int(iteration)])
        scale = self.scales[int(rng.integers(len(self.scales)))] if len(self.scales) > 1 else self.scales[0]
        eligible = self.eligible[scale]
        n, p = self.batch_size, self.patch_size
        images = eligible[rng.integers(0, len(eligible), n)]
        u = rng.random((n, 2))
        flips = rng.integers(0, 2, n) if self.hflip else np.zeros(n, np.int64)
        rots = rng.integers(0, 4, n) if self.rot90 else np.zeros(n, np.int64)
        ys, xs = np.empty(n, np.int64), np.empty(n, np.int64)
        for j, i in enumerate(images):
            h, w = self.store.lr_shape(int(i), scale)
            ys[j] = int(u[j, 0] * (h - p + 1))
            xs[j] = int(u[j, 1] * (w - p + 1))
        return {"scale": scale, "images": images, "y": ys, "x": xs, "flip": flips, "rot": rots}

    def __getitem__(self, iteration: int) -> dict:
        plan = self.plan(iteration)
        s, p = plan["scale"], self.patch_size
        lo, hi = self.rank * self.per_rank, (self.rank + 1) * self.per_rank
        lr_out = np.empty((hi - lo, p, p, 3), np.uint8)
        hr_out = np.empty((hi - lo, p * s, p * s, 3), np.uint8)
        for k, j in enumerate(range(lo, hi)):
            i, y, x = int(plan["images"][j]), int(plan["y"][j]), int(plan["x"][j])
            lr = self.store.lr(i, s)[y : y + p, x : x + p]
            hr = self.store.hr(i)[y * s : (y + p) * s, x * s : (x + p) * s]
            if plan["flip"][j]:
                lr, hr = lr[:, ::-1], hr[:, ::-1]
            k_rot = int(plan["rot"][j])
            if k_rot:
                lr, hr = np.rot90(lr, k_rot), np.rot90(hr, k_rot)
            lr_out[k] = lr
            hr_out[k] = hr
        return {
            "lr": torch.from_numpy(lr_out),
            "hr": torch.from_numpy(hr_out),
            "scale": s,
            "iteration": int(iteration),
        }


def seed_worker(worker_id: int) -> None:
    """DataLoader ``worker_init_fn``: seed Python, NumPy and torch in each worker from the
    per-worker seed the DataLoader derives from its generator. (Batches do not depend on it,
    being drawn from (seed, iteration); this keeps any other randomness in a worker seeded.)"""
    seed = torch.initial_seed() % 2**32
    random.seed(seed)
    np.random.seed(seed)
    torch.set_num_threads(1)


def make_loader(
    batches: PatchBatches,
    start: int,
    stop: int,
    *,
    num_workers: int,
    prefetch_factor: int = 4,
    pin_memory: bool = False,
    generator: torch.Generator | None = None,
) -> torch.utils.data.DataLoader:
    """A DataLoader yielding the batches of iterations ``start .. stop - 1``, in order."""
    kwargs: dict = {}
    if num_workers > 0:
        kwargs.update(prefetch_factor=prefetch_factor, worker_init_fn=seed_worker, persistent_workers=False)
    return torch.utils.data.DataLoader(
        batches,
        batch_size=None,
        sampler=range(start, stop),
        num_workers=num_workers,
        pin_memory=pin_memory,
        generator=generator,
        **kwargs,
    )


def to_model_input(batch: torch.Tensor, device: torch.device, channels_last: bool = True) -> torch.Tensor:
    """uint8 NHWC -> float NCHW in 0..1 on ``device``; ``channels_last`` keeps the NHWC memory
    (free: the permuted view already is channels_last), else it is made contiguous NCHW."""
    x = batch.to(device, non_blocking=True).permute(0, 3, 1, 2)
    x = x.float().div_(255.0)
    return x.contiguous(memory_format=torch.channels_last if channels_last else torch.contiguous_format)


def _flat_images(images: Sequence[np.ndarray], device: torch.device) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Every image of one kind in one flat uint8 tensor on ``device`` (no padding), with each
    image's start offset and width (int64, on ``device``)."""
    sizes = [int(a.size) for a in images]
    offsets = np.concatenate([[0], np.cumsum(sizes)[:-1]]).astype(np.int64)
    flat = torch.empty(sum(sizes), dtype=torch.uint8, device=device)
    for a, o, n in zip(images, offsets, sizes, strict=True):
        flat[o : o + n].copy_(torch.from_numpy(np.ascontiguousarray(a).reshape(-1)))
    widths = torch.tensor([a.shape[1] for a in images], dtype=torch.int64, device=device)
    return flat, torch.from_numpy(offsets).to(device), widths


class DeviceBatches:
    """The batches of :class:`PatchBatches`, cut on the device from images held there.

    The plan of batch ``i`` (scale, images, crop corners, flips, rotations) is the same
    host-side draw from ``(seed, i)``; the crops, flips and 90-degree rotations are then one
    gather per kind on the device, whose index grid folds in the flip and the rotation exactly as
    ``numpy.rot90(patch[:, ::-1], k)`` would. Batches are therefore bit-identical to the
    DataLoader path, and a resumed run sees the same data either way.
    """

    def __init__(self, batches: PatchBatches, device: torch.device | str):
        self.batches = batches
        self.device = torch.device(device)
        store = batches.store
        kinds = ["hr", *(f"x{s}" for s in batches.scales)]
        def images(kind: str) -> list[np.ndarray]:
            return [store.hr(i) if kind == "hr" else store.lr(i, int(kind[1:])) for i in range(len(store))]

        self._flat = {k: _flat_images(images(k), self.device) for k in kinds}
        self._grids: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}

    @property
    def nbytes(self) -> int:
        return sum(int(flat.numel()) for flat, _, _ in self._flat.values())

    def _grid(self, n: int) -> tuple[torch.Tensor, torch.Tensor]:
        """(rows, cols) of an n x n patch, broadcastable to (b, n, n)."""
        if n not in self._grids:
            r = torch.arange(n, device=self.device)
            self._grids[n] = (r.view(1, n, 1), r.view(1, 1, n))
        return self._grids[n]

    def _cut(self, kind: str, images: torch.Tensor, y: torch.Tensor, x: torch.Tensor, flip: torch.Tensor,
             rot: torch.Tensor, n: int) -> torch.Tensor:
        """Patches of side ``n`` at (y, x) of ``images``, flipped and rotated: (b, n, n, 3) uint8."""
        flat, offsets, widths = self._flat[kind]
        i, j = self._grid(n)
        last = n - 1
        k = rot.view(-1, 1, 1)
        # output (i, j) of rot90(A, k) reads A at: k=0 (i, j); k=1 (j, last-i); k=2 (last-i, last-j); k=3 (last-j, i)
        a_r = torch.where(k == 0, i, torch.where(k == 1, j, torch.where(k == 2, last - i, last - j)))
        a_c = torch.where(k == 0, j, torch.where(k == 1, last - i, torch.where(k == 2, last - j, i)))
        a_c = torch.where(flip.view(-1, 1, 1).bool(), last - a_c, a_c)  # A = patch[:, ::-1]
        w = widths[images].view(-1, 1, 1)
        pixel = offsets[images].view(-1, 1, 1) + ((y.view(-1, 1, 1) + a_r) * w + x.view(-1, 1, 1) + a_c) * 3
        index = pixel.unsqueeze(-1) + torch.arange(3, device=self.device)
        return flat[index]

    def __getitem__(self, iteration: int) -> dict:
        b = self.batches
        plan = b.plan(iteration)
        s, p = plan["scale"], b.patch_size
        lo, hi = b.rank * b.per_rank, (b.rank + 1) * b.per_rank
        cols = np.stack([plan["images"], plan["y"], plan["x"], plan["flip"], plan["rot"]])[:, lo:hi].astype(np.int64)
        images, y, x, flip, rot = torch.from_numpy(cols).to(self.device, non_blocking=True)
        return {
            "lr": self._cut(f"x{s}", images, y, x, flip, rot, p),
            "hr": self._cut("hr", images, y * s, x * s, flip, rot, p * s),
            "scale": s,
            "iteration": int(iteration),
        }

    def iterate(self, start: int, stop: int):
        """The batches of iterations ``start .. stop - 1``, in order."""
        for i in range(start, stop):
            yield self[i]
