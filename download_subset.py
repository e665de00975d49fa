"""Download the first N drawings of each Story Squad class (default: the 100 classes x 4,000 drawings
Labs 21 trained on, ~314 MB by HTTP Range instead of ~11 GB of whole files) into data/.

Run `python download_subset.py --help` for every option; `--synthetic` writes offline doodles instead.
"""

import sys

from quickdraw_cnn.categories import STORY_SQUAD_100
from quickdraw_cnn.download import DEFAULT_SUBSET_ROWS, main

if __name__ == "__main__":
    sys.exit(
        main(
            sys.argv[1:],
            default_categories=STORY_SQUAD_100,
            default_rows=DEFAULT_SUBSET_ROWS,
            prog="download_subset.py",
            description=__doc__,
        )
    )
