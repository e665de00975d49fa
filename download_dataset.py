"""Download all 345 Quick, Draw! classes (default: the first 10,000 drawings of each, ~2.7 GB by HTTP
Range; `--max-per-class all` fetches the whole ~39.5 GB, checksum-verified) into data/.

Same options as download_subset.py; run `python download_dataset.py --help`.
"""

import sys

from quickdraw_cnn.categories import ALL_345
from quickdraw_cnn.download import DEFAULT_DATASET_ROWS, main

if __name__ == "__main__":
    sys.exit(
        main(
            sys.argv[1:],
            default_categories=ALL_345,
            default_rows=DEFAULT_DATASET_ROWS,
            prog="download_dataset.py",
            description=__doc__,
        )
    )
