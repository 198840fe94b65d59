"""Start the online endpoint: ``serve()`` for the ``mlops-assets serve`` command and
``python -m mlops_assets.serving``.

One uvicorn worker on uvloop and httptools, bound to 127.0.0.1 unless told otherwise, no access
log (the request log records every /predict). SIGINT or SIGTERM stop it gracefully: uvicorn stops
accepting, finishes the requests in flight, then the app's lifespan shutdown stops the refresher
and flushes the request log.
"""

from __future__ import annotations

import argparse
import logging
import sys
from typing import Any

from mlops_assets.serving.config import ServingConfig

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8000
GRACEFUL_SHUTDOWN_SECONDS = 15
SWITCH_INTERVAL_SECONDS = 0.0005


def serve(
    host: str = DEFAULT_HOST, port: int = DEFAULT_PORT, env: str | None = None, **options: Any
) -> None:
    """Serve the champion of ``env`` (default: MLOPS_ENV, else dev) until SIGINT/SIGTERM.

    ``options``: ``log_level`` (uvicorn's, default "info") and any field of
    :class:`~mlops_assets.serving.app.ServingConfig` (max_keys, max_body_bytes,
    model_poll_seconds, store_poll_seconds, retry_seconds, log_flush_seconds,
    log_flush_entries, alias). Raises TypeError naming an unknown option, SettingsError or
    SpecError for a bad environment or dataset.
    """
    import uvicorn

    from mlops_assets.dataset import load_spec
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
            http="httptools",
            lifespan="on",
            access_log=False,
            log_level=log_level,
            timeout_graceful_shutdown=GRACEFUL_SHUTDOWN_SECONDS,
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
