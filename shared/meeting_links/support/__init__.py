"""The tools people run: the `meeting-links` command line, the local stack and its stand-ins
for Google and for the app. Never part of a deployed function's bundle."""
