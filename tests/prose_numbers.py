r"""Find numbers in a chapter's prose that look computed but are neither glued nor checked.

A chapter's markdown may state a number that a cell computed only in one of three ways: inserted
by myst-nb's ``{glue:text}`` (so it is the computed value, on any machine), as a rounded claim
that a code cell asserts (the threshold appears in an ``assert``), or on a line with a
``{cite}`` (a number from a paper). Inputs -- a learning rate, a batch size -- appear literally
in the code and are fine. Everything else is a number the prose could get wrong.

Three places are read: the text (decimals, percentages, ratios such as ``1.7x``); the maths,
where a decimal is flagged unless it follows ``\approx`` (a derivation the reader can redo,
``\sqrt 2 \approx 1.41``); and the comments of the code in the solutions, which nobody
executes, so a result quoted there (``# 0.859 after 100 steps``) is as unchecked as one in
the text. Integers are not read: sizes, counts and steps are inputs far more often than results.
"""
from __future__ import annotations

import json
import re
from pathlib import Path

# Constants that are facts, not results: default hyper-parameters, the sigmoid's maximum slope,
# ln 10 (the loss of a uniform guess over ten classes), chance level on ten classes.
ALLOWED = {"0.1", "0.9", "0.99", "0.999", "0.01", "0.001", "0.5", "0.25", "1.0", "0.0",
           "2.30", "2.3", "10 %", "1.5x"}

_CODE_FENCE = re.compile(r"^\s*(`{3,}|~{3,})(?!\{)")
_MATH = re.compile(r"\$\$.*?\$\$|\$[^$\n]+\$", re.S)
_ROLE = re.compile(r"\{glue(?::\w+)?\}`[^`]*`|`[^`]*`")
_VERSION = re.compile(r"\b\d+\.\d+\.\d+\w*")
_NUMBER = re.compile(r"(?<![\w.])(\d+(?:\.\d+)?\s?%|\d+(?:\.\d+)?x\b|\d+\.\d+)(?![\w.]*\d)")
# in maths: a decimal not introduced by \approx
_MATH_NUMBER = re.compile(r"(?<![\w.\\])(?<!\\approx )(?<!\\approx)(\d+\.\d+)(?![\w.]*\d)")
# in a solution's code comment: decimals, percentages, ratios, and 3e-15 (but not 1e-5)
_COMMENT_NUMBER = re.compile(r"(?<![\w.])(\d+(?:\.\d+)?\s?%|\d+(?:\.\d+)?x\b|\d+\.\d+(?:e[-+]?\d+)?"
                             r"|[2-9]e[-+]?\d+)(?![\w.]*\d)")


def _split_code_blocks(markdown: str) -> tuple[list[str], list[str]]:
    """``(prose lines, code lines)``: the lines of fenced code blocks (```python ...```, a
    solution's code) apart from the rest; directive bodies (```{exercise}) stay prose."""
    prose, code, fence = [], [], None
    for line in markdown.splitlines():
        opener = _CODE_FENCE.match(line)
        if fence is None and opener:
            fence = opener.group(1)
        elif fence is not None and line.strip() == fence:
            fence = None
        else:
            (prose if fence is None else code).append(line)
    return prose, code


def _without_code_blocks(markdown: str) -> str:
    return "\n".join(_split_code_blocks(markdown)[0])


def _code_block_comments(markdown: str) -> list[str]:
    """The ``#`` comments of the fenced code blocks in ``markdown``."""
    return [line.split("#", 1)[1] for line in _split_code_blocks(markdown)[1] if "#" in line]


def _code_text(cells) -> tuple[str, str]:
    code = "\n".join("".join(c["source"]) for c in cells if c["cell_type"] == "code")
    asserts = "\n".join(line for line in code.splitlines() if "assert" in line)
    return code, asserts


def _literal_in(number: str, text: str) -> bool:
    return re.search(rf"(?<![\w.]){re.escape(number)}(?![\w]|\.\d)", text) is not None


def unchecked_numbers(path: Path) -> list[str]:
    """``"line: number"`` for every computed-looking number in the markdown that is not
    glued, asserted, cited, an input that appears in the code, or in :data:`ALLOWED`."""
    cells = json.loads(Path(path).read_text(encoding="utf-8"))["cells"]
    code, asserts = _code_text(cells)
    found = []
    for cell in cells:
        if cell["cell_type"] != "markdown":
            continue
        markdown = "".join(cell["source"])
        prose = _without_code_blocks(markdown)
        places = [(line, _NUMBER, _MATH.sub(" ", line)) for line in prose.splitlines()]
        places += [(line, _MATH_NUMBER, " ".join(m.group(0) for m in _MATH.finditer(line)))
                   for line in prose.splitlines()]
        places += [(f"# {c.strip()}", _COMMENT_NUMBER, c) for c in _code_block_comments(markdown)]
        for line, pattern, text in places:
            if "{cite" in line or line.lstrip().startswith((":label:", ":class:")) or (
                    pattern is not _COMMENT_NUMBER and line.lstrip().startswith("#")):
                continue
            for match in pattern.finditer(_VERSION.sub(" ", _ROLE.sub(" ", text))):
                number = match.group(1)
                if number in ALLOWED or number.replace(" ", "") in ALLOWED:
                    continue
                bare = number.rstrip("%x ").strip()
                where = asserts if number.endswith("%") else code
                if _literal_in(bare, where):
                    continue
                found.append(f"{line.strip()[:100]!r}: {number}")
    return found
