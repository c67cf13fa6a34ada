"""MkDocs hooks (mkdocs.yml): the README (the home page), the committed benchmark results and the changelog become
pages of the site as they are in the repository, not pasted copies that would drift from them."""

from __future__ import annotations

from pathlib import Path

from mkdocs.config.defaults import MkDocsConfig
from mkdocs.structure.files import File, Files

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"
SHOWN = {".md", ".png", ".json"}  # the reports, their plots and the raw numbers they were made from


def on_files(files: Files, config: MkDocsConfig) -> Files:
    for path in sorted(RESULTS.rglob("*")):
        if path.is_file() and path.suffix in SHOWN:
            uri = f"bench/results/{path.relative_to(RESULTS).as_posix()}"
            files.append(File.generated(config, uri, abs_src_path=str(path)))
    files.append(File.generated(config, "changelog.md", abs_src_path=str(ROOT / "CHANGELOG.md")))
    files.append(File.generated(config, "index.md", content=home((ROOT / "README.md").read_text())))
    return files


def home(readme: str) -> str:
    """The README as the site's home page: its links into docs/ made relative to the site's root."""
    return readme.replace("](docs/", "](").replace("](CHANGELOG.md)", "](changelog.md)")
