"""PostgreSQL: connections, the pool and its transactions, what is retried, the named queries,
the migrations, and the database's refusals as domain errors."""
from .pool import Database, Transaction

__all__ = ["Database", "Transaction"]
