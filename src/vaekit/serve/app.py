"""The explorer's web app: a JSON and PNG API (FastAPI, described at ``/openapi.json`` and browsable
at ``/docs``) and one static page that uses it. Decoding runs on the server with the run's engine.

Errors are JSON ``{"detail": "one sentence"}`` that never repeats the request's bytes: 400 for a
bad latent, label or image, 413 for a body over the size limit (counted as it arrives, so a
chunked upload is cut off there too), 415 for a body of another type, 422 for a malformed request.
A request whose Host header is not one of ``allowed_hosts`` gets 400 (Starlette's
``TrustedHostMiddleware``): a page of another site that reaches the explorer through DNS
rebinding carries its own host name, so it reads nothing. A client that disconnects before its
request is whole is one log line.
"""

from __future__ import annotations

import base64
import logging
from collections.abc import Mapping, Sequence
from importlib import resources
from importlib.metadata import version
from typing import Any

from fastapi import APIRouter, FastAPI, HTTPException, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel, Field, TypeAdapter, ValidationError
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import Headers, UploadFile
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.middleware.trustedhost import TrustedHostMiddleware
from starlette.requests import ClientDisconnect
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from vaekit.serve.explorer import Explorer, InputError, decode_data_url
from vaekit.serve.server import LOOPBACK_HOSTS

#: Largest request body accepted (an upload of a 28×28 PNG is about 1 KB).
MAX_BODY_BYTES = 2_000_000
#: Content types of a body that is the image itself.
RAW_IMAGE_TYPES = ("image/png", "image/jpeg", "application/octet-stream")


class Problem(BaseModel):
    detail: str = Field(description="one sentence saying what is wrong")


PNG = {"content": {"image/png": {}}, "description": "a PNG image"}
BAD = {
    400: {"model": Problem, "description": "a bad latent, label or image"},
    422: {"model": Problem, "description": "a malformed request"},
}
BAD_UPLOAD = {
    **BAD,
    413: {"model": Problem, "description": "a body over the size limit"},
    415: {"model": Problem, "description": "a body of another content type"},
}


class ModelInfo(BaseModel):
    latent_dim: int
    n_classes: int = Field(description="0 for an unconditional model")
    image_shape: list[int] = Field(description="(channels, height, width)")
    likelihood: str
    score_samples: int = Field(description="k of the importance-weighted log p(x) estimate")
    latent_range: list[float] = Field(
        description="the prior's 0.1% and 99.9% quantiles of each z_k: the sliders' range"
    )
    latent_limit: list[float] = Field(description="the least and greatest z_k decoded")
    data: str = Field(description="the data set's name: a named set, or the file or folder's name")
    digits: bool = Field(description="the data are handwritten digits (a named digit set)")
    held_out: str | None = Field(
        description="which split the map's dots and the reference scores are: test or "
        "validation; null when the run holds none out or its data was not found"
    )
    class_names: list[str] = Field(
        description="the name of each class code 0, 1, …: the run's classes.json, else numbers"
    )
    uploads_resized: bool = Field(
        description="an upload of another size is brought to the model's (the run's "
        "image_size); false: it must have the model's size"
    )


class MapInfo(BaseModel):
    points: list[list[float]] = Field(description="(u, v) of each held-out image's E[z|x]")
    labels: list[int] | None
    centre: list[float] = Field(description="the latent at (0, 0)")
    axes: list[list[float]] = Field(description="the latent directions of u and v")
    axis_titles: list[str] = Field(description="what u and v are, in words")
    prior_range: list[list[float]] = Field(
        description="[[u_lo, u_hi], [v_lo, v_hi]]: the prior's quantile range along u and v"
    )


class LatentOut(BaseModel):
    z: list[float] = Field(description="a latent drawn from the run's prior p(z)")


class ImageIn(BaseModel):
    image: str = Field(description="PNG or JPEG, base64 or a data: URL, of the model's size")
    label: int | None = Field(default=None, description="class, for a conditional model")


class AnalysisOut(BaseModel):
    z: list[float]
    position: list[float]
    reconstruction: str = Field(description="data: URL of a PNG")
    log_likelihood: float = Field(description="log p(x) estimate, nats")
    percentile: float | None = Field(description="% of held-out images with a lower estimate")
    reading: str


ANALYSE_BODY = {
    "required": True,
    "content": {
        "application/json": {"schema": ImageIn.model_json_schema()},
        "multipart/form-data": {
            "schema": {
                "type": "object",
                "required": ["file"],
                "properties": {
                    "file": {"type": "string", "format": "binary", "description": "the image"},
                    "label": {"type": "integer", "description": "class, for a conditional model"},
                },
            }
        },
        **{kind: {"schema": {"type": "string", "format": "binary"}} for kind in RAW_IMAGE_TYPES},
    },
}
OPTIONAL_INT = TypeAdapter(int | None)


class BodyLimit:
    """ASGI middleware refusing a request body over ``limit`` bytes with 413. A declared
    Content-Length is checked first; the bytes actually received are counted too (a chunked
    upload declares none), and reading stops at the first message past the limit."""

    def __init__(self, app: ASGIApp, limit: int) -> None:
        self.app, self.limit = app, limit

    def refusal(self) -> HTTPException:
        """413, closing the connection: the rest of the body is never read."""
        detail = f"the request is larger than the limit of {self.limit:,} bytes"
        return HTTPException(413, detail, headers={"Connection": "close"})

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        length = Headers(scope=scope).get("content-length")
        if length is not None and (not length.isdigit() or int(length) > self.limit):
            exc = self.refusal()
            response = JSONResponse({"detail": exc.detail}, exc.status_code, exc.headers)
            await response(scope, receive, send)
            return
        received = 0

        async def counted() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.limit:
                    raise self.refusal()
            return message

        await self.app(scope, counted, send)


def clause(message: str) -> str:
    """A library's one-sentence message as a clause of ours: lower-case start, no full stop."""
    message = message.rstrip(".")
    return message[:1].lower() + message[1:]


def describe(errors: Sequence[Mapping[str, Any]]) -> str:
    """One sentence for the first of pydantic's validation errors: where and what, from the
    error's location and message only (never its input)."""
    error = errors[0]
    source, *path = error["loc"] or ("body",)
    name = ".".join(str(part) for part in path)
    where = {"query": "query parameter", "body": "body field", "path": "path"}.get(source, source)
    where = f"{where} {name}" if name else "the body"
    if error["type"] == "missing":
        return f"{where} is missing"
    if error["type"] == "json_invalid":
        return "the body is not valid JSON"
    return f"{where}: {clause(str(error['msg']))}"


def invalid(errors: Sequence[Mapping[str, Any]]) -> RequestValidationError:
    """A :class:`RequestValidationError` of pydantic ``errors`` found in the body."""
    return RequestValidationError([{**e, "loc": ("body", *e["loc"])} for e in errors])


async def read_upload(request: Request) -> tuple[bytes, int | None]:
    """The image bytes of an ``/api/analyse`` request and the label its body carries, if any."""
    media_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if media_type == "application/json":
        try:
            body = ImageIn.model_validate_json(await request.body())
        except ValidationError as exc:
            raise invalid(exc.errors(include_url=False, include_input=False)) from None
        return decode_data_url(body.image), body.label
    if media_type == "multipart/form-data":
        return await read_form(request)
    if media_type in RAW_IMAGE_TYPES:
        return await request.body(), None
    raise HTTPException(
        415,
        "send the image as JSON, as multipart/form-data or as a raw "
        + ", ".join(RAW_IMAGE_TYPES[:-1])
        + f" or {RAW_IMAGE_TYPES[-1]} body",
    )


async def read_form(request: Request) -> tuple[bytes, int | None]:
    """The file in field ``file`` and the optional field ``label`` of a multipart form."""
    try:
        form = await request.form(max_files=1, max_fields=1)
    except StarletteHTTPException as exc:  # Starlette's reason, e.g. "Invalid multipart data."
        reason = clause(str(exc.detail).split(". ")[0])
        raise InputError(f"the multipart form cannot be read: {reason}") from None
    try:
        upload = form.get("file")
        if upload is None:
            missing = "No complete file part (missing, or the body was cut short)"
            raise invalid([{"type": "form", "loc": ("file",), "msg": missing}])
        if not isinstance(upload, UploadFile):
            raise invalid([{"type": "file", "loc": ("file",), "msg": "Should be a file upload"}])
        try:
            label = OPTIONAL_INT.validate_python(form.get("label"))
        except ValidationError as exc:
            errors = exc.errors(include_url=False, include_input=False)
            raise invalid([{**e, "loc": ("label",)} for e in errors]) from None
        return await upload.read(), label
    finally:
        await form.close()


def create_app(
    explorer: Explorer,
    *,
    max_body_bytes: int = MAX_BODY_BYTES,
    allowed_hosts: Sequence[str] = LOOPBACK_HOSTS,
) -> FastAPI:
    """The web app for ``explorer``, answering requests whose Host is one of ``allowed_hosts``
    (names, IP literals with IPv6 in brackets, ``*.domain`` or ``*`` for any; the port is not
    compared)."""
    app = FastAPI(
        title="vaekit latent-space explorer",
        version=version("vaekit"),
        description="Decode latents, walk between them, and read images through a trained VAE.",
    )
    static = resources.files("vaekit.serve") / "static"
    app.mount("/static", StaticFiles(directory=str(static)), name="static")
    app.add_middleware(BodyLimit, limit=max_body_bytes)
    app.add_middleware(TrustedHostMiddleware, allowed_hosts=list(allowed_hosts))
    _add_error_handlers(app)

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    def page() -> str:
        return (static / "index.html").read_text(encoding="utf-8")

    for routes in (_reading_routes, _picture_routes, _analysis_routes):
        app.include_router(routes(explorer))
    return app


def _add_error_handlers(app: FastAPI) -> None:
    """Errors as one JSON sentence: 400 for bad input, 422 for a malformed request; a client gone
    before its request was whole is a log line."""

    @app.exception_handler(ClientDisconnect)
    async def disconnected(request: Request, exc: ClientDisconnect) -> Response:
        logging.getLogger("uvicorn.error").warning(
            "%s %s: the client disconnected before its request was whole",
            request.method,
            request.url.path,
        )
        return Response(status_code=400)  # never delivered: the client is gone

    @app.exception_handler(InputError)
    async def refuse(request: Request, exc: InputError) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, status_code=400)

    @app.exception_handler(RequestValidationError)
    async def malformed(request: Request, exc: RequestValidationError) -> JSONResponse:
        return JSONResponse({"detail": describe(exc.errors())}, status_code=422)


def _reading_routes(explorer: Explorer) -> APIRouter:
    """What the page reads once: the model and the latent map, and latents drawn from p(z)."""
    router, config = APIRouter(), explorer.config

    @router.get("/api/model", response_model=ModelInfo)
    def model() -> ModelInfo:
        """The run's model, as the page needs it."""
        return ModelInfo(
            latent_dim=config.latent_dim,
            n_classes=config.n_classes,
            image_shape=list(config.input_shape),
            likelihood=config.likelihood,
            score_samples=explorer.score_samples,
            latent_range=list(explorer.latent_range),
            latent_limit=list(explorer.latent_limit),
            data=explorer.about.name,
            digits=explorer.about.digits,
            held_out=explorer.about.held_out,
            class_names=list(explorer.class_names),
            uploads_resized=explorer.image_size is not None,
        )

    @router.get("/api/map", response_model=MapInfo)
    def latent_map() -> MapInfo:
        """The 2-D map: held-out images' posterior means, projected."""
        labels = explorer.map_labels
        return MapInfo(
            points=explorer.map_points.round(4).tolist(),
            labels=None if labels is None else [int(v) for v in labels],
            centre=explorer.centre.tolist(),
            axes=explorer.axes.tolist(),
            axis_titles=explorer.axis_titles,
            prior_range=explorer.map_range().tolist(),
        )

    @router.get("/api/sample", response_model=LatentOut, responses=BAD)
    def sample(
        seed: int | None = Query(
            default=None, ge=0, description="seed of the draw; none: a fresh random one"
        ),
        label: int | None = Query(
            default=None, description="class, for a conditional model: z ~ p(z|y) of its prior"
        ),
    ) -> LatentOut:
        """A latent drawn from the run's prior p(z) (p(z|y) of the class prior, given a label)."""
        return LatentOut(z=explorer.random_latent(seed, label).tolist())

    return router


def _picture_routes(explorer: Explorer) -> APIRouter:
    """PNGs decoded from latents: one image, a path between two latents, a traversal."""
    router = APIRouter()

    @router.get("/api/decode", response_class=Response, responses={200: PNG, **BAD})
    def decode(
        z: str = Query(description="the latent: K numbers separated by commas"),
        label: int | None = Query(default=None, description="class, for a conditional model"),
    ) -> Response:
        """The decoder's mean at z."""
        png = explorer.decode_png(parse_latent(z), label)
        return Response(png, media_type="image/png", headers={"Cache-Control": "no-store"})

    @router.get("/api/interpolate", response_class=Response, responses={200: PNG, **BAD})
    def interpolate(
        a: str = Query(description="the first latent, K numbers separated by commas"),
        b: str = Query(description="the last latent"),
        steps: int = Query(default=10, description="images in the strip, 2 to 32"),
        label: int | None = Query(default=None, description="class, for a conditional model"),
    ) -> Response:
        """Decoded images along the straight line from a to b, as one strip."""
        png = explorer.interpolate_png(parse_latent(a), parse_latent(b), steps, label)
        return Response(png, media_type="image/png")

    @router.get("/api/traverse", response_class=Response, responses={200: PNG, **BAD})
    def traverse(
        dim: int = Query(description="the latent dimension to sweep, 0 to K - 1"),
        base: str = Query(description="the base latent, K numbers separated by commas"),
        steps: int = Query(default=9, description="images in the strip, 2 to 32"),
        label: int | None = Query(default=None, description="class, for a conditional model"),
    ) -> Response:
        """z[dim] swept over the prior's quantiles (p from 0.05 to 0.95), the other coordinates
        at base, decoded as one strip."""
        png = explorer.traverse_png(dim, parse_latent(base), steps, label)
        return Response(png, media_type="image/png")

    return router


def _analysis_routes(explorer: Explorer) -> APIRouter:
    """An image the user drew or uploaded, read through the model."""
    router = APIRouter()

    @router.post(
        "/api/analyse",
        response_model=AnalysisOut,
        responses=BAD_UPLOAD,
        openapi_extra={"requestBody": ANALYSE_BODY},
    )
    async def analyse(
        request: Request,
        label: int | None = Query(
            default=None, description="class, for a conditional model, with a raw image body"
        ),
    ) -> AnalysisOut:
        """Encode a drawn or uploaded image: its latent, place on the map, reconstruction and
        log-likelihood, read against the model's held-out images.

        The image (PNG or JPEG of the model's size, or of any size for a run that brings its
        images to one; grey or colour, read as the model's channels say) comes in one of three
        ways:

        - JSON `{"image": "<base64 or data: URL>", "label": 3}`;
        - `multipart/form-data` with the image in the file field `file` and an optional form
          field `label` (`curl -F file=@digit.png`);
        - the image itself as the body, `Content-Type: image/png`, `image/jpeg` or
          `application/octet-stream`, with the label as the query parameter `label`
          (`curl --data-binary @digit.png -H 'Content-Type: image/png'`).
        """
        data, body_label = await read_upload(request)
        if body_label is not None and label is not None:
            raise InputError("give the label once: in the body or as a query parameter")
        label = body_label if body_label is not None else label
        result = await run_in_threadpool(
            lambda: explorer.analyse(explorer.image_from_upload(data), label)
        )
        encoded = base64.b64encode(result.reconstruction_png).decode("ascii")
        return AnalysisOut(
            z=result.z,
            position=result.position,
            reconstruction="data:image/png;base64," + encoded,
            log_likelihood=result.log_likelihood,
            percentile=result.percentile,
            reading=result.reading,
        )

    return router


def parse_latent(text: str) -> list[float]:
    try:
        return [float(v) for v in text.split(",")]
    except ValueError:
        raise InputError("z must be numbers separated by commas") from None
