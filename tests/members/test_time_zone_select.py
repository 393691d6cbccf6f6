"""The profile page's time zone select: the same HTML as Django's own Select, at a small fixed
cost instead of one template rendering per each of its 600 options."""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any

import pytest
from django import forms
from django.test.html import parse_html

from members.forms import ProfileForm


def _field(current: str) -> Any:
    return ProfileForm(initial={"time_zone": current}, current_time_zone=current)["time_zone"]


@pytest.mark.parametrize("current", ["UTC", "Europe/Paris", "America/Argentina/Buenos_Aires", "US/Eastern"])
def test_the_select_is_the_html_djangos_select_renders(current):
    field = _field(current)
    ours = str(field)
    django_select = field.as_widget(widget=forms.Select(choices=field.field.choices))

    assert parse_html(ours) == parse_html(django_select)
    assert ours.count(" selected") == 1


def test_a_zone_that_is_not_offered_stays_selected_in_its_own_group():
    html = str(_field("US/Eastern"))
    assert html.index('<optgroup label="Current"><option value="US/Eastern" selected>') < html.index('label="Africa"')


def _python_calls(run: Callable[[], object]) -> int:
    calls = 0

    def count(frame: Any, event: str, arg: Any) -> None:
        nonlocal calls
        if event == "call":
            calls += 1

    sys.setprofile(count)
    try:
        run()
    finally:
        sys.setprofile(None)
    return calls


def test_rendering_the_select_costs_a_small_fixed_number_of_python_calls():
    str(_field("Europe/Paris"))  # the options are written once per process
    calls = _python_calls(lambda: str(_field("Europe/Paris")))
    # Django's Select renders a template per option: about 50,000 calls for these 600 options.
    assert calls < 400, calls
    plain = _python_calls(
        lambda: _field("Europe/Paris").as_widget(widget=forms.Select(choices=_field("UTC").field.choices))
    )
    assert plain > 20 * calls
