"""Property-based fuzzing (hypothesis) of what users hand in: preset, grid and submission parsing.

The property: whatever the input, parsing either gives a valid object or raises the project's own
error (an `AckdBenchError`, printed by the CLI as one line) — never another exception. Inputs are
random JSON-like values put at random places of a valid document (so the fuzzing gets past the
first check), and random text through the YAML and JSON readers. Examples are derandomised so
that a failure is the same on every machine and in every order; ``--hypothesis-seed`` widens it.
"""

from __future__ import annotations

import functools
import json

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ackd_bench.benchmark.boundary import InputError, parse_json, parse_yaml
from ackd_bench.benchmark.errors import AckdBenchError
from ackd_bench.curation.presets import PRESET_DIR, Preset, preset_from_dict

FUZZ = settings(max_examples=400, deadline=None, derandomize=True,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])

scalars = st.one_of(st.none(), st.booleans(), st.integers(min_value=-2**70, max_value=2**70),
                    st.floats(allow_nan=False), st.text(max_size=12))
values = st.recursive(scalars, lambda inner: st.one_of(st.lists(inner, max_size=4),
                                                       st.dictionaries(st.text(max_size=6), inner, max_size=4)),
                      max_leaves=12)


def _paths(doc, prefix=()):
    """Every key path into nested mappings and lists of ``doc``."""
    yield prefix
    if isinstance(doc, dict):
        for key, value in doc.items():
            yield from _paths(value, (*prefix, key))
    elif isinstance(doc, list):
        for i, value in enumerate(doc):
            yield from _paths(value, (*prefix, i))


def _mutated(doc, path, value):
    doc = json.loads(json.dumps(doc))
    if not path:
        return value
    target = doc
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    return doc


DEMO = yaml.safe_load((PRESET_DIR / "demo.yaml").read_text())
DEMO_PATHS = list(_paths(DEMO))


@FUZZ
@given(path=st.sampled_from(DEMO_PATHS), value=values)
def test_a_preset_with_any_value_anywhere_is_valid_or_a_preset_error(path, value):
    try:
        preset = preset_from_dict(_mutated(DEMO, path, value), demo_scale=0.25)
    except AckdBenchError:
        return
    assert isinstance(preset, Preset)
    # What was accepted is what the fields declare: the strict check let no coercion through.
    assert isinstance(preset.seed, int) and not isinstance(preset.seed, bool)
    assert isinstance(preset.sign, bool) and isinstance(preset.catalog, str)
    for spec in (preset.ms, preset.rgb):
        assert spec.per_class is None or (type(spec.per_class) is int and spec.per_class > 0)
        assert spec.max_item_cloud is None or type(spec.max_item_cloud) in (int, float)


GRID = {"name": "g", "pairs": [{"teacher": "resnet18", "student": "resnet18"}],
        "methods": ["kd", {"method": "dkd", "options": {"temperature": 4.0}}], "seeds": [0, 1], "profile": "smoke",
        "profile_overrides": {"epochs": 2}, "datasets": ["data/x"]}
GRID_PATHS = list(_paths(GRID))


@FUZZ
@given(path=st.sampled_from(GRID_PATHS), value=values)
def test_a_grid_with_any_value_anywhere_is_valid_or_a_grid_error(path, value):
    from ackd_bench.benchmark.sweep import Grid, parse_grid

    try:
        grid = parse_grid(_mutated(GRID, path, value))
    except AckdBenchError:
        return
    assert isinstance(grid, Grid) and grid.seeds and all(type(s) is int for s in grid.seeds)


@FUZZ
@given(text=st.text(max_size=200))
def test_any_text_is_yaml_data_or_an_input_error(text):
    try:
        parse_yaml(text, where="t")
    except InputError:
        pass


@FUZZ
@given(text=st.one_of(st.text(max_size=200), values.map(json.dumps)))
def test_any_text_is_json_data_or_an_input_error(text):
    try:
        parse_json(text, where="t", unique_keys=True)
    except InputError:
        pass


@FUZZ
@given(text=st.text(alphabet="[]{}\"\\,: 1a", max_size=400))
def test_the_depth_prescan_agrees_with_the_parser(text):
    """Where the parser accepts a document, the pre-scan's depth is its true nesting depth."""
    from ackd_bench.benchmark.boundary import json_depth

    try:
        data = json.loads(text)
    except (ValueError, RecursionError):
        return

    def depth(value):
        if isinstance(value, dict):
            return 1 + max(map(depth, value.values()), default=0)
        if isinstance(value, list):
            return 1 + max(map(depth, value), default=0)
        return 0

    assert json_depth(text) == depth(data)


@functools.cache
def _bundle() -> dict:
    """A valid submission packed from three committed reference runs (kd, seeds 0-2)."""
    import tempfile
    from pathlib import Path

    from ackd_bench.leaderboard.submission import pack

    runs = sorted((Path(__file__).resolve().parents[1] / "benchmarks/results/demo_v2").glob("*__kd__seed*.json"))[:3]
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "runs"
        folder.mkdir()
        for path in runs:
            (folder / path.name).write_bytes(path.read_bytes())
        made = pack(folder, out=Path(tmp) / "s.json", name="A. Tester", affiliation="Lab",
                    code_url="https://example.org/c", licence="CC-BY-4.0")
        return json.loads(made.read_text())


def _short_paths(doc, prefix=(), depth=0):
    """Key paths into ``doc``, the long lists (predictions, confusion rows) cut to their first entries."""
    yield prefix
    if depth > 6:
        return
    if isinstance(doc, dict):
        for key, value in doc.items():
            yield from _short_paths(value, (*prefix, key), depth + 1)
    elif isinstance(doc, list):
        for i, value in enumerate(doc[:2]):
            yield from _short_paths(value, (*prefix, i), depth + 1)


@settings(FUZZ, max_examples=60)  # each example recomputes the table from three runs
@given(data=st.data(), value=values)
def test_a_submission_with_any_value_anywhere_gets_problems_listed_never_an_exception(data, value):
    from ackd_bench.leaderboard.submission import find_problems

    bundle = _bundle()
    path = data.draw(st.sampled_from(list(_short_paths(bundle))))
    mutated = _mutated(bundle, path, value)
    try:
        problems = find_problems(json.dumps(mutated).encode())
    except AckdBenchError:
        return
    assert isinstance(problems, list) and all(isinstance(p, str) and p for p in problems)
    if mutated != bundle and not problems:  # accepted: it must still be a complete, consistent bundle
        assert isinstance(mutated["summary"]["oa_mean"], float)
