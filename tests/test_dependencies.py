"""Every third-party module the package imports is a pinned runtime dependency in setup.py.

A module that only the [test] extra brings in (jinja2 arrives with torch) would pass every
test here and fail on a user's runtime-only install; .ci/run also runs the main commands in
a fresh runtime-only virtual environment, this is the fast static half of that check.
"""
import ast
import importlib.metadata
import pathlib
import re
import sys

REPO = pathlib.Path(__file__).resolve().parents[1]
PACKAGE = REPO / "synthflaw_jax"
# needed at run time though never imported by name in our code
HIDDEN = {"jinja2": "transformers' apply_chat_template (generate, eval ifeval --model, analyze, demo)",
          "gcsfs": "fsspec's gs:// filesystem (runtime.bucket_fs, etils.epath, Orbax's directories in a bucket)"}


def _setup_list(name):
    tree = ast.parse((REPO / "setup.py").read_text())
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(getattr(t, "id", None) == name for t in node.targets):
            return ast.literal_eval(node.value)
    raise AssertionError(f"setup.py has no {name} list")


def _norm(dist):
    return re.sub(r"[-_.]+", "-", dist).lower()


def _pins(name):
    pins = {}
    for req in _setup_list(name):
        dist, sep, version = req.partition("==")
        assert sep and version, f"setup.py {name}: {req!r} is not pinned with =="
        pins[_norm(dist)] = version
    return pins


def _guarded(node, parents):
    """True when the import sits in a try whose handler catches ImportError (an optional extra)."""
    while node in parents:
        child, node = node, parents[node]
        if isinstance(node, ast.Try) and child in node.body:
            for h in node.handlers:
                names = {getattr(n, "id", None) for n in ([h.type] if not isinstance(h.type, ast.Tuple) else h.type.elts)}
                if names & {"ImportError", "ModuleNotFoundError"}:
                    return True
    return False


def _third_party_imports():
    """{top-level module: first file importing it} over the package, optional imports left out."""
    found = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        tree = ast.parse(path.read_text(), str(path))
        parents = {child: node for node in ast.walk(tree) for child in ast.iter_child_nodes(node)}
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                mods = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                mods = [node.module]
            else:
                continue
            for mod in mods:
                top = mod.split(".")[0]
                if top in sys.stdlib_module_names or top in ("synthflaw_jax", "__future__"):
                    continue
                if not _guarded(node, parents):
                    found.setdefault(top, str(path.relative_to(REPO)))
    return found


def test_every_import_is_a_pinned_runtime_dependency():
    runtime = _pins("RUNTIME")
    providers = importlib.metadata.packages_distributions()
    imports = _third_party_imports()
    assert {"jax", "transformers", "tqdm"} <= set(imports)  # the scan sees our imports at all
    missing = []
    for module, where in sorted(imports.items()):
        dists = {_norm(d) for d in providers.get(module, [])}
        if not dists & set(runtime):
            missing.append(f"{module} (imported in {where}; provided by {sorted(dists) or 'nothing installed'})")
    assert not missing, "not in setup.py RUNTIME: " + "; ".join(missing)
    for dist, why in HIDDEN.items():
        assert _norm(dist) in runtime, f"{dist} must be a runtime pin: {why}"


def test_pins_are_what_is_installed():
    """The versions the tests run against are the pinned ones (so the pins are tested)."""
    wrong = []
    for dist, version in {**_pins("RUNTIME"), **_pins("TEST")}.items():
        try:
            got = importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            got = None
        if got is None or got.split("+")[0] != version:  # a local label (2.13.0+cpu) is the same release
            wrong.append(f"{dist}: pinned {version}, installed {got}")
    assert not wrong, "; ".join(wrong)
