"""A model family defined here, outside the package, driven through `gibbsdream sample`,
`gibbsdream sweep`, `gibbsdream evaluate`, the Python front door and the web API.

The family is a joint probability table over strings of 3 characters from a 3-letter alphabet
(27 states): small enough that what it generates can be checked against the exact distribution.
Adding it takes one model class and one :class:`~gibbsdream.families.Family` registration; nothing
in the package is touched.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import asdict, dataclass

import pytest
import torch
from fastapi.testclient import TestClient
from torch import nn

import gibbsdream
from gibbsdream.checkpoint import save_checkpoint
from gibbsdream.cli import main
from gibbsdream.data.strings import StringCodec
from gibbsdream.families import Evaluation, Family, Generated, get_family, register

ALPHABET, LENGTH = "abc", 3


@dataclass
class TableConfig:
    """Shape of a :class:`TableModel` (saved with its checkpoint)."""

    num_visible: int = LENGTH
    num_categories: int = len(ALPHABET) + 1

    def to_dict(self) -> dict:
        return asdict(self)


class TableModel(nn.Module):
    """p(v) ∝ exp(log_weights[code(v)]) over ``num_visible`` positions of ``num_categories`` values.

    It follows the conditional-model protocol (``num_categories``, ``logits(x, known, context)``):
    the logits of each variable are its exact conditional given the known ones, the unknown others
    summed out, so gibbsdream's conditional samplers run on it unchanged. Like the built-in models
    it is ``Model(config)``; the loader builds it from the saved fields, ``Model(**fields)``.
    """

    family = "toy-table"

    def __init__(self, config: TableConfig | None = None, **fields):
        super().__init__()
        self.config = config or TableConfig(**fields)
        self.num_visible, self.num_categories = self.config.num_visible, self.config.num_categories
        self.log_weights = nn.Parameter(torch.empty(self.num_categories**self.num_visible))
        if not self.log_weights.is_meta:  # built as shapes only when a checkpoint is sized
            nn.init.zeros_(self.log_weights)

    @property
    def shape(self) -> tuple[int, ...]:
        return (self.num_visible,)

    def states(self) -> torch.Tensor:
        """``(M, V)``: every state, in the order of ``log_weights``."""
        K, V = self.num_categories, self.num_visible
        codes = torch.arange(K**V)
        return torch.stack([(codes // K ** (V - 1 - i)) % K for i in range(V)], -1)

    def logits(self, x, known, context=None):
        states = self.states()  # (M, V)
        consistent = ((states[None] == x[:, None]) | ~known[:, None]).all(-1)  # (N, M)
        weights = torch.where(consistent, self.log_weights[None], torch.tensor(float("-inf")))  # (N, M)
        onehot = nn.functional.one_hot(states, self.num_categories).bool()  # (M, V, K)
        per_value = torch.where(onehot[None], weights[:, :, None, None], torch.tensor(float("-inf")))
        return torch.logsumexp(per_value, dim=1)  # (N, V, K)


def prepare(checkpoint) -> None:
    if checkpoint.codec is None:
        raise gibbsdream.UsageError("a toy table needs its string codec")


def generate(checkpoint, *, num_samples=20, steps=None, temperature="1", anneal="geometric", every=None, seed=0,
             progress=False, on_step=None) -> Generated:  # fmt: skip
    from gibbsdream.summary import string_records

    model = checkpoint.model
    x = torch.zeros(num_samples, model.num_visible, dtype=torch.long)
    chain = gibbsdream.sample(model, x=x, known=torch.zeros_like(x, dtype=torch.bool), steps=steps or 30,
                              temperature=temperature, anneal=anneal, seed=seed, record_every=every,
                              on_step=on_step)  # fmt: skip
    records = string_records(chain, checkpoint.codec)
    return Generated(chain=chain, outputs=[r["text"] for r in records], records=records)


def evaluate(checkpoint, data, *, seed=0, progress=False) -> Evaluation:
    """Exact mean log-likelihood of ``data`` (a list of strings)."""
    model, codec = checkpoint.model, checkpoint.codec
    log_p = torch.log_softmax(model.log_weights.detach(), 0)
    codes = (codec.encode(list(data)) * model.num_categories ** torch.arange(model.num_visible - 1, -1, -1)).sum(1)
    mean = log_p[codes].mean().item()
    return Evaluation(values={"strings": len(codes), "mean_log_likelihood": mean}, lines=[f"mean log p {mean:.4f}"])


FAMILY = Family(
    name="toy-table",
    title="a joint-table (string) model",
    label="string (joint table)",
    outputs="strings",
    prepare=prepare,
    generate=generate,
    evaluate=evaluate,
    generate_options=(),
    evaluate_options=(),
    sweep_defaults={"temperature": "1", "anneal": "geometric", "steps": 30},
    model_class=TableModel,
)


@pytest.fixture(scope="module")
def toy(tmp_path_factory):
    """A registered toy family and a checkpoint of it whose table favours 'abc' and 'cab'."""
    register(FAMILY)
    codec = StringCodec(alphabet=ALPHABET, max_length=LENGTH)
    model = TableModel(TableConfig(LENGTH, codec.num_categories))
    with torch.no_grad():
        model.log_weights.fill_(-4.0)
        for text, weight in (("abc", 3.0), ("cab", 2.0)):
            code = sum(int(v) * model.num_categories ** (LENGTH - 1 - i) for i, v in enumerate(codec.encode([text])[0]))
            model.log_weights[code] = weight
    folder = tmp_path_factory.mktemp("toy") / "table"
    save_checkpoint(folder, model, codec=codec)
    return folder, model, codec


def exact(model, codec) -> dict[str, float]:
    probs = torch.softmax(model.log_weights.detach().double(), 0)
    return dict(zip(codec.decode(model.states()), probs.tolist()))


def run_cli(capsys, *args) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as stop:
        main([str(a) for a in args])
    captured = capsys.readouterr()
    return stop.value.code, captured.out, captured.err


def test_the_front_door_loads_generates_and_scores_it(toy):
    folder, model, codec = toy
    checkpoint = gibbsdream.load(folder, device="cpu")
    assert checkpoint.family == "toy-table" and isinstance(checkpoint.model, TableModel)
    dream = gibbsdream.generate(checkpoint, num_samples=4000, steps=20, seed=1)
    counts = {text: dream.outputs.count(text) / len(dream.outputs) for text in set(dream.outputs)}
    truth = exact(model, codec)
    assert 0.5 * sum(abs(counts.get(t, 0.0) - p) for t, p in truth.items()) < 0.05  # the table's distribution
    with pytest.raises(gibbsdream.UsageError, match="takes no init"):
        gibbsdream.generate(checkpoint, init="data")  # an RBM option: refused, naming the ones it takes
    scores = gibbsdream.evaluate(checkpoint, ["abc", "cab"])
    assert scores.values["mean_log_likelihood"] == pytest.approx(
        0.5 * (math.log(truth["abc"]) + math.log(truth["cab"]))
    )


def test_gibbsdream_sample_and_evaluate_commands(toy, capsys):
    folder, _, _ = toy
    code, out, _ = run_cli(capsys, "sample", folder, "--chains", 400, "--steps", 15, "--format", "jsonl", "--quiet")
    assert code == 0
    texts = [json.loads(line)["text"] for line in out.splitlines()]
    assert len(texts) == 400 and texts.count("abc") > texts.count("cab") > texts.count("bbb")
    code, out, _ = run_cli(capsys, "sample", folder, "--chains", 400, "--steps", 15, "--quiet")
    assert code == 0
    # One line per distinct string, "  N×  text  value"; its trace is a log-probability, so higher first.
    rows = [line.split() for line in out.splitlines()]
    values = [float(value) for _, _, value in rows]
    assert values == sorted(values, reverse=True) and len(rows) == len({text for _, text, _ in rows})
    assert {text: int(count.rstrip("×")) for count, text, _ in rows} == {t: texts.count(t) for t in set(texts)}
    code, _, err = run_cli(capsys, "sample", folder, "--prefix", "a")  # an RBM flag: one line, exit 2
    assert code == 2 and "--prefix applies to string (RBM) models only" in err
    code, _, err = run_cli(capsys, "sample", folder, "--gif", "x.gif")  # an image flag
    assert code == 2 and "--gif applies to image (NADE) models only" in err


def test_gibbsdream_sweep_runs_its_grid(toy, capsys, tmp_path):
    folder, _, _ = toy
    out = tmp_path / "sweep"
    code, _, err = run_cli(capsys, "sweep", folder, "--grid", "temperature=1,0.5", "--chains", 200, "--out", out,
                           "--quiet")  # fmt: skip
    assert code == 0, err
    results = json.loads((out / "results.json").read_text())
    rows = {row["settings"]["temperature"]: row for row in results["rows"]}
    assert set(rows) == {"1", "0.5"} and (out / "index.html").exists()
    # colder chains concentrate on the most likely strings: fewer distinct samples
    assert rows["0.5"]["unique_share"] <= rows["1"]["unique_share"]
    code, _, err = run_cli(capsys, "sweep", folder, "--grid", "init=uniform,data", "--out", tmp_path / "x")
    assert code == 2 and "grid name 'init' applies to string (RBM) models" in err


def test_the_web_api_serves_it(toy):
    from gibbsdream.web.app import create_app, load_models

    folder, _, _ = toy
    client = TestClient(create_app(load_models([folder], device="cpu")), base_url="http://127.0.0.1")
    about = client.get("/api/models").json()
    about = about["models"] if isinstance(about, dict) else about
    assert about[0]["family"] == "toy-table" and about[0]["kind"] == "strings"
    job = client.post("/api/jobs", json={"model": about[0]["name"], "chains": 50, "steps": 10, "seed": 2}).json()
    for _ in range(400):
        status = client.get(f"/api/jobs/{job['id']}").json()
        if status.get("state") in ("done", "failed"):
            break
    assert status["state"] == "done", status
    assert get_family("toy-table").outputs == "strings"


def test_a_command_added_outside_the_package_runs_through_the_api(toy, capsys):
    """A command is a click function on gibbsdream.cli.app that parses flags, calls the API and
    presents; a UsageError it lets through is one `error:` line and exit 2."""
    import click

    from gibbsdream.cli import app

    @app.command("toy-best")
    @click.argument("checkpoint")
    @click.option("--chains", default=200)
    def toy_best(checkpoint, chains):
        dream = gibbsdream.generate(checkpoint, num_samples=chains, steps=10, device="cpu")
        click.echo(max(set(dream.outputs), key=dream.outputs.count))

    try:
        folder, _, _ = toy
        code, out, _ = run_cli(capsys, "toy-best", folder)
        assert code == 0 and out.strip() == "abc"  # the table's most likely string
        code, _, err = run_cli(capsys, "toy-best", folder.parent / "missing")
        assert code == 2 and err.startswith("error:") and len(err.strip().splitlines()) == 1
    finally:
        app.commands.pop("toy-best")


def test_a_family_without_export_split_refuses_in_one_line(toy, capsys, tmp_path):
    """Exporting data splits is an optional hook: a family without one is refused, in one line,
    before its checkpoint is read, by the front door and by `gibbsdream export-split`."""
    folder, _, _ = toy
    assert get_family("toy-table").export_split is None
    refused = "a joint-table (string) model keeps no data splits to export"
    with pytest.raises(gibbsdream.UsageError, match=f"^{re.escape(refused)}$"):
        gibbsdream.export_split(folder, "valid", tmp_path / "out.txt")
    code, out, err = run_cli(capsys, "export-split", folder, "valid", "--out", tmp_path / "out.txt")
    assert code == 2 and out == "" and err == f"error: {refused}\n"
    assert not (tmp_path / "out.txt").exists()
