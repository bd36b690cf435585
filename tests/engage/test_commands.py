"""The management commands a newcomer and an integrator run: seed_demo, create_workspace."""

import json
import re
from io import StringIO

import pytest
from django.core.management import CommandError, call_command

from engage.keys import key_matches
from engage.models import Workspace
from segments.models import Segment


def run(*args, **options) -> str:
    out = StringIO()
    call_command(*args, stdout=out, **options)
    return out.getvalue()


def shown_keys(output: str) -> dict:
    return {
        "site_id": re.search(r"Site ID\s+(\S+)", output, re.I).group(1),
        "track": re.search(r"Track API key\s+(\S+)", output).group(1),
        "app": re.search(r"App API key\s+(\S+)", output).group(1),
    }


@pytest.fixture
def var_dir(settings, tmp_path):
    settings.VAR_DIR = tmp_path
    return tmp_path


@pytest.mark.django_db
def test_the_demo_shows_working_keys_on_every_start(var_dir):
    first = run("seed_demo", people=12)
    second = run("seed_demo", people=12)

    workspace = Workspace.objects.get(name="Demo")
    assert Workspace.objects.filter(name="Demo").count() == 1
    for output in (first, second):
        keys = shown_keys(output)
        assert keys["site_id"] == workspace.site_id
        assert key_matches(keys["track"], workspace.track_key_hash)
        assert key_matches(keys["app"], workspace.app_key_hash)
    assert (var_dir / "demo-credentials.json").stat().st_mode & 0o077 == 0  # owner only


@pytest.mark.django_db
def test_the_demo_says_when_its_keys_were_regenerated(var_dir):
    from engage.services import regenerate_api_key

    run("seed_demo", people=3)
    regenerate_api_key(Workspace.objects.get(name="Demo"), kind="track")

    output = run("seed_demo", people=3)

    assert "regenerated" in output
    kept = json.loads((var_dir / "demo-credentials.json").read_text())
    assert kept["track_api_key"] not in output


@pytest.mark.django_db
def test_the_demo_has_a_data_driven_and_a_manual_segment(var_dir,
                                                         django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):  # the segment is built after commit
        run("seed_demo", people=20)

    segments = {segment.name: segment for segment in Segment.objects.all()}
    assert not segments["Paying customers"].is_manual
    assert segments["VIP"].is_manual
    assert segments["VIP"].memberships.count() == 5
    paying = [person for person in Workspace.objects.get(name="Demo").people.all()
              if person.attributes.get("plan") != "free"]
    assert segments["Paying customers"].memberships.count() == len(paying) > 0


@pytest.mark.django_db
def test_create_workspace_prints_its_keys_once(django_user_model):
    django_user_model.objects.create_user("ops", password="x")

    output = run("create_workspace", "Shop", "--identifier-mode", "id", "--owner", "ops",
                 "--timezone", "Europe/Berlin")

    workspace = Workspace.objects.get(name="Shop")
    assert workspace.identifier_mode == Workspace.IdentifierMode.ID
    assert workspace.timezone == "Europe/Berlin"
    assert workspace.memberships.get().user.username == "ops"
    keys = shown_keys(output)
    assert keys["site_id"] == workspace.site_id
    assert key_matches(keys["track"], workspace.track_key_hash)
    assert key_matches(keys["app"], workspace.app_key_hash)


@pytest.mark.django_db
@pytest.mark.parametrize("args, message", [
    (["  "], "needs a name"),
    (["Shop", "--timezone", "Mars/Olympus"], "not a time zone"),
    (["Shop", "--owner", "nobody"], "No user"),
])
def test_create_workspace_refuses_bad_input(args, message):
    with pytest.raises(CommandError, match=message):
        run("create_workspace", *args)
    assert not Workspace.objects.exists()
