"""NLTK data a scoring step needs, downloaded once on the machine with the internet into a shared folder.

    python -m workflow_scripts.steps.fetch_nltk_data --package punkt_tab --out-dir resources/nltk_data

lm-eval's IFEval checkers count sentences and split words with NLTK's Punkt model (`punkt_tab`); its
module tries to download it when imported, which fails on an offline compute node, and the checkers
then raise LookupError in every ifeval score job whose bin holds such an instruction. The rule
`fetch_nltk_data` (a local rule, beside `download` and `fetch_model`) runs this on the login node;
every job gets NLTK_DATA pointing at the folder (workflow_scripts/lib/runtime.py).
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from workflow_scripts.lib.io_utils import one_line_errors
from workflow_scripts.lib.layout import NLTK_CATEGORY as CATEGORY
from workflow_scripts.lib.layout import nltk_package_dir


def fetch(package: str, out_dir: Path) -> Path:
    out_dir = Path(out_dir).resolve()
    out_dir.mkdir(parents=True, exist_ok=True)
    # NLTK reads and writes only inside its data path: the folder goes on it before NLTK is imported.
    os.environ["NLTK_DATA"] = str(out_dir)
    import nltk

    try:
        fetched = nltk.download(package, download_dir=str(out_dir), quiet=True, raise_on_error=True)
    except Exception as error:  # the downloader raises whatever its HTTP client raised
        fetched, reason = False, f"{type(error).__name__}: {error}"
    else:
        reason = "the downloader reported a failure"
    if not fetched or not Path(nltk_package_dir(out_dir, package)).is_dir():
        raise ValueError(
            f"NLTK package {package!r} could not be downloaded into {out_dir} ({reason}); fix: run this rule "
            f"where NLTK's data host is reachable (the login node), or copy an NLTK data folder holding "
            f"{CATEGORY[package]}/{package} there (config `nltk_data` names it)"
        )
    if package == "punkt_tab":  # loaded as the IFEval checkers load it
        from nltk.tokenize import PunktTokenizer

        PunktTokenizer("english").tokenize("It loads. It splits.")
    return Path(nltk_package_dir(out_dir, package))


@one_line_errors
def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--package", required=True, choices=sorted(CATEGORY))
    parser.add_argument("--out-dir", required=True, type=Path, help="the NLTK data folder (config nltk_data)")
    args = parser.parse_args(argv)
    print(f"fetched {fetch(args.package, args.out_dir)}")


if __name__ == "__main__":
    main()
