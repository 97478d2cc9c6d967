"""The learned router: training, the artefact, routing by predicted quality, the knob, feedback,
bad input, concurrency, and the evaluation on real outcome data."""

from __future__ import annotations

import importlib.util
import json
import math
import threading
from pathlib import Path
from typing import Any, Dict, List

import pytest

import routerx
from routerx.cli import main as cli
from routerx.embed import INSTALL_COMMAND, minilm_dir
from routerx.errors import ConfigError, InvalidConstraintError, InvalidRequestError

from conftest import run_threads, shared_data

np = pytest.importorskip("numpy")
if minilm_dir() is None:
    pytest.skip(f"embedding model not installed: {INSTALL_COMMAND}", allow_module_level=True)

STRONG, CHEAP = "gpt-4.1", "gpt-4.1-nano"
PAIR = [STRONG, CHEAP]
LANGS = ["Python", "Rust", "Go", "Java", "C++", "TypeScript", "Haskell", "Kotlin"]
TASKS = ["parses a CSV file", "merges two sorted lists", "computes a rolling median", "validates an IBAN", "implements an LRU cache", "finds cycles in a graph", "tokenizes arithmetic", "retries with backoff"]
CHATS = ["a joke about cats", "a fun fact about the moon", "a greeting for a birthday card", "a short pun about coffee", "a friendly hello in French", "a compliment for a colleague", "a riddle about time", "a one-line motto for Monday"]


def code_prompt(i: int) -> str:
    return f"Write a {LANGS[i % 8]} function that {TASKS[(i // 8) % 8]}, with tests and edge cases."


def chat_prompt(i: int) -> str:
    return f"Tell me {CHATS[i % 8]}, please{'!' * (i // 8 % 3)}"


def write_outcomes(path: Path, n: int = 64) -> Path:
    """Long format, as the feedback log writes it: the cheap model fails at code, not at chat."""
    with open(path, "w", encoding="utf-8") as f:
        for i in range(n):
            for prompt, cheap in ((code_prompt(i), 0.0), (chat_prompt(i), 1.0)):
                f.write(json.dumps({"prompt": prompt, "model": STRONG, "score": 1.0}) + "\n")
                f.write(json.dumps({"prompt": prompt, "model": CHEAP, "score": cheap}) + "\n")
    return path


@pytest.fixture(scope="module")
def artefact(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("quality")
    out = d / "model.json"
    assert cli(["train", "--data", str(write_outcomes(d / "outcomes.jsonl")), "--out", str(out), "--l2", "1e-4"]) == 0
    return out


def learned(artefact: Path, **quality: Any) -> routerx.Router:
    return routerx.Router({"quality": {"model": str(artefact), **quality}}, db=None)


def test_artefact_is_versioned_and_training_is_deterministic(artefact: Path, tmp_path: Path) -> None:
    a = json.loads(artefact.read_text())
    assert a["format"] == "routerx-quality" and a["version"] == 1 and a["embedder"] == "static"
    assert [m["name"] for m in a["models"]] == PAIR and a["dim"] == 384
    again = tmp_path / "again.json"
    assert cli(["train", "--data", str(write_outcomes(tmp_path / "o.jsonl")), "--out", str(again), "--l2", "1e-4"]) == 0
    b = json.loads(again.read_text())
    assert [m["weights"] for m in a["models"]] == [m["weights"] for m in b["models"]]
    assert [m["bias"] for m in a["models"]] == [m["bias"] for m in b["models"]]


def test_predicted_quality_drives_the_choice(artefact: Path) -> None:
    r = learned(artefact, willingness_to_pay=0.05)
    # Held-out phrasings of both kinds.
    code = r.route("Write a Scala function that deduplicates a list of records, with tests.", models=PAIR, no_cache=True)
    chat = r.route("Tell me a cheerful fact about dolphins, please", models=PAIR, no_cache=True)
    assert code.model == STRONG and chat.model == CHEAP, (code.reason, chat.reason)
    for d in (code, chat):
        assert d.predicted_quality is not None and 0 <= d.predicted_quality <= 1
        assert d.willingness_to_pay == 0.05
        assert "learned router" in d.reason and "willingness to pay" in d.reason
    p = r.predict_quality(code_prompt(3))
    assert p is not None and p[STRONG] > 0.8 > 0.3 > p[CHEAP]
    # Catalog models the artefact does not know keep their catalog quality (None here).
    assert p["gpt-4o"] is None
    st = r.stats()["quality"]
    assert st["mapped"] == {STRONG: STRONG, CHEAP: CHEAP} and st["labels"] == 0


def test_by_group_learns_what_each_workflow_step_needs(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Prompts alike in every step; the cheap model fails the "plan" step and passes "extract".
    Trained --by-group on the step column, the artefact (version 2) routes each step to its model,
    a request without a step (or an unknown one) gets no offset, and the feedback log keeps the
    step so a model can be trained on it again."""
    data = tmp_path / "steps.jsonl"
    with open(data, "w", encoding="utf-8") as f:
        for i in range(48):
            step = "plan" if i % 2 else "extract"
            prompt = f"Here are the notes of ticket {i}: {CHATS[(i // 2) % 8]}. Go on."
            for model, score in ((STRONG, 1.0), (CHEAP, 0.0 if step == "plan" else 1.0)):
                f.write(json.dumps({"prompt": prompt, "model": model, "score": score, "step": step}) + "\n")
    out = tmp_path / "steps.json"
    assert cli(["train", "--data", str(data), "--group-column", "step", "--by-group", "--out", str(out)]) == 0
    a = json.loads(out.read_text())
    assert a["version"] == 2 and set(a["groups"]) == {"plan", "extract"} and a["training"]["by_group"]
    plan, extract = (dict(zip(PAIR, a["groups"][g])) for g in ("plan", "extract"))
    assert plan[CHEAP] < extract[CHEAP] - 1.0, a["groups"]
    log = tmp_path / "fb.jsonl"
    r = learned(out, willingness_to_pay=0.05, feedback_log=str(log))
    text = "Here are the notes of ticket 99: a riddle about time. Go on."
    d_plan = r.route(text, models=PAIR, step="plan", no_cache=True)
    d_extract = r.route(text, models=PAIR, step="extract", no_cache=True)
    assert (d_plan.model, d_extract.model) == (STRONG, CHEAP), (d_plan.reason, d_extract.reason)
    p_plan, p_none, p_other = (r.predict_quality(text, step=s) for s in ("plan", None, "unknown-step"))
    assert p_plan is not None and p_none is not None and p_plan[CHEAP] < p_none[CHEAP]
    assert p_other == p_none
    r.record(d_plan, "answer", 10, 10, 100.0, outcome=False)
    assert json.loads(log.read_text().splitlines()[-1])["step"] == "plan"
    # Served, the step travels with the request and selects the same offsets.
    if importlib.util.find_spec("grpc") is not None:
        from routerx.client import Client
        from routerx.server import serve

        cfg = tmp_path / "steps.toml"
        cfg.write_text(f'[quality]\nmodel = "{out}"\nwillingness_to_pay = 0.05\n[accounting]\ndb = ""\n')
        srv = serve(str(cfg), port=0, block=False, workers=2)
        try:
            with Client(srv.target, timeout=10) as c:
                c.wait_ready(5)
                for step, local in (("plan", d_plan), ("extract", d_extract)):
                    remote = c.route(text, models=PAIR, step=step, no_cache=True)
                    assert (remote.model, remote.step) == (local.model, step)
                    assert remote.predicted_quality == pytest.approx(local.predicted_quality)
        finally:
            srv.stop(0)
    # Cross-validated, the steps are what tells the cheap model's failures apart.
    res = {}
    for extra in ([], ["--by-group"]):
        o = tmp_path / f"eval{len(extra)}"
        assert cli(["eval", "--data", str(data), "--group-column", "step", "--folds", "4", "--price", f"{STRONG}=0.01", "--price", f"{CHEAP}=0.0005", "--out-dir", str(o), *extra]) == 0
        res[bool(extra)] = json.loads((o / "report.json").read_text())["metrics"]["apgr"]
    assert res[True] > 0.7 > res[False], res
    # One group is nothing to learn offsets from.
    capsys.readouterr()
    assert cli(["train", "--data", str(data), "--by-group", "--out", str(tmp_path / "x.json")]) == 2
    assert "--by-group needs a group column" in capsys.readouterr().err
    # Rows without a step (traffic that gave none) are allowed: they get no offset.
    mixed = tmp_path / "mixed.jsonl"
    rows = [json.loads(line) for line in data.read_text().splitlines()]
    for r in rows[:16]:
        r.pop("step")
    mixed.write_text("".join(json.dumps(r) + "\n" for r in rows))
    assert cli(["train", "--data", str(mixed), "--group-column", "step", "--by-group", "--out", str(tmp_path / "m.json")]) == 0
    assert set(json.loads((tmp_path / "m.json").read_text())["groups"]) == {"plan", "extract"}


def test_the_knob_moves_along_the_curve(artefact: Path) -> None:
    r = learned(artefact)
    prompts = [code_prompt(i) for i in range(0, 16, 3)] + [chat_prompt(i) for i in range(0, 16, 3)]
    strong_share = []
    for wtp in (0.0, 0.0005, 0.05, 10.0):
        ds = [r.route(p, models=PAIR, willingness_to_pay=wtp, no_cache=True) for p in prompts]
        strong_share.append(sum(d.model == STRONG for d in ds) / len(ds))
    assert strong_share[0] == 0.0, "wtp 0: always the cheapest"
    assert strong_share == sorted(strong_share), strong_share
    assert 0 < strong_share[2] < 1, "a middle setting sends code to the strong model, chat to the cheap one"
    # Without a willingness to pay, the quality target rule applies to the predictions.
    d = r.route(chat_prompt(1), models=PAIR, min_quality=0.7, no_cache=True)
    assert d.model == CHEAP and d.willingness_to_pay is None and d.predicted_quality is not None


def test_bad_knob_values(artefact: Path) -> None:
    r = learned(artefact)
    for bad in (math.nan, -1.0, math.inf):
        with pytest.raises(InvalidConstraintError, match="willingness_to_pay"):
            r.route("hi", willingness_to_pay=bad)
    with pytest.raises(ConfigError, match="willingness_to_pay"):
        learned(artefact, willingness_to_pay=-0.5)


def test_feedback_is_bounded_and_isolated_per_tenant(artefact: Path) -> None:
    r = learned(artefact, willingness_to_pay=0.05, min_labels=5)
    prompt = chat_prompt(2)
    before = r.predict_quality(prompt, tenant="bystander")
    assert before is not None
    flood_before = r.predict_quality(prompt, tenant="flood")
    # One tenant floods thumbs-down on the cheap model's chat answers.
    for i in range(300):
        d = r.route(chat_prompt(i), tenant="flood", models=[CHEAP], no_cache=True)
        r.record(d, "ok", 10, 10, 100.0, outcome=False)
    after = r.predict_quality(prompt, tenant="flood")
    assert after is not None and flood_before is not None
    assert after[CHEAP] < flood_before[CHEAP], "the flooding tenant's own predictions move"
    # ... by a bounded amount: at most max_offset (1.0) in logits.
    logit = lambda p: math.log(p / (1 - p))  # noqa: E731
    assert logit(flood_before[CHEAP]) - logit(after[CHEAP]) <= 1.0 + 1e-3
    # Two other tenants disagree: the shared correction is the median, which the flood alone cannot set.
    for t in ("t2", "t3"):
        for i in range(10):
            d = r.route(chat_prompt(i), tenant=t, models=[CHEAP], no_cache=True)
            assert r.feedback(d, True)
    by = r.predict_quality(prompt, tenant="bystander")
    assert by is not None and by[CHEAP] >= before[CHEAP] - 1e-6
    st = r.stats()["quality"]
    assert st["labels"] == 320 and st["tenants"] == 3


def test_feedback_bad_input_changes_nothing(artefact: Path, tmp_path: Path) -> None:
    log = tmp_path / "fb.jsonl"
    r = learned(artefact, feedback_log=str(log))
    d = r.route(code_prompt(1), models=PAIR, no_cache=True)
    for bad in (1.5, -0.1, math.nan, "yes", None.__class__):
        with pytest.raises(InvalidRequestError, match="outcome"):
            r.record(d, "answer", 10, 10, 100.0, outcome=bad)  # type: ignore[arg-type]
    assert r.stats()["records"] == 0, "a bad label rejects the whole record"
    assert r.stats()["quality"]["labels"] == 0 and not log.exists()
    r.record(d, "answer", 10, 10, 100.0, outcome=0.7)
    rows = [json.loads(x) for x in log.read_text().splitlines()]
    assert rows == [{"prompt": code_prompt(1), "model": d.model, "score": 0.7, "tenant": "default", "ts": rows[0]["ts"]}]
    # A cache hit was not a model call: its label is logged for training but not learned online.
    hit = r.route(code_prompt(1), models=PAIR)
    assert hit.cache == "exact" and r.feedback(hit, True) is False


def test_feedback_log_survives_a_torn_last_line(tmp_path: Path) -> None:
    """A crash mid-append leaves half a line: it is skipped on reading, and the next label still
    lands on a line of its own."""
    from routerx.router import FeedbackLog

    log = FeedbackLog(tmp_path / "fb.jsonl")
    log.append("first question", "m1", 1.0, "t")
    with open(log.path, "ab") as f:
        f.write(b'{"prompt": "torn mid-wri')
    log.append("second question", "m2", 0.0, "t", "plan")
    rows, bad = log.read()
    assert [(r[2], r[1], r[3], r[4]) for r in rows] == [("first question", "m1", "", 1.0), ("second question", "m2", "plan", 0.0)]
    assert bad == 1


def test_feedback_log_trains_a_new_model(artefact: Path, tmp_path: Path) -> None:
    log = tmp_path / "fb.jsonl"
    r = learned(artefact, feedback_log=str(log), willingness_to_pay=10.0)
    for i in range(24):
        d = r.route(code_prompt(i) if i % 2 else chat_prompt(i), models=PAIR, no_cache=True)
        r.record(d, "answer", 10, 10, 100.0, outcome=bool(i % 3))
    out = tmp_path / "from-feedback.json"
    assert cli(["train", "--data", str(log), "--out", str(out)]) == 0
    m = json.loads(out.read_text())
    assert m["training"]["prompts"] == 24 and [x["name"] for x in m["models"]] == [STRONG]


def test_bad_artefacts(tmp_path: Path, artefact: Path) -> None:
    cases = {
        "missing.json": None,
        "garbage.json": b"{not json",
        "latin1.json": "caf\xe9".encode("latin-1"),
        "other.json": json.dumps({"format": "something-else", "version": 1}).encode(),
        "future.json": json.dumps({**json.loads(artefact.read_text()), "version": 99}).encode(),
        "short.json": json.dumps({**json.loads(artefact.read_text()), "dim": 12}).encode(),
    }
    for name, content in cases.items():
        p = tmp_path / name
        if content is not None:
            p.write_bytes(content)
        with pytest.raises(ConfigError) as e:
            learned(p)
        assert name in str(e.value), str(e.value)
    # An artefact whose models match no catalog model says how to map them.
    foreign = json.loads(artefact.read_text())
    for m, new in zip(foreign["models"], ("strong-x", "weak-y")):
        m["name"] = new
    p = tmp_path / "foreign.json"
    p.write_text(json.dumps(foreign))
    with pytest.raises(ConfigError, match=r"match no catalog model.*\[quality.models\]"):
        learned(p)
    r = learned(p, models={STRONG: "strong-x", CHEAP: "weak-y"}, willingness_to_pay=0.05)
    assert r.route(code_prompt(2), models=PAIR, no_cache=True).model == STRONG
    with pytest.raises(ConfigError, match="not a catalog model"):
        learned(p, models={"no-such-model": "strong-x"})


def test_bad_training_data(tmp_path: Path) -> None:
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"prompt": "hi", "model": "m", "score": 7}\n')
    assert cli(["train", "--data", str(bad), "--out", str(tmp_path / "m.json")]) == 2
    bad.write_text('{"prompt": "hi", "model": "m", "score": 0.5}\n[1, 2]\n')
    with pytest.raises(ConfigError, match=r"bad.jsonl:2: each line must be a JSON object"):
        from routerx.quality.data import load

        load(bad)
    csvf = tmp_path / "wide.csv"
    csvf.write_text("prompt,a,b\nhello,1,0\n")
    from routerx.quality.data import ColumnMap, load

    with pytest.raises(ConfigError, match="missing column"):
        load(csvf, ColumnMap(model_columns=("a", "c")))
    assert not (tmp_path / "m.json").exists()


def test_routing_and_feedback_from_many_threads(artefact: Path) -> None:
    r = learned(artefact, willingness_to_pay=0.05, min_labels=3)
    errors: List[str] = []
    barrier = threading.Barrier(16)

    def work(t: int) -> None:
        barrier.wait()
        for i in range(60):
            code = (i + t) % 2 == 0
            prompt = code_prompt(i) if code else chat_prompt(i)
            d = r.route(prompt, tenant=f"t{t % 4}", models=PAIR, no_cache=True)
            if d.predicted_quality is None or not 0 <= d.predicted_quality <= 1:
                errors.append(f"no prediction: {d.reason}")
            # Labels agree with the training data: routing must not drift.
            r.record(d, "a", 10, 10, 50.0, outcome=1.0 if (d.model == STRONG or not code) else 0.0)

    run_threads(16, work)
    assert not errors, errors[:3]
    assert r.stats()["quality"]["labels"] == 16 * 60
    assert r.route(code_prompt(5), models=PAIR, no_cache=True).model == STRONG
    assert r.route(chat_prompt(5), models=PAIR, no_cache=True).model == CHEAP


def test_builtin_artefact_loads() -> None:
    from routerx.quality import builtin_path, load_quality_model

    m = load_quality_model("builtin")
    assert builtin_path().is_file() and len(m.names) == 2 and m.embedder == "static"
    r = routerx.Router({"quality": {"model": "builtin", "models": {STRONG: "gpt-4-1106-preview", CHEAP: "mistralai/Mixtral-8x7B-Instruct-v0.1"}}}, db=None)
    p = r.predict_quality("What is the capital of France?\nA. Paris\nB. Rome\nC. Madrid\nD. Berlin\nAnswer:")
    assert p is not None and 0 < p[CHEAP] < 1 and 0 < p[STRONG] < 1


def test_eval_on_routerbench_beats_the_single_model_hull(tmp_path: Path) -> None:
    shared_data("routerbench-routerdc-subset")
    assert cli(["eval", "--data", "routerbench", "--folds", "3", "--out-dir", str(tmp_path), "--json"]) == 0
    rep: Dict[str, Any] = json.loads((tmp_path / "report.json").read_text())
    m = rep["metrics"]
    assert rep["prompts"] > 2000 and len(rep["models"]) == 11
    assert m["aiq"] > m["aiq_single_hull"], m
    assert any("ex-ante costs" in note for note in rep["notes"]), rep["notes"]
    assert 0.5 < m["by_group_bound_at_40pct_cost"] <= m["oracle_quality"], m
    auc = m["prediction_auc"]
    assert set(auc) == set(rep["models"]) and all(0 <= a["within_group"] <= 1 and a["all"] > 0.5 for a in auc.values()), auc
    assert m["oracle_quality"] > m["best_single_quality"]
    assert (tmp_path / "curve.png").stat().st_size > 10_000
    rows = (tmp_path / "table.csv").read_text().splitlines()
    assert rows[0].startswith("curve,knob,quality,cost_usd") and len(rows) > 100


def test_eval_reports_the_cold_start_beside_the_learned_router(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The report gives the router with no learned model (the classifier's complexity) on the same
    data: where the cheap model fails the complex prompts, that baseline routes well; where it
    fails the simple ones, it cannot, while the learned router still can."""
    def evaluate(cheap_fails_code: bool) -> Dict[str, Any]:
        path = tmp_path / f"outcomes-{cheap_fails_code}.jsonl"
        with open(path, "w", encoding="utf-8") as f:
            for i in range(40):
                for prompt, fails in ((code_prompt(i), cheap_fails_code), (chat_prompt(i), not cheap_fails_code)):
                    f.write(json.dumps({"prompt": prompt, "model": STRONG, "score": 1.0}) + "\n")
                    f.write(json.dumps({"prompt": prompt, "model": CHEAP, "score": 0.0 if fails else 1.0}) + "\n")
        out = tmp_path / f"report-{cheap_fails_code}"
        args = ["eval", "--data", str(path), "--folds", "4", "--out-dir", str(out), "--json"]
        assert cli(args) == 2  # no costs: no curve to draw
        assert "no cost for gpt-4.1, gpt-4.1-nano" in capsys.readouterr().err
        assert cli([*args, "--price", f"{STRONG}=0.01", "--price", f"{CHEAP}=0.0005"]) == 0
        return json.loads((out / "report.json").read_text())

    # 40 code prompts and 24 distinct chat ones: a perfect router's APGR is 1 − 40/64/2 ≈ 0.69
    # when the cheap model fails the code, 1 − 24/64/2 ≈ 0.81 when it fails the chat (random: 0.5).
    natural = evaluate(True)
    cold = natural["metrics"]["cold_start"]
    assert 0.55 < cold["apgr"] <= natural["metrics"]["apgr"] + 1e-9 and natural["metrics"]["apgr"] > 0.68, natural["metrics"]
    assert natural["cold_start"] and all(0 <= pt["quality"] <= 1 for pt in natural["cold_start"])
    inverted = evaluate(False)
    assert inverted["metrics"]["cold_start"]["apgr"] < 0.3 and inverted["metrics"]["apgr"] > 0.8, inverted["metrics"]
    rows = (tmp_path / "report-False" / "table.csv").read_text().splitlines()
    assert any(r.startswith("cold_start,") for r in rows)


def test_cold_start_predictions_follow_complexity_and_reject_bad_input() -> None:
    from routerx.quality.data import OutcomeSet
    from routerx.quality.evaluate import cold_start_predictions

    n = 8
    q = np.tile([0.9, 0.5], (n, 1))
    data = OutcomeSet([f"p{i}" for i in range(n)], ["strong", "weak"], q, np.ones((n, 2)), ["g"] * n, "synthetic")
    cx = np.linspace(0, 1, n)
    p = cold_start_predictions(data, cx, 0.3, 0.6, k=2)
    assert (np.diff(p[:, 1]) < 0).all() and (p[:, 0] > p[:, 1]).all()
    assert p[0, 1] > 0.5 > p[-1, 1]  # required 0.3 → the weak model fits; required 0.9 → it does not
    for bad in (cx[:3], np.full(n, math.nan)):
        with pytest.raises(ConfigError, match="complexities"):
            cold_start_predictions(data, bad, 0.3, 0.6)


def test_eval_routes_on_costs_known_before_the_call() -> None:
    """A model whose failures cost more (it rambles): choosing on realized costs would steer away
    from exactly its failures. The default evaluation chooses on ex-ante costs, so its curve
    cannot see them, and it is charged what the calls really cost."""
    import numpy as np

    from routerx.quality.data import OutcomeSet
    from routerx.quality.evaluate import cross_val_cost, evaluate_predictions

    rng = np.random.default_rng(0)
    n = 400
    ok = rng.random(n) < 0.6
    q = np.column_stack([ok, np.ones(n)]).astype(float)

    def outcomes(tokens: Any) -> Any:
        # Cheap model: 1e-6/token, 4x when it fails (a long wrong answer); strong one: 1e-5/token.
        cost = np.column_stack([1e-6 * tokens * np.where(ok, 1.0, 4.0), 1e-5 * tokens])
        return OutcomeSet([f"p{i}" for i in range(n)], ["cheap", "strong"], q, cost, ["g"] * n, "synthetic")

    # The estimate is a line in the prompt's tokens, fitted out of fold: exact where the price
    # is, and blind to how each answer went.
    tokens = rng.integers(10, 200, n)
    varied = outcomes(tokens)
    est = cross_val_cost(varied, tokens, 5, 0)
    assert est.shape == (n, 2) and (est >= 0).all()
    assert np.allclose(est[:, 1], varied.cost[:, 1], rtol=1e-6)
    assert np.corrcoef(est[:, 0], tokens)[0, 1] > 0.99
    # Prompts of one length: nothing known before the call tells them apart.
    data = outcomes(np.full(n, 100))
    est = cross_val_cost(data, np.full(n, 100), 5, 0)
    p = np.full((n, 2), [0.6, 1.0])  # predictions that know nothing of the prompt
    honest = evaluate_predictions(data, p, choice_cost=est)
    leaky = evaluate_predictions(data, p)
    # Uninformed predictions give nothing above mixing the two models...
    assert honest.metrics["aiq"] <= honest.metrics["aiq_single_hull"] + 1e-9
    # ...while realized costs let the router dodge the cheap model's failures.
    assert leaky.metrics["aiq"] > honest.metrics["aiq"] + 0.03
    # Every point is charged what its calls cost.
    for pt in honest.router:
        assert data.cost[:, 0].mean() - 1e-12 <= pt.cost <= data.cost[:, 1].mean() + 1e-12
    with pytest.raises(ConfigError, match="shape"):
        evaluate_predictions(data, p, choice_cost=est[:10])
    with pytest.raises(ConfigError, match="token counts"):
        cross_val_cost(data, tokens[:5])


def test_prediction_auc_separates_task_knowledge_from_prompt_knowledge() -> None:
    """A router that knows only each prompt's task ranks well across tasks and not at all within
    one; one that knows the prompt ranks well within tasks too."""
    import numpy as np

    from routerx.quality.data import OutcomeSet
    from routerx.quality.evaluate import prediction_auc

    rng = np.random.default_rng(1)
    n = 600
    groups = np.array(["easy", "hard"])[rng.integers(0, 2, n)]
    right = rng.random(n) < np.where(groups == "easy", 0.9, 0.3)
    q = np.column_stack([right, np.ones(n)]).astype(float)
    data = OutcomeSet([f"p{i}" for i in range(n)], ["m", "always"], q, np.ones((n, 2)), list(groups), "synthetic")
    by_task = np.column_stack([np.where(groups == "easy", 0.9, 0.3), np.ones(n)])
    a = prediction_auc(data, by_task)
    assert a is not None and a["m"]["all"] > 0.75 and a["m"]["within_group"] == pytest.approx(0.5)
    assert math.isnan(a["always"]["all"])  # never wrong: nothing to rank
    knows = by_task.copy()
    knows[:, 0] += np.where(right, 0.05, -0.05)
    b = prediction_auc(data, knows)
    assert b is not None and b["m"]["within_group"] == pytest.approx(1.0)
    graded = OutcomeSet(data.prompts, data.models, q * 0.7, data.cost, list(groups), "graded")
    assert prediction_auc(graded, knows) is None  # judge scores, not right/wrong


def test_by_group_bound_spends_on_the_group_that_gains_most() -> None:
    import numpy as np

    from routerx.quality.data import OutcomeSet
    from routerx.quality.evaluate import by_group_quality

    n = 100
    groups = ["easy", "hard"] * (n // 2)
    cheap = np.where(np.array(groups) == "easy", 0.9, 0.3)
    q = np.column_stack([cheap, np.ones(n)])
    data = OutcomeSet([f"p{i}" for i in range(n)], ["cheap", "strong"], q, np.tile([1.0, 10.0], (n, 1)), groups, "synthetic")
    assert by_group_quality(data, 1.0) == pytest.approx(0.6)
    # 4.5 more per prompt: all the hard half to the strong model (gains 0.7 there, 0.1 on the easy half).
    assert by_group_quality(data, 5.5) == pytest.approx(0.95)
    assert by_group_quality(data, 100.0) == pytest.approx(1.0)
    assert math.isnan(by_group_quality(data, 0.5))


def test_eval_two_model_metrics(tmp_path: Path) -> None:
    shared_data("routellm-evals")
    assert cli(["eval", "--data", "mt-bench", "--model", "builtin", "--json", "--out-dir", str(tmp_path)]) == 0
    m = json.loads((tmp_path / "report.json").read_text())["metrics"]
    assert m["strong"] == "gpt-4-1106-preview" and 0 <= m["apgr"] <= 1.2
    assert m["cpt50"] is None or 0 <= m["cpt50"] <= 1


def test_served_learned_router_matches_in_process(artefact: Path, tmp_path: Path) -> None:
    pytest.importorskip("grpc")
    from routerx.client import Client
    from routerx.server import serve

    cfg = tmp_path / "routerx.toml"
    cfg.write_text(f'[quality]\nmodel = "{artefact}"\nmin_labels = 1\n[accounting]\ndb = ""\n')
    local = routerx.Router(str(cfg), db=None)
    srv = serve(str(cfg), port=0, block=False, workers=4)
    try:
        with Client(srv.target, timeout=10) as c:
            c.wait_ready(5)
            for prompt in (code_prompt(9), chat_prompt(9)):
                for wtp in (None, 0.0, 0.05):
                    kw: Dict[str, Any] = {"models": PAIR, "no_cache": True} if wtp is None else {"models": PAIR, "no_cache": True, "willingness_to_pay": wtp}
                    a, b = c.route(prompt, **kw), local.route(prompt, **kw)
                    assert (a.model, a.tier, a.reason, a.willingness_to_pay) == (b.model, b.tier, b.reason, b.willingness_to_pay)
                    assert a.predicted_quality == pytest.approx(b.predicted_quality)
            d = c.route(chat_prompt(3), models=PAIR, no_cache=True, willingness_to_pay=0.05)
            c.record(d, "answer", 10, 10, 100.0, outcome=0.0)
            assert srv.router.stats()["quality"]["labels"] == 1
            remote, mine = c.stats()["quality"], srv.router.stats()["quality"]
            assert remote == mine and remote["mapped"] == {STRONG: STRONG, CHEAP: CHEAP}
            with pytest.raises(InvalidRequestError, match="outcome"):
                c.record(c.route(chat_prompt(4), models=PAIR, no_cache=True), "x", 1, 1, 1.0, outcome=3.0)
            with pytest.raises(InvalidConstraintError, match="willingness_to_pay"):
                c.route("hi", willingness_to_pay=-1.0)
            # A label that comes after the Record, as in-process feedback() takes it.
            e = c.route(chat_prompt(5), models=PAIR, no_cache=True, willingness_to_pay=0.05)
            c.record(e, "answer", 10, 10, 100.0)
            assert c.feedback(e, 1.0) is True and c.feedback(e.decision_id, False) is True
            assert srv.router.stats()["quality"]["labels"] == 3
            with pytest.raises(InvalidRequestError, match="outcome"):
                c.feedback(e, 1.5)
            with pytest.raises(InvalidRequestError, match="outcome"):
                c.feedback(e, "good")  # type: ignore[arg-type]
            assert srv.router.stats()["quality"]["labels"] == 3, "a refused label changes nothing"
            with pytest.raises(routerx.RouterxError, match="decision_id"):
                c.feedback("0" * 32, 1.0)
    finally:
        srv.stop(0)


def test_feedback_over_the_wire_on_a_catalog_decision_learns_nothing() -> None:
    pytest.importorskip("grpc")
    from routerx.client import Client
    from routerx.server import serve

    srv = serve({"accounting": {"db": ""}}, port=0, block=False, workers=2)
    try:
        with Client(srv.target, timeout=10) as c:
            c.wait_ready(5)
            d = c.route("Say hello in French.", no_cache=True)
            assert c.feedback(d, True) is False  # before its Record: held, but no learned router
            c.record(d, "Bonjour", 5, 2, 50.0)
            assert c.feedback(d, True) is False  # after: dropped with the Record, as nothing would learn
            assert srv.router.stats()["quality"] is None  # no learned router to label
    finally:
        srv.stop(0)


def test_feedback_survives_a_restart_through_its_log(artefact: Path, tmp_path: Path) -> None:
    log = tmp_path / "fb.jsonl"
    cfg = {"model": str(artefact), "feedback_log": str(log), "min_labels": 5}
    r = learned(artefact, **{k: v for k, v in cfg.items() if k != "model"})
    for i in range(30):
        d = r.route(chat_prompt(i), tenant="acme", models=[CHEAP], no_cache=True)
        r.record(d, "answer", 10, 10, 100.0, outcome=False)
    before = r.predict_quality(chat_prompt(1), tenant="acme")
    r.close()
    # A crash mid-append leaves a torn line: skipped, the rest replayed.
    with open(log, "a", encoding="utf-8") as f:
        f.write('{"prompt": "torn')
    again = learned(artefact, **{k: v for k, v in cfg.items() if k != "model"})
    assert again.stats()["quality"]["labels"] == 30
    after = again.predict_quality(chat_prompt(1), tenant="acme")
    assert before is not None and after is not None
    assert after[CHEAP] == pytest.approx(before[CHEAP], abs=1e-6)
    fresh = learned(artefact)
    assert fresh.predict_quality(chat_prompt(1), tenant="acme")[CHEAP] > after[CHEAP]  # type: ignore[index]
