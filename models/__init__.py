"""The SQLAlchemy model layer: ORM tables, the engine factory, repositories and the vector store."""

from models.base import Base
from models.engine import get_engine, resolve_database_url, session_scope

__all__ = ["Base", "get_engine", "resolve_database_url", "session_scope"]
