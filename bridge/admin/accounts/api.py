"""All the routes of accounts, their tokens, API subscriptions and the audit trail."""

from __future__ import annotations

from aiohttp import web

from bridge.admin.accounts.audit import add_audit_routes
from bridge.admin.accounts.drafts import add_draft_routes
from bridge.admin.accounts.operator import add_operator_routes
from bridge.admin.accounts.subscriptions import add_subscription_routes

__all__ = ["add_account_routes"]


def add_account_routes(app: web.Application) -> None:
    # The draft test first: its path would otherwise read as a subscription named "test".
    add_draft_routes(app)
    add_subscription_routes(app)
    add_operator_routes(app)
    add_audit_routes(app)
