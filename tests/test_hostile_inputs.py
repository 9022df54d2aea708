"""Hostile and broken input, through the command line: every case below must end with exit code 2
and one line ``vaekit: error: …`` (no traceback), change or create no file, and run no code
from the file (each pickle in this suite would create a canary file if it were ever loaded).

The cases are the ``CASES`` table; ``pytest -v tests/test_hostile_inputs.py`` lists each one.
"""

from __future__ import annotations

import gzip
import hashlib
import importlib
import io
import json
import math
import os
import pickle
import shutil
import struct
import zipfile
import zlib
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from safetensors.numpy import save_file

from vaekit.cli import main
from vaekit.data.idx import write_idx
from vaekit.runs import layout
from vaekit.serve import server

CANARY = "code-ran.txt"


class _Canary:
    """Unpickling this opens (creates) the canary file: proof that code from a file ran."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __reduce__(self):
        return (open, (str(self.path), "w"))


def pickle_bytes(root: Path) -> bytes:
    return pickle.dumps({"x": _Canary(root / CANARY)})


# --- hostile files: each builder writes into ``root`` and returns the path to pass --------------


def npy_bytes(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array, allow_pickle=True)
    return buffer.getvalue()


def _write(root: Path, name: str, data: bytes) -> Path:
    path = root / name
    path.write_bytes(data)
    return path


def _images(root: Path, images: list[Image.Image | bytes]) -> Path:
    folder = root / "images"
    folder.mkdir()
    for i, image in enumerate(images):
        if isinstance(image, bytes):
            (folder / f"{i}.png").write_bytes(image)
        else:
            image.save(folder / f"{i}.png")
    return folder


def _mnist_dir(root: Path, broken: Callable[[Path], None]) -> Path:
    """A --data-dir whose mnist/ holds the four files, one of them replaced by ``broken``."""
    folder = root / "data" / "mnist"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for name, array in (
        ("train-images-idx3-ubyte", rng.integers(0, 256, (20, 28, 28), dtype=np.uint8)),
        ("train-labels-idx1-ubyte", rng.integers(0, 10, 20, dtype=np.uint8)),
        ("t10k-images-idx3-ubyte", rng.integers(0, 256, (10, 28, 28), dtype=np.uint8)),
        ("t10k-labels-idx1-ubyte", rng.integers(0, 10, 10, dtype=np.uint8)),
    ):
        write_idx(folder / (name + ".gz"), array)
    broken(folder / "train-images-idx3-ubyte.gz")
    return root / "data"


def _gzip_of(data: bytes) -> Callable[[Path], None]:
    return lambda path: path.write_bytes(gzip.compress(data))


def _truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[:100])


def _weights_of(run: Path) -> dict[str, np.ndarray]:
    from safetensors.numpy import load_file

    return load_file(run / layout.WEIGHTS_FILE)


def _edit_json(path: Path, edit: Callable[[dict], None]) -> None:
    record = json.loads(path.read_text())
    edit(record)
    path.write_text(json.dumps(record))


def _set_hidden(record: dict) -> None:
    record["model"]["hidden"] = [17]


def _set_raw(path: Path, key: str, text: str | None = None) -> None:
    """Set ``key`` of the JSON object in ``path`` to the JSON text ``text`` (None: remove it)."""
    record = json.loads(path.read_text())
    record[key] = "@@raw@@"
    if text is None:
        del record[key]
    path.write_text(json.dumps(record).replace('"@@raw@@"', text or ""))


def _module_writing_the_canary(root: Path) -> str:
    """A module in ``root`` (which the test puts on sys.path, as ``python -m`` or
    ``PYTHONPATH=.`` would) whose import writes the canary; its name, unique to ``root``, so
    that no earlier import of it can count."""
    name = "canary_" + hashlib.sha256(str(root).encode()).hexdigest()[:16]
    (root / f"{name}.py").write_text(
        "from pathlib import Path\n"
        f"(Path(__file__).parent / {CANARY!r}).write_text('imported')\n"
        "import torch\n\n\n"
        "class Net(torch.nn.Module):\n"
        "    def __init__(self, config):\n"
        "        super().__init__()\n"
    )
    return name


def _naming_the_canary(part: str) -> Callable[[Path], None]:
    """Damage: config.json names the canary module as the run's own ``part`` network."""

    def damage(run: Path) -> None:
        module = _module_writing_the_canary(run.parent)
        setting = {f"{part}_module": f"{module}:Net"}
        _edit_json(run / layout.CONFIG_FILE, lambda record: record["model"].update(setting))

    return damage


def _settings_file(root: Path, suffix: str, text: str) -> str:
    path = root / f"settings{suffix}"
    path.write_text(text)
    return str(path)


def _settings_naming_the_canary(root: Path, suffix: str) -> str:
    module = _module_writing_the_canary(root)
    if suffix == ".toml":
        return _settings_file(root, suffix, f'[model]\nencoder_module = "{module}:Net"\n')
    return _settings_file(root, suffix, json.dumps({"model": {"encoder_module": f"{module}:Net"}}))


def _fifo(root: Path, name: str) -> str:
    """A FIFO named ``name`` in ``root``: a reader that opens it waits for ever for a writer."""
    os.mkfifo(root / name)
    return str(root / name)


def _no_checkpoint_yet(run: Path) -> None:
    """A run stopped before its first epoch finished: config.json written, nothing else."""
    for name in (layout.STATE_FILE, layout.WEIGHTS_FILE, layout.OPTIMIZER_FILE):
        (run / name).unlink()


def _saved_by_the_estimator(run: Path) -> None:
    """As VAE.save writes a run: created_by estimator, no optimizer state, no commit record."""
    _edit_json(run / layout.CONFIG_FILE, lambda record: record.update(created_by="estimator"))
    (run / layout.STATE_FILE).unlink()
    (run / layout.OPTIMIZER_FILE).unlink()


def _fifo_in_place_of(name: str) -> Callable[[Path], None]:
    def damage(run: Path) -> None:
        (run / name).unlink()
        os.mkfifo(run / name)

    return damage


def _directory(path: Path) -> None:
    path.unlink()
    path.mkdir()


def _nest(path: Path, depth: int) -> None:
    path.write_text("[" * depth + "]" * depth)


def _shapes_mismatch(run: Path) -> None:
    weights = {k: np.zeros((3, 3), np.float32) for k in _weights_of(run)}
    save_file(weights, str(run / layout.WEIGHTS_FILE))


def _zip_of(members: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return buffer.getvalue()


def _zip_with_pickle(root: Path) -> bytes:
    return _zip_of({"x.npy": npy_bytes(np.array([_Canary(root / CANARY)], dtype=object))})


def _png(width: int, height: int, idat: bytes) -> bytes:
    """A grey PNG declaring ``width`` × ``height`` pixels, with compressed pixel rows ``idat``."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        crc = struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)
        return struct.pack(">I", len(data)) + kind + data + crc

    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")
    )


def _png_bomb() -> bytes:
    """A valid PNG claiming 100000 × 100000 pixels (a decompression bomb) with almost no data."""
    return _png(100_000, 100_000, zlib.compress(b"\0" * 10))


def _png_of_zeros(side: int) -> bytes:
    """A complete, valid PNG of side × side black pixels, compressed row by row: 7072² = 50
    million pixels (50 MB decoded, just over one input's limit) in about 50 KB."""
    deflate = zlib.compressobj(9)
    rows = b"".join(deflate.compress(b"\0" * (side + 1)) for _ in range(side))
    return _png(side, side, rows + deflate.flush())


def _shards(root: Path, *shards: np.ndarray | bytes, extra: str | None = None) -> Path:
    """A folder of .npy shards 0.npy, 1.npy, … (arrays, or raw bytes), and perhaps one file
    ``extra`` that is not a shard."""
    folder = root / "shards"
    folder.mkdir()
    for i, shard in enumerate(shards):
        data = shard if isinstance(shard, bytes) else npy_bytes(shard)
        (folder / f"{i}.npy").write_bytes(data)
    if extra is not None:
        (folder / extra).write_text("0.1,0.2\n")
    return folder


def _npy_cut_short(rows: int, missing: int) -> bytes:
    """A .npy of ``rows`` × 784 float32 whose header is whole but whose data lack ``missing``
    bytes at the end."""
    return npy_bytes(np.zeros((rows, 784), np.float32))[:-missing]


def _png_cut_short(side: int) -> bytes:
    """A grey PNG of side × side pixels whose header is sound but whose pixel data stop half
    way (detected only when it is decoded)."""
    rows = np.random.default_rng(0).integers(0, 256, (side, side + 1), dtype=np.uint8)
    rows[:, 0] = 0  # each row's filter byte: none
    data = zlib.compress(rows.tobytes())
    return _png(side, side, data[: len(data) // 2])


def _npz(root: Path, name: str, **arrays: np.ndarray) -> Path:
    np.savez(root / name, **arrays)
    return root / name


def _with_labels(root: Path, y: list) -> str:
    return str(_npz(root, "x.npz", x=np.zeros((len(y), 28, 28), np.float32), y=np.array(y)))


def _npy_with_header(shape: tuple[int, ...]) -> bytes:
    header = f"{{'descr': '<f4', 'fortran_order': False, 'shape': {shape}, }}".encode()
    header += b" " * (63 - len(header) % 64) + b"\n"
    return b"\x93NUMPY\x01\x00" + struct.pack("<H", len(header)) + header + b"\0" * 64


#: name → builder(root, run) returning what replaces {bad} in the command.
FILES: dict[str, Callable[[Path, Path], str]] = {
    # IDX and gzip, as a named data set's files (--data mnist --data-dir {bad})
    "idx truncated gzip": lambda r, _: str(_mnist_dir(r, _truncate)),
    "idx not gzip at all": lambda r, _: str(_mnist_dir(r, lambda p: p.write_bytes(b"\x00" * 999))),
    "idx wrong magic": lambda r, _: str(_mnist_dir(r, _gzip_of(b"\x00\x00\x09\x99" + b"\0" * 64))),
    "idx oversized header": lambda r, _: str(
        _mnist_dir(r, _gzip_of(b"\x00\x00\x08\x03" + struct.pack(">III", 10**9, 10**9, 10**9)))
    ),
    "idx header only": lambda r, _: str(_mnist_dir(r, _gzip_of(b"\x00\x00\x08\x03"))),
    # .npy
    "npy object dtype with a pickle": lambda r, _: str(
        _write(r, "x.npy", npy_bytes(np.array([_Canary(r / CANARY)], dtype=object)))
    ),
    "npy that is a pickle": lambda r, _: str(_write(r, "x.npy", pickle_bytes(r))),
    "npy truncated": lambda r, _: str(
        _write(r, "x.npy", npy_bytes(np.zeros((50, 784), np.float32))[:500])
    ),
    "npy with NaN": lambda r, _: str(
        _write(r, "x.npy", npy_bytes(np.full((5, 784), np.nan, np.float32)))
    ),
    "npy of text": lambda r, _: str(_write(r, "x.npy", npy_bytes(np.array(["a", "b"])))),
    "npy empty": lambda r, _: str(_write(r, "x.npy", npy_bytes(np.zeros((0, 784), np.float32)))),
    "npy header declaring 10^12 rows": lambda r, _: str(
        _write(r, "x.npy", _npy_with_header((10**12, 784)))
    ),
    "npy random bytes": lambda r, _: str(_write(r, "x.npy", bytes(range(256)) * 4)),
    "npy with a NUL in its header": lambda r, _: str(
        _write(r, "x.npy", _npy_with_header((4, 6)).replace(b"False", b"Fa\0se"))
    ),
    "npy that looks like a zip": lambda r, _: str(_write(r, "x.npy", b"PK\x03\x04" + b"\0" * 9)),
    "npy cut short after its header (a map over a truncated file)": lambda r, _: str(
        _write(r, "x.npy", _npy_cut_short(50, 1))
    ),
    "npy header declaring 100 rows, holding 99": lambda r, _: str(
        _write(r, "x.npy", _npy_cut_short(100, 784 * 4))
    ),
    "npy of 10 rows of no values": lambda r, _: str(
        _write(r, "x.npy", npy_bytes(np.zeros((10, 0), np.float32)))
    ),
    # folders of .npy shards
    "npy shards of different shapes": lambda r, _: str(
        _shards(r, np.zeros((4, 784), np.float32), np.zeros((4, 783), np.float32))
    ),
    "npy shards of different dtypes": lambda r, _: str(
        _shards(r, np.zeros((4, 784), np.float32), np.zeros((4, 784), np.float64))
    ),
    "npy shards of different ranks": lambda r, _: str(
        _shards(r, np.zeros((4, 784), np.float32), np.zeros((4, 28, 28), np.float32))
    ),
    "npy shard folder with a non-.npy file": lambda r, _: str(
        _shards(r, np.zeros((4, 784), np.float32), extra="notes.csv")
    ),
    "npy shard that is a pickle": lambda r, _: str(
        _shards(r, np.zeros((4, 784), np.float32), pickle_bytes(r))
    ),
    "npy shard cut short after its header": lambda r, _: str(
        _shards(r, np.zeros((4, 784), np.float32), _npy_cut_short(4, 10))
    ),
    "npy shard of no examples": lambda r, _: str(
        _shards(r, np.zeros((4, 784), np.float32), np.zeros((0, 784), np.float32))
    ),
    "npy shard with NaN": lambda r, _: str(
        _shards(r, np.zeros((4, 784), np.float32), np.full((4, 784), np.nan, np.float32))
    ),
    "npz member declaring 10^12 rows": lambda r, _: str(
        _write(r, "x.npz", _zip_of({"x.npy": _npy_with_header((10**12, 784))}))
    ),
    # .npz
    "npz with a pickled member": lambda r, _: str(_write(r, "x.npz", _zip_with_pickle(r))),
    "npz that is not a zip": lambda r, _: str(_write(r, "x.npz", b"PK\x03\x04" + b"\0" * 40)),
    "npz that is a pickle": lambda r, _: str(_write(r, "x.npz", pickle_bytes(r))),
    "npz member of raw pickle bytes": lambda r, _: str(
        _write(r, "x.npz", _zip_of({"x.npy": pickle_bytes(r)}))
    ),
    "npz member of text": lambda r, _: str(_write(r, "x.npz", _zip_of({"x.npy": b"0.1,0.2\n"}))),
    "npz member of protocol-0 pickle bytes": lambda r, _: str(
        _write(r, "x.npz", _zip_of({"x.npy": pickle.dumps({"x": _Canary(r / CANARY)}, 0)}))
    ),
    "npz member named x, not an npy": lambda r, _: str(
        _write(r, "x.npz", _zip_of({"x": b"\x00" * 64}))
    ),
    "npz member of random bytes": lambda r, _: str(
        _write(r, "x.npz", _zip_of({"x.npy": bytes(range(256)) * 4}))
    ),
    "npz empty member": lambda r, _: str(_write(r, "x.npz", _zip_of({"x.npy": b""}))),
    "npz zero-size array": lambda r, _: str(
        _write(r, "x.npz", _zip_of({"x.npy": npy_bytes(np.zeros((0, 784), np.float32))}))
    ),
    "npz nested in an npz member": lambda r, _: str(
        _write(r, "x.npz", _zip_of({"x.npy": _zip_of({"x.npy": npy_bytes(np.zeros((4, 784)))})}))
    ),
    "npz member named with path separators": lambda r, _: str(
        _write(r, "x.npz", _zip_of({"../x.npy": npy_bytes(np.zeros((4, 784), np.float32))}))
    ),
    "npz labels beyond int64 (1e300)": lambda r, _: _with_labels(r, [0, 1, 2, 1e300]),
    "npz label 65535 (more classes than allowed)": lambda r, _: _with_labels(r, [0, 1, 65535]),
    # .csv
    "csv with NaN": lambda r, _: str(_write(r, "x.csv", b"0.1,0.2\nnan,0.3\n")),
    "csv with text": lambda r, _: str(_write(r, "x.csv", b"0.1,0.2\n0.3,hello\n")),
    "csv ragged rows": lambda r, _: str(_write(r, "x.csv", b"0.1,0.2,0.3\n0.4,0.5\n")),
    "csv binary garbage": lambda r, _: str(_write(r, "x.csv", bytes(range(256)) * 8)),
    "csv empty": lambda r, _: str(_write(r, "x.csv", b"")),
    "csv infinity": lambda r, _: str(_write(r, "x.csv", b"0.1,inf\n0.2,0.3\n")),
    "csv value beyond float32": lambda r, _: str(_write(r, "x.csv", b"0.1,1E100\n0.2,0.3\n")),
    "csv labels beyond int64 (1e300)": lambda r, _: str(
        _write(r, "x.csv", b"label,a,b\n1e300,0.1,0.2\n0,0.3,0.4\n")
    ),
    # images
    "images of mixed sizes": lambda r, _: str(
        _images(r, [Image.new("L", (28, 28)), Image.new("L", (20, 28))])
    ),
    "images that change size mid-folder": lambda r, _: str(
        _images(r, [Image.new("L", (28, 28))] * 3 + [Image.new("RGB", (28, 27))] * 2)
    ),
    "image that fails to decode mid-folder": lambda r, _: str(
        _images(r, [Image.new("L", (28, 28)), _png_cut_short(28), Image.new("L", (28, 28))])
    ),
    "image with corrupt bytes": lambda r, _: str(
        _images(r, [Image.new("L", (28, 28)), b"\x89PNG\r\n\x1a\n" + b"\xff" * 64])
    ),
    "image decompression bomb": lambda r, _: str(_images(r, [_png_bomb()])),
    "image of 7072x7072 pixels (50 million values)": lambda r, _: str(
        _images(r, [_png_of_zeros(7072)])
    ),
    "empty image directory": lambda r, _: str(_images(r, [])),
    "images 5000 pixels wide, no --image-size": lambda r, _: str(
        _images(r, [Image.new("L", (5000, 3))] * 2)
    ),
    "csv with 1e39 on line 3": lambda r, _: str(
        _write(r, "x.csv", b"a,b\n0.1,0.2\n0.3,1e39\n0.5,0.6\n")
    ),
    "csv with label 1.5 on line 3": lambda r, _: str(
        _write(r, "x.csv", b"label,a\n0,0.2\n1.5,0.4\n1,0.6\n")
    ),
    "a FIFO in place of a csv": lambda r, _: _fifo(r, "x.csv"),
}
#: The words the error of a FILES case must contain, where they matter.
FILE_WORDS = {
    "images 5000 pixels wide, no --image-size": "--image-size H W",
    "csv with 1e39 on line 3": "line 3 column 2 ('b') holds '1e39'",
    "csv with label 1.5 on line 3": "label 1.5 at line 3 column 1",
    "a FIFO in place of a csv": "is not a regular file",
}

#: Damage to a copy of a trained run ({run}); the command then uses that run.
RUN_DAMAGE: dict[str, Callable[[Path], None]] = {
    "pickle in place of the weights": lambda run: (run / layout.WEIGHTS_FILE).write_bytes(
        pickle_bytes(run.parent)
    ),
    "pickle in place of the optimizer state": lambda run: (run / layout.OPTIMIZER_FILE).write_bytes(
        pickle_bytes(run.parent)
    ),
    "truncated weights": lambda run: _truncate(run / layout.WEIGHTS_FILE),
    "weights of the wrong shapes": _shapes_mismatch,
    "edited config.json": lambda run: _edit_json(run / layout.CONFIG_FILE, _set_hidden),
    "config.json not JSON": lambda run: (run / layout.CONFIG_FILE).write_text("{oops"),
    "config.json a pickle": lambda run: (run / layout.CONFIG_FILE).write_bytes(
        pickle_bytes(run.parent)
    ),
    "state.json garbage": lambda run: (run / layout.STATE_FILE).write_text('{"files": 3}'),
    "weights missing": lambda run: (run / layout.WEIGHTS_FILE).unlink(),
    "state.json epoch 'two'": lambda run: _set_raw(run / layout.STATE_FILE, "epoch", '"two"'),
    "state.json epoch 1e400": lambda run: _set_raw(run / layout.STATE_FILE, "epoch", "1e400"),
    "state.json epoch -5": lambda run: _set_raw(run / layout.STATE_FILE, "epoch", "-5"),
    "state.json without loop_rng": lambda run: _set_raw(run / layout.STATE_FILE, "loop_rng"),
    "state.json with a malformed loop_rng": lambda run: _set_raw(
        run / layout.STATE_FILE, "loop_rng", '{"bit_generator": "PCG64", "state": {"inc": -1}}'
    ),
    "state.json without its engine block": lambda run: _set_raw(run / layout.STATE_FILE, "engine"),
    "state.json with a malformed engine block": lambda run: _set_raw(
        run / layout.STATE_FILE, "engine", '{"optimizer": "adam", "step": "x"}'
    ),
    "state.json nested 100,000 deep": lambda run: _nest(run / layout.STATE_FILE, 100_000),
    "config.json nested 100,000 deep": lambda run: _nest(run / layout.CONFIG_FILE, 100_000),
    "config.json with a 5000-digit number": lambda run: _set_raw(
        run / layout.CONFIG_FILE, "created_by", "9" * 5000
    ),
    "config.json with sigma 10^400": lambda run: _edit_json(
        run / layout.CONFIG_FILE, lambda record: record["model"].update(sigma=10**400)
    ),
    "config.json with hidden [10^30]": lambda run: _edit_json(
        run / layout.CONFIG_FILE, lambda record: record["model"].update(hidden=[10**30])
    ),
    "config.json with batch_size 1e400": lambda run: _edit_json(
        run / layout.CONFIG_FILE, lambda record: record["train"].update(batch_size=math.inf)
    ),
    "a directory in place of metrics.jsonl": lambda run: _directory(run / layout.METRICS_FILE),
    "metrics.jsonl nested 100,000 deep": lambda run: _nest(run / layout.METRICS_FILE, 100_000),
    "metrics.jsonl nested 10,000 deep": lambda run: _nest(run / layout.METRICS_FILE, 10_000),
    "metrics.jsonl with a loss of text": lambda run: (run / layout.METRICS_FILE).write_text(
        '{"epoch": 1, "loss": "", "recon": 1, "kl": 1}\n'
    ),
    "config.json naming an encoder module that writes a file when imported": (
        _naming_the_canary("encoder")
    ),
    "config.json naming a decoder module that writes a file when imported": (
        _naming_the_canary("decoder")
    ),
    "no checkpoint yet (stopped before its first epoch)": _no_checkpoint_yet,
    "weights saved by VAE.save (no optimizer state)": _saved_by_the_estimator,
    "a FIFO in place of scaling.json": _fifo_in_place_of(layout.SCALING_FILE),
    "a FIFO in place of state.json": _fifo_in_place_of(layout.STATE_FILE),
}
#: The words the error of a RUN_DAMAGE case must contain, where they matter.
DAMAGE_WORDS = {
    "config.json naming an encoder module that writes a file when imported": "--trust-code",
    "config.json naming a decoder module that writes a file when imported": "--trust-code",
    "no checkpoint yet (stopped before its first epoch)": "no saved epoch",
    "weights saved by VAE.save (no optimizer state)": "cannot be resumed",
    "a FIFO in place of scaling.json": "not a regular file",
    "a FIFO in place of state.json": "not a regular file",
}

#: Every command that reads a run, given {run} (and {out}: where it may write).
RUN_COMMANDS = {
    "sample": ["sample", "{run}", "--out", "{out}.png"],
    "evaluate": ["evaluate", "{run}", "--data", "mnist-small"],
    "score": ["score", "{run}", "mnist-small", "--out", "{out}"],
    "encode": ["encode", "{run}", "--data", "mnist-small", "--out", "{out}.npy"],
    "reconstruct": ["reconstruct", "{run}", "--data", "mnist-small", "--out", "{out}.png"],
    "manifold": ["manifold", "{run}", "--out", "{out}.png"],
    "scatter": ["scatter", "{run}", "--data", "mnist-small", "--out", "{out}.png"],
    "interpolate": ["interpolate", "{run}", "--data", "mnist-small", "--out", "{out}.png"],
    "curves": ["curves", "{run}", "--out", "{out}.png"],
    "serve": ["serve", "{run}", "--port", "0"],
    "resume": ["train", "--resume", "--out", "{run}"],
    "traverse": ["traverse", "{run}", "--out", "{out}.png"],
    "export": ["export", "{run}", "--out", "{out}"],
    "train --config": ["train", "--config", "{run}/config.json", "--out", "{out}"],
}

TRAIN = ["train", "--epochs", "1", "--hidden", "16", "--latent-dim", "2", "--quiet"]

#: (case, command with {bad}, {run} and {out} placeholders, words the error must contain)
CASES: list[tuple[str, list[str], str]] = []
for name in FILES:
    words = FILE_WORDS.get(name, "")
    if name.startswith("idx"):
        CASES.append(
            (name, [*TRAIN, "--data", "mnist", "--data-dir", "{bad}", "--out", "{out}"], words)
        )
    else:
        CASES.append((f"train on {name}", [*TRAIN, "--data", "{bad}", "--out", "{out}"], words))
        if name.startswith(("npy", "npz")):
            CASES.append((f"score {name}", ["score", "{run}", "{bad}", "--out", "{out}"], words))
#: Damage that only some commands meet: the commands that read the damaged part.
RESUME_ONLY = ("optimizer", "state.json", "metrics", "checkpoint yet", "VAE.save", "scaling.json")
for name in RUN_DAMAGE:
    words = DAMAGE_WORDS.get(name, "")
    if name.startswith("config.json"):  # every command reads it
        for command, argv in RUN_COMMANDS.items():
            if command != "train --config" or "module" in name:
                CASES.append((f"{command} a run with {name}", argv, words))
    elif name.startswith("metrics.jsonl"):  # read by curves; a damaged line is skipped
        CASES.append((f"curves of a run with {name}", RUN_COMMANDS["curves"], "no finished"))
    else:
        if not any(f in name for f in RESUME_ONLY):  # sample reads the weights and the config
            CASES.append((f"sample from a run with {name}", RUN_COMMANDS["sample"], words))
        CASES.append((f"resume a run with {name}", RUN_COMMANDS["resume"], words))

#: Settings files for train --config ({bad}) that must be refused in one line, and their words.
SETTINGS_FILES: dict[str, tuple[Callable[[Path], str], str]] = {
    "naming an encoder module that writes a file when imported (JSON)": (
        lambda r: _settings_naming_the_canary(r, ".json"),
        "--trust-code",
    ),
    "naming an encoder module that writes a file when imported (TOML)": (
        lambda r: _settings_naming_the_canary(r, ".toml"),
        "--trust-code",
    ),
    "with a 5000-digit integer (JSON)": (
        lambda r: _settings_file(r, ".json", '{"epochs": ' + "9" * 5000 + "}"),
        "4300 digits",
    ),
    "with a 5000-digit integer (TOML)": (
        lambda r: _settings_file(r, ".toml", "epochs = " + "9" * 5000 + "\n"),
        "4300 digits",
    ),
    "with seed 2^32 (JSON)": (
        lambda r: _settings_file(r, ".json", '{"train": {"seed": 4294967296}}'),
        "seed must be a whole number from 0 to 4,294,967,295",
    ),
    "with seed 2^32 (TOML)": (
        lambda r: _settings_file(r, ".toml", "[train]\nseed = 4294967296\n"),
        "seed must be a whole number from 0 to 4,294,967,295",
    ),
    "with sigma 10^400 (TOML)": (
        lambda r: _settings_file(r, ".toml", "sigma = 1" + "0" * 400 + "\n"),
        "sigma must be a finite number",
    ),
    "with patience 10^9 (JSON)": (
        lambda r: _settings_file(r, ".json", '{"patience": 1000000000}'),
        "patience must be a whole number from 0 to 1,000,000",
    ),
    "with a key given twice (JSON)": (
        lambda r: _settings_file(r, ".json", '{"epochs": 1, "epochs": 2}'),
        "the key 'epochs' is given twice",
    ),
    "that is a FIFO": (lambda r: _fifo(r, "settings.json"), "is not a regular file"),
}
for name, (_, words) in SETTINGS_FILES.items():
    CASES.append(
        (f"train --config {name}", ["train", "--config", "{bad}", "--out", "{out}"], words)
    )

#: Labels a conditional run ({crun}, 10 classes) cannot take: one of them is 10.
for command, argv in RUN_COMMANDS.items():
    if command in ("score", "evaluate", "encode", "scatter", "reconstruct"):
        argv = [a.replace("{run}", "{crun}").replace("mnist-small", "{bad}") for a in argv]
        CASES.append((f"{command} a conditional run with label 10", argv, "between 0 and 9"))
CASES.append(
    (
        "sample a conditional run with --label 10",
        ["sample", "{crun}", "--label", "10"],
        "classes: 0, 1, 2",
    )
)
CASES.append(
    (
        "train a conditional numpy model on npz label 65535 (more classes than allowed)",
        [*TRAIN, "--conditional", "--engine", "numpy", "--data", "{bad}", "--out", "{out}"],
        "at most 10,000 classes",
    )
)

#: Flags beyond their bounds, and outputs that are directories: refused before anything runs.
for argv, words in (
    (["sample", "{run}", "--seed", "-1"], "argument --seed: -1 is outside the range 0 to"),
    (["sample", "{run}", "-n", "1000000000"], "argument -n: 1000000000 is outside the range"),
    (["interpolate", "{run}", "--data", "mnist-small", "--steps", "1000000000"], "--steps"),
    (["scatter", "{run}", "--data", "mnist-small", "--max-points", "0"], "--max-points: 0"),
    (["evaluate", "{run}", "--data", "mnist-small", "--iw-samples", "1000000000"], "10,000"),
    (["score", "{run}", "mnist-small", "--iw-samples", "1000000000"], "--iw-samples"),
    (["reconstruct", "{run}", "--data", "mnist-small", "-n", "1000000000"], "1 to 100"),
    (["manifold", "{run}", "-n", "1000000"], "argument -n: 1000000 is outside the range 2 to"),
    (["sample", "{crun}", "--grid-by-label", "-n", "1000000000"], "range 1 to 10,000"),
    (["sample", "{crun}", "--grid-by-label", "-n", "2000"], "-n must be from 1 to 1,000"),
    (["serve", "{run}", "--port", "70000"], "--port: 70000"),
    ([*TRAIN, "--data", "mnist-small", "--seed", str(10**30)], "--seed"),
    (["sample", "{run}", "--out", "{out}/"], "is a directory"),
    (["sample", "{run}", "--out", "{run}"], "is a directory"),
    (["sample", "{run}", "--npy", "{run}/figures"], "is a directory"),
    (["encode", "{run}", "--data", "mnist-small", "--out", "{run}"], "is a directory"),
    (["sample", "{run}", "--grid-by-label"], "--grid-by-label needs one"),
    (["serve", "{run}", "--port", "0", "--allowed-host", "evil:80"], "is not a host name"),
):
    CASES.append((f"flags {' '.join(argv)}", argv, words))
for flags, words in (
    (["--hidden", "1000000000"], "limit"),
    (["--hidden", "-5"], "positive"),
    (["--hidden", "0"], "positive"),
    (["--latent-dim", "0"], "--latent-dim: 0 is outside the range 1 to"),
    (["--latent-dim", "-3"], "--latent-dim: -3 is outside"),
    (["--batch-size", "0"], "--batch-size: 0 is outside"),
    (["--batch-size", "1000000000000"], "is outside the range 1 to 1,000,000"),
    (["--epochs", "-1"], "--epochs: -1 is outside"),
    (["--lr", "nan"], "finite"),
    (["--lr", "-1"], "greater than 0"),
    (["--sigma", "0"], "greater than 0"),
    (["--hidden", "65536", "65536", "65536"], "parameters"),
    (["--conv-channels", "1000000000", "--arch", "conv"], "limit"),
    (["--image-size", "0", "0"], "--image-size: 0 is outside the range 1 to 4,096"),
    (["--image-size", "-3", "28"], "--image-size: -3 is outside"),
    (["--image-size", "5000", "5000"], "--image-size: 5000 is outside"),
    (["--image-size", "28"], "--image-size"),
    (["--image-mode", "cmyk"], "--image-mode"),
):
    command = ["train", "--data", "mnist-small", "--out", "{out}", "--quiet", *flags]
    CASES.append((f"absurd config {' '.join(flags)}", command, words))


# --- the test ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory) -> Path:
    run = tmp_path_factory.mktemp("hostile") / "run"
    argv = [*TRAIN, "--engine", "numpy", "--data", "mnist-small", "--out", str(run)]
    assert main(argv) == 0
    return run


@pytest.fixture(scope="module")
def conditional_run(tmp_path_factory) -> Path:
    run = tmp_path_factory.mktemp("hostile") / "crun"
    argv = [
        *TRAIN,
        "--engine",
        "numpy",
        "--data",
        "mnist-small",
        "--conditional",
        "--out",
        str(run),
    ]
    assert main(argv) == 0
    return run


def snapshot(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file() else ""
        for p in sorted(root.rglob("*"))
    }


@pytest.mark.parametrize("case, argv, words", CASES, ids=[case for case, _, _ in CASES])
def test_hostile_input_is_a_one_line_error_and_harms_nothing(
    tmp_path, trained_run, request, monkeypatch, capsys, case, argv, words
):
    monkeypatch.setattr(server, "serve", lambda app, sock: pytest.fail("served a hostile run"))
    run, crun = tmp_path / "run", tmp_path / "crun"
    shutil.copytree(trained_run, run)
    if any("{crun}" in a for a in argv):
        shutil.copytree(request.getfixturevalue("conditional_run"), crun)
    for name, damage in RUN_DAMAGE.items():
        if case.endswith(f"with {name}"):
            damage(run)
    bad = _with_labels(tmp_path, list(range(11))) if case.endswith("label 10") else ""
    for name, build in FILES.items():
        if case.endswith(name):
            bad = build(tmp_path, run)
    for name, (build, _) in SETTINGS_FILES.items():
        if case.endswith(name):
            bad = build(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))  # a module here is importable, as with python -m
    importlib.invalidate_caches()
    out = tmp_path / "out"
    argv = [a.format(bad=bad, run=run, crun=crun, out=out) for a in argv]
    before = snapshot(tmp_path)
    capsys.readouterr()

    code = main(argv)

    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert code == 2, (case, err)
    assert len(lines) == 1 and lines[0].startswith("vaekit: error: "), (case, err)
    assert "Traceback" not in err and words in lines[0], (case, err)
    assert not (tmp_path / CANARY).exists(), f"{case}: code from the file ran"
    assert snapshot(tmp_path) == before, f"{case}: files changed"


def test_the_suite_covers_what_the_issue_lists():
    names = " ".join(case for case, _, _ in CASES)
    for needed in (
        "truncated gzip",
        "wrong magic",
        "oversized header",
        "object dtype",
        "pickled member",
        "csv with NaN",
        "csv with text",
        "ragged",
        "mixed sizes",
        "change size mid-folder",
        "fails to decode mid-folder",
        "npy shards of different shapes",
        "npy shards of different dtypes",
        "npy shard folder with a non-.npy file",
        "npy cut short after its header",
        "npy header declaring 100 rows, holding 99",
        "npz member of protocol-0 pickle bytes",
        "--image-size 0 0",
        "corrupt bytes",
        "pickle in place of the weights",
        "wrong shapes",
        "edited config.json",
        "absurd config --hidden 1000000000",
        "absurd config --hidden -5",
        "absurd config --hidden 0",
        "npz member of raw pickle bytes",
        "npz member named with path separators",
        "7072x7072 pixels",
        "label 65535",
        "labels beyond int64 (1e300)",
        "a conditional run with label 10",
        "--grid-by-label -n 1000000000",
        "--out {out}/",
        "state.json epoch 1e400",
        "state.json with a malformed loop_rng",
        "config.json nested 100,000 deep",
        "metrics.jsonl nested 100,000 deep",
        "serve a run with",
        "sample a run with config.json naming an encoder module that writes a file",
        "evaluate a run with config.json naming a decoder module",
        "serve a run with config.json naming an encoder module",
        "export a run with config.json naming an encoder module",
        "train --config a run with config.json naming an encoder module",
        "resume a run with config.json naming an encoder module",
        "train --config naming an encoder module that writes a file when imported (TOML)",
        "train --config with a 5000-digit integer (JSON)",
        "train --config with seed 2^32 (TOML)",
        "train --config that is a FIFO",
        "train --config with a key given twice (JSON)",
        "images 5000 pixels wide, no --image-size",
        "resume a run with no checkpoint yet",
        "resume a run with weights saved by VAE.save",
        "csv with 1e39 on line 3",
        "--grid-by-label",
    ):
        assert needed in names, needed
    assert len(CASES) >= 200
