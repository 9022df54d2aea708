"""The torch engine's Adam: the steps of ``torch.optim.Adam(fused=True)``, bit for bit, without
the import of the compiler that torch's optimizer classes make on their first use."""

import subprocess
import sys

import pytest
import torch

from vaekit.engines.torch.optimizers import FusedAdam


def _twins(shapes, seed):
    torch.manual_seed(seed)
    ours = [torch.randn(s, requires_grad=True) for s in shapes]
    theirs = [p.detach().clone().requires_grad_(True) for p in ours]
    return ours, theirs


@pytest.mark.parametrize("shapes", [[(3,)], [(7, 5), (5,)], [(64, 33), (33,), (1, 1)]])
@pytest.mark.parametrize("lr, eps", [(1e-3, 1e-8), (3e-2, 1e-4)])
@pytest.mark.parametrize("skipped", [(), (0,), (4, 5, 11)])
def test_steps_equal_torchs_fused_adam(shapes, lr, eps, skipped):
    """Same parameters and moments after 15 steps with random gradients, some steps skipped by
    ``found_inf`` (which must not count them), a learning-rate change half-way and one parameter
    without a gradient at some steps."""
    ours, theirs = _twins(shapes, seed=len(shapes))
    mine = FusedAdam(ours, lr=lr, eps=eps)
    reference = torch.optim.Adam(theirs, lr=lr, eps=eps, fused=True)
    for step in range(15):
        for p, q in zip(ours, theirs, strict=True):
            grad = None if (step % 4 == 3 and p is ours[-1]) else torch.randn_like(p) * 10
            p.grad, q.grad = grad, None if grad is None else grad.clone()
        inf = torch.tensor(float(step in skipped))
        mine.found_inf, reference.found_inf = inf, inf
        if step == 8:
            mine.param_groups[0]["lr"] = reference.param_groups[0]["lr"] = lr / 3
        mine.step()
        reference.step()
    for p, q in zip(ours, theirs, strict=True):
        assert torch.equal(p, q)
        for key in ("step", "exp_avg", "exp_avg_sq"):
            assert torch.equal(mine.state[p][key], reference.state[q][key]), key


def test_zero_grad_drops_gradients():
    (p,), _ = _twins([(4,)], seed=0)
    p.grad = torch.ones(4)
    FusedAdam([p], lr=1e-3, eps=1e-8).zero_grad()
    assert p.grad is None


def test_training_does_not_import_the_compiler(tmp_path):
    """A whole ``vaekit train`` (the engine built, an epoch with the data kept on the device,
    figures, checkpoints) leaves ``torch._dynamo`` unimported: that import, not the engine, had
    made the first engine of a process take seconds."""
    code = f"""
import sys
from vaekit.cli import main
status = main(["train", "--data", "mnist-small", "--epochs", "1", "--quiet",
               "--out", {str(tmp_path / "run")!r}])
print(status, "torch._dynamo" in sys.modules, "torch" in sys.modules)
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split()[-3:] == ["0", "False", "True"], out.stderr
