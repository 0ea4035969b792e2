"""A whole journey through clients generated from the committed OpenAPI documents only:
sign up, list, order, pay, see the history, wait in line for a held ticket and get it when
its holder cancels, and a stale edit refused with 412.

Run by test-support/tests/contract.rs with the generated packages on PYTHONPATH and each
service's origin in AUTH_URL, TICKETS_URL, ORDERS_URL, PAYMENTS_URL. Every answer is parsed
into the generated models, so a response the document does not describe fails here.
"""

import os
import sys
import time
import uuid

from ticketing_auth import Client as AuthClient
from ticketing_auth.api.users import signup
from ticketing_auth.models import Credentials, Session
from ticketing_orders import AuthenticatedClient as OrdersClient
from ticketing_orders.api.orders import cancel_order, create_order, get_order, list_orders
from ticketing_orders.api.waitlist import (
    get_waitlist_entry,
    join_waitlist,
    leave_waitlist,
    list_waitlist,
)
from ticketing_orders.models import (
    JoinWaitlist,
    NewOrder,
    Order,
    OrderPage,
    OrderSource,
    OrderStatus,
    WaitlistEntry,
    WaitlistPage,
)
from ticketing_payments import AuthenticatedClient as PaymentsClient
from ticketing_payments.api.payments import create_payment, get_payment, list_payments
from ticketing_payments.models import Payment, PaymentPage, PaymentRequest, PaymentStatus
from ticketing_tickets import AuthenticatedClient as TicketsClient
from ticketing_tickets import Client as PublicTicketsClient
from ticketing_tickets.api.tickets import create_ticket, get_ticket, list_tickets, update_ticket
from ticketing_tickets.models import Ticket, TicketInput, TicketPage, TicketStatus

URL = {name: os.environ[f"{name.upper()}_URL"] for name in ("auth", "tickets", "orders", "payments")}


def check(condition, what):
    if not condition:
        sys.exit(f"journey failed: {what}")
    print(f"ok: {what}")


def eventually(what, attempt, seconds=15.0):
    deadline = time.monotonic() + seconds
    while True:
        result = attempt()
        if result is not None:
            return result
        if time.monotonic() > deadline:
            sys.exit(f"journey failed: {what} did not happen in {seconds} s")
        time.sleep(0.1)


def sign_up():
    email = f"client-{uuid.uuid4().hex[:12]}@example.com"
    resp = signup.sync_detailed(
        client=AuthClient(base_url=URL["auth"]),
        body=Credentials(email=email, password="correct horse battery"),
    )
    check(resp.status_code == 201 and isinstance(resp.parsed, Session), f"sign up {email}")
    return resp.parsed.token


def main():
    seller, buyer, waiter = sign_up(), sign_up(), sign_up()
    tickets = TicketsClient(base_url=URL["tickets"], token=seller)
    public = PublicTicketsClient(base_url=URL["tickets"])
    orders = OrdersClient(base_url=URL["orders"], token=buyer)
    waiting = OrdersClient(base_url=URL["orders"], token=waiter)
    payments = PaymentsClient(base_url=URL["payments"], token=buyer)

    def listed(title):
        resp = create_ticket.sync_detailed(client=tickets, body=TicketInput(title=title, price=25.5))
        check(resp.status_code == 201 and isinstance(resp.parsed, Ticket), f"list {title}")
        check(resp.headers["location"] == f"/api/tickets/{resp.parsed.id}", "Location names it")
        return resp.parsed

    final, encore = listed("Cup final"), listed("Encore")
    page = list_tickets.sync_detailed(client=public, limit=100)
    check(isinstance(page.parsed, TicketPage), "browse parses as a page")
    check(any(t.id == final.id for t in page.parsed.items), "the ticket is for sale")

    read = get_ticket.sync_detailed(final.id, client=public)
    check(read.parsed.status == TicketStatus.AVAILABLE, "one ticket, available")
    etag = read.headers["etag"]
    edited = update_ticket.sync_detailed(
        final.id, client=tickets, if_match=etag, body=TicketInput(title="Cup final", price=30.0)
    )
    check(edited.status_code == 200 and edited.parsed.price == 30.0, "edit with the current ETag")
    stale = update_ticket.sync_detailed(
        final.id, client=tickets, if_match=etag, body=TicketInput(title="Cup final", price=31.0)
    )
    check(stale.status_code == 412, "a stale If-Match is refused with 412")

    def order(ticket):
        resp = create_order.sync_detailed(client=orders, body=NewOrder(ticket_id=ticket.id))
        if resp.status_code == 404:  # orders has not heard of the ticket yet
            return None
        check(resp.status_code == 201 and isinstance(resp.parsed, Order), f"order {ticket.title}")
        return resp.parsed

    placed = eventually("ordering the ticket", lambda: order(final))
    check(placed.status == OrderStatus.CREATED, "the order holds the ticket")

    def pay():
        resp = create_payment.sync_detailed(
            client=payments, body=PaymentRequest(order_id=placed.id, payment_method="pm_card_visa")
        )
        if resp.status_code == 404:  # payments has not heard of the order yet
            return None
        check(resp.status_code in (201, 202) and isinstance(resp.parsed, Payment), "pay")
        return resp.parsed

    payment = eventually("paying", pay)
    settled = eventually(
        "the payment succeeding",
        lambda: (lambda p: p if p.status == PaymentStatus.SUCCEEDED else None)(
            get_payment.sync_detailed(payment.id, client=payments).parsed
        ),
    )
    check(settled.amount == 3000, "charged the edited price in cents")
    mine = list_payments.sync_detailed(client=payments, order_id=placed.id)
    check(isinstance(mine.parsed, PaymentPage) and len(mine.parsed.items) == 1, "one payment listed")

    completed = eventually(
        "the order completing",
        lambda: (lambda o: o if o.status == OrderStatus.COMPLETE else None)(
            get_order.sync_detailed(placed.id, client=orders).parsed
        ),
    )
    check(completed.payment_id == settled.id, "the order names its payment")

    second = eventually("ordering the encore", lambda: order(encore))
    check(second.source == OrderSource.DIRECT, "an order placed directly says so")
    joined = join_waitlist.sync_detailed(client=waiting, body=JoinWaitlist(ticket_id=encore.id))
    check(
        joined.status_code == 201 and isinstance(joined.parsed, WaitlistEntry),
        "another buyer joins the line for the held ticket",
    )
    check(joined.parsed.position == 1, "first in line")
    again = join_waitlist.sync_detailed(client=waiting, body=JoinWaitlist(ticket_id=encore.id))
    check(again.status_code == 200 and again.parsed.position == 1, "joining twice is the same entry")
    place = get_waitlist_entry.sync_detailed(encore.id, client=waiting)
    check(isinstance(place.parsed, WaitlistEntry) and place.parsed.position == 1, "read one place")
    lines = list_waitlist.sync_detailed(client=waiting)
    check(
        isinstance(lines.parsed, WaitlistPage)
        and [e.ticket_id for e in lines.parsed.items] == [encore.id],
        "the line is listed",
    )
    cancelled = cancel_order.sync_detailed(second.id, client=orders)
    check(cancelled.status_code == 204, "cancel")

    def handed_over():
        mine = list_orders.sync_detailed(client=waiting).parsed
        return next((o for o in mine.items if o.ticket.id == encore.id), None)

    handed = eventually("the cancelled ticket going to the first in line", handed_over)
    check(
        handed.status == OrderStatus.CREATED and handed.source == OrderSource.WAITLIST,
        "the waiter holds the ticket, from the waiting list",
    )
    gone = get_waitlist_entry.sync_detailed(encore.id, client=waiting)
    check(gone.status_code == 404, "served, the waiter is out of the line")
    left = leave_waitlist.sync_detailed(encore.id, client=waiting)
    check(left.status_code == 204, "leaving a line one is not in is fine")
    history = list_orders.sync_detailed(client=orders)
    check(isinstance(history.parsed, OrderPage), "history parses as a page")
    states = {o.id: o.status for o in history.parsed.items}
    check(states.get(placed.id) == OrderStatus.COMPLETE, "history shows the paid order")
    check(states.get(second.id) == OrderStatus.CANCELLED, "history shows the cancelled order")
    print("journey complete")


if __name__ == "__main__":
    main()
