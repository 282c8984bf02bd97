"""Who may use the console: a password worth guessing at, and a per-client brake on guessing.

The password check is length, character variety and a small deny list of the passwords people
pick first (no strength-estimation library is installed; the one deployments use is generated,
32 random characters). The brake counts failed sign-ins per client address: after
``free_failures`` each further try waits twice as long as the last, and after
``lockout_failures`` the address is refused for ``lockout_s`` (PRETHRIFT_CONSOLE_LOGIN_*).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from cachetools import TLRUCache

from webapp.config import ConsoleLoginSettings

MIN_LENGTH = 12
# Long enough that one kind of character is still worth guessing at (a passphrase).
PASSPHRASE_LENGTH = 20
MIN_DISTINCT = 6
# What people type when asked for a password, after lower-casing, undoing the usual letter
# substitutions and dropping the digits and symbols around it ("P@ssw0rd2024!" is "password").
COMMON = frozenset(
    {
        "password", "passw", "passwd", "pass", "passphrase", "secret", "letmein", "welcome", "admin",
        "administrator", "root", "login", "master", "changeme", "changethis", "default", "qwerty",
        "iloveyou", "monkey", "dragon", "sunshine", "princess", "football", "baseball", "superman",
        "trustno", "whatever", "shadow", "michael", "summer", "winter", "spring", "autumn", "hello",
        "test", "testing", "guest", "console", "prethrift", "thrift", "opsconsole", "dashboard",
    }
)  # fmt: skip
# Runs people take for a password: the alphabet, the digits and the keyboard's rows and columns.
RUNS = (
    "abcdefghijklmnopqrstuvwxyz",
    "01234567890",
    "qwertyuiopasdfghjklzxcvbnm",
    "1qaz2wsx3edc4rfv5tgb6yhn7ujm8ik9ol0p",
    "!@#$%^&*()_+",
)
_LEET = str.maketrans(
    {"@": "a", "4": "a", "3": "e", "1": "i", "!": "i", "0": "o", "$": "s", "5": "s", "7": "t"}
)


def _is_run(text: str) -> bool:
    return len(text) >= 3 and any(text in run or text in run[::-1] for run in RUNS)


def _core(password: str) -> str:
    """The word inside the decoration: lower case, the digits and symbols around it dropped,
    common substitutions undone, separators removed."""
    lowered = password.lower()
    start, end = 0, len(lowered)
    while start < end and not lowered[start].isalpha():
        start += 1
    while end > start and not lowered[end - 1].isalpha():
        end -= 1
    return "".join(c for c in lowered[start:end].translate(_LEET) if c.isalnum())


def password_weakness(password: str) -> str | None:
    """Why ``password`` is too weak for a console on the internet, or None. Never quotes it."""
    if len(password) < MIN_LENGTH:
        return f"is shorter than {MIN_LENGTH} characters"
    if len(set(password)) < MIN_DISTINCT:
        return f"has fewer than {MIN_DISTINCT} different characters"
    kinds = sum(
        any(test(c) for c in password)
        for test in (str.islower, str.isupper, str.isdigit, lambda c: not c.isalnum())
    )
    if kinds < 2 and len(password) < PASSPHRASE_LENGTH:
        return (
            "uses one kind of character only (mix letters with digits or symbols, or use "
            f"{PASSPHRASE_LENGTH} or more characters)"
        )
    core = _core(password)
    squeezed = "".join(c for c in password.lower() if c.isalnum())
    if core in COMMON or _is_run(core) or _is_run(squeezed) or _is_run(password.lower()):
        return "is a common password or a keyboard run with digits or symbols around it"
    return None


@dataclass
class _Client:
    failures: int = 0
    until: float = 0.0  # no attempt is checked before this (monotonic) time


class LoginGuard:
    """Failed sign-ins per client, thread-safe (the console serves callbacks on several threads).

    A client's record is forgotten ``lockout_s`` after its last wait ends, so failures spread
    over days never add up to a lockout, while one that keeps guessing is locked again at its
    first failure after each lockout. At most ``max_clients`` records are kept.
    """

    def __init__(
        self,
        policy: ConsoleLoginSettings,
        max_clients: int = 100_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.policy = policy
        self._clock = clock
        self._lock = threading.Lock()
        self._clients: TLRUCache[str, _Client] = TLRUCache(
            maxsize=max_clients, ttu=self._forget_at, timer=clock
        )

    def _forget_at(self, _client: str, record: _Client, now: float) -> float:
        return max(record.until, now) + self.policy.lockout_s

    def wait(self, client: str) -> float:
        """Seconds before ``client`` may try again; 0 when it may now."""
        with self._lock:
            record = self._clients.get(client)
            return 0.0 if record is None else max(0.0, record.until - self._clock())

    def attempt(self, client: str, correct: bool) -> float:
        """One sign-in by ``client``, checked and counted atomically, so parallel guesses cannot
        all slip in before the first is counted. Returns 0.0 when the attempt is let through
        (a right password clears the client's failures, a wrong one is counted), else the seconds
        the client still has to wait: then nothing is counted and the password tells it nothing."""
        policy = self.policy
        with self._lock:
            now = self._clock()
            record = self._clients.get(client)
            if record is not None and record.until > now:
                return record.until - now
            if correct:
                self._clients.pop(client, None)
                return 0.0
            record = record or _Client()
            record.failures += 1
            if record.failures >= policy.lockout_failures:
                record.until = now + policy.lockout_s
            elif record.failures >= policy.free_failures:
                doublings = record.failures - policy.free_failures
                record.until = now + min(policy.delay_s * 2 ** min(doublings, 62), policy.max_delay_s)
            self._clients[client] = record  # (re)computes when the record is forgotten
            return 0.0
