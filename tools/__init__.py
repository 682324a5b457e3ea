"""Command-line tools around the service, not part of it: a site's event producer (``tools.produce``),
a recommendations reader (``tools.tail``) and the outside load client (``tools.bench_client``).
They may import the project's packages; nothing imports them (tests/test_imports.py)."""
