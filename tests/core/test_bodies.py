"""Request bodies over the cap of their URL are refused with 413 on their Content-Length,
before anything reads them."""

from __future__ import annotations

import socket

import pytest

from tests.monitoring.servers import start_portal


def _post(client, path: str, size: int, **extra):
    return client.post(path, data=b"x" * size, content_type="application/x-www-form-urlencoded", **extra)


def test_a_login_form_body_over_64_kib_is_refused(client, db):
    response = _post(client, "/accounts/login/", 64 * 1024 + 1)
    assert response.status_code == 413
    assert "at most 65536 bytes" in response.content.decode()


def test_a_login_form_body_within_the_cap_is_read_as_usual(client, db):
    response = client.post("/accounts/login/", {"login": "nobody@example.com", "password": "x" * 1000})
    assert response.status_code == 200  # the form, with its error


def test_stripe_and_the_admin_may_send_up_to_a_mebibyte(client, db):
    assert _post(client, "/webhooks/stripe/", 200 * 1024).status_code != 413
    assert _post(client, "/admin/login/", 200 * 1024).status_code != 413
    assert _post(client, "/webhooks/stripe/", 1024 * 1024 + 1).status_code == 413


def test_a_json_client_gets_the_error_as_json(client, db):
    response = _post(client, "/accounts/login/", 100 * 1024, HTTP_ACCEPT="application/json")
    assert response.status_code == 413
    assert response.json()["code"] == "payload_too_large"
    assert response.json()["details"] == {"limit": 65536}


def test_the_api_keeps_its_own_error_for_an_oversized_body(client, db):
    response = client.patch("/api/v1/me", data=b"{" + b" " * 70_000 + b"}", content_type="application/json")
    assert response.status_code == 413
    assert response.json()["code"] == "payload_too_large"


@pytest.mark.parametrize("path", ["/accounts/login/", "/accounts/signup/"])
def test_under_gunicorn_a_100_mb_upload_is_refused_before_its_body_is_sent(tmp_path, path):
    portal = start_portal(tmp_path, tmp_path / "db.sqlite3", workers=1)
    try:
        with socket.create_connection(("127.0.0.1", portal.port), timeout=10) as connection:
            connection.sendall(
                (
                    f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Forwarded-Proto: https\r\n"
                    "Content-Type: multipart/form-data; boundary=b\r\n"
                    f"Content-Length: {100 * 1024 * 1024}\r\nConnection: close\r\n\r\n--b\r\n"
                ).encode()
            )
            answer = connection.recv(4096).decode()  # answered with the body still unsent
    finally:
        portal.stop()
    assert answer.startswith("HTTP/1.1 413")
