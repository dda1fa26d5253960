"""What env.py's text tells, read without running it (and without importing Alembic).

env.py is the project's own code; the runner runs it only through Alembic. Before that, and
on the quick path (``quick.py``) instead of that, these plain-text checks say which version
table it names and how it drives its event loop and connection.
"""

import re
from typing import Optional

DEFAULT_VERSION_TABLE = "alembic_version"

# A version table: (its schema, or None for the search path; its name).
Table = tuple[Optional[str], str]


_OWN_LOOP = re.compile(
    r"\basyncio\.run\(|\.run_until_complete\(|\basyncio\.Runner\(|\banyio\.run\("
)


def starts_own_event_loop(source: str) -> bool:
    """True if env.py runs its own event loop (so it must not run inside ours)."""
    return bool(_OWN_LOOP.search(source))


def reads_shared_connection(source: str) -> bool:
    """True if env.py may look for ``config.attributes["connection"]``."""
    return "attributes" in source


_KWARG = r"{name}\s*=\s*(?:'([^'\n]*)'|\"([^\"\n]*)\")"


def version_table(source: str) -> Optional[Table]:
    """(schema or None, table) that env.py configures, or None when it is not a plain literal.

    An env.py that never mentions ``version_table`` uses Alembic's default table.
    """
    if "version_table" not in source:
        return (None, DEFAULT_VERSION_TABLE)
    table = re.findall(_KWARG.format(name=r"\bversion_table"), source)
    schema = re.findall(_KWARG.format(name=r"\bversion_table_schema"), source)
    mentions = len(re.findall(r"\bversion_table\b", source))
    schema_mentions = len(re.findall(r"\bversion_table_schema\b", source))
    if len(table) != 1 or mentions != 1 or len(schema) != schema_mentions or len(schema) > 1:
        return None
    table_name = table[0][0] or table[0][1]
    schema_name = (schema[0][0] or schema[0][1]) if schema else None
    return (schema_name, table_name)
