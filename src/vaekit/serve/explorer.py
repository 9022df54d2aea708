"""What the latent-space explorer computes, independent of HTTP: a 2-D map of the latent space,
decoding, interpolation, and the analysis of a drawn or uploaded image.

The map: posterior means E[z|x] of (up to ``map_size``) images of the run's held-out data (its
validation split, else its test split: :func:`vaekit.runs.inputs.held_out`, whose word for it
the page shows), projected to
2-D — the identity for a 2-d latent, else the two principal axes of the means that
``manifold.png`` and ``scatter.png`` use (the first ``run_figures.SCATTER_POINTS``), by the same
function (:func:`vaekit.draw.geometry.principal_components`), so that the map is oriented as they
are. A point (u, v) of the map stands for z = centre + u·axis₁ + v·axis₂ (the other directions at
the centre), and ``axis_titles`` says what u and v are.

The latent space's extent comes from the run's prior p(z) (``engine.prior``), never from an assumed
N(0, I): the sliders span the least and greatest of the z_k's ``RANGE_PROBABILITIES`` quantiles
[lo, hi], latents up to
``LIMIT_FACTOR`` times that range's half-width from its middle are decoded, and random latents are
draws from the prior.

Scores are log p(x) estimates in nats (the importance-weighted bound, k samples), read against
the same estimate on held-out images: an input below the 1st percentile is unusual for the model.
An upload is read as the run's training images were: brought to its ``image_size`` (resized to
cover it, centre-cropped) when it has one, else it must have the model's size; read grey or RGB
as the model's channels say; then scaled by the run's stored scaling (``scaling.json``).

What the page says about the run's data (:class:`AboutData`): the data set's name, its class
names (the run's ``classes.json``, else each class's number), which split the map's dots are,
and whether the data are handwritten digits (a named digit set: the page asks for a digit).
"""

from __future__ import annotations

import base64
import binascii
import io
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from vaekit.data import classes
from vaekit.data.datasets import DIGIT_SETS
from vaekit.data.readers import read_image
from vaekit.data.scaling import Scaling, fit_array
from vaekit.draw import figures, gallery, geometry
from vaekit.engines import Engine
from vaekit.engines.sampling import posterior_means
from vaekit.errors import ConfigError, DataError, VaekitError
from vaekit.measure.evaluation import iwae_log_likelihood
from vaekit.runs import config_file, loading
from vaekit.runs.inputs import held_out

#: The probabilities whose prior quantiles bound the sliders (and the map's least extent).
RANGE_PROBABILITIES = (0.001, 0.999)
#: z_k farther than this many half-widths of that range from its middle is refused: the prior
#: puts no mass there worth decoding (±9.27 for N(0, 1)).
LIMIT_FACTOR = 3.0
MAX_INTERPOLATION_STEPS = 32


class InputError(VaekitError):
    """A request the explorer refuses (bad latent, label, image); the message says why."""


@dataclass(frozen=True)
class AboutData:
    """What the page says about the run's data."""

    name: str = ""  # a named set's name, or the file or folder's name
    class_names: Sequence[str] | None = None  # None: each class is named by its number
    held_out: str | None = None  # the map's split: "test" or "validation"; None: no map data
    digits: bool = False  # handwritten digits (a named digit set)

    @classmethod
    def of_run(cls, run_dir: str | Path, data: str, held_out: str | None) -> AboutData:
        """The run's data ``data`` (``train.data``: a set's name or a path), its class names
        and its held-out split's word ``held_out``."""
        return cls(Path(data).name, classes.load(run_dir), held_out, data in DIGIT_SETS)


@dataclass
class Analysis:
    """A drawn or uploaded image, as the model sees it."""

    z: list[float]  # E[z|x], the posterior mean
    position: list[float]  # where z falls on the 2-D map
    reconstruction_png: bytes  # the decoder's mean at z
    log_likelihood: float  # nats, IWAE estimate
    percentile: float | None  # % of reference held-out images with a lower estimate
    reading: str  # the percentile in plain words


class Explorer:
    """A trained run, ready to decode latents and analyse images."""

    def __init__(
        self,
        engine: Engine,
        reference: np.ndarray | None,
        reference_labels: np.ndarray | None,
        *,
        map_size: int = 2000,
        score_samples: int = 100,
        reference_size: int = 300,
        scaling: Scaling | None = None,
        image_size: tuple[int, int] | None = None,
        about: AboutData | None = None,
    ) -> None:
        """``reference``: model inputs of held-out images (the map, and the scores an upload is
        compared with); ``scaling`` turns an upload's levels into model inputs (default: the
        8-bit levels divided by 255); ``image_size``: the (H, W) uploads are brought to (None:
        they must have the model's size); ``about``: what the page says about the data."""
        config = engine.config
        if not figures.can_draw(config.input_shape) or len(config.input_shape) != 3:
            raise ConfigError("the explorer shows images; this run's inputs are not images")
        self.engine, self.config, self.score_samples = engine, config, score_samples
        self.scaling = scaling or fit_array("unit", np.zeros((1, 1)))
        self.image_size = image_size
        self.about = about or AboutData()
        self.class_names = class_names(self.about.class_names, config.n_classes, reference_labels)
        lows, highs = engine.prior.quantile(np.array(RANGE_PROBABILITIES))  # (K,) each
        low, high = float(lows.min()), float(highs.max())
        self.latent_range = (low, high)
        self.prior_middle = (lows + highs) / 2  # each z_k's middle, (K,)
        middle, half = (low + high) / 2, LIMIT_FACTOR * (high - low) / 2
        self.latent_limit = (float(middle - half), float(middle + half))
        self.map_points = np.zeros((0, 2))
        self.map_labels: np.ndarray | None = None
        self.centre = np.zeros(config.latent_dim)
        self.axes = np.eye(2, config.latent_dim)
        self.axis_titles = ["z₁", "z₂"]
        self.reference_scores = np.zeros(0)
        if reference is not None and len(reference):
            labels = reference_labels if config.conditional else None
            means = posterior_means(engine, reference, labels, limit=gallery.SCATTER_POINTS)
            if config.latent_dim > 2:
                self.centre, directions, _, _ = geometry.principal_components(means)
                self.axes = directions[:2]
                self.axis_titles = [f"principal axis {i} of E[z|x]" for i in (1, 2)]
            self.map_points = self.position(means[:map_size])
            self.map_labels = None if reference_labels is None else reference_labels[:map_size]
            part = slice(0, reference_size)
            part_labels = None if labels is None else labels[part]
            scores = iwae_log_likelihood(
                engine, reference[part], score_samples, y=part_labels, seed=0
            )
            self.reference_scores = np.sort(scores)

    @classmethod
    def open(
        cls,
        run_dir: str | Path,
        engine: str | None = None,
        device: str = "auto",
        which: str | None = None,
        *,
        trust_code: bool = False,
    ):
        """The explorer of a run (its ``which`` weights: last, best, or None for the run's own
        choice, :func:`loading.weights_of`), with its held-out data as the map (if the data can
        be found); ``trust_code`` as :func:`loading.open_run`."""
        runner = loading.open_run(Path(run_dir), engine, device, which, trust_code=trust_code)
        _, train, _ = config_file.read_config(run_dir)
        reading = {"scaling": Scaling.load(run_dir), "image_size": train.image_size}
        try:
            data, split = held_out(run_dir)
        except (DataError, ConfigError, OSError):  # no map points, no reference scores
            return cls(
                runner, None, None, **reading, about=AboutData.of_run(run_dir, train.data, None)
            )
        about = AboutData.of_run(run_dir, train.data, split)
        return cls(runner, data.x, data.y, **reading, about=about)

    # --- the latent space ---------------------------------------------------------------------

    def position(self, z: np.ndarray) -> np.ndarray:
        """Map coordinates (u, v) of latents z (…, K)."""
        return (np.asarray(z, dtype=np.float64) - self.centre) @ self.axes.T

    def latent(self, u: float, v: float) -> np.ndarray:
        """The latent a map point stands for: centre + u·axis₁ + v·axis₂."""
        return self.centre + u * self.axes[0] + v * self.axes[1]

    def map_range(self) -> np.ndarray:
        """[[u_lo, u_hi], [v_lo, v_hi]]: the prior's quantile range ``latent_range`` along each
        map axis, about the map position of the prior's middle. Exact for a prior with the
        same marginal along every unit direction (N(0, s²I)); the page shows at least this."""
        low, high = self.latent_range
        middle = self.position(self.prior_middle)
        return middle[:, None] + np.array([low - high, high - low]) / 2

    def random_latent(self, seed: int | None = None, label: int | None = None) -> np.ndarray:
        """One draw z ~ p(z) from the run's prior, (K,), or z ~ p(z|y) of the class prior for a
        ``label``; ``seed`` None: fresh OS entropy."""
        labels = None if label is None else self.check_label(label)
        return self.engine.prior.sample(1, np.random.default_rng(seed), labels)[0]

    def check_latent(self, z: list[float]) -> np.ndarray:
        z_array = np.asarray(z, dtype=np.float64)
        k = self.config.latent_dim
        if z_array.shape != (k,):
            raise InputError(f"z needs {k} numbers (the latent dimension), got {z_array.size}")
        low, high = self.latent_limit
        if not np.isfinite(z_array).all() or z_array.min() < low or z_array.max() > high:
            raise InputError(f"each z_k must be a finite number from {low:.3g} to {high:.3g}")
        return z_array

    def check_label(self, label: int | None) -> np.ndarray | None:
        classes = self.config.n_classes
        if not classes:
            return None
        if label is None:
            raise InputError(f"this model is conditional: give a label from 0 to {classes - 1}")
        if not 0 <= label < classes:
            raise InputError(f"label must be from 0 to {classes - 1}, got {label}")
        return np.array([label])

    def decode_png(self, z: list[float], label: int | None = None) -> bytes:
        """The decoder's mean at z, as a PNG of the model's image size."""
        z_array = self.check_latent(z)
        y = self.check_label(label)
        image = self.engine.decode(z_array[None].astype(np.float32), y)[0]
        return png_bytes(image)

    def interpolate_png(
        self, a: list[float], b: list[float], steps: int, label: int | None = None
    ) -> bytes:
        """Decoded images along the straight line from a to b, side by side."""
        if not 2 <= steps <= MAX_INTERPOLATION_STEPS:
            raise InputError(f"steps must be from 2 to {MAX_INTERPOLATION_STEPS}, got {steps}")
        za, zb = self.check_latent(a), self.check_latent(b)
        y = self.check_label(label)
        t = np.linspace(0.0, 1.0, steps)[:, None]
        z = ((1 - t) * za + t * zb).astype(np.float32)
        images = self.engine.decode(z, None if y is None else np.repeat(y, steps))
        return png_bytes(np.concatenate(list(images), axis=-1))

    def traverse_png(
        self, dim: int, base: list[float], steps: int, label: int | None = None
    ) -> bytes:
        """Latent ``dim`` swept over the prior's quantiles at ``steps`` values of p evenly spaced
        over [0.05, 0.95], the other coordinates at ``base``; decoded side by side."""
        k = self.config.latent_dim
        if not 0 <= dim < k:
            raise InputError(f"dim must be from 0 to {k - 1}, got {dim}")
        if not 2 <= steps <= MAX_INTERPOLATION_STEPS:
            raise InputError(f"steps must be from 2 to {MAX_INTERPOLATION_STEPS}, got {steps}")
        z0 = self.check_latent(base)
        y = self.check_label(label)
        quantiles = geometry.manifold_quantiles(steps, self.engine.prior)
        z = geometry.traversal_latents(z0, quantiles, [dim])[0].astype(np.float32)
        images = self.engine.decode(z, None if y is None else np.repeat(y, steps))
        return png_bytes(np.concatenate(list(images), axis=-1))

    # --- an image from the user ---------------------------------------------------------------

    def analyse(self, pixels: np.ndarray, label: int | None = None) -> Analysis:
        """Encode, reconstruct and score one image (shape of the model's input, in [0, 1])."""
        y = self.check_label(label)
        x = pixels[None].astype(np.float32)
        mu, _ = self.engine.encode(x, y)
        reconstruction = self.engine.decode(mu, y)[0]
        log_px = float(iwae_log_likelihood(self.engine, x, self.score_samples, y=y, seed=0)[0])
        percentile, reading = self.read_score(log_px)
        return Analysis(
            z=[float(v) for v in mu[0]],
            position=[float(v) for v in self.position(mu[0])],
            reconstruction_png=png_bytes(reconstruction),
            log_likelihood=log_px,
            percentile=percentile,
            reading=reading,
        )

    def read_score(self, log_px: float) -> tuple[float | None, str]:
        """(% of reference images scoring lower, a plain-words reading)."""
        if not len(self.reference_scores):
            return None, (
                "no held-out images to compare with (the run's data was not found, or it "
                "holds none out)"
            )
        below = 100.0 * np.searchsorted(self.reference_scores, log_px) / len(self.reference_scores)
        if below < 1:
            return below, "unusual for this model: less likely than 99% of its held-out images"
        if below < 10:
            return below, (
                f"rather unusual: only {below:.0f}% of its held-out images are less likely"
            )
        if below > 99:  # VAEs give simple inputs (blank, thin strokes) very high likelihoods
            return below, (
                "unusually likely: above 99% of its held-out images — simpler than a typical "
                "input (likelihoods favour simple images; it is no sign of a good one)"
            )
        return below, f"typical: more likely than {below:.0f}% of this model's held-out images"

    def image_from_upload(self, data: bytes) -> np.ndarray:
        """The model input of PNG or JPEG bytes, read as the run's images were (see the module
        docstring); a clear :class:`InputError` for anything else (non-image bytes, another
        size when the run has no ``image_size``).

        The size is read from the image's header and checked before any pixel is decoded: a
        few hundred kilobytes of PNG can declare 13000×13000 pixels (169 MB as 8-bit grey).
        """
        channels, height, width = self.config.input_shape
        try:
            with Image.open(io.BytesIO(data)) as image:
                if image.format not in ("PNG", "JPEG"):
                    raise InputError(f"the upload is a {image.format} image; send PNG or JPEG")
                if self.image_size is None and image.size != (width, height):
                    raise InputError(
                        f"the image is {image.size[0]}×{image.size[1]} pixels; this model "
                        f"takes {width}×{height}"
                    )
        except Image.DecompressionBombError:
            message = f"the image declares far too many pixels; this model takes {width}×{height}"
            raise InputError(message) from None
        except (UnidentifiedImageError, OSError, ValueError):
            raise InputError("the upload is not a PNG or JPEG image") from None
        try:
            levels = read_image(data, self.image_size, "grey" if channels == 1 else "rgb")
            return self.scaling.apply(levels[None], "the image")[0]
        except DataError as exc:
            raise InputError(str(exc)) from None


def class_names(
    names: Sequence[str] | None, n_classes: int, labels: np.ndarray | None
) -> tuple[str, ...]:
    """The name of each class code: ``names``, else the numbers of the model's ``n_classes``
    classes or of the classes among ``labels``, whichever are more."""
    if names:
        return tuple(names)
    present = 0 if labels is None or not len(labels) else int(np.max(labels)) + 1
    return classes.names_or_numbers(None, max(n_classes, present))


def decode_data_url(text: str) -> bytes:
    """The bytes of a ``data:…;base64,…`` URL or of plain base64 text."""
    payload = text.split(",", 1)[1] if text.startswith("data:") else text
    try:
        return base64.b64decode(payload, validate=True)
    except (binascii.Error, ValueError):
        raise InputError("the image is not valid base64") from None


def png_bytes(image: np.ndarray) -> bytes:
    """An image (C, H, W) or (H, W) in [0, 1] as PNG bytes."""
    pixels = np.clip(np.asarray(image, dtype=np.float64), 0.0, 1.0)
    if pixels.ndim == 3:
        pixels = pixels[0] if pixels.shape[0] == 1 else pixels.transpose(1, 2, 0)
    buffer = io.BytesIO()
    Image.fromarray(np.round(pixels * 255).astype(np.uint8)).save(buffer, format="PNG")
    return buffer.getvalue()
