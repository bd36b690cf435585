"""What the benchmarks share: their own databases on the local PostgreSQL, and Django."""

import os

SERVER_URL = "postgres://postgres@127.0.0.1:5432"
# The only databases a benchmark may drop: never anything else, least of all "test".
BENCH_DATABASES = {"engage_bench", "engage_segments_bench", "engage_ingest_bench",
                   "engage_campaigns_bench", "engage_webhooks_bench", "engage_email_bench",
                   "engage_editor_bench"}


def recreate_database(name: str) -> None:
    """Drop and create the benchmark database ``name``."""
    import psycopg

    assert name in BENCH_DATABASES, name
    with psycopg.connect(f"{SERVER_URL}/postgres", autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}"')


def setup_django(database_url: str) -> None:
    """Point Django at a bench database (whatever the environment says) and set it up."""
    os.environ["DATABASE_URL"] = database_url
    os.environ.setdefault("SECRET_KEY", "engage-bench-only-not-a-secret")
    os.environ["DEBUG"] = "0"  # DEBUG would keep every query in memory
    os.environ["DJANGO_SETTINGS_MODULE"] = "engage.settings"
    os.environ.setdefault("LOG_LEVEL", "WARNING")
    import django

    django.setup()
