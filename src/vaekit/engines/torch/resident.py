"""The training set held on the torch engine's device for a run: steps that never wait for the
host (see :class:`vaekit.engines.protocol.ResidentData`)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import torch

from vaekit.engines.protocol import DeviceReading, StepMetrics

if TYPE_CHECKING:
    from vaekit.engines.torch.engine import TorchEngine


class HeldData:
    """The training set x (N, D) float32 and labels y (N,) int64, uploaded once to the engine's
    device. Each epoch uploads only its order; a step's batch is x[order[start:stop]], with
    ``dynamic`` binarization drawn there from the engine's generator (1 where u_ij < x_ij,
    u ~ U[0, 1): the host's rule), whose state every checkpoint keeps, so a resumed run draws the
    same.

    Nothing in a step reads the device: the epoch's sums Σ rows·(loss, recon, kl) (nats)
    accumulate there, and the divergence guard is the optimizer's ``found_inf``, a sticky flag
    set by the first non-finite (loss, recon, kl), which makes the fused update (Adam; SGD is
    rebuilt fused, keeping its state) skip that step and every later one, undoing its step count,
    while the first bad step's number and loss are recorded on the device for :meth:`read`."""

    def __init__(
        self, engine: TorchEngine, x: np.ndarray, y: np.ndarray | None, dynamic: bool
    ) -> None:
        self.engine, self.dynamic = engine, dynamic
        device = engine.device
        self.x = engine._tensor(x)
        self.y = engine._labels(y)
        self.order = torch.zeros(0, dtype=torch.int64, device=device)
        self.sums = torch.zeros(3, device=device)
        self.last = torch.zeros(3, device=device)
        self.found_inf = torch.zeros((), device=device)  # 1.0 from the first non-finite loss on
        self.bad_step = torch.zeros((), dtype=torch.int64, device=device)
        self.bad_loss = torch.zeros((), device=device)
        self.last_step = 0
        self.settled = False
        if engine.optimizer_name == "sgd":  # foreach SGD ignores found_inf, fused SGD honours it
            old = engine.optimizer
            group = old.param_groups[0]
            params = [p for g in old.param_groups for p in g["params"]]
            engine.optimizer = torch.optim.SGD(
                params, lr=group["lr"], momentum=group["momentum"], fused=True
            )
            for param in params:
                if param in old.state:
                    engine.optimizer.state[param] = old.state[param]

    def shuffle(self, order: np.ndarray) -> None:
        self.order = torch.from_numpy(np.asarray(order, np.int64)).to(self.engine.device)
        self.sums.zero_()

    def train_step(self, start: int, stop: int, beta: float, step: int) -> None:
        engine = self.engine
        index = self.order[start:stop]
        xb = self.x.index_select(0, index)
        if self.dynamic:
            u = torch.rand(xb.shape, generator=engine.generator, device=engine.device)
            xb = (u < xb).float()
        yb = None if self.y is None else self.y.index_select(0, index)
        batch = stop - start
        values = engine.backward(xb, yb, engine.noise(batch), beta, batch)
        bad = ~torch.isfinite(values).all()
        first = bad & (self.found_inf == 0)
        self.bad_step = torch.where(first, step, self.bad_step)
        self.bad_loss = torch.where(first, values[0], self.bad_loss)
        torch.maximum(self.found_inf, bad.float(), out=self.found_inf)
        engine.optimizer.found_inf = self.found_inf
        try:
            engine.optimizer.step()
        finally:
            del engine.optimizer.found_inf  # the host path's steps decide on the host
        engine.step += 1
        self.last = values
        self.sums += values * batch
        self.last_step = step

    def read(self) -> DeviceReading:
        sums, last, (flag, step, loss) = self._fetch()
        if not flag:
            return DeviceReading(sums, StepMetrics(*last), None)
        step = int(step)
        if not self.settled:  # the steps from the bad one on changed nothing
            self.engine.step -= self.last_step - step + 1
            self.settled = True
        return DeviceReading(sums, StepMetrics(*last), (step, loss))

    def _fetch(self) -> tuple[np.ndarray, list[float], list[float]]:
        """The epoch's sums, the last step's metrics and (flag, first bad step, its loss), in one
        transfer from the device (float64 holds the step number exactly)."""
        parts = (self.sums, self.last, self.found_inf, self.bad_step, self.bad_loss)
        values = torch.cat([t.double().reshape(-1) for t in parts]).cpu().numpy()
        return values[:3], values[3:6].tolist(), values[6:].tolist()
