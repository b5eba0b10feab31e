"""Stage 03: the PostgreSQL schema, as versioned SQL migrations, and the small runner that applies them."""

from .migrate import Migration, MigrationError, apply_migrations, load_migrations, pending_migrations

__all__ = ["Migration", "MigrationError", "apply_migrations", "load_migrations", "pending_migrations"]
