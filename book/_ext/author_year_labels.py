"""Bibliography labels in the same author-year form as the citations in the text.

The book cites as "Huh et al., 2023" (``bibtex_reference_style = author_year``); pybtex's
built-in label styles would list the same work as "[HMZ+23]" or "[12]". This extension registers
a pybtex formatting style ``author_year`` (the ``plain`` style with author-year labels), which
``book/references.md`` uses: "Surname, year", "Surname and Surname, year" or "Surname et al.,
year", with a, b, ... appended to labels that would otherwise repeat.
"""

from __future__ import annotations

from collections import Counter
from string import ascii_lowercase

from pybtex.plugin import register_plugin
from pybtex.style.formatting.plain import Style as PlainStyle
from pybtex.style.labels import BaseLabelStyle


def _surname(person) -> str:
    return (
        " ".join(str(part) for part in person.prelast_names + person.last_names)
        .replace("{", "")
        .replace("}", "")
    )


def author_year(entry) -> str:
    """ "Surname, 2007", "A and B, 2019" or "A et al., 2023" for a pybtex entry."""
    people = entry.persons.get("author") or entry.persons.get("editor") or []
    year = entry.fields.get("year", "n.d.")
    if not people:
        names = entry.fields.get("title", entry.key).split(":")[0]
    elif len(people) == 1:
        names = _surname(people[0])
    elif len(people) == 2:
        names = f"{_surname(people[0])} and {_surname(people[1])}"
    else:
        names = f"{_surname(people[0])} et al."
    return f"{names}, {year}"


class AuthorYearLabels(BaseLabelStyle):
    def format_labels(self, sorted_entries):
        entries = list(sorted_entries)
        labels = [author_year(e) for e in entries]
        counts, seen = Counter(labels), Counter()
        for label in labels:
            if counts[label] > 1:
                yield f"{label}{ascii_lowercase[seen[label]]}"
                seen[label] += 1
            else:
                yield label


class AuthorYearStyle(PlainStyle):
    default_label_style = AuthorYearLabels


def setup(app):
    register_plugin("pybtex.style.formatting", "author_year", AuthorYearStyle)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
