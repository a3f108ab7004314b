"""The migrations, applied in lexical order (meeting-links migrate, or plain psql). This file
only makes the folder importable as meeting_links.sql, so the installed library ships them."""
