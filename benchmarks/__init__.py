"""The benchmark suite: ``mlops-assets bench --out FILE [--quick] [--only GROUP]`` (or
``python -m benchmarks --out FILE ...`` from the repository root), one module per section.

One run measures six things, each side by side with its baseline, in its own temporary data
folder (removed at the end), on a small deterministic setup (fixed seed, fixed clock
:data:`AS_OF`), and writes FILE (JSON) plus a markdown table next to it (FILE with ``.md``):

1. **Endpoint**: the champion served by ``python -m mlops_assets.serving`` against the same
   registered version served by ``mlflow models serve --env-manager local``, both one worker on
   127.0.0.1, loaded by a separate load-generator process (:mod:`benchmarks.loadgen`: raw asyncio
   sockets on uvloop, keep-alive, pre-encoded requests). Latency at a fixed rate (open loop)
   and throughput at saturation (closed loop, a few connections). The generator's own ceiling
   is measured first against a null HTTP server, so a reader can see it was not the bottleneck.
2. **Batch inference**: rows/s of ``ml.inference.predict_days`` (encoding included) against a
   bare ``Booster.predict`` on the already encoded matrix, same rows, same threads.
3. **Orchestration overhead**: one daily cycle through Dagster in process (the runner's runs:
   sources and features, online store, predictions, drift report, serving log and business
   metrics) against the same pure functions called in sequence on in-memory frames.
4. **Backfill**: the daily graph over many days through the runner (sources and feature
   refresh, then training, scoring and metrics), wall time and peak RSS per stage, and the
   per-partition overhead of the daily refresh against the same functions called directly.
5. **Definitions load**: ``import mlops_assets.definitions`` in a fresh interpreter against an
   empty Dagster project, and which heavy modules that import pulls in.
6. **Scale curve**: one day at 10k, 100k and 1M airings, time and peak RSS of each stage, each
   size in its own process.

Every measurement runs in a child process (``python -m benchmarks WORKER ARGS.json``)
so that its memory and imports are its own. Servers bind 127.0.0.1 only, run in their own
process group and are stopped through that group; every wait is bounded. Targets are reported,
never asserted: the benchmark does not fail on speed.
"""
