"""Start the online endpoint: ``serve()`` for the ``mlops-assets serve`` command and
``python -m mlops_assets.serving``.

One uvicorn worker on uvloop and httptools, bound to 127.0.0.1 unless told otherwise, no access
log (the request log records every /predict). SIGINT or SIGTERM stop it gracefully: uvicorn stops
accepting, finishes the requests in flight, then the app's lifespan shutdown stops the refresher
and closes the request log (every answered request is in it already).

Slow or idle clients do not hold a connection: a connection with no request for
``keep_alive_seconds`` is closed, the one after its last answer (uvicorn's keep-alive timeout)
and a new one that never sends a request alike; a request whose headers are not complete
``read_timeout_seconds`` after it began gets 408 and is closed, and so does one whose /predict
body has not arrived by then (the app's read timeout, :mod:`mlops_assets.serving.app`).
"""

from __future__ import annotations

import argparse
import logging
import sys
from typing import Any

from mlops_assets.environments import STAGE_ALIASES
from mlops_assets.serving.config import ServingConfig

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8000
GRACEFUL_SHUTDOWN_SECONDS = 15
SWITCH_INTERVAL_SECONDS = 0.0005


def http_protocol(read_timeout: float) -> type:
    """uvicorn's httptools protocol, also closing the connections its own timers leave open:
    one that never sends a request (uvicorn arms its keep-alive timer only after an answer) and
    one whose request headers trickle in (408 after ``read_timeout`` seconds)."""
    from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

    message = (
        b'{"error":"request_timeout","detail":"the request headers did not arrive within '
        + f"{read_timeout:g} s (read_timeout_seconds); send the whole request at once".encode()
        + b'"}'
    )
    answer = (
        b"HTTP/1.1 408 Request Timeout\r\ncontent-type: application/json\r\n"
        + b"content-length: %d\r\nconnection: close\r\n\r\n" % len(message)
        + message
    )

    class TimedHttpToolsProtocol(HttpToolsProtocol):
        _headers_timer: Any = None

        def connection_made(self, transport: Any) -> None:
            super().connection_made(transport)
            self.timeout_keep_alive_task = self.loop.call_later(
                self.timeout_keep_alive, self.timeout_keep_alive_handler
            )

        def on_message_begin(self) -> None:
            super().on_message_begin()
            self._headers_timer = self.loop.call_later(read_timeout, self._headers_too_slow)

        def on_headers_complete(self) -> None:
            if self._headers_timer is not None:
                self._headers_timer.cancel()
                self._headers_timer = None
            super().on_headers_complete()

        def connection_lost(self, exc: Exception | None) -> None:
            if self._headers_timer is not None:
                self._headers_timer.cancel()
                self._headers_timer = None
            super().connection_lost(exc)

        def _headers_too_slow(self) -> None:
            self._headers_timer = None
            if not self.transport.is_closing():
                self.transport.write(answer)
                self.transport.close()

    return TimedHttpToolsProtocol


def serve(
    host: str = DEFAULT_HOST, port: int = DEFAULT_PORT, env: str | None = None, **options: Any
) -> None:
    """Serve the champion of ``env`` (default: MLOPS_ENV, else dev) until SIGINT/SIGTERM.

    ``options``: ``log_level`` (uvicorn's, default "info") and any field of
    :class:`~mlops_assets.serving.config.ServingConfig` (max_keys, max_body_bytes,
    model_poll_seconds, store_poll_seconds, retry_seconds, keep_alive_seconds,
    read_timeout_seconds, max_log_entry_bytes, alias). Raises TypeError naming an unknown
    option, SettingsError or SpecError for a bad environment or dataset.
    """
    import uvicorn

    from mlops_assets.dataset_load import load_spec
    from mlops_assets.environments import load_settings
    from mlops_assets.serving.app import create_app

    log_level = options.pop("log_level", "info")
    unknown = sorted(set(options) - set(ServingConfig.names()))
    if unknown:
        raise TypeError(
            f"unknown serving option(s) {unknown}; known: log_level, "
            + ", ".join(ServingConfig.names())
        )
    config = ServingConfig(**{k: v for k, v in options.items() if v is not None})
    settings = load_settings(env)
    spec = load_spec(settings.dataset_path, data_dir=settings.data_dir)
    if not logging.getLogger().handlers:
        logging.basicConfig(
            level=getattr(logging, str(log_level).upper(), logging.INFO),
            format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        )
    app = create_app(settings, spec, config)
    # The refresher and the log flusher run Python code beside the event loop; a request that
    # arrives meanwhile waits for the interpreter lock up to one switch interval (5 ms by
    # default). A shorter interval bounds that wait.
    sys.setswitchinterval(SWITCH_INTERVAL_SECONDS)
    try:
        uvicorn.run(
            app,
            host=host,
            port=port,
            loop="uvloop",
            http=http_protocol(config.read_timeout_seconds),
            lifespan="on",
            access_log=False,
            log_level=log_level,
            timeout_graceful_shutdown=GRACEFUL_SHUTDOWN_SECONDS,
            timeout_keep_alive=config.keep_alive_seconds,  # type: ignore[arg-type]
        )
    except KeyboardInterrupt:
        # uvicorn re-raises the SIGINT it handled once the graceful shutdown is complete.
        pass


def add_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """The serve options, for the CLI's subcommand and ``python -m mlops_assets.serving``."""
    parser.add_argument("--host", default=DEFAULT_HOST, help=f"bind address ({DEFAULT_HOST})")
    parser.add_argument("--port", type=int, default=DEFAULT_PORT, help=f"port ({DEFAULT_PORT})")
    parser.add_argument("--env", choices=("dev", "staging", "prod"), help="environment")
    defaults = ServingConfig()
    for name in ServingConfig.names():
        if name == "alias":
            continue
        default = getattr(defaults, name)
        parser.add_argument(
            "--" + name.replace("_", "-"),
            type=type(default),
            default=None,
            help=f"(default {default})",
        )
    parser.add_argument(
        "--alias",
        choices=("champion", *STAGE_ALIASES.values()),
        default=None,
        help="serve the model this registry alias points at (default champion; any stage "
        "alias the environment's registry holds: larva, chrysalis, butterfly)",
    )
    parser.add_argument(
        "--log-level", default="info", choices=("critical", "error", "warning", "info", "debug")
    )
    return parser


def serve_from_args(args: argparse.Namespace) -> None:
    """``serve()`` with the options parsed by a parser given :func:`add_arguments`."""
    options = {name: getattr(args, name, None) for name in ServingConfig.names()}
    serve(
        host=args.host,
        port=args.port,
        env=args.env,
        log_level=args.log_level,
        **{k: v for k, v in options.items() if v is not None},
    )
