"""The password policy for every place a password is set (`tollgate users add`, a new password).

NIST SP 800-63B style: length over composition rules. At least 10 characters, not the user name or
containing it, not one character repeated, not on the shipped list of common passwords. The single
exception is the demo login demo/demo, made only by `tollgate users ensure-demo` for a loopback demo."""

from __future__ import annotations

from functools import cache
from pathlib import Path

MIN_LENGTH = 10
MAX_LENGTH = 1024  # argon2 hashes any length; a bound keeps one login from costing megabytes of hashing
DEMO_USER, DEMO_PASSWORD = "demo", "demo"


class WeakPassword(ValueError):
    pass


@cache
def common_passwords() -> frozenset[str]:
    text = (Path(__file__).with_name("common_passwords.txt")).read_text()
    return frozenset(line.strip().lower() for line in text.splitlines() if line.strip() and not line.startswith("#"))


def password_problem(*, name: str, password: str) -> str | None:
    """Why `password` may not be set for user `name`, or None when it may."""
    if len(password) < MIN_LENGTH:
        return f"a password needs at least {MIN_LENGTH} characters"
    if len(password) > MAX_LENGTH:
        return f"a password has at most {MAX_LENGTH} characters"
    if len(set(password)) == 1:
        return "a password cannot be one character repeated"
    if name and name.lower() in password.lower():
        return "a password cannot contain the user name"
    if password.lower() in common_passwords():
        return "this password is on the list of common passwords"
    return None


def check_password(*, name: str, password: str) -> None:
    if (problem := password_problem(name=name, password=password)) is not None:
        raise WeakPassword(problem)
