"""Sphinx configuration of the torchpme documentation.

Build with ``python -m sphinx -W -b html docs docs/_build/html`` (or ``make -C
docs html``); add ``-D plot_gallery=0`` to render the gallery without running the
examples (CI does this: ``tests/test_examples.py`` runs every example already).
"""

import importlib.util
import os
import re
import sys

from sphinx.pycode import ModuleAnalyzer

import torchpme

HERE = os.path.dirname(os.path.abspath(__file__))
# the gallery's reset hook (``_gallery.py``) is imported by name
sys.path.insert(0, HERE)

project = "torchpme"
author = "the torchpme developers"
copyright = "the torchpme developers"
release = torchpme.__version__
version = ".".join(release.split(".")[:2])

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.napoleon",
    "sphinx.ext.mathjax",
    "sphinx.ext.viewcode",
    "myst_parser",
    "sphinx_gallery.gen_gallery",
]

source_suffix = {".rst": "restructuredtext", ".md": "markdown"}
root_doc = "index"
exclude_patterns = ["_build", "Thumbs.db", ".DS_Store"]

# -- autodoc / napoleon --------------------------------------------------------------

# the library's docstrings are Google style (Args:, Returns:, Raises:, Example:)
napoleon_google_docstring = True
napoleon_numpy_docstring = False
napoleon_use_rtype = False
napoleon_use_ivar = True

# no "members" here: each page names its objects with one directive apiece (the
# modules' own directives only show their docstrings), and classes ask for their
# members themselves
autodoc_default_options = {
    "member-order": "bysource",
}
# signatures keep the annotations; the types are not repeated in the text
autodoc_typehints = "signature"
autoclass_content = "class"

# torchpme.metatensor needs metatensor-torch and metatomic-torch (an optional
# extra). Where they are missing the bindings are documented from mocked imports.
autodoc_mock_imports = [
    name
    for name, probe in [
        ("metatensor", "metatensor.torch"),
        ("metatomic", "metatomic.torch"),
    ]
    if importlib.util.find_spec(name) is None or importlib.util.find_spec(probe) is None
]

# -- MyST (the Markdown pages: architecture.md, compatibility.md) ----------------------

myst_heading_anchors = 3

# -- sphinx-gallery ---------------------------------------------------------------------

# Every example runs while the documentation builds, except the ones listed here.
# 08_distributed.py starts its ranks with torch.multiprocessing (spawn), which
# re-imports the script in fresh interpreters: that cannot happen from inside
# sphinx-gallery, which executes the code in the Sphinx process. It keeps its page
# in the gallery (text and code, no output); tests/test_examples.py runs it as a
# script.
NOT_EXECUTED = ["08_distributed.py"]
_skipped = "|".join(re.escape(name) for name in NOT_EXECUTED)

sphinx_gallery_conf = {
    "examples_dirs": "../examples",
    "gallery_dirs": "auto_examples",
    # matched against the path of each example: the file name must not be one of
    # NOT_EXECUTED
    "filename_pattern": rf"[\\/](?!(?:{_skipped})$)[^\\/]+\.py$",
    "within_subsection_order": "FileNameSortKey",
    # before each example: matplotlib's state and torch's default dtype, so that
    # an example runs as it does on its own
    "reset_modules": ("matplotlib", "_gallery.reset_torch"),
    "download_all_examples": False,
    "remove_config_comments": True,
    "min_reported_time": 1,
    "show_memory": False,
}

# The examples' docstrings open with a one-line summary, not a reStructuredText
# title, so their pages would have none (no link text in the gallery's toctree).
# The summary line becomes the page title as the generated page is read; the
# examples themselves stay plain scripts.
_EXAMPLE_START = re.compile(r"(\.\. _sphx_glr_auto_examples_\S+:\n\n)([^\n]+)\n(?!\S)")


def _title_examples(app, docname, source):
    if not docname.startswith("auto_examples/"):
        return
    match = _EXAMPLE_START.search(source[0])
    if match is None:
        return
    title = match.group(2).rstrip()
    if title.endswith(".") and not title.endswith(".."):
        title = title[:-1]
    heading = f"{match.group(1)}{title}\n{'=' * (len(title) + 2)}\n"
    source[0] = source[0][: match.start()] + heading + source[0][match.end() :]


def _constant_doc(app, what, name, obj, options, lines):
    """A constant's ``#:`` comment, also where another module re-exports it.

    autodoc finds the comment only in the module named in the directive and
    otherwise shows the docstring of the constant's type (``float``, ``dict``).
    Here the comment is looked up where the constant is defined instead.
    """
    if what != "data":
        return
    module_name, _, attribute = name.rpartition(".")
    module = sys.modules.get(module_name)
    if module is None:
        return
    # the module first, then every other module of the library that holds the
    # same object (the one that defines it among them)
    top = module_name.split(".")[0] + "."
    candidates = [module_name] + [
        other
        for other in sorted(sys.modules)
        if other.startswith(top) and other != module_name
    ]
    for candidate in candidates:
        if getattr(sys.modules[candidate], attribute, None) is not obj:
            continue
        try:
            comments = ModuleAnalyzer.for_module(candidate).find_attr_docs()
        except Exception:  # a module without source
            continue
        if ("", attribute) in comments:
            lines[:] = list(comments[("", attribute)])
            return
    lines[:] = []


def _script_class_names():
    """Readable names of TorchScript classes, by their ``repr``.

    metatensor's and metatomic's classes (``System``, ``TensorBlock``, ...) are
    ``torch.ScriptClass`` objects whose ``repr`` is an address: in the
    signatures of :mod:`torchpme.metatensor` they are replaced by their names.
    """
    names = {}
    for module_name in ("metatensor.torch", "metatomic.torch"):
        module = sys.modules.get(module_name)
        for attribute in dir(module) if module is not None else []:
            value = getattr(module, attribute)
            if type(value).__name__ == "ScriptClass":
                names[repr(value)] = f"{module_name}.{attribute}"
    return names


def _readable_signature(app, what, name, obj, options, signature, annotation):
    if signature is None or "ScriptClass" not in (signature + (annotation or "")):
        return None
    names = _script_class_names()
    for text, readable in names.items():
        signature = signature.replace(text, readable)
        annotation = annotation.replace(text, readable) if annotation else annotation
    return signature, annotation


def setup(app):
    app.connect("source-read", _title_examples)
    app.connect("autodoc-process-docstring", _constant_doc)
    app.connect("autodoc-process-signature", _readable_signature)


# -- HTML -----------------------------------------------------------------------------

html_theme = "alabaster"
html_title = f"torchpme {release}"
html_theme_options = {
    "description": "Differentiable Ewald, PME and P3M in PyTorch",
    "fixed_sidebar": True,
    "page_width": "1100px",
    "sidebar_width": "250px",
}
html_static_path = []
