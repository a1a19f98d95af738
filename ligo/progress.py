"""Whether to draw progress bars: the one question the data and training layers ask about the
terminal (the command-line layer, ligo.cli, asks it too)."""
from __future__ import annotations

import os
import sys


def interactive() -> bool:
    """Progress bars only on a terminal: redirected to a file, tqdm's carriage-return
    updates pile up into one unreadable line (the plain log lines say the same)."""
    return sys.stderr.isatty()


def quiet_library_progress_bars() -> None:
    """transformers/huggingface_hub bars (e.g. "Writing model shards") off when not interactive."""
    if interactive():
        return
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    if "transformers" in sys.modules:  # already imported: the variable was read
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()
