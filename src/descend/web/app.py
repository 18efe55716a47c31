"""The FastAPI app of the web lab: one page, its assets, and JSON endpoints over the lab.

    GET  /                      the page (static/index.html; assets from the package, no CDN)
    GET  /static/{name}         app.js, plot.js, style.css (a fixed table read at start-up)
    GET  /api/limits            every bound below
    GET  /api/landscapes        the registry, described
    GET  /api/optimizers        every optimizer spec: hyperparameters, choices, defaults
    GET  /api/schedules         learning-rate schedules and their keys
    POST /api/landscape         one function (registry name or expression), described
    POST /api/contour           its values on a grid
    POST /api/run               trajectories, losses and metrics (descend.lab.run)
    POST /api/run.csv           the same trajectories as CSV
    POST /api/theory            quadratics: κ, optimal α/β, predicted vs measured rates
    POST /api/basins            basin maps (descend.lab.basins)
    POST /api/gif               the animation as a GIF
    GET  /openapi.json          the schema of all of these

Safety: every input is bounded (:mod:`.limits`; a violation is a 422 naming the field and the
allowed range), bodies over ``MAX_BODY_BYTES`` get a 413, each computation runs in a worker
thread under a time limit (503 when exceeded), requests never touch the file system (the
assets are read once when the app is built), and :mod:`descend.cli.serve` binds to 127.0.0.1
unless told otherwise. Swagger's /docs page is off: it loads its script from a CDN.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from importlib import resources
from typing import Any

import anyio
from fastapi import FastAPI, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, PlainTextResponse, Response
from starlette.middleware.trustedhost import TrustedHostMiddleware
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from descend import __version__

from . import basins, catalogue, functions, gif, limits, quadratic, runs
from . import explain as explaining
from .deadline import Deadline
from .errors import RequestError, TimeLimitExceeded
from .schemas import (
    BasinsRequest,
    ContourRequest,
    FunctionRef,
    GifRequest,
    RunRequest,
    TheoryRequest,
)

ASSETS = {
    "app.js": "text/javascript; charset=utf-8",
    "plot.js": "text/javascript; charset=utf-8",
    "style.css": "text/css; charset=utf-8",
}
SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; img-src 'self' data: blob:; style-src 'self'; "
        "script-src 'self'; connect-src 'self'; object-src 'none'; base-uri 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}
REJECTIONS: dict[int | str, dict[str, Any]] = {
    422: {"description": "an input outside its allowed range; the message says what is allowed"},
    503: {"description": "the computation ran past the per-request time limit"},
}


class SafeJSONResponse(JSONResponse):
    """JSON where any NaN or infinity that slipped through becomes null (never a 500)."""

    def render(self, content: Any) -> bytes:
        try:
            text = json.dumps(content, ensure_ascii=False, allow_nan=False, separators=(",", ":"))
        except ValueError:
            text = json.dumps(_finite(content), ensure_ascii=False, separators=(",", ":"))
        return text.encode("utf-8")


def _finite(value: Any) -> Any:
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    return value


class BodyLimit:
    """ASGI middleware: a request body longer than ``max_bytes`` is answered with 413."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app, self.max_bytes = app, max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope.get("headers", [])).get(b"content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > self.max_bytes):
            await self._reject(scope, receive, send)
            return
        seen = 0

        async def counted() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_bytes:
                    raise _BodyTooLarge
            return message

        try:
            await self.app(scope, counted, send)
        except _BodyTooLarge:
            await self._reject(scope, receive, send)

    async def _reject(self, scope: Scope, receive: Receive, send: Send) -> None:
        response = JSONResponse(
            {"detail": f"request body over {self.max_bytes} bytes; the API takes small JSON"},
            status_code=413,
        )
        await response(scope, receive, send)


class _BodyTooLarge(Exception):
    pass


def _load_assets() -> dict[str, bytes]:
    folder = resources.files("descend.web") / "static"
    names = ["index.html", *ASSETS]
    return {name: (folder / name).read_bytes() for name in names}


def create_app(
    time_limit: float = limits.TIME_LIMIT_S,
    allowed_hosts: list[str] | None = None,
    max_concurrent: int = 2,
) -> FastAPI:
    """The web lab's ASGI app.

    Args:
        time_limit: seconds a computation may run before it is stopped (503).
        allowed_hosts: Host headers to accept (None: any). ``descend serve`` passes its own
            host and the loopback names, so another site cannot reach it by DNS rebinding.
        max_concurrent: computations that may run at once; more wait their turn.
    """
    app = FastAPI(
        title="descend web lab",
        version=__version__,
        description="Run descend's optimizers on 2-D test functions: contours, trajectories, "
        "metrics, theory for quadratics, basins of attraction and GIF export.",
        docs_url=None,
        redoc_url=None,
        default_response_class=SafeJSONResponse,
    )
    assets = _load_assets()
    slots = anyio.CapacityLimiter(max_concurrent)

    async def compute(work: Callable[[Deadline], Any]) -> Any:
        """Run ``work`` in a worker thread under the time limit.

        The deadline is checked inside the computation (each optimizer step, each GIF frame);
        the outer timeout, a little later, answers even if a check comes late, abandoning the
        thread, which stops at its next check.
        """
        deadline = Deadline(time_limit)
        with anyio.fail_after(time_limit + 2.0):  # raises TimeoutError (answered with 503)
            return await anyio.to_thread.run_sync(
                work, deadline, abandon_on_cancel=True, limiter=slots
            )

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        # FastAPI's own handler, but NaN/inf echoed back from the input become null
        return SafeJSONResponse({"detail": jsonable_encoder(exc.errors())}, status_code=422)

    @app.exception_handler(RequestError)
    async def _request_error(request: Request, exc: RequestError) -> JSONResponse:
        return SafeJSONResponse({"detail": exc.detail()}, status_code=422)

    @app.exception_handler(TimeLimitExceeded)
    async def _time_limit(request: Request, exc: TimeLimitExceeded) -> JSONResponse:
        return SafeJSONResponse({"detail": str(exc)}, status_code=503)

    @app.exception_handler(TimeoutError)
    async def _timeout(request: Request, exc: TimeoutError) -> JSONResponse:
        message = f"the request ran past its time limit of {time_limit:g} s"
        return SafeJSONResponse({"detail": message}, status_code=503)

    @app.exception_handler(FloatingPointError)
    async def _nonfinite(request: Request, exc: FloatingPointError) -> JSONResponse:
        # nonfinite="raise" in a spec: the optimizer refused a NaN/Inf gradient, as asked.
        detail = [{"loc": ["body", "optimizers"], "msg": str(exc), "type": "value_error"}]
        return SafeJSONResponse({"detail": detail}, status_code=422)

    # -- page ----------------------------------------------------------------------------------
    @app.get("/", include_in_schema=False)
    def index() -> Response:
        return Response(assets["index.html"], media_type="text/html; charset=utf-8")

    @app.get("/static/{name}", include_in_schema=False)
    def static(name: str) -> Response:
        if name not in ASSETS:
            return PlainTextResponse("not found", status_code=404)
        return Response(assets[name], media_type=ASSETS[name])

    @app.middleware("http")
    async def security_headers(request: Request, call_next):
        response = await call_next(request)
        for key, value in SECURITY_HEADERS.items():
            response.headers.setdefault(key, value)
        return response

    # -- catalogues ----------------------------------------------------------------------------
    @app.get("/api/limits", summary="Every bound on the inputs")
    def get_limits() -> dict:
        return limits.table()

    @app.get("/api/landscapes", summary="The registered functions, described")
    def get_landscapes() -> list[dict]:
        return functions.catalogue()

    @app.get("/api/optimizers", summary="Every optimizer spec with its hyperparameters")
    def get_optimizers() -> dict:
        return catalogue.optimizers()

    @app.get("/api/schedules", summary="Learning-rate schedules and their keys")
    def get_schedules() -> dict:
        return catalogue.schedule_table()

    # -- computations --------------------------------------------------------------------------
    @app.post("/api/landscape", summary="Describe one function", responses=REJECTIONS)
    async def post_landscape(body: FunctionRef) -> dict:
        def work(deadline: Deadline) -> dict:
            return functions.describe(functions.resolve(body.name, body.params, body.domain))

        return await compute(work)

    @app.post("/api/contour", summary="A function's values on a grid", responses=REJECTIONS)
    async def post_contour(body: ContourRequest) -> dict:
        def work(deadline: Deadline) -> dict:
            fn = body.function
            landscape = functions.resolve(fn.name, fn.params, fn.domain)
            values = functions.grid(landscape, body.resolution)
            scale = functions.plot_scale(landscape, body.scale)
            return {"landscape": functions.describe(landscape), "scale": scale, **values}

        return await compute(work)

    @app.post("/api/run", summary="Run optimizers: trajectories and metrics", responses=REJECTIONS)
    async def post_run(body: RunRequest) -> dict:
        return await compute(lambda deadline: runs.payload(body, deadline))

    @app.post(
        "/api/run.csv",
        summary="Trajectories as CSV",
        responses={**REJECTIONS, 200: {"content": {"text/csv": {}}}},
        response_class=Response,
    )
    async def post_run_csv(body: RunRequest) -> Response:
        text = await compute(lambda deadline: runs.csv_text(body, deadline))
        return Response(
            text,
            media_type="text/csv; charset=utf-8",
            headers={"Content-Disposition": 'attachment; filename="descend-trajectories.csv"'},
        )

    @app.post("/api/theory", summary="Quadratic theory vs measurement", responses=REJECTIONS)
    async def post_theory(body: TheoryRequest) -> dict:
        return await compute(lambda deadline: quadratic.payload(body, deadline))

    @app.post(
        "/api/explain",
        summary="One optimizer's quantities at one step (the table of `descend explain`)",
        responses=REJECTIONS,
    )
    async def post_explain(body: explaining.ExplainRequest) -> dict:
        return await compute(lambda deadline: explaining.payload(body, deadline))

    @app.post("/api/basins", summary="Basins of attraction", responses=REJECTIONS)
    async def post_basins(body: BasinsRequest) -> dict:
        return await compute(lambda deadline: basins.payload(body, deadline))

    @app.post(
        "/api/gif",
        summary="The animation as a GIF",
        responses={**REJECTIONS, 200: {"content": {"image/gif": {}}}},
        response_class=Response,
    )
    async def post_gif(body: GifRequest) -> Response:
        data = await compute(lambda deadline: gif.render(body, deadline))
        return Response(
            data,
            media_type="image/gif",
            headers={"Content-Disposition": 'attachment; filename="descend-run.gif"'},
        )

    app.add_middleware(BodyLimit, max_bytes=limits.MAX_BODY_BYTES)
    if allowed_hosts is not None:
        app.add_middleware(TrustedHostMiddleware, allowed_hosts=allowed_hosts)
    return app
