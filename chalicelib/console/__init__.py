"""Ops' front doors: the local sign-in that lets a browser open ops pages, and the AWS console's dashboard
widgets (where ops live in a deployed stage)."""
