"""Quick, Draw! drawing recognition for Story Squad: data, training and prediction.

Modules that need no TensorFlow (categories, npy_format, download, render, synthetic, dataset,
preprocess) never import it, so the download and split scripts start fast.
"""

__version__ = "0.1.0"
