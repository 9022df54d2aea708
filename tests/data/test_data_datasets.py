"""Named data sets: the shipped subset, lookup, checksums, downloads (faked) and status."""

import errno
import hashlib
import runpy
import sys
from pathlib import Path

import numpy as np
import pytest

from vaekit.data import DATASET_NAMES, Dataset, dataset_status, datasets, load_dataset, write_idx
from vaekit.data.datasets import absolute_source, has_test_split, run_data_dir
from vaekit.errors import DataError

SHARED_MNIST = Path(__file__).resolve().parents[3] / "shared" / "data" / "mnist"
STEMS = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
ALL_STEMS = STEMS["train"] + STEMS["test"]
REAL_DOWNLOAD = datasets._download


@pytest.fixture(autouse=True)
def isolated(monkeypatch, tmp_path_factory):
    """Fail any test that would reach the network; ignore this machine's data directories and
    cache (the user cache is an empty folder of its own, ``cache_root()``)."""

    def refuse(url, sha256, folder):
        raise AssertionError(f"test tried to download {url}")

    monkeypatch.setattr(datasets, "_download", refuse)
    monkeypatch.delenv("VAEKIT_DATA_DIR", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path_factory.mktemp("xdg-cache")))
    monkeypatch.setattr(datasets, "_SYSTEM_DIRS", {})


def cache_root() -> Path:
    """The user cache's data directory, where downloads go."""
    return datasets.resolve_data_dir()


def snapshot(root: Path) -> list[str]:
    """Every path under ``root`` (itself included), to show that nothing was created."""
    return sorted(str(p) for p in [root, *root.rglob("*")])


def fake_arrays(n: int, n_labels: int | None = None, seed: int = 0):
    images = np.random.default_rng(seed).integers(0, 256, size=(n, 28, 28), dtype=np.uint8)
    labels = (np.arange(n if n_labels is None else n_labels) % 10).astype(np.uint8)
    return images, labels


def build(folder: Path, monkeypatch, name="mnist", gz=True, train_labels=None) -> dict:
    """Write fake IDX files (30 train, 10 test examples) into ``folder`` and trust their
    contents' SHA-256 for data set ``name``."""
    folder.mkdir(parents=True, exist_ok=True)
    arrays = {"train": fake_arrays(30, train_labels), "test": fake_arrays(10, seed=1)}
    for split, (images_stem, labels_stem) in STEMS.items():
        images, labels = arrays[split]
        for stem, array in ((images_stem, images), (labels_stem, labels)):
            path = folder / (stem + ".gz" if gz else stem)
            write_idx(path, array)
            header = bytes([0, 0, 8, array.ndim]) + b"".join(
                d.to_bytes(4, "big") for d in array.shape
            )
            sha = hashlib.sha256(header + array.tobytes()).hexdigest()
            monkeypatch.setitem(datasets._CONTENT_SHA256[name], stem, sha)
    return arrays


# --- mnist-small (shipped) ----------------------------------------------------------------


@pytest.mark.parametrize(("split", "n"), [("train", 5000), ("test", 1000)])
def test_mnist_small(split, n):
    data = load_dataset("mnist-small", split)
    assert isinstance(data, Dataset)
    assert data.name == "mnist-small"
    assert len(data) == n
    assert data.x.shape == (n, 1, 28, 28)
    assert data.x.dtype == np.float32 and data.x.flags.c_contiguous
    assert data.x.min() == 0.0 and data.x.max() == 1.0
    assert data.y.dtype == np.int64 and data.y.shape == (n,)
    np.testing.assert_array_equal(np.bincount(data.y), [n // 10] * 10)
    assert 0.1 < data.x.mean() < 0.15  # real digits: mostly black background


def test_mnist_small_is_shipped_small():
    files = sorted(datasets._PACKAGED_DIR.glob("*.gz"))
    assert [f.name[: -len(".gz")] for f in files] == sorted(ALL_STEMS)
    assert 0.5e6 < sum(f.stat().st_size for f in files) < 1.5e6
    assert (datasets._PACKAGED_DIR / "README.md").is_file()


def test_corrupt_installation_is_reported(tmp_path, monkeypatch):
    for stem in ALL_STEMS:
        (tmp_path / f"{stem}.gz").write_bytes((datasets._PACKAGED_DIR / f"{stem}.gz").read_bytes())
    images, _ = fake_arrays(5000)
    write_idx(tmp_path / "train-images-idx3-ubyte.gz", images)
    monkeypatch.setattr(datasets, "_PACKAGED_DIR", tmp_path)
    with pytest.raises(DataError, match="installation is corrupt"):
        load_dataset("mnist-small")
    (tmp_path / "train-images-idx3-ubyte.gz").unlink()
    with pytest.raises(DataError, match="reinstall"):
        load_dataset("mnist-small")


# --- mnist from a data directory ----------------------------------------------------------


@pytest.mark.parametrize("gz", [True, False])
@pytest.mark.parametrize("split", ["train", "test"])
def test_mnist_from_data_dir(tmp_path, monkeypatch, split, gz):
    arrays = build(tmp_path / "mnist", monkeypatch, gz=gz)
    data = load_dataset("mnist", split, data_dir=tmp_path)
    images, labels = arrays[split]
    assert data.x.shape == (len(images), 1, 28, 28)
    assert data.x.dtype == np.float32
    np.testing.assert_allclose(data.x[:, 0], images / 255, rtol=1e-6)
    assert data.y.dtype == np.int64
    np.testing.assert_array_equal(data.y, labels)


def test_data_dir_from_environment(tmp_path, monkeypatch):
    build(tmp_path / "env" / "mnist", monkeypatch)
    monkeypatch.setenv("VAEKIT_DATA_DIR", str(tmp_path / "env"))
    assert len(load_dataset("mnist")) == 30
    status = {s["name"]: s for s in dataset_status()}
    assert status["mnist"]["location"] == str(tmp_path / "env" / "mnist")
    assert status["mnist"]["present"] is True
    # An explicit data_dir wins over the environment.
    status = {s["name"]: s for s in dataset_status(tmp_path / "other")}
    assert status["mnist"]["present"] is False
    assert status["mnist"]["location"] == str(tmp_path / "other" / "mnist")


def test_checksum_mismatch_is_refused(tmp_path, monkeypatch):
    build(tmp_path / "mnist", monkeypatch)
    images, _ = fake_arrays(30)
    images[0, 0, 0] ^= 1
    write_idx(tmp_path / "mnist" / "train-images-idx3-ubyte.gz", images)
    with pytest.raises(DataError, match="SHA-256") as info:
        load_dataset("mnist", data_dir=tmp_path)
    assert str(tmp_path / "mnist" / "train-images-idx3-ubyte.gz") in str(info.value)
    assert len(load_dataset("mnist", "test", data_dir=tmp_path)) == 10


def test_real_hashes_refuse_fake_files(tmp_path):
    folder = tmp_path / "mnist"
    folder.mkdir()
    for stem in ALL_STEMS:
        write_idx(folder / f"{stem}.gz", np.zeros((2, 28, 28), dtype=np.uint8))
    with pytest.raises(DataError, match="not the official mnist file"):
        load_dataset("mnist", data_dir=tmp_path)


def test_label_count_mismatch(tmp_path, monkeypatch):
    build(tmp_path / "mnist", monkeypatch, train_labels=29)
    with pytest.raises(DataError, match=r"shape \(30, 28, 28\).*shape \(29,\)"):
        load_dataset("mnist", data_dir=tmp_path)


def test_fashion_mnist_found_in_system_directory(tmp_path, monkeypatch):
    system = tmp_path / "usr-share" / "fashion-mnist"
    build(system, monkeypatch, name="fashion-mnist")
    monkeypatch.setitem(datasets._SYSTEM_DIRS, "fashion-mnist", (system,))
    data = load_dataset("fashion-mnist", "test", data_dir=tmp_path / "empty")
    assert data.x.shape == (10, 1, 28, 28) and data.name == "fashion-mnist"
    status = {s["name"]: s for s in dataset_status(tmp_path / "empty")}
    assert status["fashion-mnist"]["present"] is True
    assert status["fashion-mnist"]["location"] == str(system)


# --- downloading (faked) ------------------------------------------------------------------


def test_offline_error_is_one_short_line_saying_what_to_do(tmp_path, monkeypatch):
    tried = []

    def offline(url, sha256, folder):
        tried.append(url)
        raise OSError(errno.ENETUNREACH, "Network is unreachable", url + " " + "x" * 600)

    monkeypatch.setattr(datasets, "_download", offline)
    with pytest.raises(DataError) as info:
        load_dataset("mnist")
    message = str(info.value)
    assert message.startswith(f"mnist is not in the cache {cache_root() / 'mnist'} and could not")
    assert "Network is unreachable, from 3 mirrors" in message
    for stem in ALL_STEMS:
        assert f"{stem}.gz" in message
    assert "--data-dir DIR" in message
    assert "\n" not in message and len(message) < 400 and "xxx" not in message
    assert tried == [m + "train-images-idx3-ubyte.gz" for m in datasets._MIRRORS["mnist"]]
    assert not cache_root().exists()  # the folders made for the download are gone again


def test_failed_download_reasons_are_a_few_words(tmp_path, monkeypatch):
    import requests

    response = requests.Response()
    response.status_code = 404
    failures = [
        (requests.ConnectionError("HTTPSConnectionPool(host=...) " + "y" * 600), "ConnectionError"),
        (requests.HTTPError("404 Client Error " + "z" * 600, response=response), "HTTP 404"),
        (
            ValueError("SHA256 hash of downloaded file does not match"),
            "the file did not match its SHA-256",
        ),
    ]
    for error, reason in failures:

        def failing(url, sha256, folder, error=error):
            raise error

        monkeypatch.setattr(datasets, "_download", failing)
        with pytest.raises(DataError, match=f"could not be downloaded \\({reason}") as info:
            load_dataset("fashion-mnist")
        assert len(str(info.value)) < 500  # the reason, where to put the files, what to install


@pytest.mark.parametrize("how", ["argument", "environment"])
def test_named_directory_lacking_the_set_is_only_read(tmp_path, monkeypatch, how):
    """A data directory that was named (mistyped, or holding other sets) gets one line naming
    the files it should hold; nothing is created in it and nothing is downloaded."""
    (tmp_path / "data" / "mnist").mkdir(parents=True)
    (tmp_path / "data" / "mnist" / "train-images-idx3-ubyte.gz").write_bytes(b"")
    before = snapshot(tmp_path)
    for root in (tmp_path / "data", tmp_path / "typo"):
        if how == "environment":
            monkeypatch.setenv("VAEKIT_DATA_DIR", str(root))
        given = root if how == "argument" else None
        with pytest.raises(DataError) as info:
            load_dataset("mnist", "train", data_dir=given)
        named = "--data-dir" if how == "argument" else "$VAEKIT_DATA_DIR"
        assert str(info.value) == (
            f"mnist not found in {root} ({named}): expected "
            + (
                "train-labels-idx1-ubyte.gz"
                if root.name == "data"
                else "train-images-idx3-ubyte.gz and train-labels-idx1-ubyte.gz"
            )
            + f" (or without .gz) in {root / 'mnist'}/"
        )
        with pytest.raises(DataError, match="t10k-images-idx3-ubyte.gz and t10k-labels"):
            load_dataset("mnist", "test", data_dir=given)
    assert snapshot(tmp_path) == before
    assert not cache_root().exists()


def test_download_fetches_all_four_files_into_the_cache_then_loads(tmp_path, monkeypatch):
    sources = tmp_path / "server"
    arrays = build(sources, monkeypatch)
    calls = []

    def fake_download(url, sha256, folder):
        name = url.rsplit("/", 1)[1]
        calls.append((url, sha256, folder))
        if url.startswith(datasets._MIRRORS["mnist"][0]) and name.startswith("t10k"):
            raise OSError("first mirror down")
        folder.mkdir(parents=True, exist_ok=True)
        (folder / name).write_bytes((sources / name).read_bytes())

    monkeypatch.setattr(datasets, "_download", fake_download)
    data = load_dataset("mnist", "test")
    np.testing.assert_array_equal(data.y, arrays["test"][1])
    assert sorted(p.name for p in (cache_root() / "mnist").iterdir()) == sorted(
        f"{s}.gz" for s in ALL_STEMS
    )
    fetched = {url.rsplit("/", 1)[1]: sha for url, sha, _ in calls}
    for stem in ALL_STEMS:
        assert fetched[f"{stem}.gz"] == datasets._ARCHIVE_SHA256["mnist"][stem]
    assert len(calls) == 6  # two test files each tried on two mirrors
    assert dataset_status()[0]["present"] is True


def test_download_off_never_downloads(tmp_path):
    with pytest.raises(DataError, match="not in the cache .*downloading is off.*--data-dir"):
        load_dataset("fashion-mnist", download=False)
    assert not cache_root().exists()


def test_run_data_dir_precedence(tmp_path, monkeypatch):
    """--data-dir, else the run's stored directory while it holds the set, else None (which
    means $VAEKIT_DATA_DIR, then the cache)."""
    build(tmp_path / "stored" / "mnist", monkeypatch)
    stored = str(tmp_path / "stored")
    assert run_data_dir("mnist", stored, tmp_path / "flag") == str(tmp_path / "flag")
    assert run_data_dir("mnist", stored) == stored
    assert run_data_dir("mnist", str(tmp_path / "moved")) is None
    assert run_data_dir("fashion-mnist", stored) is None  # stored/ holds only mnist
    assert run_data_dir("mnist", None) is None
    assert run_data_dir("mnist-small", stored) == stored  # shipped: no directory needed
    assert len(load_dataset("mnist", data_dir=run_data_dir("mnist", stored))) == 30


def test_absolute_source(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert absolute_source("mnist") == "mnist"
    assert absolute_source("x.npy") == str(tmp_path / "x.npy")
    assert absolute_source("../y/z.csv") == str(tmp_path.parent / "y" / "z.csv")
    assert absolute_source(str(tmp_path / "a")) == str(tmp_path / "a")


def test_download_uses_pooch_with_hash_and_timeout(tmp_path, monkeypatch):
    import pooch

    seen = {}

    def fake_retrieve(url, known_hash, fname, path, downloader):
        seen.update(url=url, known_hash=known_hash, fname=fname, path=path, downloader=downloader)

    monkeypatch.setattr(pooch, "retrieve", fake_retrieve)
    REAL_DOWNLOAD("https://example.org/x/a.gz", "ab" * 32, tmp_path)
    assert seen["url"] == "https://example.org/x/a.gz"
    assert seen["known_hash"] == "sha256:" + "ab" * 32
    assert seen["fname"] == "a.gz" and seen["path"] == tmp_path
    assert seen["downloader"].kwargs["timeout"] == datasets.DOWNLOAD_TIMEOUT
    assert seen["downloader"].progressbar is False


# --- the entry point ----------------------------------------------------------------------


def test_user_files_have_no_splits(tmp_path):
    np.save(tmp_path / "x.npy", np.zeros((3, 4), dtype=np.uint8))
    data = load_dataset(str(tmp_path / "x.npy"))
    assert data.x.shape == (3, 4)
    assert load_dataset(str(tmp_path / "x.npy"), "test") is None
    assert has_test_split("mnist") and not has_test_split(str(tmp_path / "x.npy"))


def test_unknown_source_lists_dataset_names():
    with pytest.raises(DataError, match="mnist, fashion-mnist, mnist-small"):
        load_dataset("mnsit")


def test_unknown_split():
    with pytest.raises(DataError, match="'valid'"):
        load_dataset("mnist-small", "valid")


def test_the_named_sets_include_every_shapes_set():
    from vaekit.data import shapes

    assert set(shapes.DATASETS) <= set(DATASET_NAMES)
    assert all(name in DATASET_NAMES for name in ("mnist", "fashion-mnist", "mnist-small"))


def test_dataset_status_fields(tmp_path):
    status = dataset_status(tmp_path)
    assert [s["name"] for s in status] == list(DATASET_NAMES)
    for entry in status:
        assert set(entry) == {"name", "present", "location", "description"}
        assert isinstance(entry["present"], bool)
        assert isinstance(entry["location"], str) and entry["location"]
        assert entry["description"] and "\n" not in entry["description"]
    by_name = {s["name"]: s for s in status}
    assert by_name["mnist"]["present"] is False
    assert by_name["mnist"]["location"] == str(tmp_path / "mnist")
    assert "60,000" in by_name["mnist"]["description"]
    assert by_name["mnist-small"]["present"] is True


def test_dataset_checks_its_invariants():
    with pytest.raises(ValueError, match="float32"):
        Dataset(x=np.zeros((2, 3)), y=None, name="a")
    with pytest.raises(ValueError, match="int64"):
        Dataset(x=np.zeros((2, 3), np.float32), y=np.zeros(3, np.int64), name="a")


# --- the real MNIST, when the shared copy is there ----------------------------------------


needs_real_mnist = pytest.mark.skipif(
    not SHARED_MNIST.is_dir(), reason="the original MNIST files are not in ../shared/data/mnist"
)


@needs_real_mnist
def test_real_mnist():
    train = load_dataset("mnist", "train", data_dir=SHARED_MNIST.parent, download=False)
    test = load_dataset("mnist", "test", data_dir=SHARED_MNIST.parent, download=False)
    assert train.x.shape == (60000, 1, 28, 28) and test.x.shape == (10000, 1, 28, 28)
    assert np.bincount(test.y).tolist() == [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]


@needs_real_mnist
def test_mnist_small_is_reproduced_by_its_script(tmp_path, monkeypatch):
    script = Path(__file__).resolve().parents[2] / "scripts" / "make_mnist_small.py"
    monkeypatch.setattr(sys, "argv", [str(script), str(SHARED_MNIST), "--out", str(tmp_path)])
    runpy.run_path(str(script), run_name="__main__")
    for stem in ALL_STEMS:
        made = (tmp_path / f"{stem}.gz").read_bytes()
        assert made == (datasets._PACKAGED_DIR / f"{stem}.gz").read_bytes()
