"""Health endpoints."""

from __future__ import annotations


def test_liveness_touches_no_dependency(client, django_assert_num_queries, db):
    with django_assert_num_queries(0):
        response = client.get("/health/live")
    assert response.status_code == 200
    assert response.content == b"ok\n"
    assert "no-cache" in response["Cache-Control"]
