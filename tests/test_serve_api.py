"""The explorer's API through FastAPI's test client: shapes, errors, limits, OpenAPI."""

from __future__ import annotations

import base64
import io
import shutil

import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image

from conftest import explorer_runs, folder_run
from vaekit.cli import main
from vaekit.data import classes, load_dataset
from vaekit.draw import geometry
from vaekit.engines.sampling import posterior_means
from vaekit.model.priors import StandardNormal
from vaekit.runs import loading
from vaekit.serve.app import create_app
from vaekit.serve.explorer import LIMIT_FACTOR, Explorer

#: The base URL of the test client: a Host the explorer answers (see create_app).
LOCAL = "http://localhost"


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    return explorer_runs(tmp_path_factory.mktemp("serve"), epochs=1, hidden=32)


@pytest.fixture(scope="module")
def client(runs):
    return TestClient(
        create_app(Explorer.open(runs["plain"]), max_body_bytes=50_000), base_url=LOCAL
    )


@pytest.fixture(scope="module")
def conditional_explorer(runs):
    return Explorer.open(runs["conditional"])


@pytest.fixture(scope="module")
def conditional(conditional_explorer):
    return TestClient(create_app(conditional_explorer), base_url=LOCAL)


def png(size=(28, 28), mode="L", value=0, fmt="PNG") -> str:
    buffer = io.BytesIO()
    Image.new(mode, size, color=value).save(buffer, format=fmt)
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()


def digit_png() -> bytes:
    digit = np.zeros((28, 28), np.uint8)
    digit[6:22, 12:16] = 255  # a "1"
    buffer = io.BytesIO()
    Image.fromarray(digit).save(buffer, format="PNG")
    return buffer.getvalue()


def image_of(response) -> np.ndarray:
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "image/png"
    return np.asarray(Image.open(io.BytesIO(response.content)))


def test_model_and_map(client):
    model = client.get("/api/model").json()
    assert model == {
        "latent_dim": 2,
        "n_classes": 0,
        "image_shape": [1, 28, 28],
        "likelihood": "bernoulli",
        "score_samples": 100,
        "latent_range": pytest.approx([-3.0902, 3.0902], abs=1e-4),  # N(0, 1): Φ⁻¹(0.001)
        "latent_limit": pytest.approx([-9.2706, 9.2706], abs=1e-4),
        "data": "mnist-small",
        "digits": True,
        "held_out": "test",  # a named set with a test split, no validation split
        "class_names": [str(c) for c in range(10)],  # no classes.json: the numbers
        "uploads_resized": False,
    }
    latent_map = client.get("/api/map").json()
    assert len(latent_map["points"]) == 1000 == len(latent_map["labels"])  # mnist-small's test set
    assert latent_map["axes"] == [[1.0, 0.0], [0.0, 1.0]] and latent_map["centre"] == [0.0, 0.0]
    assert latent_map["prior_range"] == [model["latent_range"]] * 2


# --- what the page says about the run's data -----------------------------------------------

#: Class folders whose names are HTML (the page must show them as text; a folder name holds no
#: "/"). Sorted, as codes are.
NAMES = ("<b>bag", "T-shirt top", 'a & b "quoted"')


@pytest.fixture(scope="module")
def folder_runs(tmp_path_factory):
    """A conditional run of a 3-class colour folder (32×32, validation split only), as copies:
    with the class names training kept, without them (a run from before names were kept), and
    one whose data folder is gone."""
    root = tmp_path_factory.mktemp("folder")
    run = folder_run(root, 3, 20, "--conditional", names=NAMES)
    assert classes.load(run) == NAMES
    copies = {}
    for name in ("named", "unnamed", "lost"):
        copies[name] = root / name
        shutil.copytree(run, copies[name])
    (copies["unnamed"] / classes.CLASSES_FILE).unlink()
    copies["data"] = root / "clothes"
    return copies


def model_info(run) -> dict:
    return TestClient(create_app(Explorer.open(run)), base_url=LOCAL).get("/api/model").json()


def test_a_folder_run_with_class_names_is_described_by_them(folder_runs):
    info = model_info(folder_runs["named"])
    assert info["class_names"] == list(NAMES)  # as stored: escaping is the page's job
    assert info["data"] == "clothes" and info["digits"] is False
    assert info["held_out"] == "validation"  # a folder has no test split
    assert info["image_shape"] == [3, 32, 32] and info["n_classes"] == 3
    assert info["uploads_resized"] is False


def test_a_folder_run_without_class_names_numbers_its_classes(folder_runs):
    info = model_info(folder_runs["unnamed"])
    assert info["class_names"] == ["0", "1", "2"] and info["held_out"] == "validation"


def test_a_run_whose_data_is_gone_has_names_but_no_split(folder_runs, tmp_path):
    data = folder_runs["data"]
    moved = tmp_path / "moved"
    data.rename(moved)
    try:
        explorer = Explorer.open(folder_runs["lost"])
    finally:
        moved.rename(data)
    client = TestClient(create_app(explorer), base_url=LOCAL)
    info = client.get("/api/model").json()
    assert info["held_out"] is None and info["class_names"] == list(NAMES)
    assert client.get("/api/map").json()["points"] == []


def test_a_run_that_holds_out_nothing_maps_nothing(tmp_path):
    """Its images were all trained on: they are no held-out images to map or compare with."""
    run = folder_run(tmp_path, 2, 5, "--val-fraction", "0")
    client = TestClient(create_app(Explorer.open(run)), base_url=LOCAL)
    assert client.get("/api/model").json()["held_out"] is None
    assert client.get("/api/map").json()["points"] == []


def test_a_named_set_with_a_validation_split_maps_it(tmp_path):
    run = tmp_path / "run"
    argv = ["train", "--data", "mnist-small", "--epochs", "1", "--quiet", "--hidden", "8"]
    assert main([*argv, "--latent-dim", "2", "--val-fraction", "0.1", "--out", str(run)]) == 0
    explorer = Explorer.open(run)
    client = TestClient(create_app(explorer), base_url=LOCAL)
    info = client.get("/api/model").json()
    assert info["held_out"] == "validation" and info["digits"] is True
    assert info["data"] == "mnist-small" and info["class_names"] == [str(c) for c in range(10)]
    assert len(client.get("/api/map").json()["points"]) == 500  # 10% of 5,000, not the test set


def test_a_run_that_resizes_its_images_says_so(runs):
    engine = loading.open_run(runs["plain"])
    explorer = Explorer(engine, None, None, image_size=(28, 28))
    info = TestClient(create_app(explorer), base_url=LOCAL).get("/api/model").json()
    assert info["uploads_resized"] is True and info["held_out"] is None
    assert info["class_names"] == [] and info["data"] == "" and info["digits"] is False


def test_a_colour_drawing_is_read_in_colour(folder_runs):
    explorer = Explorer.open(folder_runs["named"])
    red = np.zeros((32, 32, 4), np.uint8)
    red[..., 0], red[..., 3] = 255, 255  # an opaque RGBA canvas, as the page sends it
    buffer = io.BytesIO()
    Image.fromarray(red).save(buffer, format="PNG")
    pixels = explorer.image_from_upload(buffer.getvalue())
    assert pixels.shape == (3, 32, 32)
    np.testing.assert_allclose(pixels[:, 0, 0], [1.0, 0.0, 0.0])


def test_decode_gives_the_decoder_mean_as_a_png(client, runs):
    a = image_of(client.get("/api/decode", params={"z": "0,0"}))
    b = image_of(client.get("/api/decode", params={"z": "2.5,-1.5"}))
    assert a.shape == (28, 28) and a.dtype == np.uint8 and not np.array_equal(a, b)

    engine = loading.open_run(runs["plain"])
    want = engine.decode(np.array([[2.5, -1.5]], np.float32))[0, 0]
    np.testing.assert_allclose(b / 255.0, want, atol=1 / 255 + 1e-6)


def test_interpolation_is_a_strip(client):
    strip = image_of(client.get("/api/interpolate", params={"a": "-2,0", "b": "2,0", "steps": 7}))
    assert strip.shape == (28, 7 * 28)


@pytest.mark.parametrize(
    "path, params, words",
    [
        ("/api/decode", {"z": "1"}, "needs 2 numbers"),
        ("/api/decode", {"z": "1,nan"}, "finite"),
        ("/api/decode", {"z": "1,99"}, "from -9.27 to 9.27"),
        ("/api/decode", {"z": "a,b"}, "numbers separated by commas"),
        ("/api/decode", {"z": "0,0", "label": 3}, None),  # unconditional: the label is ignored
        ("/api/interpolate", {"a": "0,0", "b": "1,1", "steps": 1}, "steps must be from 2"),
        ("/api/interpolate", {"a": "0,0", "b": "1", "steps": 5}, "needs 2 numbers"),
    ],
)
def test_bad_requests_say_why(client, path, params, words):
    response = client.get(path, params=params)
    if words is None:
        assert response.status_code == 200
        return
    assert response.status_code == 400 and words in response.json()["detail"], response.text


def test_analyse_reads_an_image(client):
    body = {"image": base64.b64encode(digit_png()).decode()}
    result = client.post("/api/analyse", json=body).json()
    assert len(result["z"]) == 2 and len(result["position"]) == 2
    assert result["reconstruction"].startswith("data:image/png;base64,")
    assert result["log_likelihood"] < 0 and 0 <= result["percentile"] <= 100
    assert any(w in result["reading"] for w in ("typical", "unusual"))
    noise = np.random.default_rng(0).integers(0, 256, (28, 28), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(noise).save(buffer, format="PNG")
    body = {"image": base64.b64encode(buffer.getvalue()).decode()}
    result = client.post("/api/analyse", json=body).json()
    assert result["reading"].startswith("unusual") and result["percentile"] < 1


@pytest.mark.parametrize(
    "image, status, words",
    [
        (png(size=(20, 28)), 400, "takes 28×28"),
        (png(mode="RGB", value=(10, 20, 30)), 200, None),  # colour is converted to grey
        (png(fmt="GIF"), 400, "send PNG or JPEG"),
        ("data:image/png;base64," + base64.b64encode(b"not an image").decode(), 400, "not a PNG"),
        ("%%% not base64 %%%", 400, "not valid base64"),
        ("data:image/png;base64," + "A" * 60_000, 413, "larger than the limit"),
    ],
)
def test_uploads_are_checked(client, image, status, words):
    response = client.post("/api/analyse", json={"image": image})
    assert response.status_code == status, response.text
    if words:
        assert words in response.json()["detail"]


def test_conditional_models_need_a_label(conditional):
    assert conditional.get("/api/model").json()["n_classes"] == 10
    response = conditional.get("/api/decode", params={"z": "0,0,0,0"})
    assert response.status_code == 400 and "give a label" in response.json()["detail"]
    response = conditional.get("/api/decode", params={"z": "0,0,0,0", "label": 10})
    assert response.status_code == 400 and "from 0 to 9" in response.json()["detail"]
    three = image_of(conditional.get("/api/decode", params={"z": "0,0,0,0", "label": 3}))
    seven = image_of(conditional.get("/api/decode", params={"z": "0,0,0,0", "label": 7}))
    assert not np.array_equal(three, seven)
    latent_map = conditional.get("/api/map").json()
    assert np.array(latent_map["axes"]).shape == (2, 4)  # principal axes of the 4-d means


def test_openapi_describes_the_api(client):
    spec = client.get("/openapi.json").json()
    paths = {"/api/model", "/api/map", "/api/sample", "/api/decode", "/api/interpolate"}
    assert paths | {"/api/analyse"} <= set(spec["paths"])
    assert "image/png" in spec["paths"]["/api/decode"]["get"]["responses"]["200"]["content"]
    assert client.get("/docs").status_code == 200


def test_page_and_static_files(client):
    page = client.get("/")
    assert page.status_code == 200 and 'id="map"' in page.text and "explorer.js" in page.text
    assert client.get("/static/explorer.js").status_code == 200
    assert client.get("/static/../app.py").status_code == 404


def test_serve_refuses_a_busy_port_and_bad_runs(runs, tmp_path, capsys):
    import socket

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        assert main(["serve", str(runs["plain"]), "--port", str(port)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "cannot listen on 127.0.0.1" in err[0], err
    assert main(["serve", str(tmp_path / "nothing")]) == 2
    assert main(["serve", str(runs["plain"]), "--port", "70000"]) == 2


@pytest.mark.parametrize(
    "score, percentile, words",
    [
        (-500.0, 0.0, "unusual for this model"),
        (-104.5, 5.0, "rather unusual"),
        (-50.0, 50.0, "typical"),
        (20.0, 100.0, "unusually likely"),
    ],
)
def test_scores_are_read_in_plain_words(runs, score, percentile, words):
    explorer = Explorer.open(runs["plain"])
    explorer.reference_scores = np.linspace(-109.5, 9.5, 100)  # 1.2 nats apart
    got, reading = explorer.read_score(score)
    assert got == pytest.approx(percentile, abs=1) and reading.startswith(words), reading
    explorer.reference_scores = np.zeros(0)
    assert explorer.read_score(score) == (None, explorer.read_score(score)[1])


def test_the_listening_socket_lets_asyncio_turn_nagle_off():
    """asyncio sets TCP_NODELAY only on IPPROTO_TCP sockets; without it each keep-alive
    response waited ~40 ms for a delayed ACK (measured: 44 ms against 1.1 ms per decode)."""
    import socket

    from vaekit.serve.server import bind, url_of

    with bind("127.0.0.1", 0) as sock:
        assert sock.proto == socket.IPPROTO_TCP
        assert url_of(sock).startswith("http://127.0.0.1:")


def test_serve_benchmark_runs(runs):
    import subprocess
    import sys
    from pathlib import Path

    script = Path(__file__).resolve().parents[1] / "benchmarks" / "serve.py"
    command = [sys.executable, str(script), str(runs["conditional"]), "--requests", "3"]
    proc = subprocess.run(command, capture_output=True, text=True, timeout=600)  # a deadlock guard
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "| GET /api/decode |" in proc.stdout


# --- the three kinds of upload, malformed requests, the body limit, decompression bombs -------

MARKER = b"Zq7MARKERxv93"  # in every malformed request below; never in any response


def multipart(fields: list[tuple[str, str | None, bytes]], boundary: str = "b0undary") -> bytes:
    """A multipart/form-data body: (name, filename or None, content) per part."""
    parts = []
    for name, filename, content in fields:
        disposition = f'form-data; name="{name}"'
        if filename is not None:
            disposition += f'; filename="{filename}"\r\nContent-Type: image/png'
        parts.append(f"--{boundary}\r\nContent-Disposition: {disposition}\r\n\r\n".encode())
        parts.append(content + b"\r\n")
    return b"".join(parts) + f"--{boundary}--\r\n".encode()


FORM = "multipart/form-data; boundary=b0undary"


def test_analyse_takes_json_multipart_and_raw_bodies(client):
    data = digit_png()
    by_json = client.post("/api/analyse", json={"image": base64.b64encode(data).decode()})
    by_form = client.post("/api/analyse", files={"file": ("digit.png", data, "image/png")})
    by_png = client.post("/api/analyse", content=data, headers={"Content-Type": "image/png"})
    by_bytes = client.post(
        "/api/analyse", content=data, headers={"Content-Type": "application/octet-stream"}
    )
    results = [r.json() for r in (by_json, by_form, by_png, by_bytes)]
    assert all(r.status_code == 200 for r in (by_json, by_form, by_png, by_bytes)), results
    assert all(r == results[0] for r in results[1:])
    jpeg = io.BytesIO()
    Image.open(io.BytesIO(data)).save(jpeg, format="JPEG", quality=95)
    by_jpeg = client.post(
        "/api/analyse", content=jpeg.getvalue(), headers={"Content-Type": "image/jpeg"}
    )
    assert by_jpeg.status_code == 200 and len(by_jpeg.json()["z"]) == 2


def test_a_conditional_upload_takes_its_label_from_the_form_or_the_query(conditional):
    data = digit_png()
    by_json = conditional.post(
        "/api/analyse", json={"image": base64.b64encode(data).decode(), "label": 1}
    ).json()
    by_form = conditional.post(
        "/api/analyse", files={"file": ("d.png", data, "image/png")}, data={"label": "1"}
    ).json()
    by_query = conditional.post(
        "/api/analyse?label=1", content=data, headers={"Content-Type": "image/png"}
    ).json()
    assert by_json == by_form == by_query and len(by_json["z"]) == 4
    as_seven = conditional.post(
        "/api/analyse?label=7", content=data, headers={"Content-Type": "image/png"}
    ).json()
    assert as_seven["z"] != by_query["z"]
    unlabelled = conditional.post(
        "/api/analyse", content=data, headers={"Content-Type": "image/png"}
    )
    assert unlabelled.status_code == 400 and "give a label" in unlabelled.json()["detail"]
    twice = conditional.post(
        "/api/analyse?label=1", files={"file": ("d.png", data, "image/png")}, data={"label": "1"}
    )
    assert twice.status_code == 400 and "give the label once" in twice.json()["detail"]


def gif_bytes() -> bytes:
    buffer = io.BytesIO()
    Image.new("L", (28, 28)).save(buffer, format="GIF", comment=MARKER)
    return buffer.getvalue()


JSON = {"Content-Type": "application/json"}
PNG_BODY = {"Content-Type": "image/png"}
GOOD_FORM = multipart([("file", "d.png", digit_png() + MARKER)])
MALFORMED = {
    "JSON syntax": ("/api/analyse", b'{"image": "' + MARKER, JSON, 422, "not valid JSON"),
    "non-UTF-8 JSON": (
        "/api/analyse",
        b'{"image": "\xff\xfe\xfa' + MARKER + b'"}',
        JSON,
        422,
        "not valid JSON",
    ),
    "JSON not an object": ("/api/analyse", b'["' + MARKER + b'"]', JSON, 422, "the body"),
    "JSON field missing": ("/api/analyse", b'{"imag": "' + MARKER + b'"}', JSON, 422, "missing"),
    "JSON field type": ("/api/analyse", b'{"image": 1' + b"7" * 30 + b"}", JSON, 422, "string"),
    "JSON label type": (
        "/api/analyse",
        b'{"image": "", "label": "' + MARKER + b'"}',
        JSON,
        422,
        "body field label",
    ),
    "not base64": ("/api/analyse", b'{"image": "%%' + MARKER + b'%%"}', JSON, 400, "base64"),
    "content type": ("/api/analyse", MARKER * 3, {"Content-Type": "text/plain"}, 415, "send"),
    "no content type": ("/api/analyse", MARKER * 3, {"Content-Type": ""}, 415, "send"),
    "form-encoded": (
        "/api/analyse",
        b"image=" + MARKER,
        {"Content-Type": "application/x-www-form-urlencoded"},
        415,
        "multipart/form-data",
    ),
    "query value": ("/api/analyse?label=" + MARKER.decode(), digit_png(), PNG_BODY, 422, "label"),
    "undecodable image": ("/api/analyse", b"\x89PNG\r\n" + MARKER * 4, PNG_BODY, 400, "not a PNG"),
    "GIF image": ("/api/analyse", gif_bytes(), PNG_BODY, 400, "send PNG or JPEG"),
    "truncated multipart": (
        "/api/analyse",
        GOOD_FORM[: len(GOOD_FORM) // 2],
        {"Content-Type": FORM},
        422,
        "cut short",
    ),
    "multipart without boundary": (
        "/api/analyse",
        GOOD_FORM,
        {"Content-Type": "multipart/form-data"},
        400,
        "boundary",
    ),
    "multipart file missing": (
        "/api/analyse",
        multipart([("label", None, MARKER)]),
        {"Content-Type": FORM},
        422,
        "no complete file part",
    ),
    "multipart file as text": (
        "/api/analyse",
        multipart([("file", None, MARKER)]),
        {"Content-Type": FORM},
        422,
        "file",
    ),
    "multipart label type": (
        "/api/analyse",
        multipart([("file", "d.png", digit_png()), ("label", None, MARKER)]),
        {"Content-Type": FORM},
        422,
        "label",
    ),
    "multipart two files": (
        "/api/analyse",
        multipart([("file", "a.png", MARKER), ("file", "b.png", MARKER)]),
        {"Content-Type": FORM},
        400,
        "too many files",
    ),
    "query missing": ("/api/decode?zz=" + MARKER.decode(), None, {}, 422, "z is missing"),
    "query type": ("/api/interpolate?a=0,0&b=1,1&steps=" + MARKER.decode(), None, {}, 422, "steps"),
    "over the limit": ("/api/analyse", MARKER * 5000, PNG_BODY, 413, "larger than the limit"),
}


@pytest.mark.parametrize("kind", list(MALFORMED))
def test_malformed_requests_get_one_sentence_and_never_their_bytes_back(client, kind):
    path, body, headers, status, words = MALFORMED[kind]
    if body is None:
        response = client.get(path)
    else:
        response = client.post(path, content=body, headers=headers)
    assert 400 <= response.status_code < 500, response.text
    assert response.status_code == status, response.text
    detail = response.json()["detail"]
    assert isinstance(detail, str) and words in detail, detail
    assert "\n" not in detail and ". " not in detail and len(detail) < 200, detail
    assert MARKER not in response.content
    sent = (body or b"") + path.encode()
    windows = {sent[i : i + 12] for i in range(len(sent) - 11)}
    assert not any(w in response.content for w in windows), response.content


def test_a_chunked_upload_is_cut_off_at_the_limit(runs):
    """No Content-Length: the server counts what arrives and stops reading at the limit."""
    import httpx

    from vaekit.serve.server import BackgroundServer

    limit, chunk, chunks = 100_000, b"\0" * 65_536, 5_000  # 328 MB offered
    delivered = []  # body bytes the server handed to the app

    app = create_app(Explorer.open(runs["plain"]), max_body_bytes=limit)

    async def counting(scope, receive, send):
        async def counted():
            message = await receive()
            delivered.append(len(message.get("body", b"")))
            return message

        await app(scope, counted, send)

    pulled = 0

    def body():
        nonlocal pulled
        for _ in range(chunks):
            pulled += 1
            yield chunk

    with BackgroundServer(counting) as server:
        response = httpx.post(
            server.url + "api/analyse",
            content=body(),
            headers={"Content-Type": "image/png"},
            timeout=600,
        )
    assert "content-length" not in response.request.headers
    assert response.status_code == 413, response.text
    assert "larger than the limit of 100,000 bytes" in response.json()["detail"]
    assert limit < sum(delivered) < limit + 1_000_000
    # what the client got out: the server's reads plus the two sockets' kernel buffers
    assert pulled < chunks // 10, pulled


@pytest.mark.filterwarnings("ignore::PIL.Image.DecompressionBombWarning")
def test_a_huge_declared_image_is_refused_from_its_header(client, monkeypatch):
    """A 13000×13000 PNG (169 million pixels, just under Pillow's bomb limit) is 21 KB of
    1-bit PNG; decoding it would take 169 MB. It is refused before any pixel is decoded."""
    from PIL import ImageFile

    buffer = io.BytesIO()
    Image.new("1", (13_000, 13_000)).save(buffer, format="PNG")
    data = buffer.getvalue()
    assert len(data) < 50_000  # under the test app's body limit

    def no_decoding(self, *args, **kwargs):
        raise AssertionError("the pixels were decoded")

    monkeypatch.setattr(Image.Image, "load", no_decoding)
    monkeypatch.setattr(ImageFile.ImageFile, "load", no_decoding)
    response = client.post("/api/analyse", content=data, headers={"Content-Type": "image/png"})
    assert response.status_code == 400
    assert response.json()["detail"] == "the image is 13000×13000 pixels; this model takes 28×28"


def test_openapi_documents_the_three_kinds_of_upload(client):
    analyse = client.get("/openapi.json").json()["paths"]["/api/analyse"]["post"]
    kinds = set(analyse["requestBody"]["content"])
    assert kinds == {
        "application/json",
        "multipart/form-data",
        "image/png",
        "image/jpeg",
        "application/octet-stream",
    }
    assert "curl -F file=@digit.png" in analyse["description"]
    assert "--data-binary" in analyse["description"]
    assert {"400", "413", "415", "422"} <= set(analyse["responses"])
    problem = analyse["responses"]["422"]["content"]["application/json"]["schema"]
    assert problem == {"$ref": "#/components/schemas/Problem"}


class ScaledNormal(StandardNormal):
    """p(z) = N(0, 9I): the standard normal scaled by 3, a prior the explorer must follow."""

    def sample(self, n, rng, labels=None):
        return 3 * super().sample(n, rng)

    def quantile(self, p):
        return 3 * super().quantile(p)


def test_the_explorer_samples_and_ranges_follow_the_runs_prior(runs, monkeypatch):
    engine = loading.open_run(runs["plain"])
    monkeypatch.setattr(type(engine), "prior", ScaledNormal(2))
    client = TestClient(create_app(Explorer(engine, None, None)), base_url=LOCAL)
    drawn = client.get("/api/sample", params={"seed": 5}).json()["z"]
    np.testing.assert_allclose(drawn, 3 * np.random.default_rng(5).standard_normal((1, 2))[0])
    many = np.array([client.get("/api/sample").json()["z"] for _ in range(200)])
    assert len(np.unique(many[:, 0])) == 200 and many.std() > 2  # fresh draws of sd 3, not 1
    model = client.get("/api/model").json()
    low, high = 3 * StandardNormal(1).quantile(np.array([0.001, 0.999]))[:, 0]
    assert model["latent_range"] == pytest.approx([low, high])
    assert model["latent_limit"] == pytest.approx([LIMIT_FACTOR * low, LIMIT_FACTOR * high])
    assert client.get("/api/map").json()["prior_range"] == [pytest.approx([low, high])] * 2
    assert client.get("/api/decode", params={"z": "0,20"}).status_code == 200  # N(0, 1): refused
    refused = client.get("/api/decode", params={"z": "0,30"})
    assert refused.status_code == 400 and "from -27.8 to 27.8" in refused.json()["detail"]
    assert client.get("/api/sample", params={"seed": -1}).status_code == 422


def test_a_labelled_sample_is_drawn_from_that_class_prior(conditional, conditional_explorer):
    """The conditional run's class prior p(z|y): /api/sample?label=y draws from class y's own
    Gaussian, as the engine's prior does for that label."""
    prior = conditional_explorer.engine.prior
    for label in (3, 7):
        drawn = conditional.get("/api/sample", params={"seed": 4, "label": label}).json()["z"]
        expected = prior.sample(1, np.random.default_rng(4), np.array([label]))[0]
        np.testing.assert_allclose(drawn, expected)
    assert conditional.get("/api/sample", params={"label": 10}).status_code == 400


def test_the_maps_axes_are_the_manifolds_principal_axes(runs, conditional_explorer):
    engine = conditional_explorer.engine
    test = load_dataset("mnist-small", "test")
    means = posterior_means(engine, test.x, test.y)
    _, axes, _, _, _ = geometry.manifold_plane(engine.config.latent_dim, None, means, None, 2)
    unit = axes / np.linalg.norm(axes, axis=1, keepdims=True)
    np.testing.assert_allclose(conditional_explorer.axes, unit, atol=1e-12)
    np.testing.assert_allclose(conditional_explorer.centre, means.mean(axis=0))
    latent_map = TestClient(create_app(conditional_explorer), base_url=LOCAL).get("/api/map").json()
    np.testing.assert_allclose(latent_map["axes"], unit, atol=1e-12)


def test_principal_axes_have_one_orientation_for_a_reflected_input(rng):
    rotation = np.linalg.qr(rng.standard_normal((4, 4)))[0]
    points = (rng.standard_normal((500, 4)) * [5.0, 3.0, 1.0, 0.5]) @ rotation
    centre, axes, sd, share = geometry.principal_components(points)
    reflected = geometry.principal_components(-points)
    np.testing.assert_allclose(reflected[1], axes, atol=1e-12)
    np.testing.assert_allclose(reflected[0], -centre)
    largest = axes[np.arange(4), np.abs(axes).argmax(axis=1)]
    assert np.all(largest > 0)  # the documented orientation
    _, _, rows = np.linalg.svd(points - centre)
    np.testing.assert_allclose(np.abs(axes), np.abs(rows), atol=1e-9)  # the SVD's directions
    np.testing.assert_allclose(sd, np.sqrt(np.linalg.eigvalsh(np.cov(points.T))[::-1]))
    assert share.sum() == pytest.approx(1.0)


def test_uploads_are_read_with_the_runs_image_size_and_scaling(runs):
    from vaekit.data.readers import read_image
    from vaekit.data.scaling import fit_array

    engine = loading.open_run(runs["plain"])
    scaling = fit_array("standardize", np.random.default_rng(0).uniform(0, 255, (50, 1, 28, 28)))
    explorer = Explorer(engine, None, None, scaling=scaling, image_size=(28, 28))
    buffer = io.BytesIO()
    colour = np.random.default_rng(1).integers(0, 256, (30, 40, 3), dtype=np.uint8)
    Image.fromarray(colour).save(buffer, format="PNG")  # another size, in colour
    pixels = explorer.image_from_upload(buffer.getvalue())
    levels = read_image(buffer.getvalue(), (28, 28), "grey")
    assert pixels.shape == (1, 28, 28)
    np.testing.assert_allclose(pixels, scaling.apply(levels[None])[0])
    assert np.isfinite(explorer.analyse(pixels).log_likelihood)


def test_the_explorer_opens_the_best_weights_of_a_run_that_kept_them(runs, tmp_path):
    with pytest.raises(Exception, match="kept no best checkpoint"):
        Explorer.open(runs["plain"], which="best")


# --- only its own host; requests that arrive whole, or are dropped --------------------------

#: Deadlock guard for the socket tests (never a pass/fail criterion: they wait for events).
GUARD = 120


@pytest.mark.parametrize(
    "host", ["localhost", "localhost:8000", "127.0.0.1", "127.0.0.1:8000", "[::1]", "[::1]:8000"]
)
def test_the_loopback_names_are_answered(client, host):
    assert client.get("/api/model", headers={"Host": host}).status_code == 200


@pytest.mark.parametrize(
    "host",
    [
        "attacker.example",
        "attacker.example:8000",
        "localhost.attacker.example",
        "127.0.0.1.nip.io",
        "[::2]",
        "",
    ],
)
def test_a_foreign_host_reads_nothing(client, host):
    """DNS rebinding: a page of attacker.example whose name now resolves to 127.0.0.1 sends its
    own name as Host; the explorer answers only its loopback names."""
    for path in ("/", "/api/model", "/api/map", "/api/decode?z=0,0"):
        response = client.get(path, headers={"Host": host})
        assert response.status_code == 400, (path, host)
        assert b"z" not in response.content.lower().replace(b"host", b"")  # no latent, no map


def test_allowed_hosts_add_names_and_an_open_address_answers_any(runs):
    from vaekit.serve.server import allowed_hosts

    explorer = Explorer.open(runs["plain"])
    hosts = allowed_hosts("127.0.0.1", ["vae.lan", "*.lab.example"])
    app = TestClient(create_app(explorer, allowed_hosts=hosts), base_url=LOCAL)
    for host, status in (
        ("vae.lan:8000", 200),
        ("gpu.lab.example", 200),
        ("localhost", 200),
        ("other.lan", 400),
    ):
        assert app.get("/api/model", headers={"Host": host}).status_code == status, host
    assert allowed_hosts("0.0.0.0") == ("*",)  # every name the machine has: any Host
    assert allowed_hosts("0.0.0.0", ["vae.lan"]) == ("vae.lan",)
    assert allowed_hosts("192.0.2.7", ["vae.lan"]) == ("vae.lan", "192.0.2.7")
    assert allowed_hosts("::1") == ("localhost", "127.0.0.1", "[::1]")


def _raw_request(url: str, head: bytes, body: bytes = b"") -> bytes:
    """Send ``head`` and ``body`` to the server at ``url``; everything it answers until it
    closes the connection."""
    import socket
    from urllib.parse import urlsplit

    where = urlsplit(url)
    with socket.create_connection((where.hostname, where.port), timeout=GUARD) as sock:
        sock.sendall(head + body)
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    return answer


def test_a_real_server_refuses_a_foreign_host(runs):
    from vaekit.serve.server import BackgroundServer

    with BackgroundServer(create_app(Explorer.open(runs["plain"]))) as server:
        foreign = b"GET /api/model HTTP/1.1\r\nHost: attacker.example\r\nConnection: close\r\n\r\n"
        own = foreign.replace(b"attacker.example", b"127.0.0.1")
        assert _raw_request(server.url, foreign).startswith(b"HTTP/1.1 400")
        assert _raw_request(server.url, own).startswith(b"HTTP/1.1 200")


@pytest.mark.parametrize("sent", ["half the headers", "the headers and part of the body"])
def test_a_request_that_does_not_arrive_whole_is_dropped(runs, sent):
    """The server closes the connection of a request not whole within its deadline (here a
    fraction of a second): the test waits for the close, whenever it comes."""
    from vaekit.serve.server import BackgroundServer

    app = create_app(Explorer.open(runs["plain"]))
    head = (
        b"POST /api/analyse HTTP/1.1\r\nHost: localhost\r\nContent-Type: image/png\r\n"
        b"Content-Length: 1000\r\n"
    )
    head, body = (head, b"") if sent == "half the headers" else (head + b"\r\n", b"\x89PNG")
    with BackgroundServer(app, request_seconds=0.2) as server:
        assert _raw_request(server.url, head, body) == b""  # closed, unanswered
        own = b"GET /api/model HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
        assert _raw_request(server.url, own).startswith(b"HTTP/1.1 200")  # still serving


def test_a_client_that_disconnects_mid_upload_is_one_log_line(runs):
    import logging
    import socket
    import threading
    from urllib.parse import urlsplit

    from vaekit.serve.server import BackgroundServer

    records: list[logging.LogRecord] = []
    seen = threading.Event()

    class Collect(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(record)
            seen.set()

    handler = Collect(level=logging.DEBUG)
    with BackgroundServer(create_app(Explorer.open(runs["plain"]))) as server:
        logging.getLogger("uvicorn.error").addHandler(handler)
        try:
            where = urlsplit(server.url)
            with socket.create_connection((where.hostname, where.port), timeout=GUARD) as sock:
                sock.sendall(
                    b"POST /api/analyse HTTP/1.1\r\nHost: localhost\r\n"
                    b"Content-Type: image/png\r\nContent-Length: 1000\r\n\r\n\x89PNG"
                )
            assert seen.wait(GUARD), "the server logged nothing"
        finally:
            logging.getLogger("uvicorn.error").removeHandler(handler)
    assert len(records) == 1, [r.getMessage() for r in records]
    assert records[0].exc_info is None and "\n" not in records[0].getMessage()
    assert "disconnected before its request was whole" in records[0].getMessage()
