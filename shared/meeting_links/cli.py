"""meeting-links: the command line for developers and the support team.

  meeting-links migrate                 apply sql/ migrations and the pool settings
  meeting-links local                   migrate and serve both functions locally
  meeting-links sign ORDER_ID ...       print (or --send) a correctly signed notification
  meeting-links pool|links|bookings|... the admin commands (see --help)
"""
from __future__ import annotations

import argparse
import json
import sys
import uuid
from dataclasses import replace
from datetime import datetime, timezone

import requests

from . import admin, local_stack, migrations, signature
from .config import from_environment
from .db import Database
from .errors import DatabaseUnavailable, MeetingLinksError

STATUS_CODES = {"settlement": "200", "capture": "200", "pending": "201", "authorize": "201",
                "deny": "202", "cancel": "202", "expire": "202", "failure": "202",
                "refund": "200", "partial_refund": "200", "chargeback": "200",
                "partial_chargeback": "200"}


def _notification(args, settings) -> dict:
    amount = args.amount
    if amount is None:
        booking = admin.booking_by_order(Database(settings), args.order_id)
        amount = f"{booking['price']:.2f}"
    body = {
        "transaction_time": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M:%S"),
        "transaction_status": args.status,
        "transaction_id": args.transaction_id or str(uuid.uuid5(uuid.NAMESPACE_URL, f"midtrans:{args.order_id}")),
        "status_message": "midtrans payment notification",
        "status_code": args.status_code or STATUS_CODES.get(args.status, "200"),
        "payment_type": "bank_transfer",
        "order_id": args.order_id,
        "merchant_id": "LOCAL",
        "gross_amount": amount,
        "currency": "IDR",
    }
    if args.fraud_status:
        body["fraud_status"] = args.fraud_status
    return signature.signed(body, settings.midtrans_server_key)


def cmd_sign(args, settings) -> int:
    if not settings.midtrans_server_key:
        # The key `meeting-links local` serves with when none is set; never a real one.
        print("MIDTRANS_SERVER_KEY is not set: signing with the local development key", file=sys.stderr)
        settings = replace(settings, midtrans_server_key=local_stack.LOCAL_SERVER_KEY)
    body = _notification(args, settings)
    if not args.send:
        print(json.dumps(body, indent=2))
        return 0
    try:
        response = requests.post(args.send, json=body, timeout=15)
    except requests.RequestException as exc:
        print(f"could not reach {args.send}: {type(exc).__name__}", file=sys.stderr)
        return 1
    print(f"HTTP {response.status_code}")
    print(response.text)
    return 0 if response.ok else 1


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="meeting-links", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="command", required=True)

    sub.add_parser("migrate", help="apply the migrations in sql/ and the pool settings")

    local = sub.add_parser("local", help="create the database, migrate, serve both functions")
    local.add_argument("--webhook-port", type=int, default=8080)
    local.add_argument("--assign-port", type=int, default=8081)

    sign = sub.add_parser("sign", help="a correctly signed Midtrans notification for an order")
    sign.add_argument("order_id")
    sign.add_argument("--status", default="settlement", help="transaction_status (default settlement)")
    sign.add_argument("--fraud-status", default=None, help="fraud_status, e.g. accept or challenge")
    sign.add_argument("--amount", default=None, help="gross_amount as sent (default: the booking's price)")
    sign.add_argument("--status-code", default=None, help="status_code (default: Midtrans's for the status)")
    sign.add_argument("--transaction-id", default=None)
    sign.add_argument("--send", metavar="URL", default=None, help="POST it to this webhook URL")

    admin.add_commands(sub)
    return p


def main(argv=None) -> int:
    args = parser().parse_args(argv)
    try:
        settings = from_environment()
        if args.command == "migrate":
            migrations.migrate(settings)
            return 0
        if args.command == "local":
            return local_stack.run(args.webhook_port, args.assign_port)
        if args.command == "sign":
            return cmd_sign(args, settings)
        return admin.run(args, settings)
    except (MeetingLinksError, migrations.MigrationError) as exc:
        if isinstance(exc, DatabaseUnavailable):
            print(f"error: the database cannot be reached ({exc})", file=sys.stderr)
        else:
            print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
