"""Members and entry: signed entry links, members, sessions, payment password and OTP."""
