"""The documents stay true to the code they describe: every setting the code reads is in
docs/configuration.md, every deploy.sh setting in docs/deploying.md, every document README
points to exists, and README stays a front page."""
import re
from pathlib import Path

from meeting_links import logs
from meeting_links.support import deploy_settings

REPO = Path(__file__).parents[2]
LIB = REPO / "shared" / "meeting_links"


def read_variables() -> set[str]:
    config = (LIB / "config.py").read_text()
    found = set(re.findall(r'r\.(?:text|secret|flag|number|choice|url)\("([A-Z_]+)"', config))
    for path in list((LIB / "support").glob("*.py")) + list((LIB / "db").glob("*.py")):
        found |= set(re.findall(r'environ\.get\("([A-Z_]+)"', path.read_text()))
        found |= set(re.findall(r'env\.get\("([A-Z_]+)"', path.read_text()))
        found |= set(re.findall(r'port\("([A-Z_]+)"', path.read_text()))
    return found - {"SECRET_CHECK_MIDTRANS_SERVER_KEY", "XDG_CACHE_HOME"}


def test_every_variable_the_code_reads_is_documented():
    documented = (REPO / "docs" / "configuration.md").read_text()
    variables = read_variables()
    assert len(variables) >= 45
    assert sorted(v for v in variables if f"`{v}`" not in documented) == []


def test_every_deploy_setting_is_documented():
    documented = (REPO / "docs" / "deploying.md").read_text()
    assert sorted(s.name for s in deploy_settings.SETTINGS if f"`{s.name}`" not in documented) == []


def test_every_alert_is_documented_for_operators():
    documented = (REPO / "docs" / "operations.md").read_text()
    assert sorted(a for a in logs.ALERTS if a not in documented) == []


def test_readme_is_a_front_page_whose_links_exist():
    readme = (REPO / "README.md").read_text()
    assert len(readme.splitlines()) <= 160
    for doc in set(re.findall(r"docs/[a-z-]+\.(?:md|json)", readme)):
        assert (REPO / doc).exists(), doc
    for folder in ("db/", "midtrans/", "meet/", "web/", "support/"):
        assert folder in readme and (LIB / folder).is_dir()
