"""`descend serve`: the web lab on http://127.0.0.1:8000 (FastAPI + uvicorn, base install)."""

from __future__ import annotations

import ipaddress

LOOPBACK_NAMES = ["127.0.0.1", "localhost", "::1", "[::1]"]


def register(sub) -> None:
    p = sub.add_parser(
        "serve",
        help="serve the web lab (contours, trajectories, metrics) in a browser",
        description="Serve the web lab: pick a function, click a start, tick optimizers and "
        "watch them run (descend's optimizers, on the server). Binds to 127.0.0.1 unless "
        "--host says otherwise.",
    )
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default: 127.0.0.1)")
    p.add_argument("--port", type=int, default=8000, help="port (default: 8000)")
    p.add_argument(
        "--time-limit",
        type=float,
        default=None,
        help="seconds one request may compute (default: descend.web.limits.TIME_LIMIT_S)",
    )
    p.set_defaults(func=run)


def allowed_hosts(host: str) -> list[str] | None:
    """Host headers to accept: the loopback names when bound to a loopback address (so a web
    page elsewhere cannot reach the server by DNS rebinding), else any."""
    try:
        loopback = ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = host == "localhost"
    return LOOPBACK_NAMES if loopback else None


def run(args) -> int:
    from descend.cli import CommandError

    if not 0 < args.port < 65536:
        raise CommandError(f"--port must be in 1..65535, got {args.port}")
    if args.time_limit is not None and not 0 < args.time_limit <= 600:
        raise CommandError(f"--time-limit must be in (0, 600] seconds, got {args.time_limit}")
    try:
        import uvicorn

        from descend.web import create_app, limits
    except ImportError as exc:
        raise CommandError(
            f"the web lab needs {exc.name}, part of descend's install: reinstall descend "
            "(make demo, or pip install -e .)"
        ) from None
    limit = limits.TIME_LIMIT_S if args.time_limit is None else args.time_limit
    sock = listen(args.host, args.port)
    app = create_app(time_limit=limit, allowed_hosts=allowed_hosts(args.host))
    shown = f"[{args.host}]" if ":" in args.host else args.host
    print(f"descend web lab on http://{shown}:{args.port}/  (Ctrl-C stops it)", flush=True)
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning"))
    try:
        server.run(sockets=[sock])
    finally:
        sock.close()
    return 0


def listen(host: str, port: int):
    """A listening socket on ``host:port``, opened before the banner so that a busy port or a
    bad address is one line of error, not a banner followed by a bind traceback."""
    import socket

    from descend.cli import CommandError

    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as exc:
        raise CommandError(f"--host: cannot resolve {host!r} ({exc.strerror})") from None
    family, kind, proto, _, address = infos[0]
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
        sock.listen(128)
    except OSError as exc:
        sock.close()
        raise CommandError(
            f"--port: cannot listen on {host}:{port} ({exc.strerror}); "
            "is another server using it? pick another port with --port"
        ) from None
    sock.set_inheritable(True)
    return sock
