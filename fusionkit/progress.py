"""Progress bars (tqdm), quiet when FUSIONKIT_PROGRESS=0 or stderr is not a terminal and not forced."""

from __future__ import annotations

import os


def bar(iterable=None, **kwargs):
    from tqdm.auto import tqdm

    flag = os.environ.get("FUSIONKIT_PROGRESS", "")
    disable = flag == "0" or (flag != "1" and None)  # None: tqdm hides bars when not a tty
    return tqdm(iterable, disable=disable, dynamic_ncols=True, **kwargs)
