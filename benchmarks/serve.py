"""How live the explorer feels: request latency of ``vaekit serve`` over HTTP on loopback.

Starts the explorer on a run (uvicorn, as ``vaekit serve`` does), sends each kind of request
repeatedly from a client in this process and prints one table: endpoint, median and 95th
percentile milliseconds, for a run's model (the reference model after ``vaekit demo``).

    vaekit demo && python benchmarks/serve.py runs/demo
    python benchmarks/serve.py RUN --requests 500
"""

from __future__ import annotations

import argparse
import base64
import io
import statistics
import time
from pathlib import Path

import httpx
import numpy as np
from PIL import Image

from vaekit.serve.app import create_app
from vaekit.serve.explorer import Explorer
from vaekit.serve.server import BackgroundServer


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", type=Path)
    parser.add_argument("--requests", type=int, default=200)
    args = parser.parse_args()

    started = time.perf_counter()
    explorer = Explorer.open(args.run)
    startup = time.perf_counter() - started
    k = explorer.config.latent_dim
    label = 0 if explorer.config.n_classes else None
    rng = np.random.default_rng(0)
    digit = np.zeros((28, 28), np.uint8)
    digit[6:22, 12:16] = 255
    buffer = io.BytesIO()
    Image.fromarray(digit).save(buffer, format="PNG")
    image = base64.b64encode(buffer.getvalue()).decode()

    def z() -> str:
        return ",".join(f"{v:.3f}" for v in rng.standard_normal(k))

    def params(**values) -> dict:
        values = dict(values, label=label)
        return {name: value for name, value in values.items() if value is not None}

    requests = {
        "GET /api/decode": lambda c: c.get("/api/decode", params=params(z=z())),
        "GET /api/interpolate (10 images)": lambda c: c.get(
            "/api/interpolate", params=params(a=z(), b=z(), steps=10)
        ),
        "POST /api/analyse (IWAE k=100)": lambda c: c.post(
            "/api/analyse", json={"image": image, "label": label}
        ),
        "GET /api/map": lambda c: c.get("/api/map"),
    }
    rows = []
    server = BackgroundServer(create_app(explorer))
    with server, httpx.Client(base_url=server.url.rstrip("/")) as client:
        for name, send in requests.items():
            send(client).raise_for_status()
            times = []
            for _ in range(args.requests):
                t0 = time.perf_counter()
                send(client).raise_for_status()
                times.append(1000 * (time.perf_counter() - t0))
            times.sort()
            rows.append((name, statistics.median(times), times[int(0.95 * len(times)) - 1]))
    print(
        f"run {args.run}: {k}-d latent; explorer start-up (load, map, reference scores) "
        f"{startup:.2f} s; {args.requests} requests each\n"
    )
    print("| request | median (ms) | 95th percentile (ms) |")
    print("| --- | ---: | ---: |")
    for name, median, p95 in rows:
        print(f"| {name} | {median:.1f} | {p95:.1f} |")


if __name__ == "__main__":
    main()
