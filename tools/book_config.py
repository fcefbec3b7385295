"""Write the Jupyter Book configuration a build really uses, derived from `_config.yml`.

`_config.yml` names no repository: the course's address is a build setting, so that no book
points its buttons at a repository that does not exist. Every build (`make book`, `make pdf`,
`make test-book`, the browser and PDF tests) runs with a config this script writes into
`_build/`:

    python tools/book_config.py --out _build/_config.book.yml [--repo-url URL] [--branch B]
                                [--execute off]
    python tools/book_config.py --check-html _build/html [--repo-url URL]

- without `--repo-url` (or with an empty one): no repository, issues or launch buttons;
- with it: a repository button, an issues button (`URL/issues`), a Binder launch button and,
  for a GitHub repository, a Colab launch button, each pointing at the page's own notebook
  (`chapters/NN_name.ipynb` on branch `--branch`, default `main`);
- `--execute off`: build from the outputs stored in the notebooks (what `make test-book` and
  `make pdf` do, after strict nbval has proved them equal to a fresh execution).

The download buttons (.ipynb / .md source, print-to-PDF) link into the built site itself and
need no setting. `--check-html` reads a built book's header buttons back (`make test-book`
runs it): none leading off the site without `--repo-url`, only to that repository with it.
The Makefile passes `REPO_URL` and `REPO_BRANCH` (make variables or
environment variables) through to this script.
"""
from __future__ import annotations

import argparse
import copy
import re
import sys
from pathlib import Path
from urllib.parse import urlparse

import yaml

ROOT = Path(__file__).resolve().parents[1]

BINDERHUB_URL = "https://mybinder.org"
COLAB_URL = "https://colab.research.google.com"
EXECUTE_MODES = ("off", "cache", "force", "auto")


def normalize_repo_url(url: str | None) -> str | None:
    """`https://github.com/org/repo(.git)(/)` -> `https://github.com/org/repo`; None or ""
    -> None. Raises ValueError for anything that is not an http(s) URL with an owner and a
    repository name."""
    if url is None or not url.strip():
        return None
    url = url.strip().rstrip("/")
    url = re.sub(r"\.git$", "", url)
    parts = urlparse(url)
    path = [p for p in parts.path.split("/") if p]
    if parts.scheme not in ("http", "https") or not parts.netloc or len(path) < 2:
        raise ValueError(
            f"REPO_URL must look like https://github.com/OWNER/REPO, got {url!r}")
    return url


def derive(config: dict, *, repo_url: str | None = None, branch: str = "main",
           execute: str | None = None) -> dict:
    """The build config: a copy of `config` with the buttons set from `repo_url` and, if
    given, the execution mode replaced."""
    cfg = copy.deepcopy(config)
    url = normalize_repo_url(repo_url)
    if execute is not None:
        if execute not in EXECUTE_MODES:
            raise ValueError(f"execute must be one of {EXECUTE_MODES}, got {execute!r}")
        cfg.setdefault("execute", {})["execute_notebooks"] = execute

    repo = cfg.setdefault("repository", {})
    html = cfg.setdefault("html", {})
    launch = cfg.setdefault("launch_buttons", {})
    for key in ("binderhub_url", "colab_url", "jupyterhub_url", "deepnote_url"):
        launch.pop(key, None)
    launch["thebe"] = False
    if url is None:
        # Jupyter Book's default repository is its own; an empty URL keeps it out of the page.
        repo["url"] = ""
        html["use_repository_button"] = False
        html["use_issues_button"] = False
        html["use_edit_page_button"] = False
        return cfg
    repo["url"] = url
    repo["branch"] = branch
    repo.setdefault("path_to_book", "")
    html["use_repository_button"] = True
    html["use_issues_button"] = True
    launch["binderhub_url"] = BINDERHUB_URL
    if urlparse(url).netloc.lower() in ("github.com", "www.github.com"):
        # sphinx-book-theme builds Colab links for GitHub only (and warns otherwise, which
        # fails the strict build)
        launch["colab_url"] = COLAB_URL
    return cfg


def header_button_links(html: str) -> list[str]:
    """The external links among a built page's header buttons (repository, issues, launch;
    the download buttons link into the site itself)."""
    start = html.find('class="article-header-buttons"')
    if start < 0:
        return []
    end = html.find('<article class="bd-article"', start)
    return re.findall(r'href="(https?://[^"]+)"', html[start:end if end > 0 else None])


def check_html(html_dir: Path, repo_url: str | None) -> list[str]:
    """Problems with the buttons of a built book: without a repository URL, any external
    header link; with one, any header link that does not lead to that repository (directly,
    or through Binder or Colab)."""
    url = normalize_repo_url(repo_url)
    owner_repo = urlparse(url).path.strip("/") if url else None
    problems = []
    pages = sorted(html_dir.glob("*.html")) + sorted(html_dir.glob("chapters/*.html"))
    if not pages:
        return [f"no built pages under {html_dir}"]
    for page in pages:
        links = header_button_links(page.read_text(errors="ignore"))
        name = page.relative_to(html_dir)
        if url is None:
            problems += [f"{name}: header button to {h} (no REPO_URL given)" for h in links]
        else:
            problems += [f"{name}: header button to {h}, not to {url}" for h in links
                         if owner_repo not in h]
    return problems


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--config", type=Path, default=ROOT / "_config.yml")
    ap.add_argument("--out", type=Path)
    ap.add_argument("--check-html", type=Path, metavar="DIR",
                    help="instead of writing a config: check the header buttons of the book "
                         "built in DIR against --repo-url")
    ap.add_argument("--repo-url", default=None,
                    help="the course repository, e.g. https://github.com/OWNER/REPO")
    ap.add_argument("--branch", default="main")
    ap.add_argument("--execute", choices=EXECUTE_MODES, default=None)
    args = ap.parse_args(argv)
    if args.check_html is not None:
        try:
            problems = check_html(args.check_html, args.repo_url)
        except ValueError as e:
            print(f"book_config: {e}", file=sys.stderr)
            return 2
        for p in problems:
            print(f"book_config: {p}", file=sys.stderr)
        return 1 if problems else 0
    if args.out is None:
        ap.error("--out is required (or --check-html DIR)")
    try:
        cfg = derive(yaml.safe_load(args.config.read_text()), repo_url=args.repo_url,
                     branch=args.branch or "main", execute=args.execute)
    except ValueError as e:
        print(f"book_config: {e}", file=sys.stderr)
        return 2
    args.out.parent.mkdir(parents=True, exist_ok=True)
    header = ("# Written by tools/book_config.py from _config.yml: edit _config.yml, not this.\n")
    args.out.write_text(header + yaml.safe_dump(cfg, sort_keys=False))
    return 0


if __name__ == "__main__":
    sys.exit(main())
