"""Hooks (``!function utils.x``) for the cross-difficulty lm-eval tasks.

The prompt text is the training prompt's user turn, so a model is evaluated on the layout it was
trained on; both come from workflow_scripts/prompts.py where possible.
"""

import sys
from pathlib import Path

# The task folder sits beside workflow_scripts/ in the repository.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from workflow_scripts import prompts  # noqa: E402


def arc_doc_to_text(doc) -> str:
    return prompts.arc(doc)[0]
