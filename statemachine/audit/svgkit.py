"""What the hand-made SVG pictures share: text measured without a font file, boxes, lanes.

Labels are set in a monospace font, so a label's width is its length times one advance: the
layout knows every label's box before anything is drawn, places labels on lanes so no two boxes
meet, and the tests check the same boxes (and a real browser checks the drawn ones).
"""

from __future__ import annotations

from html import escape

import attrs

FONT = "DejaVu Sans Mono, Liberation Mono, Menlo, Consolas, monospace"
#: Advance of one character, in em, with a little room: DejaVu Sans Mono and Liberation Mono
#: are 0.60 em, Menlo 0.60, Consolas 0.55.
ADVANCE = 0.62


@attrs.frozen
class Box:
    x: float
    y: float
    w: float
    h: float

    def intersects(self, other: Box) -> bool:
        return (self.x < other.x + other.w and other.x < self.x + self.w
                and self.y < other.y + other.h and other.y < self.y + self.h)


def text_width(text: str, size: float) -> float:
    return len(text) * size * ADVANCE


def text_box(x: float, baseline: float, text: str, size: float, anchor: str = "start") -> Box:
    """The box a label drawn at (x, baseline) covers (ascent 0.8 em, descent 0.25 em)."""
    width = text_width(text, size)
    left = {"start": x, "middle": x - width / 2, "end": x - width}[anchor]
    return Box(left, baseline - 0.8 * size, width, 1.05 * size)


def text(x: float, baseline: float, content: str, size: float, *, anchor: str = "start",
         cls: str = "label", fill: str | None = None) -> str:
    paint = f' style="fill:{fill}"' if fill else ""
    return (f'<text class="{cls}" x="{x:.1f}" y="{baseline:.1f}" font-size="{size:g}" '
            f'text-anchor="{anchor}"{paint}>{escape(content)}</text>')


def label(x: float, baseline: float, content: str, size: float, *, anchor: str = "start",
          fill: str | None = None) -> tuple[str, Box]:
    """A label on a white backdrop (lines it crosses stop at its edge), and its box."""
    box = text_box(x, baseline, content, size, anchor)
    backdrop = (f'<rect x="{box.x - 1:.1f}" y="{box.y:.1f}" width="{box.w + 2:.1f}" '
                f'height="{box.h:.1f}" fill="#fff" fill-opacity="0.92"/>')
    return backdrop + text(x, baseline, content, size, anchor=anchor, fill=fill), box


class Lanes:
    """Rows of intervals that never overlap: `place` puts an interval on the first row where it
    fits (with `gap` between neighbours) and returns the row."""

    def __init__(self, gap: float = 6.0) -> None:
        self.gap = gap
        self.rows: list[list[tuple[float, float]]] = []

    def fits(self, row: int, start: float, end: float) -> bool:
        if row >= len(self.rows):
            return True
        return all(end + self.gap <= a or b + self.gap <= start for a, b in self.rows[row])

    def place(self, start: float, end: float, lowest: int = 0) -> int:
        row = lowest
        while not self.fits(row, start, end):
            row += 1
        while len(self.rows) <= row:
            self.rows.append([])
        self.rows[row].append((start, end))
        return row


STYLE = (
    f".label{{font-family:{FONT};fill:#1f2328}}"
    f".axis{{font-family:{FONT};fill:#57606a}}"
    f".state{{font-family:{FONT};fill:#1f2328}}"
)


def document(width: float, height: float, body: list[str], title: str) -> str:
    """A standalone SVG (also valid inline in HTML: the XML prolog is left out). It is drawn at
    its own size when there is room and scales down to the width of a narrower window or page
    (never a horizontal scroll bar)."""
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width:.0f}" height="{height:.0f}" '
        f'viewBox="0 0 {width:.0f} {height:.0f}" preserveAspectRatio="xMinYMin meet" '
        f'style="max-width:100%;height:auto" role="img" aria-label="{escape(title)}">\n'
        f"<title>{escape(title)}</title>\n<style>{STYLE}</style>\n"
        + "\n".join(body) + "\n</svg>\n"
    )
