"""The README and docs/ as a newcomer reads them: the README fits on 200 lines, every relative link (and its
`#anchor`) in them leads to a file and heading that exist, and every `rsi run` in their code blocks composes
through Hydra into a config that passes `validate` (the composition is tests/test_deploy.py's)."""

from __future__ import annotations

import dataclasses
import re
from collections import Counter
from pathlib import Path

import pytest
from test_deploy import DOCS, ROOT, _after_rsi_run, _logical_lines, compose_argv

pytestmark = pytest.mark.unit

FENCE = re.compile(r"^\s*(`{3,}|~{3,})")
LINK = re.compile(r"\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")


def _rel(path: Path) -> str:
    return str(path.relative_to(ROOT)) if path.is_relative_to(ROOT) else path.name


def split_fences(text: str) -> tuple[list[str], list[str]]:
    """(prose lines, code blocks): the lines outside fenced code blocks, and each block's body."""
    prose, blocks, body, fence = [], [], [], None
    for line in text.splitlines():
        m = FENCE.match(line)
        if fence is None and m:
            fence, body = m.group(1), []
        elif fence is not None and m and m.group(1).startswith(fence) and not line.strip().strip(fence[0]):
            blocks.append("\n".join(body))
            fence = None
        elif fence is None:
            prose.append(line)
        else:
            body.append(line)
    assert fence is None, "an unclosed code block"
    return prose, blocks


def slug(heading: str) -> str:
    """GitHub's anchor of a heading: lower case, markup and punctuation dropped, spaces to hyphens."""
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", heading).strip().lower()
    return re.sub(r"[^\w\- ]", "", text).replace(" ", "-")


def anchors(path: Path) -> set[str]:
    prose, _ = split_fences(path.read_text())
    seen: Counter[str] = Counter()
    out = set()
    for line in prose:
        if m := re.match(r"^#{1,6}\s+(.+?)\s*#*\s*$", line):
            base = slug(m.group(1))
            out.add(base if not seen[base] else f"{base}-{seen[base]}")
            seen[base] += 1
    return out


def links(path: Path) -> list[str]:
    """Every link target of the page's prose; inline code spans are not links."""
    prose, _ = split_fences(path.read_text())
    return LINK.findall(re.sub(r"`[^`\n]*`", "", "\n".join(prose)))


def broken_links(path: Path) -> list[str]:
    bad = []
    for target in links(path):
        if re.match(r"^[a-z][a-z0-9+.-]*:", target, re.I):  # https:, mailto:: not ours to check
            continue
        file, _, anchor = target.partition("#")
        dest = (path.parent / file).resolve() if file else path
        if not dest.exists():
            bad.append(f"{target}: no such file")
        elif anchor and dest.suffix == ".md" and anchor not in anchors(dest):
            bad.append(f"{target}: no heading #{anchor} in {_rel(dest)}")
    return bad


def doc_runs() -> list[tuple[str, list[str]]]:
    """(page, argv after `rsi run`) for every command in the code blocks of the README and docs/."""
    found = []
    for path in DOCS:
        for block in split_fences(path.read_text())[1]:
            for line in _logical_lines(block):
                if (argv := _after_rsi_run(line)) is not None:
                    found.append((_rel(path), argv))
    return found


def test_readme_fits_on_200_lines() -> None:
    assert len((ROOT / "README.md").read_text().splitlines()) <= 200


def test_docs_exist_and_the_readme_links_each_page() -> None:
    pages = {_rel(p) for p in DOCS[1:]}
    assert {"docs/README.md", "docs/configuration.md", "docs/evaluation.md", "docs/results.md"} <= pages
    linked = {_rel((ROOT / t.partition("#")[0]).resolve()) for t in links(ROOT / "README.md")}
    assert pages <= linked, f"pages the README does not link: {sorted(pages - linked)}"


@pytest.mark.parametrize("path", DOCS, ids=_rel)
def test_every_relative_link_resolves(path: Path) -> None:
    assert broken_links(path) == []


def test_link_check_catches_a_broken_file_or_anchor(tmp_path: Path) -> None:
    (tmp_path / "a.md").write_text("# A page\n\n## Runs A–C: the `improve` preset\n\n```\n[no](nowhere.md)\n```\n")
    page = tmp_path / "b.md"
    page.write_text("[ok](a.md#runs-ac-the-improve-preset) [ok](#b) `[code](x.md)` [web](https://x.org/y)\n"
                    "# B\n[gone](c.md) [bad anchor](a.md#runs) [self](#nothing)\n")
    assert broken_links(page) == ["c.md: no such file", "a.md#runs: no heading #runs in a.md",
                                  "#nothing: no heading #nothing in b.md"]
    assert links(tmp_path / "a.md") == []


def test_found_the_documented_commands() -> None:
    where = Counter(w for w, _ in doc_runs())
    assert where["README.md"] >= 3 and where["docs/configuration.md"] >= 5 and where["docs/cluster.md"] >= 2
    assert ["+preset=improve", "loop.iterations=3", "run.dir=runs/improve"] in [a for _, a in doc_runs()]


@pytest.mark.parametrize("where,argv", doc_runs(), ids=lambda v: v if isinstance(v, str) else " ".join(v)[:60])
def test_every_documented_rsi_run_composes_and_validates(where: str, argv: list[str], tmp_path: Path) -> None:
    """Each command's overrides compose (a sweep per value) and pass `validate`; a model folder the command names
    (`model.path=/models/…`, on the user's machine) stands in as an empty folder, as test_deploy leaves it unread."""
    from rsi.config import validate

    for cfg in compose_argv(argv):
        if cfg.model.path and not Path(cfg.model.path).expanduser().exists():
            cfg = dataclasses.replace(cfg, model=dataclasses.replace(cfg.model, path=str(tmp_path)))
        validate(cfg)


def test_a_bad_command_fails() -> None:
    from hydra.errors import ConfigCompositionException

    from rsi.config import ConfigError, validate

    with pytest.raises(ConfigCompositionException, match="no_such_key"):
        compose_argv(_after_rsi_run("rsi run run.no_such_key=1"))
    with pytest.raises(ConfigError, match="loop.iterations"):
        [validate(c) for c in compose_argv(_after_rsi_run("rsi run -m loop.iterations=1,0"))]
