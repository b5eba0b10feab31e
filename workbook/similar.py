"""Which learners wrote the same code? Each exercise region compared across clones and against the reference.

A mentor runs this to find copied work worth a conversation, not to grade: a high score says "look at these
two side by side", never "this was copied". Regions are compared on copydetect's normalised token streams:
names become V, strings S, layout and comments vanish, so renaming variables does not hide a copy. The
streams are matched by k-gram fingerprints, which survive moving a statement: only the few k-grams that span
the moved statement's edges are lost.
"""

from __future__ import annotations

import io
import sys
import textwrap
from collections import defaultdict
from dataclasses import dataclass
from itertools import combinations, zip_longest
from pathlib import Path
from typing import Any

from copydetect import CodeFingerprint, compare_files
from pygments.lexers import PythonLexer
from pygments.token import Number

from .exercises import HINT, MarkupError, discover, find_regions, is_stub, python_files
from .grade import app_root_of, learner_names
from .paths import REFERENCE_ROOT

REFERENCE = "reference"
# k-gram length, in characters of the normalised stream, where a name is one character: `total += price`
# becomes `V+=V`. copydetect's default (25) is meant for whole files; the reference regions are only 60-600
# such characters, a 25-character k-gram spans several short statements, and moving one loses all of them.
# Measured on the reference regions: at 15, copies with every name changed and two statements swapped scored
# 0.82-1.00 and independent solutions 0.00-0.55; at 20 copies fell to 0.76, at 12 independent work rose to 0.65.
KGRAM_LENGTH = 15
# Window 1 keeps every k-gram. Winnowing keeps fewer to save memory on large corpora; regions are tiny, and
# a wider window would miss matches shorter than KGRAM_LENGTH + window - 1.
WINDOW = 1
# Below this many normalised characters (one or two statements, such as `return (V,V,V)`), every correct
# answer looks the same, so a match says nothing about copying. Stubs fall below it too.
MIN_NORMALISED_LENGTH = 40
# Measured on the reference regions: nine solutions written independently of the reference scored 0.00-0.55
# against it (the top where the API dictates the shape, e.g. a MongoDB pipeline); of the pairs of unrelated
# regions 99% scored 0.29 or less, the highest 0.65 (two SQL-heavy regions, their SQL all strings). Nine copies
# with every name changed and two statements swapped scored 0.82-1.00. 0.7 sits in that gap.
DEFAULT_THRESHOLD = 0.7


@dataclass(frozen=True)
class SimilarPair:
    exercise_id: str
    first: str  # learner name (clone folder name) or "reference"
    second: str
    score: float  # 0..1
    first_code: str
    second_code: str


@dataclass(frozen=True)
class _Solution:
    author: str
    code: str
    fingerprint: Any  # copydetect.CodeFingerprint, untyped


def find_similar(
    clones: list[Path], threshold: float = DEFAULT_THRESHOLD, *, against_reference: bool = True
) -> list[SimilarPair]:
    """Every pair of solutions of one exercise that scores at least ``threshold``, highest first."""
    clones = list(dict.fromkeys(clone.resolve() for clone in clones))  # a clone named twice is not a pair
    # The names of the grade report, so that a mentor can read the two reports side by side.
    authors = [(name, app_root_of(clone)) for name, clone in zip(learner_names(clones), clones, strict=True)]
    if against_reference:
        authors.append((REFERENCE, REFERENCE_ROOT))
    solutions: dict[str, list[_Solution]] = defaultdict(list)
    for author, app_root in authors:
        for exercise_id, code in _written_regions(app_root, author):
            fingerprint = _fingerprint(code)
            if len(fingerprint.filtered_code) >= MIN_NORMALISED_LENGTH:
                solutions[exercise_id].append(_Solution(author, code, fingerprint))
    pairs = [
        SimilarPair(exercise_id, first.author, second.author, score, first.code, second.code)
        for exercise_id, written in solutions.items()
        for first, second in combinations(written, 2)
        if (score := _score(first, second)) >= threshold
    ]
    return sorted(pairs, key=lambda pair: (-pair.score, pair.exercise_id, pair.first, pair.second))


def format_pairs(pairs: list[SimilarPair]) -> str:
    """Markdown: one section per pair, with the two regions side by side in one text block."""
    if not pairs:
        return "No two solutions of an exercise are alike enough to look at.\n"
    titles = {exercise.id: exercise.title for exercise in discover()}
    sections = ["# Similar solutions\n\nA score of 1.00 is the same code up to names, strings and layout.\n"]
    for pair in pairs:
        title = titles.get(pair.exercise_id, "")
        sections.append(
            f"## {pair.exercise_id} · {title}\n\n**{pair.first}** and **{pair.second}**: {pair.score:.2f}\n\n"
            f"```text\n{_side_by_side(pair)}\n```\n"
        )
    return "\n".join(sections)


def _written_regions(app_root: Path, author: str) -> list[tuple[str, str]]:
    """(exercise id, dedented code) of each region that holds more than its stub."""
    written = []
    for path in python_files(app_root):
        lines = path.read_text(encoding="utf-8").splitlines()
        try:
            regions = find_regions(lines, path.relative_to(app_root))
        except MarkupError as error:
            # One learner's broken marker must not stop the comparison of everyone else.
            print(f"{author}: skipped, {error}", file=sys.stderr)
            continue
        for region in regions:
            body = [line for line in lines[region.start + 1 : region.end] if not HINT.match(line)]
            if not is_stub(body, region.exercise) and any(line.strip() for line in body):
                written.append((region.exercise.id, textwrap.dedent("\n".join(body)).strip("\n")))
    return written


def _fingerprint(code: str) -> Any:
    # copydetect abstracts names and strings but keeps numbers verbatim; changing a constant must not hide a copy.
    without_numbers = "".join("0" if kind in Number else text for kind, text in PythonLexer().get_tokens(code))
    return CodeFingerprint("region.py", KGRAM_LENGTH, WINDOW, fp=io.StringIO(without_numbers), language="python")


def _score(first: _Solution, second: _Solution) -> float:
    """The mean of the shares of each region found in the other: symmetric, 1.0 when each holds all of the other."""
    _, (first_share, second_share), _ = compare_files(first.fingerprint, second.fingerprint)
    return (float(first_share) + float(second_share)) / 2


def _side_by_side(pair: SimilarPair) -> str:
    left, right = pair.first_code.expandtabs(4).splitlines(), pair.second_code.expandtabs(4).splitlines()
    width = max(len(line) for line in [pair.first, *left])
    rows = [(pair.first, pair.second), ("-" * width, "-" * len(pair.second)), *zip_longest(left, right, fillvalue="")]
    return "\n".join(f"{first.ljust(width)} | {second}".rstrip() for first, second in rows)
