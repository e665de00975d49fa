"""Say what was drawn: top-K classes for image files (canvas PNG, photo of paper) or stroke files.

Examples:
    python load_model_predict.py samples/*                 # top-5 per file, readable
    python load_model_predict.py a.png b.jpg --json        # one JSON document for a backend
    python load_model_predict.py a.png --backend onnx      # no TensorFlow: numpy, Pillow, onnxruntime

Exit status: 0 when every file was predicted, 1 when some file could not be (each named on stderr; the
others are still predicted), 2 when the model folder or the arguments are wrong.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
import tempfile
from pathlib import Path

from quickdraw_cnn.cli import ArgumentParser


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = ArgumentParser(
        description="Predict what each drawing shows (images: PNG/JPEG/GIF/...; strokes: .json/.ndjson).",
        epilog="Exit status: 0 all predicted, 1 some file failed (named on stderr), 2 model/usage error.",
    )
    p.add_argument(
        "files",
        nargs="+",
        metavar="FILE",
        help="drawings to classify (all predicted in one batch); - reads stdin; a data: URL is read as its image",
    )
    p.add_argument(
        "--model-dir",
        default="models",
        type=Path,
        help="model folder: this project's export or the Labs 21 files (default: models/)",
    )
    p.add_argument("--top", type=int, default=5, metavar="K", help="how many classes to list (default 5)")
    p.add_argument(
        "--json",
        action="store_true",
        help='print one JSON list: {"file", "predictions": [{"class", "probability"}]} or {"file", "error"}',
    )
    p.add_argument(
        "--backend",
        choices=("tf", "onnx"),
        default="tf",
        help="tf: Keras model (model.json + model.h5); onnx: model.onnx with onnxruntime, starts faster",
    )
    p.add_argument(
        "--save-preprocessed",
        type=Path,
        metavar="DIR",
        help="write the 28x28 each file became, enlarged, to DIR/<file name>.png (to see why it guessed)",
    )
    args = p.parse_args(argv)
    if args.top < 1:
        p.error("--top must be at least 1")
    if args.files.count("-") > 1:  # the second read the empty rest of the pipe
        p.error("- (stdin) can be given once")
    return args


def read_stdin() -> bytes:
    """The drawing piped in for `-`, bounded like any pipe."""
    from quickdraw_cnn.preprocess import PreprocessError, read_stream

    if sys.stdin is None:
        raise PreprocessError("stdin is closed")
    return read_stream(sys.stdin.buffer)


def label(name: str) -> str:
    """How a FILE argument is named in the output: a data: URL is cut short (it can be megabytes), with a
    digest, since the first characters of every PNG's URL are the same."""
    from quickdraw_cnn.preprocess import is_data_url

    if len(name) > 40 and is_data_url(name):
        digest = hashlib.sha1(name.encode("utf-8", "replace")).hexdigest()[:10]
        return f"{name[:32]}... ({len(name):,} characters, sha1 {digest})"
    if any(ord(c) < 32 or ord(c) == 127 for c in name):  # a line break in a name would split its block
        return repr(name)
    return name


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if sys.stdout is None:  # started with stdout closed (`>&-`): the predictions could go nowhere
        print("error: standard output is closed; nothing to print the predictions to", file=sys.stderr)
        return 2
    for stream in (sys.stdout, sys.stderr):  # file names that are not UTF-8 print as their own bytes
        if hasattr(stream, "reconfigure"):
            stream.reconfigure(errors="surrogateescape")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    import numpy as np

    from quickdraw_cnn.predict import ModelError, Predictor
    from quickdraw_cnn.preprocess import PreprocessError, is_data_url, save_enlarged, to_bitmap

    try:
        predictor = Predictor.load(args.model_dir, backend=args.backend)
    except ModelError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except ImportError as exc:
        print(f"error: backend {args.backend} unavailable ({exc})", file=sys.stderr)
        return 2
    if args.save_preprocessed:
        try:  # before the first file, so a bad path is one line, not a traceback mid-way
            args.save_preprocessed.mkdir(parents=True, exist_ok=True)
            tempfile.TemporaryFile(dir=args.save_preprocessed).close()  # writable, not just there
        except OSError as exc:
            why = "exists and is not a folder" if isinstance(exc, FileExistsError) else exc.strerror or exc
            print(f"error: --save-preprocessed {args.save_preprocessed}: {why}", file=sys.stderr)
            return 2

    results: list[dict] = []
    bitmaps, slots, used = [], [], set()
    save_failed = False
    for name in args.files:
        shown = label(name)
        try:
            bitmap = to_bitmap(read_stdin() if name == "-" else name)
        except (PreprocessError, OSError) as exc:
            msg = str(exc) if isinstance(exc, PreprocessError) else f"cannot read ({exc.strerror or exc})"
            print(f"{shown or repr(name)}: {msg}", file=sys.stderr)
            results.append({"file": shown, "error": msg})
            continue
        slots.append(len(results))
        results.append({"file": shown})
        bitmaps.append(bitmap)
        if args.save_preprocessed and not save_failed:
            base = "stdin" if name == "-" else "data-url" if is_data_url(name) else Path(name).name
            while len(os.fsencode(base)) > 200:  # room for ".NN.png" in 255 bytes; whole characters only
                base = base[:-1]
            stem, n = base, 1
            while f"{stem}.png" in used:
                n += 1
                stem = f"{base}.{n}"
            used.add(f"{stem}.png")
            try:
                results[-1]["saved"] = str(save_enlarged(bitmap, args.save_preprocessed / f"{stem}.png"))
            except OSError as exc:  # the disk filled up, say: the predictions still matter more
                why = exc.strerror or exc
                print(
                    f"error: --save-preprocessed {args.save_preprocessed}: {why}; nothing more saved", file=sys.stderr
                )
                save_failed = True

    if bitmaps:
        for slot, preds in zip(slots, predictor.predict_bitmaps(np.stack(bitmaps), top=args.top)):
            results[slot]["predictions"] = [{"class": c, "probability": round(p, 6)} for c, p in preds]

    if args.json:
        for r in results:  # a name that is not UTF-8 (one byte of Latin-1, say) would be a lone surrogate
            r["file"] = os.fsencode(r["file"]).decode("utf-8", "replace")  # that strict JSON parsers reject
        lines = [json.dumps([{k: v for k, v in r.items() if k != "saved"} for r in results], indent=2)]
    else:
        lines = []
        for r in results:
            if "predictions" not in r:
                continue
            lines.append(r["file"])
            width = max(len(p["class"]) for p in r["predictions"])
            for i, p in enumerate(r["predictions"], 1):
                lines.append(f"  {i}. {p['class']:<{width}}  {100 * p['probability']:5.1f}%")
            if "saved" in r:
                lines.append(f"  (model input saved to {r['saved']})")
    try:
        for line in lines:  # line by line: a reader that left early (`| head`) is seen as a broken pipe
            print(line)
        sys.stdout.flush()
    except BrokenPipeError:
        raise
    except OSError as exc:  # a full disk behind `> file`, say
        print(f"error: cannot write the predictions ({exc.strerror or exc})", file=sys.stderr)
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # so the exit flush is quiet too
        return 1
    return 0 if all("predictions" in r for r in results) and not save_failed else 1


if __name__ == "__main__":
    try:
        sys.exit(main())
    except BrokenPipeError:  # the reader went away (`... --json | head`): nothing left to tell it
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # so the exit flush is quiet too
        sys.exit(141)
