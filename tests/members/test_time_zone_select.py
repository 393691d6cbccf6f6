"""The profile page's time zone select: the same HTML as Django's own Select, at a small fixed
cost instead of one template rendering per each of its 600 options."""

from __future__ import annotations

from typing import Any

import pytest
from django import forms
from django.test.html import parse_html

from members.forms import ProfileForm
from tests.portal.test_call_budgets import python_calls_of


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


def test_rendering_the_select_costs_a_small_fixed_number_ofpython_calls_of():
    str(_field("Europe/Paris"))  # the options are written once per process
    calls = python_calls_of(lambda: str(_field("Europe/Paris")))
    # Django's Select renders a template per option: about 50,000 calls for these 600 options.
    assert calls < 400, calls
    plain = python_calls_of(
        lambda: _field("Europe/Paris").as_widget(widget=forms.Select(choices=_field("UTC").field.choices))
    )
    assert plain > 20 * calls
