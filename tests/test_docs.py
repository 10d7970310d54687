"""The docs a new user reads: links resolve inside the clone, the README's first line and its
Python snippet work as written."""
import ast
import builtins
import pathlib
import re
import subprocess

REPO = pathlib.Path(__file__).resolve().parents[1]
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")


def _markdown_files():
    try:
        out = subprocess.run(["git", "-C", str(REPO), "ls-files", "*.md"], capture_output=True, text=True,
                             check=True).stdout.split()
        return [REPO / f for f in out]
    except (OSError, subprocess.CalledProcessError):  # not a git checkout: the docs folders
        return [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]


def test_doc_links_stay_inside_the_repo():
    files = _markdown_files()
    assert REPO / "docs" / "method.md" in files
    broken = []
    for md in files:
        text = md.read_text(encoding="utf-8")
        if "paper.md" in text:  # the method page of the project's workspace, not in a clone
            broken.append(f"{md.relative_to(REPO)}: names paper.md, which a user's clone does not have")
        for target in LINK.findall(text):
            if re.match(r"[a-z]+:", target) or target.startswith("#"):
                continue
            path = (md.parent / target.split("#")[0]).resolve()
            if not path.exists() or REPO not in (path, *path.parents):
                broken.append(f"{md.relative_to(REPO)}: link {target}")
    assert not broken, "; ".join(broken)


def test_unlearn_docs_point_to_the_method_page():
    assert "(method.md)" in (REPO / "docs" / "unlearn.md").read_text()
    method = (REPO / "docs" / "method.md").read_text()
    for topic in ("## The problem", "## The analyses", "lower bound", "## The evaluation", "arms"):
        assert topic in method, topic


def _readme_blocks(lang):
    return re.findall(rf"```{lang}\n(.*?)```", (REPO / "README.md").read_text(), re.S)


def test_readme_first_line_can_be_rerun():
    first = _readme_blocks("bash")[0].splitlines()[0]
    assert "synthflaw demo" in first and "--overwrite" not in first


def test_readme_python_snippet_names_where_everything_comes_from():
    """Every name the snippet uses is imported or assigned in it (the arrays the user brings
    aside), and its imports run."""
    (snippet,) = _readme_blocks("python")
    tree = ast.parse(snippet)
    defined = set(dir(builtins)) | {"input_ids", "attention_mask"}  # the user's own arrays
    for node in ast.walk(tree):
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            defined |= {(a.asname or a.name).split(".")[0] for a in node.names}
        elif isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
            defined.add(node.id)
    used = {n.id for n in ast.walk(tree) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Load)}
    # names in the comments count too: a commented alternative must be runnable as well
    used |= set(re.findall(r"\b(make_mesh)\(", snippet))
    assert used <= defined, sorted(used - defined)
    exec(compile(ast.Module([n for n in tree.body if isinstance(n, (ast.Import, ast.ImportFrom))], []),
                 "README", "exec"), {})
