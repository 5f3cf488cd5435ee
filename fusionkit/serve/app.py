"""The FastAPI app around a loaded bundle: ``POST /predict``, ``GET /health``, ``/docs``."""

# no ``from __future__ import annotations``: FastAPI reads the endpoints' annotations, which name types imported
# inside create_app

import asyncio
import logging
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from pathlib import Path

from fusionkit.serve.batcher import Batcher
from fusionkit.serve.upload import Limits, UploadError, check_type, decode

log = logging.getLogger("fusionkit.serve")

UPLOAD_SCHEMA = {
    "requestBody": {
        "required": True,
        "content": {
            "multipart/form-data": {"schema": {"type": "object", "required": ["file"],
                                               "properties": {"file": {"type": "string", "format": "binary"}}}},
            "application/octet-stream": {"schema": {"type": "string", "format": "binary"}},
            "audio/*": {"schema": {"type": "string", "format": "binary"}},
        },
    },
}


QUERY_PARAMS = ("window", "hop", "smooth")


def whole_file_runner(bundle, enrol=None) -> Callable[[list], list]:
    """``run(items)`` for the :class:`Batcher`: items are (signal, rate); signals of one rate are labelled in
    one ``Bundle.predict_signals`` call, and a batch that fails is retried item by item so that one bad clip
    costs only itself. Each result is ``{"label", "probabilities"}`` (``{"values"}`` for regression), with
    ``text`` where the bundle transcribes and ``warning`` where the audio is silent or very short."""
    from fusionkit.audio import signal_warning

    def result(scores: dict, text: str | None, item: tuple) -> dict:
        out = {"values": scores} if bundle.regression else {"label": max(scores, key=scores.get),
                                                             "probabilities": scores}
        warning = signal_warning(*item)
        return {**out, **({"text": text} if text else {}), **({"warning": str(warning)} if warning else {})}

    def run(items: list) -> list:
        out: list = [None] * len(items)
        by_rate: dict[int, list[int]] = {}
        for i, (_, sr) in enumerate(items):
            by_rate.setdefault(sr, []).append(i)
        for sr, idx in by_rate.items():
            try:
                scores, texts = bundle.predict_signals([items[i][0] for i in idx], sr, enrol=enrol)
                for k, i in enumerate(idx):
                    out[i] = result(scores[k], texts[k] if texts else None, items[i])
            except Exception:  # noqa: BLE001 - find which clip failed: each alone
                for i in idx:
                    try:
                        scores, texts = bundle.predict_signals([items[i][0]], sr, enrol=enrol)
                        out[i] = result(scores[0], texts[0] if texts else None, items[i])
                    except Exception as exc:  # noqa: BLE001 - that clip's own error
                        out[i] = exc
        return out

    return run


async def read_limited(request, limit: int) -> bytes:
    """The request body, refused (413) as soon as it passes ``limit`` bytes (or says it will)."""
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit:
        raise UploadError(413, f"upload too large: {int(declared)} bytes; the limit is {limit} bytes")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise UploadError(413, f"upload too large: over {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


async def upload_bytes(request, limit: int) -> tuple[bytes, str | None]:
    """(audio bytes, file name) from a multipart upload (field ``file``) or a raw body."""
    from starlette.datastructures import UploadFile
    from starlette.requests import Request

    content_type = request.headers.get("content-type", "")
    check_type(content_type)
    body = await read_limited(request, limit)
    if not content_type.lower().startswith("multipart/form-data"):
        return body, None
    sent = False

    async def replay():
        nonlocal sent
        if sent:
            return {"type": "http.disconnect"}
        sent = True
        return {"type": "http.request", "body": body, "more_body": False}

    try:
        form = await Request(request.scope, replay).form()
    except Exception as exc:  # noqa: BLE001 - a malformed multipart body
        raise UploadError(400, f"malformed multipart body: {' '.join(str(exc).split())[:200]}") from None
    uploads = form.getlist("file")
    if not uploads or not isinstance(uploads[0], UploadFile):
        raise UploadError(400, "multipart body has no file field named 'file'")
    if len(uploads) > 1:
        raise UploadError(400, f"multipart body has {len(uploads)} 'file' parts: send one file per request")
    others = sorted({k for k in form.keys() if k != "file"})
    if others:
        raise UploadError(400, f"multipart field{'s' if len(others) > 1 else ''} {', '.join(others)}: not read; "
                               "send only the field 'file' (window, hop and smooth go in the query string)")
    upload = uploads[0]
    check_type(upload.content_type)
    return await upload.read(), upload.filename


def check_query(query_params) -> None:
    """Refuse (422) a query string that ``POST /predict`` would read only in part: a parameter it does not take
    (a misspelling would otherwise give a whole-file label) or one given more than once (only one would count)."""
    keys = [k for k, _ in query_params.multi_items()]
    unknown = sorted({k for k in keys if k not in QUERY_PARAMS})
    if unknown:
        raise UploadError(422, f"unknown query parameter{'s' if len(unknown) > 1 else ''} {', '.join(unknown)}: "
                               f"/predict takes {', '.join(QUERY_PARAMS)}")
    repeated = sorted({k for k in keys if keys.count(k) > 1})
    if repeated:
        raise UploadError(422, f"query parameter {', '.join(repeated)} given more than once: give each once")


def _json_error(status: int, message: str):
    from fastapi.responses import JSONResponse

    return JSONResponse({"error": message}, status_code=status)


def create_app(bundle, info: dict | None = None, limits: Limits | None = None, max_batch: int = 8,
               max_wait_ms: float = 10.0, enrol=None):
    """The app serving ``bundle`` (a loaded Bundle, torch or onnx runtime). ``info``: what ``/health`` reports
    besides the counters (see :func:`health_info`); ``enrol``: the Normaliser for a normalised bundle."""
    from fastapi import Depends, FastAPI, Query, Request
    from fastapi.exceptions import RequestValidationError
    from starlette.exceptions import HTTPException

    from fusionkit.windows import timeline_only_problem, window_problem

    limits = limits or Limits()
    executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="fusionkit-bundle")
    batcher = Batcher(whole_file_runner(bundle, enrol), executor, max_batch, max_wait_ms / 1000)
    info = info or {"bundle": str(bundle.root)}

    @asynccontextmanager
    async def lifespan(_app):
        batcher.start()
        yield
        await batcher.stop()
        executor.shutdown(wait=False, cancel_futures=True)

    app = FastAPI(title="fusionkit", summary=f"speech emotion recognition with the bundle {Path(bundle.root).name}",
                  lifespan=lifespan)

    @app.exception_handler(UploadError)
    async def _upload_error(_request, exc: UploadError):
        return _json_error(exc.status, exc.message)

    @app.exception_handler(RequestValidationError)
    async def _invalid(_request, exc: RequestValidationError):
        first = exc.errors()[0] if exc.errors() else {}
        field = ".".join(str(p) for p in first.get("loc", ())[1:]) or "request"
        return _json_error(422, f"{field}: {first.get('msg', 'invalid')}")

    @app.exception_handler(HTTPException)
    async def _http(_request, exc: HTTPException):
        return _json_error(exc.status_code, str(exc.detail))

    @app.exception_handler(Exception)
    async def _internal(request, exc: Exception):
        log.error("%s %s failed", request.method, request.url.path, exc_info=exc)
        return _json_error(500, "internal error while labelling; the server log has the details")

    @app.get("/health", summary="The bundle served: encoders, model digests, limits, batching counters")
    async def health():
        s = batcher.stats
        return {"status": "ok", **info,
                "limits": {"max_bytes": limits.max_bytes, "max_seconds": limits.max_seconds},
                "batching": {"max_batch": batcher.max_batch, "max_wait_ms": max_wait_ms, "batches": s.batches,
                             "requests": s.requests, "largest_batch": s.largest}}

    async def _query(request: Request):
        check_query(request.query_params)

    @app.post("/predict", openapi_extra=UPLOAD_SCHEMA, dependencies=[Depends(_query)],
              summary="Label an audio file: its label and class probabilities, or a timeline with window")
    async def predict(request: Request,
                      window: float | None = Query(None, description="window length in seconds: a timeline"),
                      hop: float | None = Query(None, description="hop between windows in seconds"),
                      smooth: int = Query(1, description="average probabilities over this many windows")):
        given = {k: v for k, v in (("hop", hop), ("smooth", smooth)) if k in request.query_params}
        problem = window_problem(window, hop, smooth) or timeline_only_problem(given, window is not None, "window")
        if problem:
            raise UploadError(422, problem)
        data, filename = await upload_bytes(request, limits.max_bytes)
        x, sr, path = await asyncio.get_running_loop().run_in_executor(None, decode, data, limits, filename)
        try:
            if window is None:
                return await _labelled(batcher.submit((x, sr)))
            segments = await _labelled(asyncio.get_running_loop().run_in_executor(
                executor, lambda: bundle.predict(path, window=window, hop=hop, smooth=smooth, enrol=enrol)))
            return {"timeline": [s.as_dict() for s in segments]}
        finally:
            path.unlink(missing_ok=True)

    return app


async def _labelled(awaitable):
    """The bundle's answer; audio it cannot encode becomes a 422 naming the reason."""
    from fusionkit.audio import AudioError
    from fusionkit.pipeline.featurize import EncodeError

    try:
        return await awaitable
    except (AudioError, EncodeError) as exc:
        raise UploadError(422, f"cannot label this audio: {' '.join(str(exc).split())[:300]}") from None


def health_info(bundle, runtime: str) -> dict:
    """What ``/health`` says about the bundle, from its manifest: path, content hash, fusion head, classes,
    encoders with their weights digests, and (onnx runtime) each graph's SHA-256."""
    from fusionkit.bundle import describe
    from fusionkit.bundle.files import read_manifest

    d = describe(bundle.root)
    files = read_manifest(Path(bundle.root))["files"]
    out = {"bundle": d["bundle"], "runtime": runtime, "content_hash": d["content_hash"], "fusion": d["fusion"],
           **({"targets": d["targets"]} if "targets" in d else {"classes": d["classes"]}),
           "encoders": [{k: e[k] for k in ("name", "plugin", "model", "weights_digest")} for e in d["encoders"]]}
    if runtime == "onnx":
        out["onnx_graphs"] = {rel: digest for rel, digest in files.items() if rel.endswith(".onnx")}
    return out
