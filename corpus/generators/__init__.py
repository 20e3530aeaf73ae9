"""Built-in sources of documents: generators a recipe names as ``location: builtin:<name>``.

``math`` (math_problems): worked problems whose answers sympy checks. Generators import nothing of
ours outside this package; pipelines.readers turns what they yield into documents.
"""

from __future__ import annotations
