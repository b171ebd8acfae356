"""Every table of every area, in one list: what the local stack and the tests create, what the infra template
declares, and the one botocore client they all share.

It sits above the areas (imported by ``app.py``, ``infra/``, ``tools/`` and tests, never by an area nor by
``core``): an area's code imports only the tables it uses, from their area's ``models.py``.
"""
from __future__ import annotations

from pynamodb.connection import Connection
from pynamodb.models import Model

from chalicelib.billing.models import BillingPlan, ChannelDay, MeterMark, PrepaidAccount, PrepaidEntry
from chalicelib.channels.models import Channel, Nonce, PoolItem, Topic
from chalicelib.checkout.models import Cart, Grant, MemberRedemption, Quota, Wallet
from chalicelib.core.models import Audit, RateCounter, _meta
from chalicelib.members.models import Member, MemberLink, PaymentGuard
from chalicelib.orders.models import Order, Parcel, Refund
from chalicelib.partners.models import OutboxEvent, ParkedRecord, PartnerBreaker, PartnerStats, SandboxCall
from chalicelib.settlement.models import (
    AuditRun, BookEntry, LedgerUpload, Reconciliation, SettledDay, SettlementPeriod, Statement,
)
from chalicelib.sales.models import Sale, SaleBuyer, SaleShard
from chalicelib.supply.models import (
    Goods, Stock, Supplier, SupplierKey, SupplierSession, SupplierSignInLink, Upload,
)

ALL_MODELS: tuple[type[Model], ...] = (
    Supplier, SupplierKey, Goods, Stock, Audit, Channel, PoolItem, Upload, Nonce, MemberLink, Member, Topic, Quota,
    Wallet, Grant, MemberRedemption, Order, PaymentGuard, RateCounter, OutboxEvent, Cart, Parcel, Refund,
    PartnerBreaker, PartnerStats, ChannelDay, MeterMark, ParkedRecord, BillingPlan, PrepaidAccount, PrepaidEntry,
    BookEntry, SettledDay, SettlementPeriod, Statement, LedgerUpload, Reconciliation, AuditRun, SandboxCall,
    SupplierSignInLink, SupplierSession, Sale, SaleShard, SaleBuyer,
)


def _one_client() -> None:
    """Every table through one botocore client: PynamoDB builds one per model (38 here), and each costs
    50-100 ms of CPU the first time a process touches its table. The models' settings are all ``_meta``'s."""
    meta = _meta("")
    shared = Connection(region=meta.region, host=meta.host, connect_timeout_seconds=meta.connect_timeout_seconds,
                        read_timeout_seconds=meta.read_timeout_seconds, max_retry_attempts=meta.max_retry_attempts)
    for model in ALL_MODELS:
        table = model._get_connection()
        for meta_table in table.connection._tables.values():  # the schema each model registered on its own
            shared.add_meta_table(meta_table)
        table.connection = shared


_one_client()


def create_tables() -> None:
    """Create every table that does not exist yet (local stack and tests); PynamoDB enables TTL too."""
    client = ALL_MODELS[0]._get_connection().connection.client
    existing = {name for page in client.get_paginator("list_tables").paginate() for name in page["TableNames"]}
    for model in ALL_MODELS:
        if model.Meta.table_name not in existing:
            model.create_table(billing_mode="PAY_PER_REQUEST", wait=True)
