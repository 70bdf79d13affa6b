"""A figure for the README (`make docs-figures`): scaled down to at most --max-width pixels
wide and saved as JPEG (quality 92; the image grids are photographs, and PNG would be several
MB each), written atomically.

    python scripts/docs_copy.py reports/figures/dataset/dataset.png docs/figures/dataset-dataset.jpg
"""

from __future__ import annotations

import argparse
from pathlib import Path

from PIL import Image

from glsgn.atomic import atomic_write


def docs_copy(src: str | Path, dst: str | Path, max_width: int = 1400) -> Path:
    """`src` as a JPEG at `dst`, at most `max_width` pixels wide; returns `dst`."""
    with Image.open(src) as im:
        im = im.convert("RGB")
        if im.width > max_width:
            im = im.resize((max_width, round(im.height * max_width / im.width)), Image.LANCZOS)
        dst = Path(dst)
        dst.parent.mkdir(parents=True, exist_ok=True)
        with atomic_write(dst) as f:
            im.save(f, format="JPEG", quality=92, optimize=True)
    return dst


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("src", type=Path, help="a pipeline figure (PNG)")
    p.add_argument("dst", type=Path, help="the README's copy (JPEG)")
    p.add_argument("--max-width", type=int, default=1400, help="pixels (default 1400)")
    args = p.parse_args(argv)
    docs_copy(args.src, args.dst, args.max_width)


if __name__ == "__main__":
    main()
