"""The documentation's links stay valid: README.md (the front page), docs/*.md and the READMEs beside the code.

Every relative link and image resolves to a file of the checkout; a `page.md#anchor` link names a heading
of that page, by GitHub's slug rule. Every docs/ page is reachable from the front page. Links to the web
(http, https, mailto) are not followed. Plain Markdown, so this is the whole "build" of the docs.
"""

import re
from pathlib import Path
from urllib.parse import unquote

REPO = Path(__file__).resolve().parents[1]
DOCS = REPO / "docs"

FENCE = re.compile(r"^ {0,3}(```|~~~)")
CODE_SPAN = re.compile(r"(`+)(.+?)\1")
# [text](target "title") and ![alt](target); the text may hold one level of brackets
INLINE = re.compile(r"!?\[(?:[^\[\]]|\[[^\[\]]*\])*\]\(\s*<?([^)\s>]*)>?(?:\s+\"[^\"]*\")?\s*\)")
REFERENCE = re.compile(r"^ {0,3}\[[^\]]+\]:\s*<?(\S+?)>?(?:\s+\"[^\"]*\")?\s*$")
HEADING = re.compile(r"^ {0,3}(#{1,6})\s+(.*?)\s*#*\s*$")
EXTERNAL = re.compile(r"^(https?:|mailto:)", re.IGNORECASE)


def markdown_files() -> list[Path]:
    files = [REPO / "README.md", *sorted(DOCS.glob("*.md")), REPO / "benchmarks" / "README.md",
             *sorted((REPO / "workflow").rglob("README.md"))]
    return [f for f in files if f.is_file()]


def prose_lines(text: str):
    """(line number, line) outside fenced code blocks."""
    fenced = False
    for n, line in enumerate(text.splitlines(), 1):
        if FENCE.match(line):
            fenced = not fenced
        elif not fenced:
            yield n, line


def links(text: str) -> list[tuple[int, str]]:
    """(line number, target) of every inline link, image and reference definition outside code."""
    found = []
    for n, line in prose_lines(text):
        m = REFERENCE.match(line)
        if m:
            found.append((n, m.group(1)))
            continue
        line = CODE_SPAN.sub(lambda c: "code", line)
        found.extend((n, target) for target in INLINE.findall(line))
    return found


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: markup and punctuation dropped (not '-' or '_'), lower case, spaces -> '-'."""
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", heading)  # a link in a heading: its text
    text = text.replace("`", "").lower()
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def anchors(path: Path) -> set[str]:
    seen: dict[str, int] = {}
    out = set()
    for _, line in prose_lines(path.read_text(encoding="utf-8")):
        m = HEADING.match(line)
        if not m:
            continue
        s = slug(m.group(2))
        out.add(s if s not in seen else f"{s}-{seen[s]}")  # GitHub numbers repeated headings
        seen[s] = seen.get(s, 0) + 1
    return out


def broken_links(path: Path) -> list[str]:
    """One line per link of `path` that does not resolve: 'file:line: target (why)'."""
    problems = []
    for n, target in links(path.read_text(encoding="utf-8")):
        if not target or EXTERNAL.match(target):
            continue
        where = f"{path.relative_to(REPO) if path.is_relative_to(REPO) else path}:{n}: {target}"
        file_part, _, anchor = target.partition("#")
        dest = (path.parent / unquote(file_part)).resolve() if file_part else path
        if not dest.exists():
            problems.append(f"{where} (no such file)")
        elif anchor and dest.suffix == ".md" and anchor not in anchors(dest):
            problems.append(f"{where} (no heading with that anchor in {dest.name})")
    return problems


def test_every_relative_link_resolves():
    files = markdown_files()
    assert REPO / "README.md" in files and len(files) > 3
    problems = [p for f in files for p in broken_links(f)]
    assert not problems, "broken links:\n" + "\n".join(problems)


def test_every_docs_page_is_linked_from_the_front_page():
    readme = REPO / "README.md"
    linked = {(readme.parent / unquote(t.partition("#")[0])).resolve()
              for _, t in links(readme.read_text(encoding="utf-8")) if not EXTERNAL.match(t)}
    pages = sorted(DOCS.glob("*.md"))
    assert pages
    missing = [p.name for p in pages if p.resolve() not in linked]
    assert not missing, f"docs pages not linked from README.md: {missing}"


def test_the_checker_catches_a_broken_link_and_anchor(tmp_path):
    (tmp_path / "a.md").write_text(
        "# Title\n\n## Speech from any video: `lipspeech speak`\n\n## Title\n\n"
        "[ok](b.md) [ok](b.md#the-readers-reader_cache_mb-1-2) [ok](#speech-from-any-video-lipspeech-speak) [ok](#title-1)\n"
        "![img](pic.png) [web](https://example.org/x.md) [mail](mailto:x@y)\n"
        "`[in code](nowhere.md)`\n\n```\n[in a fence](nowhere.md)\n```\n"
        "[gone](missing.md) [bad anchor](b.md#nope) ![gone](missing.png)\n"
        "[ref]: missing-ref.md\n", encoding="utf-8")
    (tmp_path / "b.md").write_text("# The reader's `reader_cache_mb`: 1, 2\n", encoding="utf-8")
    (tmp_path / "pic.png").write_bytes(b"")
    problems = broken_links(tmp_path / "a.md")
    assert [p.split(": ", 1)[1] for p in problems] == [
        "missing.md (no such file)", "b.md#nope (no heading with that anchor in b.md)",
        "missing.png (no such file)", "missing-ref.md (no such file)"]
    assert slug("Grid-scale: the method given GRID's amount of data") == "grid-scale-the-method-given-grids-amount-of-data"
