"""Rebuild the NTREX-128 subset shipped in neuronxa_callback/data/packaged/ntrex128/ from a full NTREX-128 checkout.

    python tools/make_ntrex_subset.py ../shared/data/ntrex128

Writes three gzip'd JSONL files (byte-for-byte reproducible: gzip mtime 0, no file name), one object per line with
"id" (the 1-based line number in the NTREX-128 files, as a string), "document" (from DOCUMENT_IDS.tsv) and one key
per NTREX-128 file code ("eng" = newstest2019-src.eng.txt, "isl" = newstest2019-ref.isl.txt, "spa-2" =
newstest2019-ref-2.spa.txt, ...); sentences are the lines with surrounding whitespace (and CRLF) removed, which is
what the directory loader reads:

    ntrex128_eval.jsonl.gz          lines 1-100, the source and all 128 references   (the evaluation pairs)
    ntrex128_fewshot.jsonl.gz       lines 101-105, the source and all 128 references (few-shot prompt examples)
    ntrex128_train_eng-isl.jsonl.gz lines 106-1997, English and Icelandic only        (the demo's training pairs)

The licence (CC BY-SA 4.0) and README travel with them; see neuronxa_callback/data/packaged/ntrex128/README.md.
"""

from __future__ import annotations

import gzip
import io
import json
import shutil
import sys
from pathlib import Path

EVAL = (1, 100)
FEWSHOT = (101, 105)
TRAIN = (106, 1997)
TRAIN_CODES = ("eng", "isl")


def read_lines(path: Path) -> list[str]:
    text = path.read_text(encoding="utf-8-sig").replace("\r\n", "\n").replace("\r", "\n")
    lines = text.split("\n")
    while lines and not lines[-1].strip():
        lines.pop()
    return [line.strip() for line in lines]


def ntrex_columns(root: Path) -> dict[str, list[str]]:
    files = root / "NTREX-128"
    columns = {"eng": read_lines(files / "newstest2019-src.eng.txt")}
    for path in sorted(files.glob("newstest2019-ref*.txt")):
        name = path.name[len("newstest2019-") : -len(".txt")]  # "ref.isl" or "ref-2.spa"
        prefix, code = name.split(".", 1)
        columns[code if prefix == "ref" else f"{code}-{prefix.split('-')[1]}"] = read_lines(path)
    return columns


def write_jsonl_gz(path: Path, rows: list[dict]) -> None:
    buffer = io.BytesIO()
    with gzip.GzipFile(filename="", mode="wb", fileobj=buffer, mtime=0, compresslevel=9) as handle:
        for row in rows:
            handle.write((json.dumps(row, ensure_ascii=False) + "\n").encode("utf-8"))
    path.write_bytes(buffer.getvalue())


def rows(columns: dict[str, list[str]], documents: list[str], span: tuple[int, int], codes) -> list[dict]:
    out = []
    for number in range(span[0], span[1] + 1):
        row = {"id": str(number), "document": documents[number - 1]}
        for code in codes:
            text = columns[code][number - 1]
            if not text:
                raise SystemExit(f"{code} line {number} is empty")
            row[code] = text
        out.append(row)
    return out


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print(__doc__)
        return 2
    root = Path(argv[0])
    columns = ntrex_columns(root)
    lengths = {code: len(lines) for code, lines in columns.items()}
    if len(set(lengths.values())) != 1:
        raise SystemExit(f"NTREX-128 files are not line-aligned: {lengths}")
    documents = read_lines(root / "DOCUMENT_IDS.tsv")
    target = Path(__file__).resolve().parent.parent / "neuronxa_callback" / "data" / "packaged" / "ntrex128"
    target.mkdir(parents=True, exist_ok=True)
    codes = list(columns)  # "eng" first, then the references in file-name order
    write_jsonl_gz(target / "ntrex128_eval.jsonl.gz", rows(columns, documents, EVAL, codes))
    write_jsonl_gz(target / "ntrex128_fewshot.jsonl.gz", rows(columns, documents, FEWSHOT, codes))
    write_jsonl_gz(target / "ntrex128_train_eng-isl.jsonl.gz", rows(columns, documents, TRAIN, TRAIN_CODES))
    shutil.copyfile(root / "LICENSE.md", target / "LICENSE.md")
    shutil.copyfile(root / "LANGUAGES.tsv", target / "LANGUAGES.tsv")
    print(f"{len(codes)} columns ({len(codes) - 1} references) -> {target}")
    for path in sorted(target.glob("*.gz")):
        print(f"  {path.name}: {path.stat().st_size / 1024:.0f} KiB")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
