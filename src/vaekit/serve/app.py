"""The explorer's web app: a JSON and PNG API (FastAPI, described at ``/openapi.json`` and browsable
at ``/docs``) and one static page that uses it. Decoding runs on the server with the run's engine.

Errors are JSON ``{"detail": "one sentence"}``: 400 for a bad latent, label or image, 413 for a
body over the size limit, 422 for a malformed request.
"""

from __future__ import annotations

import base64
from importlib import resources

from fastapi import FastAPI, HTTPException, Query, Request
from fastapi.responses import HTMLResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel, Field

from vaekit import __version__
from vaekit.serve.explorer import Explorer, InputError, decode_data_url

#: Largest request body accepted (an upload of a 28×28 PNG is about 1 KB).
MAX_BODY_BYTES = 2_000_000

PNG = {"content": {"image/png": {}}, "description": "a PNG image"}
BAD = {"description": "a bad latent, label or image; detail says why"}


class ModelInfo(BaseModel):
    latent_dim: int
    n_classes: int = Field(description="0 for an unconditional model")
    image_shape: list[int] = Field(description="(channels, height, width)")
    likelihood: str
    score_samples: int = Field(description="k of the importance-weighted log p(x) estimate")


class MapInfo(BaseModel):
    points: list[list[float]] = Field(description="(u, v) of each test image's E[z|x]")
    labels: list[int] | None
    centre: list[float] = Field(description="the latent at (0, 0)")
    axes: list[list[float]] = Field(description="the latent directions of u and v")


class ImageIn(BaseModel):
    image: str = Field(description="PNG or JPEG, base64 or a data: URL, of the model's size")
    label: int | None = Field(default=None, description="class, for a conditional model")


class AnalysisOut(BaseModel):
    z: list[float]
    position: list[float]
    reconstruction: str = Field(description="data: URL of a PNG")
    log_likelihood: float = Field(description="log p(x) estimate, nats")
    percentile: float | None = Field(description="% of test images with a lower estimate")
    reading: str


def parse_latent(text: str) -> list[float]:
    try:
        return [float(v) for v in text.split(",")]
    except ValueError:
        raise InputError("z must be numbers separated by commas") from None


def create_app(explorer: Explorer, *, max_body_bytes: int = MAX_BODY_BYTES) -> FastAPI:
    """The web app for ``explorer``."""
    app = FastAPI(
        title="vaekit latent-space explorer",
        version=__version__,
        description="Decode latents, walk between them, and read images through a trained VAE.",
    )
    static = resources.files("vaekit.serve") / "static"
    app.mount("/static", StaticFiles(directory=str(static)), name="static")
    config = explorer.config

    @app.middleware("http")
    async def limit_body(request: Request, call_next):
        length = request.headers.get("content-length")
        if length is not None and (not length.isdigit() or int(length) > max_body_bytes):
            detail = f"the request is larger than the limit of {max_body_bytes:,} bytes"
            return JSONResponse({"detail": detail}, status_code=413)
        return await call_next(request)

    @app.exception_handler(InputError)
    async def refuse(request: Request, exc: InputError) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, status_code=400)

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    def page() -> str:
        return (static / "index.html").read_text(encoding="utf-8")

    @app.get("/api/model", response_model=ModelInfo)
    def model() -> ModelInfo:
        """The run's model, as the page needs it."""
        return ModelInfo(
            latent_dim=config.latent_dim,
            n_classes=config.n_classes,
            image_shape=list(config.input_shape),
            likelihood=config.likelihood,
            score_samples=explorer.score_samples,
        )

    @app.get("/api/map", response_model=MapInfo)
    def latent_map() -> MapInfo:
        """The 2-D map: test images' posterior means, projected."""
        labels = explorer.map_labels
        return MapInfo(
            points=explorer.map_points.round(4).tolist(),
            labels=None if labels is None else [int(v) for v in labels],
            centre=explorer.centre.tolist(),
            axes=explorer.axes.tolist(),
        )

    @app.get("/api/decode", response_class=Response, responses={200: PNG, 400: BAD})
    def decode(
        z: str = Query(description="the latent: K numbers separated by commas"),
        label: int | None = Query(default=None, description="class, for a conditional model"),
    ) -> Response:
        """The decoder's mean at z."""
        png = explorer.decode_png(parse_latent(z), label)
        return Response(png, media_type="image/png", headers={"Cache-Control": "no-store"})

    @app.get("/api/interpolate", response_class=Response, responses={200: PNG, 400: BAD})
    def interpolate(
        a: str = Query(description="the first latent, K numbers separated by commas"),
        b: str = Query(description="the last latent"),
        steps: int = Query(default=10, description="images in the strip, 2 to 32"),
        label: int | None = Query(default=None, description="class, for a conditional model"),
    ) -> Response:
        """Decoded images along the straight line from a to b, as one strip."""
        png = explorer.interpolate_png(parse_latent(a), parse_latent(b), steps, label)
        return Response(png, media_type="image/png")

    @app.post("/api/analyse", response_model=AnalysisOut, responses={400: BAD, 413: BAD})
    def analyse(body: ImageIn) -> AnalysisOut:
        """Encode a drawn or uploaded image: its latent, place on the map, reconstruction and
        log-likelihood, read against the model's test images."""
        data = decode_data_url(body.image)
        if len(data) > max_body_bytes:
            raise HTTPException(413, f"the image is larger than {max_body_bytes:,} bytes")
        result = explorer.analyse(explorer.image_from_upload(data), body.label)
        encoded = base64.b64encode(result.reconstruction_png).decode("ascii")
        return AnalysisOut(
            z=result.z,
            position=result.position,
            reconstruction="data:image/png;base64," + encoded,
            log_likelihood=result.log_likelihood,
            percentile=result.percentile,
            reading=result.reading,
        )

    return app
