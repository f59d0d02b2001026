"""The documentation site (docs/): the API reference names every public object,
the getting-started code runs, and the site builds without a warning."""

import functools
import importlib
import inspect
import pathlib
import pkgutil
import re
import subprocess
import sys
import time

import pytest

import torchpme

ROOT = pathlib.Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"

# the public modules: each has a page (or a section) in docs/api/ with an entry for
# every name of its __all__
PUBLIC_MODULES = [
    "torchpme",
    "torchpme.calculators",
    "torchpme.potentials",
    "torchpme.lib",
    "torchpme.tuning",
    "torchpme.tuning.tuner",
    "torchpme.tuning.ewald",
    "torchpme.tuning.pme",
    "torchpme.tuning.p3m",
    "torchpme.tuning.estimate",
    "torchpme.tuning.multipoles",
    "torchpme.neighbors",
    "torchpme.probes",
    "torchpme.gaussian",
    "torchpme.qeq",
    "torchpme.multipoles",
    "torchpme.polarisation",
    "torchpme.prefactors",
    "torchpme.distributed",
    "torchpme.ase",
    "torchpme.torchsim",
    "torchpme.cli",
    "torchpme.testing",
    "torchpme.metatensor",
]

# modules with an __all__ that are neither documented on their own nor only
# re-exported by a public module, and why
INTERNAL = {
    "torchpme.calculators.ewald": "check_range_separated, the argument check that "
    "the reciprocal-space calculators share",
}
# packages whose submodules are the implementation of their public names
INTERNAL_PACKAGES = ["torchpme.distributed"]

AUTODOC = re.compile(
    r"^\s*\.\. (auto(?:module|class|function|data|attribute|method|exception)|"
    r"(?:py:)?currentmodule)::\s*(\S+)",
    re.MULTILINE,
)


def importable(name):
    """The module, or ``None`` where an optional dependency is missing."""
    try:
        return importlib.import_module(name)
    except ImportError:
        return None


def resolve(path):
    """The object at a dotted path: the longest importable module, then attributes."""
    parts = path.split(".")
    for split in range(len(parts), 0, -1):
        module = importable(".".join(parts[:split]))
        if module is None:
            continue
        value = module
        for attribute in parts[split:]:
            value = getattr(value, attribute)
        return value
    raise ImportError(path)


def directives(text):
    """``(directive, full target)`` of the autodoc directives of one page."""
    found, current = [], None
    for directive, target in AUTODOC.findall(text):
        if directive.endswith("currentmodule"):
            current = target
            continue
        if directive == "automodule":
            current = target
        elif current is not None and not target.startswith("torchpme"):
            target = f"{current}.{target}"
        found.append((directive, target))
    return found


@functools.lru_cache(maxsize=1)
def reference():
    """``(modules, targets, ids)``: the modules with an automodule directive, the
    documented dotted paths, and the ids of the objects they name."""
    modules, targets = set(), set()
    for page in sorted((DOCS / "api").glob("*.rst")):
        for directive, target in directives(page.read_text(encoding="utf-8")):
            (modules if directive == "automodule" else targets).add(target)
    ids = set()
    for target in targets:
        try:
            ids.add(id(resolve(target)))
        except (ImportError, AttributeError):
            pass  # test_reference_names_real_objects reports it
    return modules, targets, ids


def is_data(value):
    """Constants are documented by path: identity says little about a float."""
    return not (inspect.ismodule(value) or callable(value))


def documented(module_name, name):
    _, targets, ids = reference()
    value = getattr(importlib.import_module(module_name), name)
    if f"{module_name}.{name}" in targets:
        return True
    # a re-exported class or function is documented once, where it is public
    return not is_data(value) and id(value) in ids


@pytest.mark.parametrize("module_name", PUBLIC_MODULES)
def test_api_reference_lists_every_public_name(module_name):
    if importable(module_name) is None:
        pytest.skip(f"{module_name} needs an optional dependency")
    module = importlib.import_module(module_name)
    modules, _, _ = reference()
    assert module_name in modules, f"no automodule directive for {module_name}"
    missing = [name for name in module.__all__ if not documented(module_name, name)]
    assert not missing, f"{module_name}: not in docs/api/*.rst: {missing}"


def test_reference_names_real_objects():
    _, targets, _ = reference()
    broken = []
    for target in sorted(targets):
        try:
            resolve(target)
        except ImportError:
            continue  # an optional dependency: the build mocks it
        except AttributeError:
            broken.append(target)
    assert not broken, broken


def public_modules_with_all():
    names = []
    for info in pkgutil.walk_packages(torchpme.__path__, "torchpme.", lambda _: None):
        if any(part.startswith("_") for part in info.name.split(".")):
            continue
        module = importable(info.name)
        if module is not None and hasattr(module, "__all__"):
            names.append(info.name)
    return names


def test_every_public_module_is_covered():
    """A new module with an ``__all__`` needs a page, or names documented elsewhere."""
    exported = {
        id(getattr(module, name))
        for module in map(importable, PUBLIC_MODULES)
        if module is not None
        for name in module.__all__
    }
    uncovered = []
    for name in public_modules_with_all():
        if name in PUBLIC_MODULES or name in INTERNAL:
            continue
        if any(name.startswith(package + ".") for package in INTERNAL_PACKAGES):
            continue
        module = importlib.import_module(name)
        if any(id(getattr(module, item)) not in exported for item in module.__all__):
            uncovered.append(name)
    assert not uncovered, (
        f"modules whose __all__ names objects no API page documents: {uncovered} "
        "(add them to docs/api/ and PUBLIC_MODULES, or to INTERNAL with a reason)"
    )


def python_blocks(page):
    """The ``.. code-block:: python`` blocks of a page, dedented."""
    blocks, lines = [], page.read_text(encoding="utf-8").splitlines()
    for index, line in enumerate(lines):
        if line.strip() != ".. code-block:: python":
            continue
        indent = len(line) - len(line.lstrip()) + 4
        block = []
        for following in lines[index + 1 :]:
            if following.strip() and len(following) - len(following.lstrip()) < indent:
                break
            block.append(following[indent:])
        blocks.append("\n".join(block))
    return blocks


def test_units_example_runs():
    (block,) = python_blocks(DOCS / "theory" / "units.rst")
    namespace = {"__name__": "docs"}
    exec(compile(block, "units.rst", "exec"), namespace)
    assert float(namespace["potential"].prefactor) == torchpme.prefactors.eV_A


def test_getting_started_prints_the_madelung_constant(capsys):
    (block,) = python_blocks(DOCS / "getting_started.rst")
    exec(compile(block, "getting_started.rst", "exec"), {"__name__": "docs"})
    energy, force = (float(line) for line in capsys.readouterr().out.split())
    assert abs(energy + 1.747564594633) < 1e-5
    assert force < 1e-5


@pytest.mark.slow
def test_docs_build_without_warnings(tmp_path):
    """The CI build: every page, the gallery rendered without running the examples
    (tests/test_examples.py runs them), warnings as errors."""
    for module in ("sphinx", "sphinx_gallery", "myst_parser"):
        pytest.importorskip(module)
    command = [
        sys.executable, "-m", "sphinx", "-W", "--keep-going", "-b", "html",
        "-D", "plot_gallery=0", "-d", str(tmp_path / "doctrees"),
        str(DOCS), str(tmp_path / "html"),
    ]  # fmt: skip
    start = time.perf_counter()
    result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-6000:]
    assert (tmp_path / "html" / "api" / "calculators.html").exists()
    assert (tmp_path / "html" / "auto_examples" / "index.html").exists()
    print(f"docs built in {seconds:.1f} s")
