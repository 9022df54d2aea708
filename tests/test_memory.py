"""Freed memory kept for the next chunk: an evaluation's chunks stop faulting their buffers in
again (counted by the kernel, in a fresh process, since the setting is process-wide)."""

import platform
import subprocess
import sys
from pathlib import Path

import pytest

# The page faults of one call, counted by the kernel (median_faults runs each script below
# after it).
FAULTS = """
import resource

def faults(call):
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    call()
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before
"""

# Three blocks of 4 MB (a chunk's buffers) allocated, written and freed by glibc's malloc, round
# after round, each round's page faults counted; with the setting first or not (argv[1]).
ROUNDS = """
import ctypes, ctypes.util, statistics, sys
from vaekit.engines.memory import keep_freed_memory

libc = ctypes.CDLL(ctypes.util.find_library("c"))
libc.malloc.restype, libc.malloc.argtypes = ctypes.c_void_p, (ctypes.c_size_t,)
libc.free.argtypes = (ctypes.c_void_p,)
libc.memset.argtypes = (ctypes.c_void_p, ctypes.c_int, ctypes.c_size_t)
if sys.argv[1] == "kept":
    keep_freed_memory()

def one_round(size=4 * 2**20):
    blocks = [libc.malloc(size) for _ in range(3)]
    for block in blocks:
        libc.memset(block, 1, size)
    for block in blocks:
        libc.free(block)

print(statistics.median(faults(one_round) for _ in range(12)))
"""

# One chunk of 2**20 logits of the reference model's shapes, computed again and again with one
# thread, its page faults counted (the median of 20) after an evaluation (which keeps freed
# memory).
CHUNKS = """
import numpy as np
import torch
from vaekit.config.settings import ModelConfig
from vaekit.engines import build_engine
from vaekit.measure.evaluation import iwae_log_likelihood

torch.set_num_threads(1)
engine = build_engine(ModelConfig(hidden=(400,), latent_dim=20), seed=0)
rng = np.random.default_rng(0)
x = (rng.random((167, 784)) > 0.5).astype(np.float32)
posterior = engine.encode(x)
eps = rng.standard_normal((8, 167, 20)).astype(np.float32)

iwae_log_likelihood(engine, x[:2], 8, seed=0, threads=1)
# the median over 20 chunks: the first ones may grow the heap
print(np.median([faults(lambda: engine.log_weights(x, posterior, eps)) for _ in range(20)]))
"""


GLIBC = platform.libc_ver()[0] == "glibc"


# Where transparent huge pages are always on, a fault may bring in 2 MB rather than 4 KB.
HUGE_PAGES = Path("/sys/kernel/mm/transparent_hugepage/enabled")
ALWAYS_HUGE = HUGE_PAGES.exists() and "[always]" in HUGE_PAGES.read_text()


def median_faults(code: str, *args: str) -> float:
    command = [sys.executable, "-c", FAULTS + code, *args]
    out = subprocess.run(command, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    return float(out.stdout.split()[-1])


@pytest.mark.skipif(not GLIBC, reason="glibc's mallopt")
def test_kept_blocks_are_not_faulted_in_again_where_the_defaults_fault_them_in_every_round():
    # 12 MB is 3,072 pages of 4 KB. glibc's defaults give the heap's free top back to the system
    # once it exceeds twice the largest block freed so far (8 MB here), so every round faults
    # them in again (3,040 here: all but the 128 KB it keeps at the top); with the setting, only
    # the first round does.
    assert median_faults(ROUNDS, "kept") <= 16
    if not ALWAYS_HUGE:
        assert median_faults(ROUNDS, "default") >= 2048


@pytest.mark.skipif(not GLIBC, reason="glibc's mallopt")
def test_after_an_evaluation_a_chunk_no_longer_faults_its_buffers_in():
    # A chunk's buffers are about 12 MB, 3,000 pages of 4 KB. Without the setting, glibc's
    # defaults fault in 0 to 2,700 of them a chunk, as the process's earlier frees happened to
    # raise its thresholds or not (the test above shows the pattern that always faults). Kept,
    # most chunks fault none; a few still fault up to 4 MB (a heap grown or split anew), hence
    # the median of 20 and a bound of 5% of the buffers.
    assert median_faults(CHUNKS) <= 150


def test_keeping_freed_memory_says_whether_it_was_set():
    code = "from vaekit.engines.memory import keep_freed_memory as k; print(k(), k())"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == [str(GLIBC)] * 2
