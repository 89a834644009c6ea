"""`ackd-bench export`: STAC catalogs that stac-validator accepts offline, Croissant that mlcroissant loads."""

from __future__ import annotations

import copy
import hashlib
import json
import socket
import subprocess
import sys
from pathlib import Path

import geopandas as gpd
import numpy as np
import pytest
import rasterio
import shapely
from click.testing import CliRunner
from pyproj import Transformer

from ackd_bench.benchmark.cli import main
from ackd_bench.benchmark.dataset import export_croissant, export_stac, load_dataset, write_dataset
from ackd_bench.benchmark.dataset.export import chip_name, chip_path, records_path
from ackd_bench.benchmark.dataset.synthetic import make_synthetic_dataset_inputs

# mlcroissant parses JSON-LD with rdflib, whose parser builds a ConjunctiveGraph and warns that the
# class is deprecated; nothing here can change that, so that one warning is allowed in this module.
pytestmark = pytest.mark.filterwarnings("ignore:ConjunctiveGraph is deprecated:DeprecationWarning")

SCHEMAS = Path(__file__).parent / "data" / "stac-schemas"
SCHEMA_CONFIG = SCHEMAS / "schema-map.json"
API = "https://planetarycomputer.microsoft.com/api/stac/v1"
LOOPBACK = {"127.0.0.1", "::1", "localhost"}


class NetworkGuard:
    """Refuses every socket connection and name lookup that is not loopback, and records it.

    ``socket.create_connection``, urllib and requests/urllib3 all go through these two calls.
    """

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.attempts: list[object] = []
        connect, getaddrinfo = socket.socket.connect, socket.getaddrinfo

        def guarded_connect(sock, address):
            if isinstance(address, tuple) and address[0] not in LOOPBACK:
                self.attempts.append(address)
                raise OSError(f"test forbids network access ({address})")
            return connect(sock, address)

        def guarded_getaddrinfo(host, *args, **kwargs):
            if host not in LOOPBACK:
                self.attempts.append(host)
                raise socket.gaierror(f"test forbids name lookups ({host})")
            return getaddrinfo(host, *args, **kwargs)

        monkeypatch.setattr(socket.socket, "connect", guarded_connect)
        monkeypatch.setattr(socket, "getaddrinfo", guarded_getaddrinfo)


@pytest.fixture
def offline(monkeypatch):
    guard = NetworkGuard(monkeypatch)
    yield guard
    assert not guard.attempts, f"network access attempted: {guard.attempts}"


def stac_validate(path: Path | None = None, content: dict | None = None):
    """Validate one STAC file (or dict) with stac-validator and the vendored schemas; return the validator."""
    from stac_validator.validate import StacValidate

    validator = StacValidate(str(path) if path else None, schema_config=str(SCHEMA_CONFIG))
    if content is None:
        validator.run()
    else:
        validator.validate_dict(copy.deepcopy(content))
    return validator


def stac_files(root: Path) -> list[Path]:
    """Every STAC document of an export (not the copied manifest, nor Croissant)."""
    return sorted(p for p in root.rglob("*.json") if p.name not in ("dataset.json", "croissant.json"))


def read_records(file: Path) -> dict[str, dict]:
    import mlcroissant as mlc

    dataset = mlc.Dataset(str(file))
    assert not dataset.metadata.ctx.issues.errors, dataset.metadata.ctx.issues.report()
    decode = lambda v: v.decode() if isinstance(v, bytes) else v  # noqa: E731
    records = [{k.split("/", 1)[1]: decode(v) for k, v in r.items()} for r in dataset.records("samples")]
    return {r["sample_id"]: r for r in records}


@pytest.fixture(scope="module")
def published(tiny, tmp_path_factory) -> Path:
    """The tiny dataset exported as STAC with Croissant metadata inside the same folder."""
    return export_stac(tiny, tmp_path_factory.mktemp("pub") / "tiny", croissant="croissant.json")


@pytest.fixture(scope="module")
def api_multilabel(tmp_path_factory) -> Path:
    """A dataset built from a STAC API (item URLs known) whose RGB chips are multi-label and whose
    sample ids are not file names (as `import-paper` writes them: ``rgb:<class>/<file>``)."""
    manifest, samples, arrays = make_synthetic_dataset_inputs(3, per_class_split=1)
    rgb = samples["modality"] == "rgb"
    samples.loc[rgb, "sample_id"] = [f"rgb:{name}/../chip {i}.jpg"
                                     for i, name in enumerate(samples.loc[rgb, "label_name"])]
    manifest["provenance"].update(catalog=API, catalog_mode="api")
    manifest["modalities"]["rgb"]["label_type"] = "multi"
    samples["labels"] = [json.dumps(sorted({int(k), (int(k) + 1) % 3})) if m == "rgb" else ""
                         for k, m in zip(samples["label"], samples["modality"])]
    return write_dataset(tmp_path_factory.mktemp("api") / "ds", manifest=manifest, samples=samples, arrays=arrays)


def test_every_stac_document_validates_offline(published, tiny, offline):
    files = stac_files(published)
    samples = gpd.read_parquet(tiny / "samples.parquet")
    # 1 root + 2 modality collections + 6 split catalogs + one item per chip
    assert len(files) == 1 + 2 + 6 + len(samples)
    for path in files:
        validator = stac_validate(path)
        assert validator.valid, (path, validator.message)
    from stac_validator.validate import StacValidate

    walk = StacValidate(str(published / "collection.json"), recursive=True, schema_config=str(SCHEMA_CONFIG))
    assert walk.run() and len(walk.message) == len(files), "the catalog tree must reach every document"


def test_the_network_guard_would_catch_a_schema_download(published, monkeypatch):
    from stac_validator.validate import StacValidate

    guard = NetworkGuard(monkeypatch)
    validator = StacValidate(str(published / "ms" / "collection.json"))  # no local schema map
    assert not validator.run()
    assert guard.attempts, "without the vendored schemas, stac-validator downloads them"


@pytest.mark.parametrize("mutate, where", [
    (lambda d: d["properties"].__setitem__("label:tasks", 5), "label"),
    (lambda d: d["properties"].pop("label:type"), "label"),
    (lambda d: d["assets"]["image"].__setitem__("proj:code", 32632), "projection"),
    (lambda d: d["assets"]["image"].__setitem__("file:checksum", "not-hex"), "file"),
    (lambda d: d["assets"]["image"]["eo:bands"][0].__setitem__("common_name", "ultraviolet"), "eo"),
    (lambda d: d["properties"].pop("datetime"), "item.json"),
    (lambda d: d.__setitem__("bbox", [1.0, 2.0, 3.0]), "item.json"),
])
def test_stac_validator_rejects_broken_items(published, offline, mutate, where):
    item = json.loads(next((published / "rgb" / "val").rglob("rgb-val-*.json")).read_text())
    assert stac_validate(content=item).valid
    mutate(item)
    validator = stac_validate(content=item)
    assert not validator.valid
    assert where in json.dumps(validator.message), validator.message


def test_items_carry_class_split_footprint_and_source(published, tiny):
    samples = gpd.read_parquet(tiny / "samples.parquet")
    manifest = json.loads((tiny / "dataset.json").read_text())
    picked = samples.sample(n=8, random_state=np.random.default_rng(7).integers(1 << 31))
    for row in picked.itertuples(index=False):
        item_path = published / chip_path(row)
        item = json.loads(item_path.with_suffix(".json").read_text())
        props = item["properties"]
        assert item["id"] == row.sample_id and item["collection"] == f"{manifest['name']}-{row.modality}"
        assert (props["ackd:class"], props["ackd:class_id"], props["ackd:split"], props["ackd:modality"]) == \
            (row.label_name, row.label, row.split, row.modality)
        assert props["label:tasks"] == ["classification"] and props["label:properties"] == ["class", "split"]
        assert props["label:classes"][0] == {"name": "class", "classes": [t["name"] for t in manifest["taxonomy"]]}
        assert props["datetime"] == row.datetime and props["ackd:source_item"] == row.item_id
        assert shapely.geometry.shape(item["geometry"]).equals_exact(row.geometry, 1e-12)
        assert item["bbox"] == pytest.approx(list(row.geometry.bounds))
        labels = json.loads((item_path.parent / item["assets"]["labels"]["href"]).read_text())
        assert labels["features"][0]["properties"] == {"class": row.label_name, "class_id": row.label,
                                                       "split": row.split}
        via = [link["href"] for link in item["links"] if link["rel"] == "via"]
        assert via == list(dict.fromkeys(json.loads(row.hrefs).values()))  # the scene's assets, once each


def test_geotiffs_hold_the_dataset_pixels_on_the_chip_grid(published, tiny):
    ds = load_dataset(tiny)
    for row in ds.samples.itertuples(index=False):
        path = published / chip_path(row)
        item = json.loads(path.with_suffix(".json").read_text())
        image = item["assets"]["image"]
        data = path.read_bytes()
        assert image["file:checksum"] == "1220" + hashlib.sha256(data).hexdigest()
        assert image["file:size"] == len(data)
        with rasterio.open(path) as src:
            pixels = src.read()
            spec = ds.manifest["modalities"][row.modality]
            assert np.array_equal(pixels, getattr(ds, row.modality)[row.array_index])
            assert pixels.dtype == np.dtype(spec["dtype"]) and list(src.descriptions) == spec["bands"]
            assert src.crs.to_string() == row.crs == image["proj:code"]
            assert list(src.transform)[:6] == pytest.approx(image["proj:transform"])
            assert src.res == pytest.approx((spec["gsd"], spec["gsd"]))
            to_lonlat = Transformer.from_crs(row.crs, "EPSG:4326", always_xy=True)
            lon, lat = to_lonlat.transform(*src.xy(0, 0, offset="ul"))
        assert (lon, lat) in [pytest.approx(c, abs=1e-9) for c in row.geometry.exterior.coords]


def test_api_scenes_are_linked_and_multilabel_chips_listed(api_multilabel, tmp_path, offline):
    out = export_stac(api_multilabel, tmp_path / "pub")
    samples = gpd.read_parquet(api_multilabel / "samples.parquet")
    classes = [t["name"] for t in json.loads((api_multilabel / "dataset.json").read_text())["taxonomy"]]
    for row in samples.itertuples(index=False):
        path = out / chip_path(row)
        assert path.resolve().is_relative_to(out) and path.is_file() and path.with_suffix(".geojson").is_file()
        item = json.loads(path.with_suffix(".json").read_text())
        assert item["id"] == row.sample_id
        url = f"{API}/collections/{row.collection}/items/{row.item_id}"
        assert {(link["rel"], link["href"]) for link in item["links"] if link["href"].startswith("https")} == \
            {("derived_from", url), ("source", url)}
        if row.modality == "rgb":
            assert item["properties"]["ackd:classes"] == [classes[k] for k in json.loads(row.labels)]
            assert "classes" in item["properties"]["label:properties"]
    for path in stac_files(out):
        validator = stac_validate(path)
        assert validator.valid, (path, validator.message)
    root = json.loads((out / "collection.json").read_text())
    assert {link["href"] for link in root["links"] if link["rel"] == "derived_from"} == \
        {f"{API}/collections/sentinel-2-l2a", f"{API}/collections/naip"}


def test_links_out_of_the_catalog_are_written_without_searching_it(api_multilabel, tmp_path, monkeypatch):
    """pystac walks the whole tree to place each absolute href of a self-contained catalog (pystac
    issue 1207): quadratic in the chips (the 12,960-chip demo had not finished after 17 minutes).
    Links to source scenes never point into the catalog, so the export must not ask; what it
    writes must not change for it."""
    import pystac

    searches = []
    real = pystac.STACObject.target_in_hierarchy

    def counting(self, target):
        searches.append(target)
        return real(self, target)

    monkeypatch.setattr(pystac.STACObject, "target_in_hierarchy", counting)
    out = export_stac(api_multilabel, tmp_path / "pub")
    assert searches == []
    outward = [link for path in stac_files(out) for link in json.loads(path.read_text())["links"]
               if link["rel"] in ("derived_from", "source", "via")]
    assert outward and all(link["href"].startswith(f"{API}/collections/") for link in outward)


def test_croissant_records_are_the_sample_table(published, tiny, offline):
    records = read_records(published / "croissant.json")
    samples = gpd.read_parquet(tiny / "samples.parquet").set_index("sample_id")
    assert set(records) == set(samples.index)
    for sample_id, record in records.items():
        row = samples.loc[sample_id]
        assert (record["modality"], record["split"], record["label"], record["label_name"], record["array_index"]) \
            == (row["modality"], row["split"], row["label"], row["label_name"], row["array_index"])
        assert record["array_file"] == f"{row['modality']}.npy" and record["source_item"] == row["item_id"]
        assert shapely.from_wkt(record["footprint"]).equals_exact(row["geometry"], 1e-12)
        assert (published / record["chip"]).with_suffix(".json").is_file()
        assert Path(record["chip"]).stem == chip_name(sample_id) == sample_id
    metadata = json.loads((published / "croissant.json").read_text())
    table = records_path(published / "croissant.json")
    (csv_file,) = [d for d in metadata["distribution"] if d["@type"] == "cr:FileObject"]
    assert csv_file["contentUrl"] == table.name and csv_file["sha256"] == hashlib.sha256(table.read_bytes()).hexdigest()
    assert metadata["conformsTo"] == "http://mlcommons.org/croissant/1.0"
    (chips,) = [d for d in metadata["distribution"] if d["@type"] == "cr:FileSet"]
    assert sorted(published.glob(chips["includes"])) == sorted(published / r["chip"] for r in records.values())


def test_mlcroissant_rejects_a_file_object_without_checksum(published, tmp_path):
    import mlcroissant as mlc

    metadata = json.loads((published / "croissant.json").read_text())
    for entry in metadata["distribution"]:
        entry.pop("sha256", None)
    broken = tmp_path / "croissant.json"
    broken.write_text(json.dumps(metadata))
    with pytest.raises(mlc.ValidationError, match="sha256"):
        mlc.Dataset(str(broken))


def test_cli_writes_both_and_refuses_to_overwrite_without_force(tiny, tmp_path, offline):
    runner = CliRunner()
    stac, croissant = tmp_path / "pub" / "stac", tmp_path / "pub" / "croissant.json"
    args = ["export", str(tiny), "--stac", str(stac), "--croissant", str(croissant), "--quiet"]
    result = runner.invoke(main, args)
    assert result.exit_code == 0, result.output
    records = read_records(croissant)
    assert all((croissant.parent / r["chip"]).is_file() and r["chip"].startswith("stac/") for r in records.values())
    marker = stac / "collection.json"
    before = marker.read_bytes()
    again = runner.invoke(main, args)
    assert again.exit_code == 1 and again.output.strip().count("\n") == 0, again.output
    assert "--force" in again.output and marker.read_bytes() == before
    (stac / "ms" / "train" / "catalog.json").unlink()  # damage the old export: --force rebuilds it whole
    (stac / "stray.txt").write_text("left over")
    forced = runner.invoke(main, [*args, "--force"])
    assert forced.exit_code == 0, forced.output
    assert marker.read_bytes() == before and (stac / "ms" / "train" / "catalog.json").is_file()
    assert not (stac / "stray.txt").exists()
    assert sorted(p.name for p in tmp_path.joinpath("pub").iterdir()) == [
        "croissant.json", "croissant.records.csv", "stac"]


@pytest.mark.parametrize("case, expected", [
    ("missing dataset", "no ackd-bench dataset at"),
    ("no target", "nothing to export"),
    ("foreign folder", "is a non-empty folder that is not an ackd-bench STAC export"),
    ("stac is a file", "exists and is not a folder"),
    ("croissant exists", "already exists; pass --force"),
    ("croissant not json", "must end in .json"),
    ("inside the dataset", "is inside the dataset"),
    ("croissant away from stac", "or above it"),
    ("no mlcroissant", "pip install 'ackd-bench[croissant]'"),
    ("croissant named like the catalog", "needs a name of its own"),
    ("licence not an SPDX id", "SPDX identifier"),
])
def test_bad_input_is_one_line_and_leaves_nothing(case, expected, tiny, tmp_path, monkeypatch):
    stac, croissant = tmp_path / "out", tmp_path / "meta.json"
    args = [str(tiny), "--stac", str(stac)]
    if case == "missing dataset":
        args[0] = str(tmp_path / "nothing")
    elif case == "no target":
        args = [str(tiny)]
    elif case == "foreign folder":
        stac.mkdir()
        (stac / "notes.txt").write_text("mine")
        args.append("--force")
    elif case == "stac is a file":
        stac.write_text("a file")
    elif case == "croissant exists":
        croissant.write_text("{}")
        args = [str(tiny), "--croissant", str(croissant)]
    elif case == "croissant not json":
        args = [str(tiny), "--croissant", str(tmp_path / "meta.yaml")]
    elif case == "inside the dataset":
        args[2] = str(tiny / "stac")
    elif case == "croissant away from stac":
        args += ["--croissant", str(tmp_path / "elsewhere" / "c.json")]
    elif case == "no mlcroissant":
        import importlib.util

        find_spec = importlib.util.find_spec
        monkeypatch.setattr(importlib.util, "find_spec",
                            lambda name, *a: None if name == "mlcroissant" else find_spec(name, *a))
        args += ["--croissant", str(stac / "c.json")]
    elif case == "croissant named like the catalog":
        args += ["--croissant", str(stac / "collection.json")]
    elif case == "licence not an SPDX id":
        args += ["--license", "my own licence"]
    before = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*"))
    dataset_before = sorted(p.relative_to(tiny) for p in tiny.rglob("*"))
    result = CliRunner().invoke(main, ["export", *args])
    assert result.exit_code == 1, result.output
    assert result.output.startswith("Error: ") and result.output.count("\n") == 1, result.output
    assert expected in result.output
    assert sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*")) == before
    assert sorted(p.relative_to(tiny) for p in tiny.rglob("*")) == dataset_before


def test_a_failure_midway_leaves_no_trace(tiny, tmp_path, monkeypatch):
    from ackd_bench.benchmark.dataset.export import stac as export_module

    calls = []
    real = export_module._chip_item

    def fail_on_fifth(*args):
        calls.append(1)
        if len(calls) == 5:
            raise OSError(28, "No space left on device")
        return real(*args)

    monkeypatch.setattr(export_module, "_chip_item", fail_on_fifth)
    with pytest.raises(OSError):
        export_stac(tiny, tmp_path / "pub", croissant="croissant.json")
    assert list(tmp_path.iterdir()) == []


def test_croissant_alone_has_no_chip_paths_and_rewrites_with_force(tiny, tmp_path, offline):
    file = export_croissant(tiny, tmp_path / "meta" / "tiny.json")
    records = read_records(file)
    assert len(records) == len(gpd.read_parquet(tiny / "samples.parquet"))
    assert "chip" not in next(iter(records.values()))
    assert sorted(p.name for p in file.parent.iterdir()) == ["tiny.json", "tiny.records.csv"]
    table = records_path(file).read_bytes()
    export_croissant(tiny, file, force=True)
    assert records_path(file).read_bytes() == table


def test_export_command_runs_as_a_subprocess(tmp_path):
    result = subprocess.run([sys.executable, "-m", "ackd_bench.benchmark.cli", "export", str(tmp_path / "none"),
                             "--stac", str(tmp_path / "out")], capture_output=True, text=True, timeout=120)
    assert result.returncode == 1
    assert result.stderr.strip().startswith("Error: no ackd-bench dataset at") and "\n" not in result.stderr.strip()
    assert not (tmp_path / "out").exists()
