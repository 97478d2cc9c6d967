"""Bad input gets a named exception and leaves the router's state intact."""

from __future__ import annotations

from pathlib import Path

import pytest

import routerx
from routerx import Router


def _snapshot(router: Router) -> tuple:
    s = router.stats()
    return s["cache"]["entries"], s["records"], s["cost_usd"]


@pytest.mark.parametrize(
    "prompt, field",
    [
        ("", "messages"),
        ("   \n\t", "messages"),
        ([], "messages"),
        ([{"role": "user", "content": ""}], "messages"),
        ("\ud800 lone surrogate", "prompt"),
        (b"\xff\xfe invalid utf-8", "prompt"),
        ([{"role": "wizard", "content": "hi"}], "messages[0].role"),
        ([{"content": "hi"}], "messages[0].role"),
        ([{"role": "user"}], "messages[0].content"),
        (["not a dict"], "messages[0]"),
        ([{"role": "user", "content": 42}], "messages[0].content"),
        ([{"role": "user", "content": [{"type": "image_url"}]}], "messages[0].content[0]"),
        ([{"role": "user", "content": "fine"}, {"role": "user", "content": "bad \udfff"}], "messages[1].content"),
        (42, "prompt"),
        (None, "prompt"),
    ],
)
def test_bad_prompts(router: Router, prompt: object, field: str) -> None:
    d = router.route("a good request")
    router.record(d, "answer", 5, 1, 1.0)
    before = _snapshot(router)
    with pytest.raises(routerx.InvalidRequestError) as e:
        router.route(prompt)  # type: ignore[arg-type]
    assert e.value.field == field, str(e.value)
    assert isinstance(e.value, ValueError) and isinstance(e.value, routerx.RouterxError)
    assert _snapshot(router) == before
    assert router.route("a good request").cache == "exact"


def test_huge_prompt_is_rejected_before_tokenising() -> None:
    router = Router({"router": {"max_prompt_bytes": 10_000}})
    with pytest.raises(routerx.InvalidRequestError, match="over the limit of 10000 bytes"):
        router.route("x" * 10_001)
    assert router.route("x" * 9_000).input_tokens > 0


def test_prompt_longer_than_every_context_window() -> None:
    router = Router({"router": {"max_prompt_bytes": 64 << 20}})
    text = "word " * 2_100_000  # ~2.1M tokens: over every model's context window
    d = None
    with pytest.raises(routerx.NoRouteError, match="context window"):
        d = router.route(text)
    assert d is None


@pytest.mark.parametrize(
    "kw, field",
    [
        ({"latency_budget_ms": float("nan")}, "latency_budget_ms"),
        ({"latency_budget_ms": -5}, "latency_budget_ms"),
        ({"latency_budget_ms": 0}, "latency_budget_ms"),
        ({"max_cost_usd": float("nan")}, "max_cost_usd"),
        ({"max_cost_usd": -0.01}, "max_cost_usd"),
        ({"max_cost_usd": float("inf")}, None),
        ({"min_quality": 1.5}, "min_quality"),
        ({"min_quality": float("nan")}, "min_quality"),
        ({"ttl_s": 0}, "ttl_s"),
        ({"ttl_s": float("inf")}, "ttl_s"),
        ({"models": []}, "models"),
        ({"latency_budget_ms": "fast"}, "constraints"),
        ({"params": {"max_tokens": -1}}, "params.max_tokens"),
        ({"params": {"temperature": float("nan")}}, "params"),
        ({"tools": [{"f": object()}]}, "tools"),
    ],
)
def test_bad_constraints(router: Router, kw: dict, field: str) -> None:
    if field is None:
        assert router.route("hello", **kw).within_budget
        return
    with pytest.raises(routerx.InvalidConstraintError if field not in ("tools", "params", "params.max_tokens") else routerx.InvalidRequestError) as e:
        router.route("hello", **kw)
    assert e.value.field == field, str(e.value)
    assert router.stats()["cache"]["entries"] == 0


def test_bad_record_calls(router: Router) -> None:
    d = router.route("record me")
    for args, field in [
        ((d, "x", -1, 1, 1.0), "input_tokens"),
        ((d, "x", 1, 2**40, 1.0), "output_tokens"),
        ((d, "x", 1, 1, float("nan")), "latency_ms"),
        ((d, "x", 1, 1, -3.0), "latency_ms"),
        ((d, "\udc80", 1, 1, 1.0), "response"),
        (("not a decision", "x", 1, 1, 1.0), "decision"),
        ((Router().route("record me"), "x", 1, 1, 1.0), "decision"),
    ]:
        with pytest.raises(routerx.InvalidRequestError) as e:
            router.record(*args)  # type: ignore[arg-type]
        assert e.value.field == field, str(e.value)
    s = router.stats()
    assert s["records"] == 0 and s["cache"]["entries"] == 0
    assert router.record(d, "x", 1, 1, 1.0).stored


def test_malformed_config_names_file_line_and_field(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text("[router]\nstrict = true\nquality_floor = = 3\n")
    with pytest.raises(routerx.ConfigError) as e:
        Router(bad)
    assert e.value.file == str(bad) and e.value.line == 3
    bad.write_text("[router]\nstrict = true\n\n[cache]\nmax_entries = 'many'\n")
    with pytest.raises(routerx.ConfigError) as e:
        Router(bad)
    assert (e.value.line, e.value.field) == (5, "cache.max_entries")
    bad.write_text("[router]\ncolour = 'red'\n")
    with pytest.raises(routerx.ConfigError) as e:
        Router(bad)
    assert (e.value.line, e.value.field) == (2, "router.colour")
    bad.write_text("[router]\nquality_floor = 1.5\n")
    with pytest.raises(routerx.ConfigError, match="quality_floor"):
        Router(bad)
    with pytest.raises(routerx.ConfigError, match="cannot read config"):
        Router(tmp_path / "missing.toml")
    with pytest.raises(routerx.ConfigError):
        Router({"router": {"default_latency_budget_ms": float("nan")}})


CATALOG = """format = "routerx-catalog"
version = 1

[[models]]
name = "house-model"
provider = "self"
context_window = 32000
[models.quality]
chat = 0.99
extraction = 0.99
summarization = 0.99
translation = 0.99
code = 0.99
math = 0.99
reasoning = 0.99
creative = 0.99
tool-use = 0.99

[[models.tiers]]
name = "gpu-standard"
price_in = 0.01
price_out = 0.02
ttft_ms = 100
prefill_tps = 10000
decode_tps = 200
"""


def test_user_catalog_adds_models(tmp_path: Path) -> None:
    cat = tmp_path / "models.toml"
    cat.write_text(CATALOG)
    cfg = tmp_path / "routerx.toml"
    cfg.write_text('[catalog]\nfiles = ["models.toml"]\n')
    r = Router(cfg)
    assert r.route("Prove the Riemann hypothesis rigorously.").model == "house-model"
    assert len(r.catalog.models) > 1
    cfg.write_text('[catalog]\nfiles = ["models.toml"]\ninclude_default = false\n')
    assert [m.name for m in Router(cfg).catalog.models] == ["house-model"]


@pytest.mark.parametrize(
    "edit, line, field",
    [
        (("price_in = 0.01", "price_in = -1"), 19, "models[0] (house-model).tiers[0].price_in"),
        (("decode_tps = 200", "decode_tps = 0"), 19, "models[0] (house-model).tiers[0].decode_tps"),
        (("math = 0.99\n", ""), 4, "models[0] (house-model).quality"),
        (("chat = 0.99", "chat = 1.7"), 4, "models[0] (house-model).quality.chat"),
        (("context_window = 32000", "context_window = 'big'"), 4, "models[0] (house-model).context_window"),
        (('name = "house-model"', 'name = "House Model"'), 4, "models[0].name"),
        (("ttft_ms = 100\n", ""), 19, "models[0] (house-model).tiers[0].ttft_ms"),
        (("version = 1", "version = 7"), 1, "version"),
    ],
)
def test_malformed_catalog_names_file_line_and_field(tmp_path: Path, edit: tuple, line: int, field: str) -> None:
    cat = tmp_path / "models.toml"
    cat.write_text(CATALOG.replace(*edit))
    with pytest.raises(routerx.ConfigError) as e:
        routerx.Catalog.load([cat])
    assert (e.value.file, e.value.line, e.value.field) == (str(cat), line, field), str(e.value)
    assert str(cat) in str(e.value)


def test_broken_catalog_toml(tmp_path: Path) -> None:
    cat = tmp_path / "models.toml"
    cat.write_text(CATALOG.replace("provider = \"self\"", "provider = self"))
    with pytest.raises(routerx.ConfigError) as e:
        routerx.Catalog.load([cat])
    assert e.value.line == 6


def test_classifier_file(tmp_path: Path) -> None:
    import json

    model = json.loads(routerx._core.default_classifier_json())
    model["name"] = "custom-v1"
    (tmp_path / "clf.json").write_text(json.dumps(model))
    (tmp_path / "cfg.toml").write_text('[router]\nclassifier = "clf.json"\n')
    assert Router(tmp_path / "cfg.toml").stats()["classifier"] == "custom-v1"
    model["version"] = 9
    (tmp_path / "clf.json").write_text(json.dumps(model))
    with pytest.raises(routerx.ConfigError) as e:
        Router(tmp_path / "cfg.toml")
    assert "clf.json" in str(e.value) and "version 9" in str(e.value)
    (tmp_path / "clf.json").write_text("{not json")
    with pytest.raises(routerx.ConfigError, match="line 1"):
        Router(tmp_path / "cfg.toml")
