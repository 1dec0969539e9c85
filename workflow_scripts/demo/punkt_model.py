"""A small Punkt sentence tokenizer, learnt offline, in NLTK's `punkt_tab` layout: the demo's and the
tests' stand-in for the data `fetch_nltk_data` downloads on a cluster's login node.

    python -m workflow_scripts.demo.punkt_model --out-dir resources/demo/nltk_data

lm-eval's IFEval checkers count sentences (and split words) with NLTK's Punkt model for English, which
NLTK's data host serves and no PyPI package ships; offline it cannot be downloaded. NLTK's own
PunktTrainer learns the same kind of parameters (abbreviations, collocations, sentence starters) from
plain text; this one learns them from a few paragraphs written here, with the abbreviations the
sample data's answers use. Its splits are not the English model's on every text, but it exercises the
same loading and the same code path in the checkers. Deterministic: the same files every time.
"""

from __future__ import annotations

import argparse
import os
import shutil
from pathlib import Path

# Short English prose with abbreviations (Dr., Mr., e.g., U.S.), numbers with full stops, and sentence
# ends of each kind, repeated so that the trainer's frequency statistics see each often enough.
TRAINING_TEXT = (
    "Dr. Lee read the report twice. She found three errors in it. Mr. Hall, who wrote it, agreed! "
    "Was the data wrong? No, the totals were. The U.S. office sent a new copy at 9 a.m. on Monday. "
    "It listed items, e.g. pens and paper, at 2.5 dollars each. The team met again. Everyone was pleased. "
    "Prof. Kim asked for a summary. It was two pages long. The rain stopped at noon. Then the sun came out. "
    "A cat slept on the mat. The dog did not. Why not? It preferred the garden. St. Mary's bell rang. "
) * 40


def build(out_dir: Path, language: str = "english") -> Path:
    """Learn the parameters and write them where NLTK looks: <out_dir>/tokenizers/punkt_tab/<language>/."""
    target = Path(out_dir).resolve() / "tokenizers" / "punkt_tab" / language
    shutil.rmtree(target, ignore_errors=True)
    target.parent.mkdir(parents=True, exist_ok=True)
    # NLTK writes only inside its data path (its sandbox refuses other folders): put the output on it
    # before NLTK is imported.
    os.environ["NLTK_DATA"] = os.pathsep.join(
        p for p in (str(Path(out_dir).resolve()), os.environ.get("NLTK_DATA")) if p
    )
    from nltk.tokenize.punkt import PunktTrainer, save_punkt_params

    trainer = PunktTrainer()
    trainer.train(TRAINING_TEXT, finalize=True)
    save_punkt_params(trainer.get_params(), dir=str(target))
    # NLTK makes the folder private (0700); every job of the run reads it.
    for path in (target.parent, target, *target.iterdir()):
        path.chmod(0o755 if path.is_dir() else 0o644)
    return target


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out-dir", required=True, type=Path, help="an NLTK data folder (NLTK_DATA)")
    args = parser.parse_args(argv)
    print(f"wrote {build(args.out_dir)}")


if __name__ == "__main__":
    main()
