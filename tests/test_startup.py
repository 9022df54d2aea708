"""Start-up: commands that neither train nor draw load neither torch nor matplotlib (nor the
other heavy libraries), each checked in a fresh interpreter; the torch engine's package and
torchrun's environment reader import torch only when asked to."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

#: Libraries no command that neither trains nor draws may load.
HEAVY = ("torch", "matplotlib", "scipy", "sklearn", "fastapi", "uvicorn", "starlette", "PIL")

#: Runs ``vaekit ARGV`` as ``python -m vaekit`` does, then reports its exit code and which of
#: HEAVY it loaded as the last line of stderr.
WRAPPER = """
import json, runpy, sys
heavy, argv = json.loads(sys.argv[1]), json.loads(sys.argv[2])
sys.argv = ["vaekit", *argv]
try:
    runpy.run_module("vaekit", run_name="__main__")
    code = 0
except SystemExit as exc:
    code = exc.code
print(json.dumps({"code": code, "loaded": sorted(m for m in heavy if m in sys.modules)}),
      file=sys.stderr)
"""


def run_vaekit(*argv: str, env: dict | None = None) -> tuple[dict, str]:
    """``vaekit ARGV`` in a fresh interpreter: (its exit code and the heavy modules it loaded,
    its stdout)."""
    done = subprocess.run(
        [sys.executable, "-c", WRAPPER, json.dumps(HEAVY), json.dumps(argv)],
        capture_output=True,
        text=True,
        timeout=600,
        env=env,
    )
    return json.loads(done.stderr.strip().splitlines()[-1]), done.stdout


@pytest.mark.parametrize(
    "argv",
    [
        ("--version",),
        ("--help",),
        ("presets",),
        ("presets", "--show", "pytorch-example"),
        ("presets", "--show", "pytorch-example", "--format", "toml"),
        ("datasets",),
        ("datasets", "--json"),
    ],
)
def test_commands_that_neither_train_nor_draw_load_no_heavy_library(argv):
    result, out = run_vaekit(*argv)
    assert result == {"code": 0, "loaded": []}
    assert out.strip()


def test_a_user_error_loads_no_heavy_library():
    result, _ = run_vaekit("presets", "--show", "no-such-preset")
    assert result == {"code": 2, "loaded": []}


def test_a_numpy_run_trains_and_evaluates_without_torch(tmp_path):
    """Training draws (matplotlib is fine) but the NumPy engine never needs torch; evaluating
    the run with its own engine needs neither."""
    run = str(tmp_path / "run")
    train = ("train", "--data", "mnist-small", "--engine", "numpy", "--epochs", "1")
    train += ("--hidden", "16", "--latent-dim", "2", "--quiet", "--out", run)
    result, _ = run_vaekit(*train)
    assert result["code"] == 0 and "torch" not in result["loaded"]
    result, out = run_vaekit("evaluate", run, "--json", "--quiet")
    assert result == {"code": 0, "loaded": []}
    assert json.loads(out)["protocol"]["engine"] == "numpy"


def test_torchrun_environment_is_read_without_torch():
    """``sys.modules["torch"] = None`` makes any ``import torch`` fail: reading torchrun's
    variables, and leaving or waiting on a group never joined, must not need it."""
    script = """
import os, sys
sys.modules["torch"] = None
from vaekit.engines.torch import distributed
assert distributed.from_environment() is None
distributed.barrier()
distributed.stop()
os.environ.update(RANK="1", WORLD_SIZE="2", LOCAL_RANK="1")
group = distributed.from_environment()
assert (group.rank, group.world_size, group.local_rank, group.is_main) == (1, 2, 1, False)
assert group.rows(10) == slice(5, 10)
print("ok")
"""
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK")}
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=600, env=env
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "ok"


def test_the_torch_package_exports_its_engine_on_first_use():
    import vaekit.engines.torch as torch_engines
    from vaekit.engines.torch.engine import TorchEngine
    from vaekit.engines.torch.model import VAEModule

    assert torch_engines.TorchEngine is TorchEngine and torch_engines.VAEModule is VAEModule
    with pytest.raises(AttributeError, match="no_such_name"):
        _ = torch_engines.no_such_name
