"""The register of ``# nosec`` suppressions and whether each one is explained.

The project's convention (DEVELOPERS.md): a suppression names its bandit rule
ids and gives its reason, either in comment lines directly above it or after a
second ``#`` on the same line. Comments are found with :mod:`tokenize`, exactly
as bandit finds them, so text inside strings is never taken for a suppression.
"""

from __future__ import annotations

import io
import re
import tokenize
from dataclasses import dataclass
from typing import Any

__all__ = ["NOSEC", "Suppression", "find_suppressions"]

#: Bandit's own pattern for a suppression comment (bandit.core.manager).
NOSEC = re.compile(r"#\s*nosec:?\s*(?P<tests>[^#]+)?#?")
_RULE = re.compile(r"B\d{3}")
_WORDS = re.compile(r"[A-Za-z]{2,}")


@dataclass(frozen=True)
class Suppression:
    """One ``# nosec`` comment.

    Attributes:
        file: Path relative to the scanned folder, POSIX separators.
        line: 1-based line number.
        rules: Bandit rule ids it names, e.g. ``("B603",)``.
        reason: Why the finding is accepted, as written.
        code: The suppressed line, stripped.
        problems: Why it is unexplained; empty when it follows the convention.
    """

    file: str
    line: int
    rules: tuple[str, ...]
    reason: str
    code: str
    problems: tuple[str, ...]

    @property
    def explained(self) -> bool:
        """Names its rules and gives a reason."""
        return not self.problems

    def to_json(self) -> dict[str, Any]:
        """The suppression as a JSON object."""
        return {
            "file": self.file,
            "line": self.line,
            "rules": list(self.rules),
            "reason": self.reason,
            "code": self.code,
            "explained": self.explained,
            "problems": list(self.problems),
        }


def find_suppressions(source: bytes, file: str) -> list[Suppression]:
    """Every suppression comment in one Python source file.

    Args:
        source: The file's bytes.
        file: Its name as the register shows it.

    Raises:
        SyntaxError: The file cannot be tokenized (bandit cannot scan it either).
        UnicodeDecodeError: It is not in its declared encoding.
    """
    text = _decode(source)
    lines = text.splitlines()
    found = []
    try:
        tokens = list(tokenize.generate_tokens(io.StringIO(text).readline))
    except tokenize.TokenError as e:
        raise SyntaxError(f"{file}: {e.args[0]}") from e
    for token in tokens:
        if token.type != tokenize.COMMENT:
            continue
        match = NOSEC.search(token.string)
        if match is None:
            continue
        line = token.start[0]
        found.append(_suppression(file, line, lines, token.string, match))
    return found


def _decode(source: bytes) -> str:
    encoding, _ = tokenize.detect_encoding(io.BytesIO(source).readline)
    return source.decode(encoding)


def _suppression(
    file: str, line: int, lines: list[str], comment: str, match: re.Match[str]
) -> Suppression:
    words = re.split(r"[,\s]+", (match.group("tests") or "").strip())
    rules = tuple(w.upper() for w in words if _RULE.fullmatch(w.upper()))
    others = [w for w in words if w and not _RULE.fullmatch(w.upper())]
    # The regex consumed the second '#', if any: what follows it is the reason.
    same_line = comment[match.end() :].strip() if match.group(0).endswith("#") else ""
    reason = same_line or _reason_above(lines, line)
    problems = []
    if not rules:
        problems.append("names no bandit rule id (a bare '# nosec' hides every finding)")
    if others:
        problems.append(f"names {', '.join(others)}, not bandit rule ids (BNNN)")
    if not _WORDS.search(reason):
        problems.append("gives no reason (on the line above, or after a second '#')")
    return Suppression(
        file=file,
        line=line,
        rules=rules,
        reason=reason,
        code=lines[line - 1].strip() if line <= len(lines) else "",
        problems=tuple(problems),
    )


def _reason_above(lines: list[str], line: int) -> str:
    """The comment-only lines directly above ``line`` (1-based), joined."""
    block: list[str] = []
    index = line - 2
    while index >= 0:
        stripped = lines[index].strip()
        if not stripped.startswith("#") or NOSEC.search(stripped):
            break
        block.append(stripped.lstrip("#").strip())
        index -= 1
    return " ".join(reversed(block)).strip()
