"""Sphinx configuration of the pw_spawner documentation.

Build with warnings as errors:  sphinx-build -W -b html docs docs/_build/html
The configuration reference is generated from the traitlets of PWSpawner at build time
(``_ext/traitlets_reference.py``), so it cannot drift from the code.
"""

import sys
from pathlib import Path

DOCS = Path(__file__).resolve().parent
sys.path.insert(0, str(DOCS / "_ext"))

project = "pw_spawner"
author = "the pw_spawner authors"
copyright = "the pw_spawner authors"

try:
    from pw_spawner import __version__ as release
except ImportError:  # the reference extension will fail loudly; keep the error there
    release = ""
version = release

extensions = ["myst_parser", "traitlets_reference", "config_reference", "scheduler_table"]

source_suffix = {".md": "markdown"}
root_doc = "index"
# _generated holds the Markdown the reference extension writes; it is pulled in with
# {include}, never read as a page of its own.
exclude_patterns = ["_build", "_generated", "Thumbs.db", ".DS_Store"]

myst_enable_extensions = ["colon_fence", "deflist"]
# Option values and help texts hold straight quotes and "--" that must stay as typed.
smartquotes = False
myst_heading_anchors = 3

html_theme = "alabaster"
html_title = "pw_spawner"
html_theme_options = {
    "description": "A JupyterHub spawner for HPC",
    "fixed_sidebar": True,
}

# The screenshots are made by the browser test (tests with the `browser` marker). Until they
# exist, the pages leave them out instead of failing the -W build on a missing image.
SCREENSHOTS = [DOCS / "_static" / "screenshots" / name for name in ("spawn-form.png", "jupyterlab.png")]
screenshots_present = all(path.is_file() for path in SCREENSHOTS)
if not screenshots_present:
    tags.add("no_screenshots")  # noqa: F821 - `tags` is provided by Sphinx


def _drop_screenshots_if_missing(app, doctree):
    """Remove ``only:: not no_screenshots`` blocks before Sphinx collects their images.

    ``only`` is normally resolved when pages are written, after the image collector has already
    warned about every image it saw (an error under -W); resolving these few blocks at read time
    keeps a missing screenshot from failing the build.
    """
    from sphinx import addnodes

    for node in list(doctree.findall(addnodes.only)):
        if "no_screenshots" in node["expr"] and not app.tags.eval_condition(node["expr"]):
            node.parent.remove(node)


def setup(app):
    # A config value with rebuild="env": when the screenshots appear or go, every page is read
    # again (tags alone do not make Sphinx re-read an unchanged page).
    app.add_config_value("screenshots_present", False, "env", types=(bool,))
    # Before the image collector (priority 500) sees the doctree.
    app.connect("doctree-read", _drop_screenshots_if_missing, priority=400)
