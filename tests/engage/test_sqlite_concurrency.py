"""The embedded SQLite database takes a web process and a worker writing at once."""

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

WRITER = """
import sys, django
django.setup()
from engage.models import Workspace
from people import services
from people.models import Person
workspace = Workspace.objects.get(name="Concurrent")
role = sys.argv[1]
for n in range(120):
    ref = services.Ref("id", f"{role}-{n}")
    services.identify_person(workspace, ref, {"plan": "pro", "n": n})
    services.track_event(workspace, ref, name="login")
    if role == "worker" and n % 20 == 19:
        services.delete_people(workspace, Person.objects.filter(customer_id__startswith="worker-"),
                               suppress=False)
print("ok")
"""

SETUP = """
import django
django.setup()
from django.core.management import call_command
call_command("migrate", verbosity=0)
from engage.services import create_workspace
create_workspace(name="Concurrent")
"""


def test_two_processes_write_at_once_without_lock_errors(tmp_path):
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "engage.settings", "DEBUG": "1",
           "ENGAGE_VAR_DIR": str(tmp_path),
           "DATABASE_URL": f"sqlite:///{tmp_path / 'concurrent.sqlite3'}"}
    subprocess.run([sys.executable, "-c", SETUP], cwd=ROOT, env=env, check=True)

    writers = [
        subprocess.Popen([sys.executable, "-c", WRITER, role], cwd=ROOT, env=env,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for role in ("web", "worker")
    ]
    results = [writer.communicate(timeout=180) for writer in writers]

    for writer, (out, err) in zip(writers, results, strict=True):
        assert writer.returncode == 0, err
        assert out.strip() == "ok"
    count = subprocess.run(
        [sys.executable, "-c", "import django; django.setup(); from people.models import Person, "
         "Event; print(Person.objects.count(), Event.objects.count())"],
        cwd=ROOT, env=env, capture_output=True, text=True, check=True,
    ).stdout.split()
    assert count == ["120", "120"]
