"""The README's cross-references: the sections that configs and the README itself name exist,
and its relative links point to files of the project."""

import re
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parent.parent  # plain files: no need to import mer
CONFIG_DIR = PROJECT_ROOT / "config"
README = (PROJECT_ROOT / "README.md").read_text()
HEADINGS = set(re.findall(r"^#+ (.+?)\s*$", README, flags=re.MULTILINE))


def test_sections_named_by_configs_exist():
    named = {
        (path.relative_to(CONFIG_DIR).as_posix(), section)
        for path in sorted(CONFIG_DIR.rglob("*.yaml"))
        for section in re.findall(r'README "([^"]+)"', path.read_text())
    }
    assert ("demo.yaml", "What the demo prints") in named  # the pattern finds what is there
    assert {item for item in named if item[1] not in HEADINGS} == set()


def test_sections_named_by_the_readme_exist():
    named = set(re.findall(r'\b(?:see|in|under|from|and) "([A-Z][^"]*)"', README))
    assert "Scale out" in named
    assert named - HEADINGS == set()


def test_relative_links_point_to_files():
    targets = set(re.findall(r"\]\(([^)#:\s]+)\)", README))
    assert "img/training_curves.png" in targets
    assert {target for target in targets if not (PROJECT_ROOT / target).exists()} == set()
