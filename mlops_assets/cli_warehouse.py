"""``mlops-assets sql`` (a read-only query against an environment's warehouse, printed as CSV or
JSON), ``mlops-assets maintain`` (merge small files, expire old snapshots) and ``mlops-assets
reproduce`` (predict a past batch prediction again from its recorded snapshot and model)."""

from __future__ import annotations

import argparse
import sys

# Statement types a read-only query may be.
READ_STATEMENTS = ("SELECT", "EXPLAIN")


def cmd_sql(args: argparse.Namespace) -> int:
    import duckdb

    from mlops_assets.environments import load_settings
    from mlops_assets.storage.warehouse import Warehouse

    settings = load_settings()
    try:
        statements = duckdb.extract_statements(args.query)
    except duckdb.Error as exc:
        print(f"error: the query does not parse: {exc}", file=sys.stderr)
        return 2
    kinds = [statement.type.name for statement in statements]
    if len(kinds) != 1 or kinds[0] not in READ_STATEMENTS:
        print(
            f"error: `mlops-assets sql` runs one read query (SELECT ...), not {' + '.join(kinds)}; "
            "tables are mlops.<table>, e.g. SELECT * FROM mlops.predictions LIMIT 5",
            file=sys.stderr,
        )
        return 2
    wh = Warehouse.for_settings(settings)
    if not wh.exists():
        print(
            f"error: the {settings.env} warehouse ({wh.describe()}) does not exist yet; "
            "run `mlops-assets demo` (or materialize assets) first",
            file=sys.stderr,
        )
        return 2
    try:
        frame = wh.query(args.query, read_only=True)
    except duckdb.Error as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    if args.format == "json":
        sys.stdout.write((frame.write_json() if frame.width else "[]") + "\n")
    else:
        sys.stdout.write(frame.write_csv())
    return 0


def cmd_maintain(args: argparse.Namespace) -> int:
    from mlops_assets.environments import load_settings
    from mlops_assets.storage.maintenance import maintain
    from mlops_assets.storage.warehouse import Warehouse

    settings = load_settings()
    wh = Warehouse.for_settings(settings)
    if not wh.exists():
        print(f"error: the {settings.env} warehouse ({wh.describe()}) does not exist yet")
        return 2
    report = maintain(wh, settings, retention_days=args.retention_days, dry_run=args.dry_run)
    print(report.describe())
    return 0


def cmd_reproduce(args: argparse.Namespace) -> int:
    import json
    from datetime import date

    import dagster as dg

    from mlops_assets.defs.common import project
    from mlops_assets.reproduce import ReproduceError, reproduce_batch

    p = project()
    try:
        day = date.fromisoformat(args.date)
    except ValueError:
        print(f"error: --date {args.date!r} is not a date (YYYY-MM-DD)", file=sys.stderr)
        return 2
    with dg.DagsterInstance.from_config(str(p.settings.dagster_home)) as instance:
        try:
            answer = reproduce_batch(p.settings, p.spec, instance, day, args.event_key)
        except ReproduceError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 1
    print(json.dumps(answer, indent=2, default=str))
    return 0 if answer["match"] else 1


def add_parsers(sub: argparse._SubParsersAction) -> None:
    reproduce = sub.add_parser(
        "reproduce",
        help="predict a past batch prediction again from its recorded features snapshot and "
        "model version; exit 0 only on a match",
    )
    reproduce.add_argument("--date", required=True, help="the prediction's day, YYYY-MM-DD")
    reproduce.add_argument("--event-key", required=True, help="the event's key")
    reproduce.add_argument("--env", choices=("dev", "staging", "prod"), help="environment")
    reproduce.set_defaults(func=cmd_reproduce, env_flag=True)
    sql = sub.add_parser("sql", help="run a read-only SQL query against an environment's warehouse")
    sql.add_argument("query", help='e.g. "SELECT count(*) FROM mlops.predictions"')
    sql.add_argument("--env", choices=("dev", "staging", "prod"), help="environment (MLOPS_ENV)")
    sql.add_argument("--format", choices=("csv", "json"), default="csv", help="default csv")
    sql.set_defaults(func=cmd_sql, env_flag=True)
    maintain = sub.add_parser(
        "maintain",
        help="merge the warehouse's small files and expire snapshots past the retention",
    )
    maintain.add_argument("--env", choices=("dev", "staging", "prod"), help="environment")
    maintain.add_argument(
        "--retention-days",
        type=int,
        default=None,
        help="keep snapshots this many days (default: the environment's, 30 in prod)",
    )
    maintain.add_argument("--dry-run", action="store_true", help="say what would be expired")
    maintain.set_defaults(func=cmd_maintain, env_flag=True)
