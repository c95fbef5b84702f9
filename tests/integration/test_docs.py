"""The manual pages are part of the product: they must pass mandoc's
linter at the warning level (style notes aside)."""
import shutil
import subprocess

import pytest

from conftest import REPO

PAGES = ["snowd.8", "snowd.ini.5", "snowd-plugin.3"]


@pytest.mark.parametrize("page", PAGES)
def test_man_page_is_lint_clean(page):
    mandoc = shutil.which("mandoc")
    assert mandoc, "mandoc is needed (scripts/deps.sh test installs it)"
    r = subprocess.run([mandoc, "-T", "lint", "-W", "warning",
                        str(REPO / "man" / page)],
                       capture_output=True, text=True)
    assert r.returncode == 0 and not r.stdout and not r.stderr, \
        r.stdout + r.stderr
