"""`jaxviz atlas`: top dataset examples against a brute-force computation, bad inputs, and a
small atlas built once per module, checked on disk and in a real browser (Chromium, driven by
Playwright) when one is installed."""

import json
import shutil

import jax
import numpy as np
import pytest

from jaxviz import cli, data
from jaxviz.config import load_config
from jaxviz.jobs import atlas as atlas_job
from jaxviz.models import Model, get_spec
from jaxviz.views import examples as examples_lib

LAYERS = ("conv2d_1", "conv2d_2")


@pytest.fixture(scope="module")
def weights(tmp_path_factory, lenet_checkpoint):
  return lenet_checkpoint(tmp_path_factory.mktemp("weights"), seed=3)


def atlas(workdir, *overrides):
  return cli.main(["atlas", "--workdir", str(workdir), *overrides])


# ---- dataset examples --------------------------------------------------------------------------

@pytest.mark.parametrize("rank_by", ["max", "mean"])
def test_top_examples_equal_a_brute_force_per_image_computation(rank_by):
  spec = get_spec("lenet")
  model = Model(spec, spec.init_params(jax.random.key(0)))
  images, _ = data.load_dataset("digits", "test")
  x = spec.preprocess(images[:12] * 255.0)
  top = examples_lib.top_examples(model, x, list(LAYERS), k=4, rank_by=rank_by)
  assert list(top) == list(LAYERS)
  for layer in LAYERS:
    maps = np.concatenate([np.asarray(model.features(x[i:i + 1], layer)) for i in range(len(x))])
    scores = maps.max(axis=(1, 2)) if rank_by == "max" else maps.mean(axis=(1, 2))  # [N, C]
    channels = maps.shape[-1]
    assert top[layer].indices.shape == (channels, 4)
    assert top[layer].maps.shape == (channels, 4, *maps.shape[1:3])
    for c in range(channels):
      expected = np.argsort(-scores[:, c], kind="stable")[:4]
      np.testing.assert_array_equal(top[layer].indices[c], expected)
      np.testing.assert_allclose(top[layer].scores[c], scores[expected, c], rtol=1e-4, atol=1e-5)
      np.testing.assert_allclose(top[layer].maps[c], maps[expected, :, :, c], rtol=1e-4,
                                 atol=1e-5)


def test_top_examples_caps_k_at_the_number_of_images():
  spec = get_spec("lenet")
  model = Model(spec, spec.init_params(jax.random.key(0)))
  x = np.random.default_rng(0).random((3, 28, 28, 1), np.float32)
  top = examples_lib.top_examples(model, x, "conv2d_1", k=9)
  assert top["conv2d_1"].indices.shape == (20, 3)
  assert sorted(top["conv2d_1"].indices[0].tolist()) == [0, 1, 2]


def test_models_without_a_dataset_get_no_examples():
  config = load_config("atlas")
  assert atlas_job.dataset_name(config, get_spec("lenet")) == "digits"
  assert atlas_job.dataset_name(config, get_spec("vgg16")) is None


def test_the_gallery_part_is_the_gallery_jobs_config():
  """`jaxviz gallery --config default --config.layer=conv` and the atlas share galleries."""
  gallery = load_config("default")
  with gallery.unlocked():
    gallery.layer = "conv"
  assert atlas_job.gallery_config(load_config("atlas")).to_dict() == gallery.to_dict()


# ---- bad input ---------------------------------------------------------------------------------

@pytest.mark.parametrize("overrides, message", [
    (["--config.model=resnet"], "unknown model 'resnet'"),
    (["--config.layer=dense_1"], "not a conv layer"),
    (["--config.layer=conv9"], "unknown layer"),
    (["--config.example_rank=median"], "unknown example ranking 'median'"),
    (["--config.example_split=validation"], "unknown example_split"),
    (["--config.examples=-1"], "examples must be"),
    (["--config.classes=12"], "class index 12 is out of range"),
    (["--config.passes=0"], "passes must be"),
    (["--config.dataset=cifar"], "unknown dataset 'cifar'"),
    (["--config.steps=0"], "steps must be"),
    (["--config.stepz=5"], "unknown config key 'stepz'"),
])
def test_bad_input_exits_2_and_writes_nothing(tmp_path, capsys, overrides, message):
  workdir = tmp_path / "atlas"
  assert atlas(workdir, *overrides) == 2
  err = capsys.readouterr().err
  assert err.startswith("jaxviz atlas: error: ") and message in err, err
  assert len(err.strip().splitlines()) == 1
  assert not workdir.exists()


def test_a_workdir_that_cannot_be_written_exits_2(tmp_path, capsys):
  blocker = tmp_path / "file"
  blocker.write_text("not a folder")
  assert atlas(blocker / "atlas", "--config.steps=2") == 2
  assert "cannot write to workdir" in capsys.readouterr().err
  assert blocker.read_text() == "not a folder"


def test_no_workdir_exits_2(capsys):
  assert cli.main(["atlas"]) == 2
  assert "give --workdir" in capsys.readouterr().err


# ---- a small atlas, built once -----------------------------------------------------------------

SMALL = ("--config.steps=4", "--config.filters=0-5", "--config.passes=1")


@pytest.fixture(scope="module")
def built(tmp_path_factory, weights):
  workdir = tmp_path_factory.mktemp("atlas")
  assert atlas(workdir, f"--config.weights={weights}", *SMALL) == 0
  return workdir


def test_the_atlas_holds_every_layer_the_classes_and_examples(built):
  site = built / "atlas"
  assert (site / "index.html").is_file() and (site / "style.css").is_file()
  manifest = json.loads((site / "atlas.json").read_text())
  assert manifest["layers"] == list(LAYERS) and manifest["classes"] and manifest["examples"]
  for layer in LAYERS:
    records = json.loads((built / layer / "filters.json").read_text())
    assert [r["filter"] for r in records] == list(range(6))
    for r in records:
      f = r["filter"]
      for name in (f"tiles/{f}.png", f"curves/{f}.png", f"filter-{f}.html"):
        assert (site / layer / name).is_file(), name
      assert len(list((site / layer / "examples").glob(f"{f}-*.png"))) == 9
    assert (site / layer / "weights").is_dir() == (layer == "conv2d_1")
  assert len(list((site / "classes").glob("class_*.png"))) == 10
  text = (site / "index.html").read_text()
  assert "http://" not in text and "https://" not in text  # nothing from the network
  assert not [p for p in built.iterdir() if p.name.startswith(".atlas.")]  # no staging left


def test_a_rerun_computes_nothing_and_keeps_the_site(built, weights, capsys):
  stamp = (built / "atlas" / "index.html").stat().st_mtime_ns
  assert atlas(built, f"--config.weights={weights}", *SMALL) == 0
  err = capsys.readouterr().err
  assert "conv2d_1 (1/2): already done" in err and "conv2d_2 (2/2): already done" in err
  assert "classes: already done" in err and "site already up to date" in err
  assert (built / "atlas" / "index.html").stat().st_mtime_ns == stamp


# ---- in a browser ------------------------------------------------------------------------------

def find_chromium():
  for name in ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable"):
    path = shutil.which(name)
    if path:
      return path
  return None


@pytest.fixture(scope="module")
def browser():
  sync_api = pytest.importorskip("playwright.sync_api",
                                 reason="Playwright is not installed (pip install '.[test]')")
  path = find_chromium()
  if path is None:
    pytest.skip("no Chromium browser found on PATH (chromium, chromium-browser, google-chrome); "
                "install one, e.g. apt-get install chromium, to run the browser tests")
  with sync_api.sync_playwright() as playwright:
    browser = playwright.chromium.launch(executable_path=path)
    yield browser
    browser.close()


@pytest.fixture
def page(browser):
  page = browser.new_page(viewport={"width": 1200, "height": 2400})
  page.problems = []
  page.on("console", lambda m: page.problems.append(m.text) if m.type == "error" else None)
  page.on("pageerror", lambda e: page.problems.append(str(e)))
  page.on("requestfailed", lambda r: page.problems.append(f"failed: {r.url}"))
  yield page
  page.close()


def load(page, path):
  page.goto(path.as_uri())
  page.wait_for_load_state("load")
  page.wait_for_function("Array.from(document.images).every(i => i.complete)")
  broken = page.evaluate("Array.from(document.images).filter(i => !i.naturalWidth)"
                         ".map(i => i.src)")
  assert broken == [] and page.problems == [], (broken, page.problems)


def test_pages_load_from_file_urls_without_errors(built, page):
  site = built / "atlas"
  load(page, site / "index.html")
  assert page.locator("table.layers tbody tr").count() == len(get_spec("lenet").layers)
  assert page.locator(".classes figure.class").count() == 10
  for layer in LAYERS:
    load(page, site / layer / "index.html")
    load(page, site / layer / "filter-0.html")


def test_a_layer_page_has_one_tile_per_record(built, page):
  for layer in LAYERS:
    records = json.loads((built / layer / "filters.json").read_text())
    load(page, built / "atlas" / layer / "index.html")
    assert page.locator(".tile").count() == len(records)
    assert page.locator(".tile img[loading=lazy]").count() == len(records)
    shown = page.locator(".tile").evaluate_all("ts => ts.map(t => +t.dataset.filter)")
    live = sorted((r["rank"], r["filter"]) for r in records if not r["dead"])
    assert shown[:len(live)] == [f for _, f in live]  # best first


def test_a_layer_page_filters_and_sorts(built, page):
  records = json.loads((built / "conv2d_2" / "filters.json").read_text())
  load(page, built / "atlas" / "conv2d_2" / "index.html")
  page.select_option("#show", "dead")
  assert page.locator(".tile:visible").count() == sum(r["dead"] for r in records)
  page.select_option("#show", "live")
  assert page.locator(".tile:visible").count() == sum(not r["dead"] for r in records)
  page.select_option("#show", "all")
  page.select_option("#sort", "robustness")
  shown = page.locator(".tile").evaluate_all("ts => ts.map(t => +t.dataset.filter)")
  by_filter = {r["filter"]: r for r in records}
  values = [by_filter[f]["robustness"] for f in shown]
  present = [v for v in values if v is not None]
  assert present == sorted(present, reverse=True) and values[:len(present)] == present
  page.select_option("#sort", "filter")
  assert page.locator(".tile").evaluate_all("ts => ts.map(t => +t.dataset.filter)") == \
      sorted(by_filter)


def test_opening_a_tile_shows_its_detail_with_nine_examples(built, page):
  for layer in LAYERS:
    load(page, built / "atlas" / layer / "index.html")
    first = page.locator(".tile").first
    f = int(first.get_attribute("data-filter"))
    first.click()
    page.wait_for_url(f"**/filter-{f}.html")
    load(page, built / "atlas" / layer / f"filter-{f}.html")
    assert page.locator("h1").inner_text() == f"{layer} · filter {f}"
    assert page.locator("#examples figure.example").count() == 9
    assert page.locator(".curve img").count() == 1
    assert page.locator(".weights img").count() == (1 if layer == "conv2d_1" else 0)
