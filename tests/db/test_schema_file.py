"""sql/schema.sql is the schema as it stands after every migration: a freshly migrated
database dumps to exactly that file (`make schema` regenerates it), so a migration changed
without regenerating it, or a schema changed by hand, fails here."""
from pathlib import Path

from meeting_links import config
from meeting_links.db import migrations, schema

SCHEMA = Path(__file__).parents[2] / "sql" / "schema.sql"


def test_the_schema_file_is_what_the_migrations_make(database_url):
    dumped = schema.dump(config.from_environment({"DATABASE_URL": database_url}))
    assert dumped == SCHEMA.read_text(), "sql/schema.sql is out of date: run `make schema`"


def test_the_schema_file_is_not_taken_for_a_migration():
    assert "schema.sql" not in [Path(str(p)).name for p in migrations.migration_files()]


def test_every_operation_has_a_line_in_the_index():
    text = SCHEMA.read_text()
    index = text.split("\n\n", 2)[1] if "\n\n" in text else ""
    for line in text.splitlines():
        if line.startswith("CREATE FUNCTION ") and "_v" in line.split("(")[0]:
            name = line.split()[2].split("(")[0].removeprefix("public.")
            assert f"--   {name}(" in text, name
    assert index
