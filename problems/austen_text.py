"""Held-out text of a second genre: two of Jane Austen's novels (public domain), from the Debian
package r-cran-janeaustenr, for perplexity on prose far from the Wikipedia calibration passages.

The package stores each novel as an R character vector (one element per printed line) in the
lazy-load database `data/Rdata.rdb`: consecutive entries of a 4-byte length and a zlib stream of
an R serialisation (format "X", version 3). `novels` reads them without R. The shipped file
`heldout-austen.jsonl.gz` holds one row per chapter of Northanger Abbey and Persuasion (the two
shortest novels, 160k words: more than the study's 64×2048 tokens), {id, title, text}, the text's
paragraphs (runs of non-empty lines joined by spaces) separated by newlines; rows sorted by id,
gzip with mtime 0, so `build_austen_file` is byte-reproducible from the package."""

from __future__ import annotations

import re
import struct
import subprocess
import tempfile
import zlib
from pathlib import Path

from oracle.errors import DataError

DEBIAN_PACKAGE = "r-cran-janeaustenr"
DATABASE = "usr/lib/R/site-library/janeaustenr/data/Rdata.rdb"
FILE_NAME = "heldout-austen.jsonl.gz"
SHIPPED_NOVELS = {"NORTHANGER ABBEY": "Northanger Abbey", "PERSUASION": "Persuasion"}
CHAPTER = re.compile(r"(?i)^chapter [\divxlc]+$")
STRSXP, NA_LENGTH = 16, -1


def novels(database: Path) -> dict[str, list[str]]:
    """Every character vector in an R lazy-load database, keyed by its first line (the title,
    upper-cased); NA elements become empty lines."""
    data = database.read_bytes()
    found, position = {}, 0
    while position < len(data):
        stream = zlib.decompressobj()
        content = stream.decompress(data[position + 4 :])
        position = len(data) - len(stream.unused_data)
        lines = _character_vector(content)
        found[lines[0].strip().upper()] = lines
    return found


def _character_vector(content: bytes) -> list[str]:
    """The strings of an R serialisation (XDR, version 3) of a character vector."""
    if content[:2] != b"X\n" or struct.unpack(">i", content[2:6])[0] != 3:
        raise DataError("not an R serialisation of format X, version 3")
    encoding_length = struct.unpack(">i", content[14:18])[0]
    offset = 18 + encoding_length
    flags, count = struct.unpack(">ii", content[offset : offset + 8])
    if flags & 0xFF != STRSXP:
        raise DataError(f"an R object of type {flags & 0xFF}, not a character vector")
    offset += 8
    lines = []
    for _ in range(count):
        _, length = struct.unpack(">ii", content[offset : offset + 8])
        offset += 8
        if length == NA_LENGTH:
            lines.append("")
            continue
        lines.append(content[offset : offset + length].decode("utf-8"))
        offset += length
    return lines


def chapter_rows(title: str, lines: list[str]) -> list[dict[str, str]]:
    """One row per chapter (front matter before the first chapter dropped)."""
    chapters: list[tuple[str, list[str]]] = []
    for line in lines:
        text = line.strip()
        if CHAPTER.match(text):
            chapters.append((text, []))
        elif chapters:
            chapters[-1][1].append(text)
    return [{"id": f"{title.lower().replace(' ', '-')}-{_chapter_number(heading.split()[1]):02d}",
             "title": f"{title}, {heading.title()}", "text": "\n".join(_paragraphs(body))}
            for heading, body in chapters]


def _paragraphs(lines: list[str]) -> list[str]:
    paragraphs, current = [], []
    for text in lines + [""]:
        if text:
            current.append(text)
        elif current:
            paragraphs.append(" ".join(current))
            current = []
    return paragraphs


def _chapter_number(numeral: str) -> int:
    if numeral.isdigit():
        return int(numeral)
    values = {"i": 1, "v": 5, "x": 10, "l": 50, "c": 100}
    digits = [values[c] for c in numeral.lower()]
    return sum(-d if i + 1 < len(digits) and d < digits[i + 1] else d for i, d in enumerate(digits))


def build_austen_file(out_dir: Path, package: Path | None = None) -> Path:
    """Write FILE_NAME into `out_dir` from the Debian package file `package` (default: fetched
    with `apt-get download`, unpacked with `dpkg-deb`)."""
    from problems.data_build import gzip_jsonl

    with tempfile.TemporaryDirectory(prefix="depthbench-austen-") as tmp:
        work = Path(tmp)
        if package is None:
            _run(["apt-get", "download", DEBIAN_PACKAGE], work)
            package = next(work.glob(f"{DEBIAN_PACKAGE}_*.deb"))
        _run(["dpkg-deb", "-x", str(package), str(work / "unpacked")], work)
        found = novels(work / "unpacked" / DATABASE)
    missing = sorted(set(SHIPPED_NOVELS) - set(found))
    if missing:
        raise DataError(f"{DEBIAN_PACKAGE} lacks {', '.join(missing)}")
    rows = [row for key, title in SHIPPED_NOVELS.items() for row in chapter_rows(title, found[key])]
    path = Path(out_dir) / FILE_NAME
    path.write_bytes(gzip_jsonl(sorted(rows, key=lambda row: row["id"])))
    return path


def _run(command: list[str], where: Path) -> None:
    try:
        subprocess.run(command, cwd=where, check=True, capture_output=True)
    except (OSError, subprocess.CalledProcessError) as error:
        raise DataError(f"`{' '.join(command)}` failed ({type(error).__name__}); the Austen text needs "
                        "Debian's apt-get and dpkg-deb") from None
