"""Midtrans: notification signatures and formats, and the GET Status API."""
