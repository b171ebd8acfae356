"""Callers: who is calling and with which proof (ops, a supplier's key, a member's session, a channel's signed
server, a sandbox's logged calls), decided in ``callers`` alone; ``entry`` turns a signed link or one-time code
into a member session. Above every area (it may import any of them, none imports it); only routes and app.py do."""
