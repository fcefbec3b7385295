"""tools/book_config.py: the repository URL is a build setting; without it no build links a
repository, issues or launch service, with it every button is built from it."""
from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
_spec = importlib.util.spec_from_file_location("book_config", ROOT / "tools" / "book_config.py")
book_config = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(book_config)

CONFIG = yaml.safe_load((ROOT / "_config.yml").read_text())


def test_config_names_no_repository():
    assert not CONFIG["repository"]["url"], "_config.yml must not name a repository"
    assert not CONFIG["html"]["use_repository_button"]
    assert not CONFIG["html"]["use_issues_button"]
    assert "binderhub_url" not in CONFIG.get("launch_buttons", {})
    assert "colab_url" not in CONFIG.get("launch_buttons", {})


@pytest.mark.parametrize("url", [None, "", "  "])
def test_without_url_no_repository_or_launch_buttons(url):
    cfg = book_config.derive(CONFIG, repo_url=url)
    assert cfg["repository"]["url"] == ""
    assert not cfg["html"]["use_repository_button"] and not cfg["html"]["use_issues_button"]
    assert not cfg["html"]["use_edit_page_button"]
    assert not {"binderhub_url", "colab_url", "jupyterhub_url", "deepnote_url"} & set(
        cfg["launch_buttons"])
    assert cfg["html"]["use_download_button"], "the download buttons work without a URL"
    assert cfg["launch_buttons"]["thebe"] is False


def test_with_github_url_all_buttons():
    cfg = book_config.derive(CONFIG, repo_url="https://github.com/o/r.git/", branch="dev")
    assert cfg["repository"] == {"url": "https://github.com/o/r", "path_to_book": "",
                                 "branch": "dev"}
    assert cfg["html"]["use_repository_button"] and cfg["html"]["use_issues_button"]
    assert cfg["launch_buttons"]["binderhub_url"] == "https://mybinder.org"
    assert cfg["launch_buttons"]["colab_url"] == "https://colab.research.google.com"


def test_colab_only_for_github():
    cfg = book_config.derive(CONFIG, repo_url="https://gitlab.com/o/r")
    assert "colab_url" not in cfg["launch_buttons"]
    assert cfg["launch_buttons"]["binderhub_url"]


@pytest.mark.parametrize("bad", ["github.com/o/r", "https://github.com/o", "ftp://x/o/r"])
def test_bad_url_rejected(bad):
    with pytest.raises(ValueError):
        book_config.derive(CONFIG, repo_url=bad)


def test_execute_mode_and_source_untouched():
    before = yaml.safe_dump(CONFIG)
    cfg = book_config.derive(CONFIG, repo_url="https://github.com/o/r", execute="off")
    assert cfg["execute"]["execute_notebooks"] == "off"
    assert yaml.safe_dump(CONFIG) == before


def _page(tmp_path: Path, hrefs: list[str]) -> Path:
    links = "".join(f'<a href="{h}">b</a>' for h in hrefs)
    html = (f'<div class="article-header-buttons">{links}'
            '<a href="../_sources/c.ipynb">dl</a></div>'
            '<article class="bd-article"><a href="https://github.com/elsewhere/x">prose</a>'
            '</article>')
    (tmp_path / "chapters").mkdir(exist_ok=True)
    (tmp_path / "chapters" / "c.html").write_text(html)
    return tmp_path


def test_check_html(tmp_path):
    site = _page(tmp_path, [])
    assert book_config.check_html(site, None) == []          # prose links are not buttons
    site = _page(tmp_path, ["https://github.com/executablebooks/jupyter-book"])
    assert book_config.check_html(site, None)                 # Jupyter Book's own default
    site = _page(tmp_path, ["https://github.com/o/r", "https://mybinder.org/v2/gh/o/r/main"])
    assert book_config.check_html(site, "https://github.com/o/r") == []
    assert book_config.check_html(site, "https://github.com/o/other")
    assert book_config.check_html(tmp_path / "nothing", None)  # no pages is a problem too


def test_cli(tmp_path):
    out = tmp_path / "c.yml"
    assert book_config.main(["--out", str(out), "--repo-url", "https://github.com/o/r"]) == 0
    assert yaml.safe_load(out.read_text())["repository"]["url"] == "https://github.com/o/r"
    assert book_config.main(["--out", str(out), "--repo-url", "nonsense"]) == 2
    site = _page(tmp_path, ["https://mybinder.org/v2/gh/o/r/main"])
    assert book_config.main(["--check-html", str(site)]) == 1
    assert book_config.main(["--check-html", str(site), "--repo-url",
                             "https://github.com/o/r"]) == 0
