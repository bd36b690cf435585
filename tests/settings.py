"""Settings for the test suite: engage's own, with a fixed key and task queue inline."""

import os

os.environ.setdefault("SECRET_KEY", "engage-tests-only-not-a-secret")

from engage.settings import *  # noqa: E402,F403
from engage.settings import Q_CLUSTER  # noqa: E402

PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
# Tasks run in the test's own process when they are enqueued (after commit).
Q_CLUSTER = {**Q_CLUSTER, "sync": True}
ALLOWED_HOSTS = ["*"]
# Pages render without collectstatic's manifest (tests/engage/test_static_files.py runs a
# production server with it).
STORAGES = {**STORAGES, "staticfiles": {  # noqa: F405
    "BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"}}
WHITENOISE_AUTOREFRESH = True  # files are looked up when asked for, not read at start

# Lets several test runs share one PostgreSQL server (TEST_DB_NAME=test_engage_mine).
if os.environ.get("TEST_DB_NAME"):
    DATABASES["default"]["TEST"] = {"NAME": os.environ["TEST_DB_NAME"]}  # noqa: F405

# A kind of background job that only the tests know (tests/engage/test_jobs.py).
INSTALLED_APPS = [*INSTALLED_APPS, "tests.chores"]  # noqa: F405
