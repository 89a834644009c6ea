"""Client-side search of static catalogs: the same datetime semantics as a STAC API queried by pystac-client."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest
from pystac_client.item_search import ItemSearch

from ackd_bench.curation.stac import Catalog, _parse_interval


@pytest.mark.parametrize("interval", [
    "2023-09-30/2023-09-30", "2023/2023", "2023-12/2023-12", "2023-02/2024-02", "2021-01-01/2021-07-31",
    "../2021-07-31", "2021-07/..", "2021-01-01T00:00:00Z/2021-07-31T12:00:00Z",
])
def test_an_interval_covers_what_pystac_client_sends_an_api(interval):
    """pystac-client expands a date-only bound to its whole period (to 23:59:59Z of an end day); so does the
    static search. The reference is pystac-client's own request parameter (nothing is sent)."""
    sent = ItemSearch("http://127.0.0.1:9/search", datetime=interval).get_parameters()["datetime"]
    lo, hi = sent.split("/")
    start, end = _parse_interval(interval)
    if lo != "..":
        assert start == datetime.fromisoformat(lo.replace("Z", "+00:00"))
    if hi != "..":
        assert end == datetime.fromisoformat(hi.replace("Z", "+00:00"))


def test_a_static_search_ending_on_a_scene_day_finds_that_scene(small_world, small_preset):
    """A date-only end takes in its whole day: a scene acquired that day is found (it was cut at 00:00)."""
    catalog = Catalog(str(small_world))
    spec = small_preset.ms
    everything = catalog.search(collection=spec.collection, bbox=spec.aois[0], datetime_range="../..").items
    scene = min(everything, key=lambda item: item.datetime)
    day = scene.datetime.date()
    assert scene.datetime.time() != datetime.min.time()  # acquired during the day, not at midnight
    found = catalog.search(collection=spec.collection, bbox=spec.aois[0],
                           datetime_range=f"{day - timedelta(days=30)}/{day}").items
    assert scene.id in {item.id for item in found}
