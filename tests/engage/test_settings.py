"""Settings read from the environment, checked in a fresh interpreter each time."""

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

PRINT_SETTINGS = """
import json, django
from django.conf import settings
django.setup()
db = settings.DATABASES["default"]
print(json.dumps({
    "engine": db["ENGINE"], "name": str(db["NAME"]), "options": db.get("OPTIONS", {}),
    "secret": settings.SECRET_KEY, "debug": settings.DEBUG, "hosts": settings.ALLOWED_HOSTS,
    "q": settings.Q_CLUSTER, "email": settings.EMAIL_BACKEND,
    "cache": settings.CACHES["default"]["BACKEND"],
}))
"""


def load_settings(tmp_path, **env):
    clean = {k: v for k, v in os.environ.items()
             if k not in {"DATABASE_URL", "SECRET_KEY", "DEBUG", "REDIS_URL", "ALLOWED_HOSTS",
                          "EMAIL_HOST"}}
    clean.update({"DJANGO_SETTINGS_MODULE": "engage.settings", "ENGAGE_VAR_DIR": str(tmp_path),
                  **env})
    done = subprocess.run([sys.executable, "-c", PRINT_SETTINGS], cwd=ROOT, env=clean,
                          capture_output=True, text=True)
    return done


def test_embedded_default_is_sqlite_under_var_with_a_kept_secret(tmp_path):
    first = json.loads(load_settings(tmp_path, DEBUG="1").stdout)
    second = json.loads(load_settings(tmp_path, DEBUG="1").stdout)

    assert first["engine"] == "django.db.backends.sqlite3"
    assert first["name"] == str(tmp_path / "engage.sqlite3")
    assert "journal_mode=WAL" in first["options"]["init_command"]
    assert "busy_timeout" in first["options"]["init_command"]
    assert first["options"]["transaction_mode"] == "IMMEDIATE"
    assert first["secret"] == second["secret"] and len(first["secret"]) > 40
    assert (tmp_path / "secret_key").stat().st_mode & 0o077 == 0
    assert first["q"]["orm"] == "default" and "redis" not in first["q"]
    assert first["email"].endswith("console.EmailBackend")
    # Throttles must count across processes: never a per-process memory cache.
    assert first["cache"] == "django.core.cache.backends.db.DatabaseCache"


def test_secret_key_is_required_when_debug_is_off(tmp_path):
    done = load_settings(tmp_path)
    assert done.returncode != 0
    assert "SECRET_KEY must be set when DEBUG is off" in done.stderr
    assert not (tmp_path / "secret_key").exists()


def test_environment_overrides(tmp_path):
    loaded = json.loads(load_settings(
        tmp_path, SECRET_KEY="s3cret", DATABASE_URL="postgres://u@db.internal:5432/engage",
        REDIS_URL="redis://127.0.0.1:6379/2", ALLOWED_HOSTS="engage.example.com, x.example.com",
        EMAIL_HOST="smtp.example.com",
    ).stdout)
    assert loaded["engine"] == "django.db.backends.postgresql"
    assert loaded["name"] == "engage"
    assert loaded["secret"] == "s3cret" and loaded["debug"] is False
    assert loaded["hosts"] == ["engage.example.com", "x.example.com"]
    assert loaded["q"]["redis"] == "redis://127.0.0.1:6379/2" and "orm" not in loaded["q"]
    assert loaded["email"].endswith("smtp.EmailBackend")
    assert loaded["cache"] == "django.core.cache.backends.redis.RedisCache"
