"""Members: members as we know them, sessions, payment password and OTP (a signed entry link becoming a session is
``chalicelib.callers.entry``)."""
