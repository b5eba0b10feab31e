"""Apply the migrations to the database in the settings: ``python -m reference_app.db``."""

import sys

from ..config import ConfigError, load_settings
from .migrate import MigrationError, apply_migrations


def main() -> int:
    try:
        applied = apply_migrations(load_settings().postgres.url)
    except (ConfigError, MigrationError) as error:
        print(f"migrations stopped: {error}", file=sys.stderr)
        return 2
    print(f"applied {', '.join(applied)}" if applied else "the database schema is up to date")
    return 0


if __name__ == "__main__":
    sys.exit(main())
