"""Small helpers for the raw SQL that set-based operations write, on both databases."""

from django.db import connection


def in_ids(column: str, ids: list[int]) -> tuple[str, list]:
    """Return ``column`` IN ids as SQL and its parameters: one array on PostgreSQL.

    One array parameter keeps the statement's text the same for any number of ids.
    """
    if connection.vendor == "postgresql":
        return f"{column} = ANY(%s)", [list(ids)]
    return f"{column} IN ({', '.join(['%s'] * len(ids))})", list(ids)
