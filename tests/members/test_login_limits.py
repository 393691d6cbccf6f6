"""Limits on guessing passwords (members/adapters.py) and on allauth's own actions: counted per
client behind our trusted proxies, per IPv6 network, before the password is checked (so
simultaneous guesses cannot slip past), and for every form that checks a password."""

from __future__ import annotations

import itertools
import threading
import time
from typing import Any

import pytest
from django.contrib.auth.hashers import get_hashers
from django.db import connections
from django.test import Client

from members.models import Member
from tests.conftest import PASSWORD, CheapArgon2PasswordHasher
from tests.members.test_accounts import log_in, verified_alice  # noqa: F401 (a fixture)

NEW_PASSWORD = "a long and unusual passphrase"
TOO_MANY = "Too many failed login attempts. Try again later."
PROXY = "10.0.0.2"


class CountingHasher(CheapArgon2PasswordHasher):
    """The tests' Argon2, counting the passwords it hashes and checks. Checking also takes as
    long as a real Argon2 check (about 0.1 s), which is the window simultaneous guesses race in."""

    encoded = itertools.count()
    verified = itertools.count()

    def encode(self, password: str, salt: str) -> str:
        next(self.encoded)
        return super().encode(password, salt)

    def verify(self, password: str, encoded: str) -> bool:
        next(self.verified)
        time.sleep(0.1)
        return bool(super().verify(password, encoded))

    @classmethod
    def reset(cls) -> None:
        cls.encoded = itertools.count()
        cls.verified = itertools.count()

    @classmethod
    def counts(cls) -> tuple[int, int]:
        """(hashed, checked) since the last reset; reading them does not count."""
        hashed, checked = next(cls.encoded), next(cls.verified)
        cls.encoded, cls.verified = itertools.count(hashed), itertools.count(checked)
        return hashed, checked


@pytest.fixture
def counting_hasher(settings: Any) -> type[CountingHasher]:
    # The only Argon2 in the list: Django checks a hash with the last hasher of its algorithm.
    others = [name for name in settings.PASSWORD_HASHERS if "Argon2" not in name]
    settings.PASSWORD_HASHERS = ["tests.members.test_login_limits.CountingHasher", *others]
    get_hashers()  # Django loads the hasher list once, here: not inside a count
    CountingHasher.reset()
    return CountingHasher


def behind_proxy(client_address: str) -> Client:
    return Client(REMOTE_ADDR=PROXY, HTTP_X_FORWARDED_FOR=client_address)


# --- Behind our own proxy, every limit counts the client --------------------------------------


def test_password_resets_behind_the_trusted_proxy_are_limited_per_client_not_for_everyone(db, settings):
    settings.TRUSTED_PROXIES = ["10.0.0.0/8"]
    from_many = [
        behind_proxy(f"198.51.100.{n}").post("/accounts/password/reset/", {"email": f"m{n}@example.com"})
        for n in range(25)
    ]
    assert [r.status_code for r in from_many] == [302] * 25

    one_client = behind_proxy("203.0.113.50")
    from_one = [one_client.post("/accounts/password/reset/", {"email": f"o{n}@example.com"}) for n in range(25)]
    assert [r.status_code for r in from_one[:20]] == [302] * 20
    assert {r.status_code for r in from_one[20:]} == {429}
    # Other clients behind the same proxy are not held back by that one.
    elsewhere = behind_proxy("198.51.100.77").post("/accounts/password/reset/", {"email": "x@example.com"})
    assert elsewhere.status_code == 302


def test_sign_ups_behind_the_trusted_proxy_are_limited_per_client(db, settings):
    settings.TRUSTED_PROXIES = ["10.0.0.0/8"]
    form = {"password1": NEW_PASSWORD, "password2": NEW_PASSWORD}
    for n in range(21):
        response = behind_proxy(f"198.51.100.{n}").post("/accounts/signup/", {"email": f"s{n}@example.com", **form})
        assert response.status_code == 302, n
    assert Member.objects.filter(email__startswith="s").count() == 21


# --- IPv6: one network, one count -------------------------------------------------------------


def test_failed_logins_from_one_ipv6_network_share_the_address_limit(verified_alice):  # noqa: F811
    for n in range(10):
        guesser = Client(REMOTE_ADDR=f"2001:db8:1:2::{n + 1:x}")
        assert log_in(guesser, f"guess{n}@example.com", "not the password").status_code == 200
    # Another address of the same /64 is held back, even with the right password...
    same_network = Client(REMOTE_ADDR="2001:db8:1:2:ffff:ffff:ffff:fffe")
    assert TOO_MANY in log_in(same_network, "alice@example.com").content.decode()
    # ...but the next /64 is another network.
    next_network = Client(REMOTE_ADDR="2001:db8:1:3::1")
    assert log_in(next_network, "alice@example.com")["Location"] == "/dashboard/"


def test_allauth_limits_count_one_ipv6_network_behind_the_proxy_once(db, settings):
    settings.TRUSTED_PROXIES = ["10.0.0.0/8"]
    answers = [
        behind_proxy(f"2001:db8:5:6:{n:x}::1").post("/accounts/password/reset/", {"email": f"v{n}@example.com"})
        for n in range(21)
    ]
    assert [r.status_code for r in answers] == [302] * 20 + [429]
    other = behind_proxy("2001:db8:5:7::1").post("/accounts/password/reset/", {"email": "w@example.com"})
    assert other.status_code == 302


def test_the_ipv6_prefix_setting_sets_how_wide_a_network_is_counted(verified_alice, settings):  # noqa: F811
    settings.RATE_LIMIT_IPV6_PREFIX = 48
    for n in range(10):
        guesser = Client(REMOTE_ADDR=f"2001:db8:9:{n:x}::1")  # ten /64s of one /48
        assert log_in(guesser, f"guess{n}@example.com", "not the password").status_code == 200
    assert TOO_MANY in log_in(Client(REMOTE_ADDR="2001:db8:9:ff::1"), "alice@example.com").content.decode()
    assert log_in(Client(REMOTE_ADDR="2001:db8:a::1"), "alice@example.com")["Location"] == "/dashboard/"


# --- Counted before the password is checked ---------------------------------------------------


@pytest.mark.postgres
@pytest.mark.redis
@pytest.mark.django_db(transaction=True)
def test_simultaneous_wrong_logins_for_one_account_check_at_most_five_passwords(
    verified_alice,  # noqa: F811
    bob,
    counting_hasher,
):
    # How many password checks one wrong login costs (each authentication backend checks).
    assert log_in(Client(REMOTE_ADDR="192.0.2.1"), "bob@example.com", "wrong password, again").status_code == 200
    _, per_login = counting_hasher.counts()
    assert per_login >= 1
    counting_hasher.reset()

    start = threading.Barrier(24)
    answers: list[str] = []

    def guess(n: int) -> None:
        try:
            client = Client(REMOTE_ADDR=f"198.51.100.{n + 1}")  # from 24 addresses: the account limit decides
            start.wait()
            answers.append(log_in(client, "alice@example.com", f"wrong guess number {n}").content.decode())
        finally:
            connections.close_all()

    threads = [threading.Thread(target=guess, args=(n,)) for n in range(24)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)

    assert len(answers) == 24
    _, checked = counting_hasher.counts()
    assert checked <= 5 * per_login
    assert sum(TOO_MANY in answer for answer in answers) >= 19
    # The account is then refused even the right password.
    assert TOO_MANY in log_in(Client(REMOTE_ADDR="192.0.2.9"), "alice@example.com").content.decode()


def test_a_right_password_does_not_use_up_the_account_limit(verified_alice):  # noqa: F811
    for _ in range(4):
        assert log_in(Client(), "alice@example.com", "wrong password, again").status_code == 200
    for _ in range(3):
        assert log_in(Client(), "alice@example.com")["Location"] == "/dashboard/"
    # Four failures, then the right password three times: still room for the fifth failure.
    assert TOO_MANY not in log_in(Client(), "alice@example.com", "wrong password, again").content.decode()
    assert TOO_MANY in log_in(Client(), "alice@example.com").content.decode()


# --- Every form that checks a password --------------------------------------------------------


def test_wrong_current_passwords_on_the_password_change_form_are_failed_logins(client, verified_alice):  # noqa: F811
    log_in(client, "alice@example.com")
    wrong = {"oldpassword": "not my password", "password1": NEW_PASSWORD, "password2": NEW_PASSWORD}
    for _ in range(5):
        response = client.post("/accounts/password/change/", wrong)
        assert response.status_code == 200
        assert "Please type your current password." in response.content.decode()
    # The account's login limit now holds, at the login form too. (A sixth try on this form meets
    # allauth's own limit of 5 a minute first; the next test shows the form obeys the login limit.)
    assert TOO_MANY in log_in(Client(REMOTE_ADDR="198.51.100.23"), "alice@example.com").content.decode()


def test_failed_logins_elsewhere_stop_the_password_change_form_too(client, verified_alice):  # noqa: F811
    log_in(client, "alice@example.com")
    for _ in range(5):
        log_in(Client(REMOTE_ADDR="198.51.100.23"), "alice@example.com", "wrong password, again")
    right = {"oldpassword": PASSWORD, "password1": NEW_PASSWORD, "password2": NEW_PASSWORD}
    assert TOO_MANY in client.post("/accounts/password/change/", right).content.decode()


def test_a_right_current_password_still_changes_the_password(client, verified_alice):  # noqa: F811
    log_in(client, "alice@example.com")
    right = {"oldpassword": PASSWORD, "password1": NEW_PASSWORD, "password2": NEW_PASSWORD}
    assert client.post("/accounts/password/change/", right).status_code == 302
    verified_alice.refresh_from_db()
    assert verified_alice.check_password(NEW_PASSWORD)


def test_wrong_passwords_on_reauthentication_are_failed_logins(client, verified_alice):  # noqa: F811
    log_in(client, "alice@example.com")
    for _ in range(5):
        response = client.post("/accounts/reauthenticate/", {"password": "not my password"})
        assert "Incorrect password." in response.content.decode()
    assert TOO_MANY in client.post("/accounts/reauthenticate/", {"password": PASSWORD}).content.decode()
    assert TOO_MANY in log_in(Client(REMOTE_ADDR="198.51.100.23"), "alice@example.com").content.decode()


# --- Sign-up takes the same work whether or not the address is taken --------------------------


def test_sign_up_hashes_the_password_once_for_a_taken_address_as_for_a_new_one(
    alice: Member, counting_hasher: type[CountingHasher]
):
    form = {"password1": NEW_PASSWORD, "password2": NEW_PASSWORD}
    fresh = Client().post("/accounts/signup/", {"email": "gina@example.com", **form})
    hashed_for_new, checked_for_new = counting_hasher.counts()
    counting_hasher.reset()
    taken = Client().post("/accounts/signup/", {"email": "ALICE@example.com", **form})
    hashed_for_taken, checked_for_taken = counting_hasher.counts()

    assert fresh.status_code == taken.status_code == 302
    assert hashed_for_new == 1
    assert (hashed_for_taken, checked_for_taken) == (hashed_for_new, checked_for_new)
