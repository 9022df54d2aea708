"""Hostile and broken input, through the command line: every case below must end with exit code 2
and one line ``vaekit: error: …`` (no traceback), change or create no file, and run no code
from the file (each pickle in this suite would create a canary file if it were ever loaded).

The cases are the ``CASES`` table; ``pytest -v tests/test_hostile_inputs.py`` lists each one.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
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

from vaekit import checkpoint
from vaekit.cli import main
from vaekit.data.idx import write_idx

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

    return load_file(run / checkpoint.WEIGHTS_FILE)


def _edit_json(path: Path, edit: Callable[[dict], None]) -> None:
    record = json.loads(path.read_text())
    edit(record)
    path.write_text(json.dumps(record))


def _set_hidden(record: dict) -> None:
    record["model"]["hidden"] = [17]


def _shapes_mismatch(run: Path) -> None:
    weights = {k: np.zeros((3, 3), np.float32) for k in _weights_of(run)}
    save_file(weights, str(run / checkpoint.WEIGHTS_FILE))


def _zip_of(members: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return buffer.getvalue()


def _zip_with_pickle(root: Path) -> bytes:
    return _zip_of({"x.npy": npy_bytes(np.array([_Canary(root / CANARY)], dtype=object))})


def _png_bomb() -> bytes:
    """A valid PNG claiming 100000 × 100000 pixels (a decompression bomb) with almost no data."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        crc = struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)
        return struct.pack(">I", len(data)) + kind + data + crc

    header = struct.pack(">IIBBBBB", 100_000, 100_000, 8, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(b"\0" * 10))
        + chunk(b"IEND", b"")
    )


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
    "npz member declaring 10^12 rows": lambda r, _: str(
        _write(r, "x.npz", _zip_of({"x.npy": _npy_with_header((10**12, 784))}))
    ),
    # .npz
    "npz with a pickled member": lambda r, _: str(_write(r, "x.npz", _zip_with_pickle(r))),
    "npz that is not a zip": lambda r, _: str(_write(r, "x.npz", b"PK\x03\x04" + b"\0" * 40)),
    "npz that is a pickle": lambda r, _: str(_write(r, "x.npz", pickle_bytes(r))),
    # .csv
    "csv with NaN": lambda r, _: str(_write(r, "x.csv", b"0.1,0.2\nnan,0.3\n")),
    "csv with text": lambda r, _: str(_write(r, "x.csv", b"0.1,0.2\n0.3,hello\n")),
    "csv ragged rows": lambda r, _: str(_write(r, "x.csv", b"0.1,0.2,0.3\n0.4,0.5\n")),
    "csv binary garbage": lambda r, _: str(_write(r, "x.csv", bytes(range(256)) * 8)),
    "csv empty": lambda r, _: str(_write(r, "x.csv", b"")),
    "csv infinity": lambda r, _: str(_write(r, "x.csv", b"0.1,inf\n0.2,0.3\n")),
    "csv value beyond float32": lambda r, _: str(_write(r, "x.csv", b"0.1,1E100\n0.2,0.3\n")),
    # images
    "images of mixed sizes": lambda r, _: str(
        _images(r, [Image.new("L", (28, 28)), Image.new("L", (20, 28))])
    ),
    "images of mixed modes": lambda r, _: str(
        _images(r, [Image.new("L", (28, 28)), Image.new("RGB", (28, 28))])
    ),
    "image with corrupt bytes": lambda r, _: str(
        _images(r, [Image.new("L", (28, 28)), b"\x89PNG\r\n\x1a\n" + b"\xff" * 64])
    ),
    "image decompression bomb": lambda r, _: str(_images(r, [_png_bomb()])),
    "empty image directory": lambda r, _: str(_images(r, [])),
}

#: Damage to a copy of a trained run ({run}); the command then uses that run.
RUN_DAMAGE: dict[str, Callable[[Path], None]] = {
    "pickle in place of the weights": lambda run: (run / checkpoint.WEIGHTS_FILE).write_bytes(
        pickle_bytes(run.parent)
    ),
    "pickle in place of the optimizer state": lambda run: (
        run / checkpoint.OPTIMIZER_FILE
    ).write_bytes(pickle_bytes(run.parent)),
    "truncated weights": lambda run: _truncate(run / checkpoint.WEIGHTS_FILE),
    "weights of the wrong shapes": _shapes_mismatch,
    "edited config.json": lambda run: _edit_json(run / checkpoint.CONFIG_FILE, _set_hidden),
    "config.json not JSON": lambda run: (run / checkpoint.CONFIG_FILE).write_text("{oops"),
    "config.json a pickle": lambda run: (run / checkpoint.CONFIG_FILE).write_bytes(
        pickle_bytes(run.parent)
    ),
    "state.json garbage": lambda run: (run / checkpoint.STATE_FILE).write_text('{"files": 3}'),
    "weights missing": lambda run: (run / checkpoint.WEIGHTS_FILE).unlink(),
}

TRAIN = ["train", "--epochs", "1", "--hidden", "16", "--latent-dim", "2", "--quiet"]

#: (case, command with {bad}, {run} and {out} placeholders, words the error must contain)
CASES: list[tuple[str, list[str], str]] = []
for name in FILES:
    if name.startswith("idx"):
        CASES.append(
            (name, [*TRAIN, "--data", "mnist", "--data-dir", "{bad}", "--out", "{out}"], "")
        )
    else:
        CASES.append((f"train on {name}", [*TRAIN, "--data", "{bad}", "--out", "{out}"], ""))
        if name.startswith(("npy", "npz")):
            CASES.append((f"score {name}", ["score", "{run}", "{bad}", "--out", "{out}"], ""))
for name in RUN_DAMAGE:
    if "optimizer" not in name and "state.json" not in name:  # sampling needs neither
        CASES.append((f"sample from a run with {name}", ["sample", "{run}", "--out", "{out}"], ""))
    CASES.append((f"resume a run with {name}", ["train", "--resume", "--out", "{run}"], ""))
for flags, words in (
    (["--hidden", "1000000000"], "limit"),
    (["--hidden", "-5"], "positive"),
    (["--hidden", "0"], "positive"),
    (["--latent-dim", "0"], "positive"),
    (["--latent-dim", "-3"], "positive"),
    (["--batch-size", "0"], "positive"),
    (["--batch-size", "1000000000000"], "limit"),
    (["--epochs", "-1"], "positive"),
    (["--lr", "nan"], "finite"),
    (["--lr", "-1"], "greater than 0"),
    (["--sigma", "0"], "greater than 0"),
    (["--hidden", "65536", "65536", "65536"], "parameters"),
    (["--conv-channels", "1000000000", "--arch", "conv"], "limit"),
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


def snapshot(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file() else ""
        for p in sorted(root.rglob("*"))
    }


@pytest.mark.parametrize("case, argv, words", CASES, ids=[case for case, _, _ in CASES])
def test_hostile_input_is_a_one_line_error_and_harms_nothing(
    tmp_path, trained_run, capsys, case, argv, words
):
    run = tmp_path / "run"
    shutil.copytree(trained_run, run)
    for name, damage in RUN_DAMAGE.items():
        if case.endswith(f"with {name}"):
            damage(run)
    bad = ""
    for name, build in FILES.items():
        if case.endswith(name):
            bad = build(tmp_path, run)
    out = tmp_path / "out"
    argv = [a.format(bad=bad, run=run, out=out) for a in argv]
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
        "mixed modes",
        "corrupt bytes",
        "pickle in place of the weights",
        "wrong shapes",
        "edited config.json",
        "absurd config --hidden 1000000000",
        "absurd config --hidden -5",
        "absurd config --hidden 0",
    ):
        assert needed in names, needed
    assert len(CASES) >= 60
