"""Pictures for the demo goods: a coloured tile with the goods' initial, as a real PNG.

Written with ``zlib`` and ``struct`` only (no imaging library): the demo seed uploads these through the
supplier's signed upload link, like any supplier image, so the store shows pictures, not placeholders.
"""
from __future__ import annotations

import struct
import zlib

SIZE = 240     # pixels, square
SCALE = 20     # one glyph cell → SCALE × SCALE pixels (a 5 × 7 glyph becomes 100 × 140)
INK = (255, 255, 255)

# 5 × 7 capitals, one string of five cells per row ("#" inked).
GLYPHS = {
    "A": (" ### ", "#   #", "#   #", "#####", "#   #", "#   #", "#   #"),
    "B": ("#### ", "#   #", "#   #", "#### ", "#   #", "#   #", "#### "),
    "C": (" ### ", "#   #", "#    ", "#    ", "#    ", "#   #", " ### "),
    "D": ("#### ", "#   #", "#   #", "#   #", "#   #", "#   #", "#### "),
    "E": ("#####", "#    ", "#    ", "#### ", "#    ", "#    ", "#####"),
    "F": ("#####", "#    ", "#    ", "#### ", "#    ", "#    ", "#    "),
    "G": (" ### ", "#   #", "#    ", "# ###", "#   #", "#   #", " ####"),
    "H": ("#   #", "#   #", "#   #", "#####", "#   #", "#   #", "#   #"),
    "I": (" ### ", "  #  ", "  #  ", "  #  ", "  #  ", "  #  ", " ### "),
    "J": ("  ###", "   # ", "   # ", "   # ", "   # ", "#  # ", " ##  "),
    "K": ("#   #", "#  # ", "# #  ", "##   ", "# #  ", "#  # ", "#   #"),
    "L": ("#    ", "#    ", "#    ", "#    ", "#    ", "#    ", "#####"),
    "M": ("#   #", "## ##", "# # #", "# # #", "#   #", "#   #", "#   #"),
    "N": ("#   #", "##  #", "# # #", "#  ##", "#   #", "#   #", "#   #"),
    "O": (" ### ", "#   #", "#   #", "#   #", "#   #", "#   #", " ### "),
    "P": ("#### ", "#   #", "#   #", "#### ", "#    ", "#    ", "#    "),
    "Q": (" ### ", "#   #", "#   #", "#   #", "# # #", "#  # ", " ## #"),
    "R": ("#### ", "#   #", "#   #", "#### ", "# #  ", "#  # ", "#   #"),
    "S": (" ####", "#    ", "#    ", " ### ", "    #", "    #", "#### "),
    "T": ("#####", "  #  ", "  #  ", "  #  ", "  #  ", "  #  ", "  #  "),
    "U": ("#   #", "#   #", "#   #", "#   #", "#   #", "#   #", " ### "),
    "V": ("#   #", "#   #", "#   #", "#   #", "#   #", " # # ", "  #  "),
    "W": ("#   #", "#   #", "#   #", "# # #", "# # #", "# # #", " # # "),
    "X": ("#   #", "#   #", " # # ", "  #  ", " # # ", "#   #", "#   #"),
    "Y": ("#   #", "#   #", " # # ", "  #  ", "  #  ", "  #  ", "  #  "),
    "Z": ("#####", "    #", "   # ", "  #  ", " #   ", "#    ", "#####"),
}


def tile(initial: str, rgb: tuple[int, int, int]) -> bytes:
    """A SIZE × SIZE PNG in ``rgb`` with ``initial`` (a letter; anything else leaves the tile plain) in white."""
    glyph = GLYPHS.get(initial.upper(), ("     ",) * 7)
    left, top = (SIZE - 5 * SCALE) // 2, (SIZE - 7 * SCALE) // 2
    plain = bytes(rgb) * SIZE
    rows = []
    for y in range(SIZE):
        cell_row = (y - top) // SCALE
        if not 0 <= cell_row < 7:
            rows.append(plain)
            continue
        cells = b"".join(bytes(INK if c == "#" else rgb) * SCALE for c in glyph[cell_row])
        rows.append(plain[:3 * left] + cells + plain[3 * (left + 5 * SCALE):])
    raw = b"".join(b"\x00" + row for row in rows)  # filter type 0 (none) on every row

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    header = struct.pack(">IIBBBBB", SIZE, SIZE, 8, 2, 0, 0, 0)  # 8-bit RGB, no interlace
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(raw, 9)) + chunk(b"IEND", b"")
