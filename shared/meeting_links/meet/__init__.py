"""Google Meet REST API v2 and the OAuth credentials that call it."""
